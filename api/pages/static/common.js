// Shared by every page: calls to the REST API (with the session's CSRF token on changes),
// DOM building that only ever sets text (never HTML from data), money, the flash message.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
export const body = document.body.dataset;

export class ApiError extends Error {
  constructor(status, data) {
    super(data?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.data = data;
  }
}

export async function api(path, { method = "GET", json, form, body: raw, headers = {} } = {}) {
  const h = { Accept: "application/json", ...headers };
  let payload = raw;
  if (method !== "GET" && csrf) h["X-CSRF-Token"] = csrf;
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (form !== undefined) {
    payload = new URLSearchParams(form);
  }
  const r = await fetch(path, { method, headers: h, body: payload, credentials: "same-origin" });
  let data = null;
  if (r.status !== 204) {
    try { data = await r.json(); } catch { data = null; }
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// An Idempotency-Key (crypto.randomUUID needs a secure context; this does not).
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// el("a", {href: "/x", class: "y"}, "text", childNode): children that are strings become
// text nodes, so whatever a user typed shows as text.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
export const money = (cents) => fmt.format((cents ?? 0) / 100);
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export function flash(text, kind = "info") {
  const p = document.getElementById("flash");
  p.textContent = text;
  p.className = `flash ${kind}`;
  p.hidden = !text;
}

export function fail(err) {
  flash(err instanceof Error ? err.message : String(err), "error");
}

export const FINAL = new Set(["DELIVERED", "FAILED", "CANCELLED"]);
export const CANCELLABLE = new Set(["PENDING", "RESERVED", "PAID"]);

export function badge(node, status) {
  node.textContent = status;
  node.className = `badge s-${status.toLowerCase()}`;
}

// An EventSource that calls on(type, data) for the named events, with the JSON parsed.
export function follow(url, handlers) {
  const source = new EventSource(url);
  for (const [type, handler] of Object.entries(handlers)) {
    source.addEventListener(type, (event) => handler(JSON.parse(event.data), source));
  }
  return source;
}

document.getElementById("logout")?.addEventListener("click", async () => {
  try {
    await api("/auth/session", { method: "DELETE" });
  } finally {
    localStorage.removeItem("cart");
    location.assign("/");
  }
});
