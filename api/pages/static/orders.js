// The customer's orders: one order followed live (GET /orders/{id}/events), the list, and
// the notifications as they arrive.
import {
  CANCELLABLE, FINAL, api, badge, body, el, fail, flash, follow, money, when,
} from "./common.js";

const REASONS = {
  PAYMENT_DECLINED: "the card was declined",
  OUT_OF_STOCK: "a product is out of stock",
  PRODUCT_NOT_FOUND: "a product is no longer sold",
  USER_NOT_FOUND: "the customer is unknown",
  CANCELLED_BY_CUSTOMER: "cancelled on request",
  NOT_SHIPPED: "not shipped in time",
  WORKFLOW_CANCELLED: "cancelled by an operator",
};

function describe(code) {
  return REASONS[code] ? `${code}: ${REASONS[code]}` : code;
}

// --- one order --------------------------------------------------------------------------

const names = new Map();

async function productNames(items) {
  const missing = items.map((i) => i.product_id).filter((id) => !names.has(id));
  await Promise.all(missing.map(async (id) => {
    try {
      names.set(id, (await api(`/products/${encodeURIComponent(id)}`)).name);
    } catch {
      names.set(id, id);
    }
  }));
}

function showOrder(order) {
  badge(document.getElementById("status"), order.status);
  document.getElementById("payment").textContent = order.payment_status;
  const failure = document.getElementById("failure");
  failure.hidden = !order.failure_reason;
  failure.textContent = order.failure_reason
    ? `${order.status === "FAILED" ? "Failed" : "Reason"}: ${describe(order.failure_reason)}` : "";
  const cancelReason = document.getElementById("cancel-reason");
  cancelReason.hidden = !order.cancel_reason;
  cancelReason.textContent = order.cancel_reason ? `Cancel reason: ${order.cancel_reason}` : "";
  document.getElementById("history").replaceChildren(...order.history.map((h) =>
    el("li", { "data-status": h.status }, el("strong", {}, h.status), " ", el("time", { datetime: h.at }, when(h.at)))));
  document.getElementById("items").replaceChildren(...order.items.map((i) =>
    el("tr", {}, el("td", {}, names.get(i.product_id) ?? i.product_id), el("td", {}, i.quantity),
      el("td", {}, money(i.unit_price_cents)))));
  document.getElementById("total").textContent = money(order.total_cents);
  const a = order.shipping_address;
  document.getElementById("address").replaceChildren(...(a ? [a.name, a.line1, a.line2,
    `${a.postal_code} ${a.city}`, a.country].filter(Boolean).flatMap((line) => [line, el("br")]) : []));
  document.getElementById("cancel").hidden = !CANCELLABLE.has(order.status);
}

async function orderPage() {
  const id = encodeURIComponent(body.orderId);
  let order = await api(`/orders/${id}`);
  await productNames(order.items);
  showOrder(order);
  document.getElementById("cancel").addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = new FormData(event.target).get("reason");
    try {
      order = await api(`/orders/${id}/cancel`, { method: "POST", json: { reason } });
      showOrder(order);
      flash("The order is cancelled.");
    } catch (err) {
      fail(err);
    }
  });
  if (FINAL.has(order.status)) return;
  follow(`/orders/${id}/events`, {
    status: (next, source) => {
      showOrder(next);
      // The stream ends after a final status: no reconnection then.
      if (FINAL.has(next.status)) source.close();
    },
  });
}

// --- my orders --------------------------------------------------------------------------

async function ordersPage() {
  const orders = await api("/orders");
  document.getElementById("orders").replaceChildren(...orders.map((o) =>
    el("tr", {},
      el("td", {}, el("a", { href: `/shop/orders/${encodeURIComponent(o.order_id)}` }, o.order_id.slice(0, 12))),
      el("td", {}, when(o.history[0]?.at)),
      el("td", {}, el("span", { class: `badge s-${o.status.toLowerCase()}` }, o.status)),
      el("td", {}, money(o.total_cents)))));
  if (!orders.length) flash("No orders yet.");
}

// --- notifications ----------------------------------------------------------------------

function note(n) {
  return el("li", { "data-kind": n.kind },
    el("strong", {}, n.kind), " ", n.message, " ",
    el("a", { href: `/shop/orders/${encodeURIComponent(n.order_id)}` }, "order"), " ",
    el("time", { class: "muted", datetime: n.created_at }, when(n.created_at)));
}

async function notificationsPage() {
  const list = document.getElementById("notifications");
  // The stream first, so that nothing sent while the list loads is missed (a repeat is
  // dropped by its id).
  const seen = new Set();
  const show = (n) => {
    const key = `${n.kind}:${n.order_id}:${n.created_at}`;
    if (seen.has(key)) return;
    seen.add(key);
    list.prepend(note(n));
  };
  follow("/notifications/events", { notification: show });
  const existing = await api(`/users/${encodeURIComponent(body.userId)}/notifications`);
  for (const n of existing) show(n);
}

const pages = { order: orderPage, orders: ordersPage, notifications: notificationsPage };
pages[body.page]?.().catch(fail);
