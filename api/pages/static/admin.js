// The back office: the orders board (live through /admin/feeds/orders), figures, low-stock
// alerts (live through /admin/feeds/low-stock), and the products with the CSV import.
import { CANCELLABLE, api, badge, body, el, fail, flash, follow, money, newKey } from "./common.js";

// --- orders board -----------------------------------------------------------------------

const rows = new Map(); // order id -> {version, order, tr}
let filter = "";

function temporalLink(orderId) {
  const url = `${body.temporalUi}/namespaces/${encodeURIComponent(body.namespace)}`
    + `/workflows/${encodeURIComponent(`order-${orderId}`)}`;
  return el("a", { href: url, target: "_blank", rel: "noopener" }, "Workflow",
    el("span", { class: "sr-only" }, ` of order ${orderId} in the Temporal Web UI`));
}

async function act(orderId, action) {
  try {
    const json = action === "cancel" ? { reason: "cancelled in the back office" } : undefined;
    const order = await api(`/orders/${encodeURIComponent(orderId)}/${action}`, { method: "POST", json });
    upsert(order, rows.get(orderId)?.version ?? 0);
    flash(`Order ${orderId.slice(0, 12)}: ${order.status}.`);
  } catch (err) {
    fail(err);
  }
}

function actions(order) {
  const buttons = [];
  const button = (action, label) => el("button", {
    type: "button", "data-action": action, onclick: () => act(order.order_id, action),
  }, label, el("span", { class: "sr-only" }, ` order ${order.order_id}`));
  if (order.status === "PAID") buttons.push(button("ship", "Ship"));
  if (order.status === "SHIPPED") buttons.push(button("deliver", "Deliver"));
  if (CANCELLABLE.has(order.status)) buttons.push(button("cancel", "Cancel"));
  return el("td", { class: "actions" }, ...buttons, temporalLink(order.order_id));
}

function orderRow(order) {
  const status = el("span");
  badge(status, order.status);
  const reason = order.failure_reason ? ` (${order.failure_reason})` : "";
  return el("tr", { "data-order-id": order.order_id, "data-status": order.status },
    el("td", {}, el("code", { title: order.order_id }, order.order_id.slice(0, 12))),
    el("td", {}, el("code", {}, order.user_id.slice(0, 12))),
    el("td", {}, status, reason),
    el("td", {}, money(order.total_cents)),
    actions(order));
}

function upsert(order, version) {
  const known = rows.get(order.order_id);
  if (known && known.version > version) return;
  const tr = orderRow(order);
  tr.hidden = Boolean(filter) && order.status !== filter;
  const tbody = document.getElementById("orders");
  if (known) known.tr.replaceWith(tr);
  else tbody.prepend(tr);
  rows.set(order.order_id, { version, order, tr });
}

let figuresDue = null;
function refreshFiguresSoon() {
  // At most one refresh a second, however many changes arrive.
  if (figuresDue) return;
  figuresDue = setTimeout(async () => {
    figuresDue = null;
    await showFigures().catch(fail);
  }, 1000);
}

async function showFigures() {
  const f = await api("/admin/figures");
  const failed = Object.entries(f.failed_by_reason).map(([r, n]) => `${r} ${n}`).join(", ") || "none";
  const items = [
    ["Orders today", f.orders], ["Paid", f.paid], ["Failed", failed],
    ["Revenue", money(f.revenue_cents)], ["Average order", money(f.average_order_cents)],
  ];
  document.getElementById("figures").replaceChildren(...items.flatMap(([term, value]) =>
    [el("div", {}, el("dt", {}, term), el("dd", {}, value))]));
}

function alert(a) {
  document.getElementById("no-alerts")?.remove();
  const list = document.getElementById("alerts");
  list.querySelector(`[data-product-id="${CSS.escape(a.product_id)}"]`)?.remove();
  list.prepend(el("li", { "data-product-id": a.product_id, class: "warn" },
    el("strong", {}, a.name), ` — ${a.available} left (threshold ${a.threshold})`));
}

