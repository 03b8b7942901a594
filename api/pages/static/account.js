// Log in and register: the API sets the HttpOnly session cookie; the page never holds a token.
import { api, body, fail, flash, newKey } from "./common.js";

async function logIn(email, password, next) {
  await api("/auth/session", { method: "POST", form: { username: email, password } });
  location.assign(next || "/");
}

document.getElementById("login")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  try {
    await logIn(data.get("username"), data.get("password"), body.next);
  } catch (err) {
    fail(err);
  }
});

document.getElementById("register")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  try {
    await api("/users", {
      method: "POST",
      json: data,
      headers: { "Idempotency-Key": newKey() },
    });
    flash("Registered: logging you in…");
    await logIn(data.email, data.password, "/");
  } catch (err) {
    fail(err);
  }
});
