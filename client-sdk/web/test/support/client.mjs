// The typed client (src/client.ts) compiled for Node, and the small
// helpers the tests share.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { buildClient } from "../../scripts/build.mjs";
import { packageDir } from "./server.mjs";

const outfile = join(packageDir, "build/test/client.mjs");
await mkdir(join(packageDir, "build/test"), { recursive: true });
await buildClient(outfile);

export const { createClient, unwrap, ProblemError, newIdempotencyKey, formatMoney } = await import(outfile);

/**
 * A client that acts like a browser without one: it keeps the cookies the
 * server sets and sends a same-origin `Origin` on every request, as a
 * browser does on the storefront's own page.
 */
export function browserLikeClient(baseUrl) {
  const jar = new Map();
  const fetchWithCookies = async (request) => {
    if (jar.size) {
      request.headers.set("cookie", [...jar].map(([name, value]) => `${name}=${value}`).join("; "));
    }
    request.headers.set("origin", baseUrl);
    const response = await fetch(request);
    for (const cookie of response.headers.getSetCookie()) {
      const [pair] = cookie.split(";");
      const at = pair.indexOf("=");
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      if (value && !/;\s*max-age=0\b/i.test(cookie)) jar.set(name, value);
      else jar.delete(name);
    }
    return response;
  };
  return { api: createClient(baseUrl, { fetch: fetchWithCookies }), jar };
}

/** A new customer with a bearer-token client. */
export async function newCustomer(baseUrl, label = "shopper") {
  const email = `${label}-${newIdempotencyKey().slice(0, 8)}@shop.example`;
  const password = "a-long-test-password";
  const anonymous = createClient(baseUrl);
  const session = unwrap(await anonymous.POST("/v1/account/register", { body: { email, password } }));
  return { email, password, session, api: createClient(baseUrl, { accessToken: session.access_token }) };
}

/** The admin's bearer-token client. */
export async function adminClient(server) {
  const anonymous = createClient(server.baseUrl);
  const session = unwrap(await anonymous.POST("/v1/account/login", { body: server.admin }));
  return createClient(server.baseUrl, { accessToken: session.access_token });
}

/** Sets every variant of a product to no stock, and waits until the
 * product's detail says so. */
export async function sellOut(server, productId) {
  const admin = await adminClient(server);
  const anonymous = createClient(server.baseUrl);
  const product = unwrap(
    await anonymous.GET("/v1/products/{product_id}", { params: { path: { product_id: productId } } }),
  );
  for (const variant of product.variants) {
    unwrap(
      await admin.POST("/v1/admin/stock/{sku}", {
        params: { path: { sku: variant.sku } },
        body: { quantity: 0, mode: "set" },
      }),
    );
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    const fresh = unwrap(
      await anonymous.GET("/v1/products/{product_id}", {
        params: { path: { product_id: productId } },
      }),
    );
    if (fresh.variants.every((v) => v.available === 0)) return fresh;
    if (Date.now() > deadline) throw new Error(`${productId} still shows stock after it was set to 0`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

/** Polls an order until it leaves pending_payment. */
export async function settledOrder(api, orderId, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const order = unwrap(await api.GET("/v1/orders/{order_id}", { params: { path: { order_id: orderId } } }));
    if (order.status !== "pending_payment" || Date.now() > deadline) return order;
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

/** `count` SKUs with stock, each of a different product, from the catalog. */
export async function inStockSkus(baseUrl, count, { skipProducts = [] } = {}) {
  const api = createClient(baseUrl);
  const page = unwrap(await api.GET("/v1/products", { params: { query: { limit: 100 } } }));
  const skus = [];
  for (const summary of page.products) {
    if (skus.length === count) break;
    if (skipProducts.includes(summary.id) || summary.stock_status === "out_of_stock") continue;
    const product = unwrap(
      await api.GET("/v1/products/{product_id}", { params: { path: { product_id: summary.id } } }),
    );
    const variant = product.variants.find((v) => v.available >= 5);
    if (variant) skus.push(variant.sku);
  }
  if (skus.length < count) throw new Error(`the catalog has fewer than ${count} products in stock`);
  return skus;
}
