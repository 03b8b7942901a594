// The cart: kept by the server (GET/PUT/DELETE /cart, POST /cart/checkout: a Cart workflow)
// when the API has it, else in this browser's localStorage with POST /checkout.
import { api, body } from "./common.js";

const SERVER = body.cart === "server";
export const loggedIn = Boolean(body.userId);

function readLocal() {
  try {
    return JSON.parse(localStorage.getItem("cart") ?? "[]");
  } catch {
    return [];
  }
}

function localCart() {
  const items = readLocal();
  const total = items.reduce((sum, i) => sum + i.quantity * i.unit_price_cents, 0);
  return { items, total_cents: total };
}

export async function getCart() {
  if (!SERVER) return localCart();
  if (!loggedIn) return { items: [], total_cents: 0 };
  return api("/cart");
}

// Sets a product's quantity (0 removes); `product` has id, name, price_cents.
export async function setQuantity(product, quantity) {
  if (SERVER) {
    return api(`/cart/items/${encodeURIComponent(product.id)}`, {
      method: "PUT",
      json: { quantity },
    });
  }
  let items = readLocal().filter((i) => i.product_id !== product.id);
  if (quantity > 0) {
    items = [...items, {
      product_id: product.id, name: product.name, quantity, unit_price_cents: product.price_cents,
    }];
  }
  localStorage.setItem("cart", JSON.stringify(items));
  return localCart();
}

export async function add(product, quantity) {
  const current = (await getCart()).items.find((i) => i.product_id === product.id);
  return setQuantity(product, (current?.quantity ?? 0) + quantity);
}

export async function checkout(payment, shippingAddress, key) {
  const headers = { "Idempotency-Key": key };
  if (SERVER) {
    return api("/cart/checkout", {
      method: "POST", headers, json: { payment, shipping_address: shippingAddress },
    });
  }
  const items = readLocal().map((i) => ({ product_id: i.product_id, quantity: i.quantity }));
  const placed = await api("/checkout", {
    method: "POST", headers, json: { items, payment, shipping_address: shippingAddress },
  });
  localStorage.removeItem("cart");
  return placed;
}

// Whether adding needs a login first (the server's cart is the customer's).
export const needsLogin = SERVER && !loggedIn;
