// The storefront: the catalogue (search, category), a product's page, the cart and checkout.
import { add, checkout, getCart, needsLogin, setQuantity } from "./cart.js";
import { api, body, el, fail, flash, money, newKey } from "./common.js";

function availability(stock) {
  return stock > 0 ? `${stock} in stock` : "Out of stock";
}

async function addToCart(product, quantity) {
  if (needsLogin) {
    location.assign(`/shop/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  try {
    await add(product, quantity);
    flash(`Added ${quantity} × ${product.name} to the cart.`);
  } catch (err) {
    fail(err);
  }
}

// --- catalogue --------------------------------------------------------------------------

function productCard(p) {
  const qty = el("input", {
    type: "number", min: 1, max: 99, value: 1, "aria-label": `Quantity of ${p.name}`,
  });
  return el("li", { class: "card", "data-product-id": p.id },
    el("h2", {}, el("a", { href: `/shop/products/${encodeURIComponent(p.id)}` }, p.name)),
    el("p", { class: "muted" }, p.category),
    el("p", {}, el("strong", {}, money(p.price_cents)), " · ",
      el("span", { class: p.stock > 0 ? "ok" : "error" }, availability(p.stock))),
    el("div", { class: "row" }, qty,
      el("button", {
        type: "button",
        disabled: p.stock <= 0,
        onclick: () => addToCart(p, Number(qty.value) || 1),
      }, "Add to cart")),
  );
}

async function loadCategories(shown, filtered) {
  const select = document.getElementById("category");
  let names;
  if (body.categories === "yes") {
    names = (await api("/categories")).map((c) => c.name);
  } else {
    const all = filtered ? await api("/products?limit=100") : shown;
    names = [...new Set(all.map((p) => p.category).filter(Boolean))].sort();
  }
  for (const name of names) select.append(el("option", { value: name }, name));
}

async function showCatalogue() {
  const params = new URLSearchParams(location.search);
  const q = (params.get("q") ?? "").trim();
  const category = params.get("category") ?? "";
  document.getElementById("q").value = q;
  const query = new URLSearchParams({ limit: "100" });
  if (q) query.set("q", q);
  if (category) query.set("category", category);
  let products = await api(`/products?${query}`);
  // The same filter here too, for an API whose catalogue has no search yet.
  const needle = q.toLowerCase();
  products = products.filter((p) => p.active !== false
    && (!category || p.category === category)
    && (!needle || [p.name, p.description, p.sku].some((t) => (t ?? "").toLowerCase().includes(needle))));
  await loadCategories(products, Boolean(q || category));
  document.getElementById("category").value = category;
  const list = document.getElementById("products");
  list.replaceChildren(...products.map(productCard));
  document.getElementById("count").textContent =
    `${products.length} product${products.length === 1 ? "" : "s"}${q ? ` matching “${q}”` : ""}`;
}

// --- product ----------------------------------------------------------------------------

async function showProduct() {
  const p = await api(`/products/${encodeURIComponent(body.productId)}`);
  document.title = `${p.name} · Shop`;
  document.getElementById("name").textContent = p.name;
  document.getElementById("category").textContent = p.category;
  document.getElementById("description").textContent = p.description;
  document.getElementById("price").textContent = money(p.price_cents);
  document.getElementById("availability").textContent = availability(p.stock);
  document.getElementById("product").setAttribute("aria-busy", "false");
  document.getElementById("add").addEventListener("submit", (event) => {
    event.preventDefault();
    addToCart(p, Number(new FormData(event.target).get("quantity")) || 1);
  });
}

// --- cart and checkout ------------------------------------------------------------------

function cartLine(item) {
  const product = { id: item.product_id, name: item.name, price_cents: item.unit_price_cents };
  const qty = el("input", {
    type: "number", min: 0, max: 99, value: item.quantity, "aria-label": `Quantity of ${item.name}`,
  });
  const change = async (quantity) => {
    try {
      await setQuantity(product, quantity);
      await showCart();
    } catch (err) {
      fail(err);
    }
  };
  qty.addEventListener("change", () => change(Number(qty.value) || 0));
  return el("tr", { "data-product-id": item.product_id },
    el("td", {}, el("a", { href: `/shop/products/${encodeURIComponent(item.product_id)}` }, item.name)),
    el("td", {}, money(item.unit_price_cents)),
    el("td", {}, qty),
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => change(0) },
      "Remove", el("span", { class: "sr-only" }, ` ${item.name}`))),
  );
}

async function showCart() {
  const cart = await getCart();
  document.getElementById("lines").replaceChildren(...cart.items.map(cartLine));
  document.getElementById("total").textContent = money(cart.total_cents);
  document.getElementById("empty").hidden = cart.items.length > 0;
  const form = document.getElementById("checkout");
  if (form) form.hidden = cart.items.length === 0;
}

function wireCheckout() {
  const form = document.getElementById("checkout");
  if (!form) return;
  for (const button of form.querySelectorAll("[data-card]")) {
    button.addEventListener("click", () => {
      document.getElementById("card_number").value = button.dataset.card;
    });
  }
  // One key per attempt at this cart: a double click or a retry places one order.
  const key = newKey();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const address = {
      name: data.name, line1: data.line1, city: data.city,
      postal_code: data.postal_code, country: data.country.toUpperCase(),
    };
    if (data.line2) address.line2 = data.line2;
    const button = document.getElementById("place");
    button.disabled = true;
    try {
      const placed = await checkout({ card_number: data.card_number.replaceAll(" ", "") }, address, key);
      location.assign(`/shop/orders/${encodeURIComponent(placed.order_id)}`);
    } catch (err) {
      button.disabled = false;
      fail(err);
    }
  });
}

const pages = {
  catalogue: showCatalogue,
  product: showProduct,
  cart: async () => { wireCheckout(); await showCart(); },
};
pages[body.page]?.().catch(fail);