async function board() {
  const select = document.getElementById("status-filter");
  select.addEventListener("change", () => {
    filter = select.value;
    for (const { order, tr } of rows.values()) tr.hidden = Boolean(filter) && order.status !== filter;
  });
  // The feed first (it replays the last seconds), then the list: nothing falls in between.
  follow("/admin/feeds/orders", {
    order: (change) => {
      upsert(change.order, change.version);
      refreshFiguresSoon();
    },
  });
  follow("/admin/feeds/low-stock", { "low-stock": alert });
  const orders = await api("/orders?limit=100");
  for (const order of orders.reverse()) {
    if (!rows.has(order.order_id)) upsert(order, -1);
  }
  await showFigures();
}

// --- products ---------------------------------------------------------------------------

function productRow(p) {
  const name = el("input", { value: p.name, maxlength: 200, "aria-label": `Name of ${p.sku}` });
  const price = el("input", { type: "number", min: 0, value: p.price_cents, "aria-label": `Price of ${p.sku} in cents` });
  const category = el("input", { value: p.category, maxlength: 64, "aria-label": `Category of ${p.sku}` });
  const delta = el("input", { type: "number", value: 0, "aria-label": `Stock change of ${p.sku}` });
  const stock = el("span", { class: "stock" }, p.stock);
  const run = (fn) => async () => {
    try {
      await fn();
    } catch (err) {
      fail(err);
    }
  };
  const save = run(async () => {
    await api(`/products/${encodeURIComponent(p.id)}`, {
      method: "PATCH",
      json: { name: name.value, price_cents: Number(price.value), category: category.value },
    });
    flash(`Saved ${name.value}.`);
  });
  const deactivate = run(async () => {
    await api(`/products/${encodeURIComponent(p.id)}`, { method: "DELETE" });
    flash(`Deactivated ${p.name}.`);
    await productsPage();
  });
  const adjust = run(async () => {
    const updated = await api(`/products/${encodeURIComponent(p.id)}/stock`, {
      method: "POST",
      headers: { "Idempotency-Key": newKey() },
      json: { delta: Number(delta.value), reason: "back office" },
    });
    stock.textContent = updated.stock;
    delta.value = 0;
    flash(`Stock of ${p.name}: ${updated.stock}.`);
  });
  return el("tr", { "data-product-id": p.id, class: p.active === false ? "inactive" : null },
    el("td", {}, name, el("div", { class: "muted" }, p.sku, p.active === false ? " (inactive)" : "")),
    el("td", {}, price),
    el("td", {}, category),
    el("td", {}, stock, " ", delta, el("button", { type: "button", onclick: adjust }, "Apply")),
    el("td", { class: "actions" },
      el("button", { type: "button", onclick: save }, "Save"),
      p.active === false ? null : el("button", { type: "button", onclick: deactivate }, "Deactivate")));
}

async function productsPage() {
  // The first page of the active products, then the deactivated ones.
  const [active, inactive] = await Promise.all([
    api("/products?limit=200"), api("/products?active=false&limit=200"),
  ]);
  const products = [...active, ...inactive];
  document.getElementById("products").replaceChildren(...products.map(productRow));
}

function importCsv(file) {
  // XMLHttpRequest rather than fetch: it reports the upload's progress.
  const progress = document.getElementById("import-progress");
  const summary = document.getElementById("import-summary");
  progress.hidden = false;
  progress.value = 0;
  summary.replaceChildren("Importing…");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/products/import");
  xhr.setRequestHeader("X-CSRF-Token", document.querySelector('meta[name="csrf-token"]').content);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 90);
  });
  xhr.addEventListener("load", async () => {
    progress.value = 100;
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch { data = null; }
    if (xhr.status !== 200) {
      summary.replaceChildren(el("p", { class: "error" }, data?.error?.message ?? `HTTP ${xhr.status}`));
      return;
    }
    summary.replaceChildren(
      el("p", { class: "ok" }, `Imported: ${data.created} created, ${data.updated} updated, ${data.failed.length} failed.`),
      el("ul", {}, ...data.failed.map((f) => el("li", { class: "error" }, `line ${f.line}: ${f.error}`))));
    await productsPage().catch(fail);
  });
  xhr.addEventListener("error", () => summary.replaceChildren(el("p", { class: "error" }, "The upload failed.")));
  const form = new FormData();
  form.append("file", file);
  xhr.send(form);
}

async function products() {
  document.getElementById("import").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = event.target.elements.file.files[0];
    if (file) importCsv(file);
  });
  await productsPage();
}

const pages = { admin: board, admin_products: products };
pages[body.page]?.().catch(fail);
