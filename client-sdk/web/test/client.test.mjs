// The typed client against a live server.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startServer, unavailable } from "./support/server.mjs";

const skip = unavailable(["souk"]);
const { createClient, unwrap, ProblemError, newIdempotencyKey, browserLikeClient, newCustomer, settledOrder, inStockSkus } =
  await import("./support/client.mjs");

describe("client against a live server", { skip, timeout: 120_000 }, () => {
  let server;
  let api;
  /** SKUs in stock, of different products. */
  let skus;

  before(async () => {
    server = await startServer();
    api = createClient(server.baseUrl);
    skus = await inStockSkus(server.baseUrl, 6);
  });

  after(async () => {
    await server?.stop();
  });

  test("browses a category a page at a time, and opens a product", async () => {
    const { categories } = unwrap(await api.GET("/v1/categories"));
    assert.ok(categories.length > 0, "the demo catalog has categories");
    const category = categories.find((c) => c.product_count >= 3);
    assert.ok(category, "a category with a few products");

    const seen = [];
    let cursor;
    do {
      const page = unwrap(
        await api.GET("/v1/products", { params: { query: { category: category.id, limit: 2, cursor } } }),
      );
      assert.equal(page.total, category.product_count);
      assert.ok(page.products.length <= 2);
      for (const product of page.products) {
        assert.equal(product.category_id, category.id);
        assert.ok(Number.isInteger(product.price_from.minor_units));
        assert.match(product.price_from.currency, /^[A-Z]{3}$/);
        seen.push(product.id);
      }
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    assert.equal(seen.length, category.product_count, "the pages cover the category");
    assert.equal(new Set(seen).size, seen.length, "no product on two pages");

    const product = unwrap(
      await api.GET("/v1/products/{product_id}", { params: { path: { product_id: seen[0] } } }),
    );
    assert.equal(product.id, seen[0]);
    assert.ok(product.variants.length > 0);
    for (const variant of product.variants) {
      assert.equal(typeof variant.available, "number", "variants carry live stock");
      assert.ok(["in_stock", "low_stock", "out_of_stock", "unknown"].includes(variant.stock_status));
    }

    const missing = await api.GET("/v1/products/{product_id}", { params: { path: { product_id: "P99999" } } });
    assert.equal(missing.response.status, 404);
    assert.equal(missing.error.code, "NotFound");
  });

  test("a catalog read revalidated with its ETag is a 304", async () => {
    const first = await api.GET("/v1/products/{product_id}", { params: { path: { product_id: "P00001" } } });
    assert.equal(first.response.status, 200);
    const etag = first.response.headers.get("etag");
    assert.match(etag ?? "", /^"[0-9a-f]+"$/);
    assert.match(first.response.headers.get("cache-control") ?? "", /max-age=/);

    const again = await api.GET("/v1/products/{product_id}", {
      params: { path: { product_id: "P00001" } },
      headers: { "If-None-Match": etag },
    });
    assert.equal(again.response.status, 304);
    assert.equal(again.response.headers.get("etag"), etag);

    const other = await api.GET("/v1/products/{product_id}", {
      params: { path: { product_id: "P00001" } },
      headers: { "If-None-Match": '"0000000000000000"' },
    });
    assert.equal(other.response.status, 200, "another tag gets the body");

    const list = await api.GET("/v1/categories");
    const listed = await api.GET("/v1/categories", {
      headers: { "If-None-Match": list.response.headers.get("etag") },
    });
    assert.equal(listed.response.status, 304);
  });

  test("a guest's cart moves into the account at registration", async () => {
    const guest = browserLikeClient(server.baseUrl);
    unwrap(await guest.api.POST("/v1/cart/lines", { body: { sku: skus[0], quantity: 2 } }));
    const cart = unwrap(await guest.api.POST("/v1/cart/lines", { body: { sku: skus[1], quantity: 1 } }));
    assert.ok(guest.jar.has("souk_device"), "a guest gets a device cookie");
    assert.equal(cart.item_count, 3);

    const email = `guest-${newIdempotencyKey().slice(0, 8)}@shop.example`;
    const registered = await guest.api.POST("/v1/account/register", {
      body: { email, password: "a-long-test-password", name: "Guest" },
    });
    assert.equal(registered.response.status, 201);
    assert.ok(guest.jar.has("souk_access") && guest.jar.has("souk_refresh"), "signed in by cookie");

    // The same cart, seen with the token alone: it is the account's now.
    const account = createClient(server.baseUrl, { accessToken: registered.data.access_token });
    const merged = unwrap(await account.GET("/v1/cart"));
    assert.deepEqual(
      merged.lines.map((l) => [l.sku, l.quantity]).sort(),
      [
        [skus[0], 2],
        [skus[1], 1],
      ].sort(),
    );
    assert.equal(merged.subtotal.minor_units, merged.lines.reduce((sum, l) => sum + l.line_total.minor_units, 0));
    assert.equal(unwrap(await account.GET("/v1/account/profile")).email, email);
  });

  test("a cookie-authenticated change from another origin is refused", async () => {
    const guest = browserLikeClient(server.baseUrl);
    unwrap(await guest.api.GET("/v1/cart"));
    const cookie = [...guest.jar].map(([n, v]) => `${n}=${v}`).join("; ");
    const forged = await fetch(`${server.baseUrl}/v1/cart/lines`, {
      method: "POST",
      headers: { "content-type": "application/json", cookie, origin: "https://evil.example" },
      body: JSON.stringify({ sku: skus[0], quantity: 1 }),
    });
    assert.equal(forged.status, 403);
    assert.equal((await forged.json()).code, "Forbidden");
  });

  test("checkout without an Idempotency-Key is a 400 problem", async () => {
    const customer = await newCustomer(server.baseUrl);
    unwrap(await customer.api.POST("/v1/cart/lines", { body: { sku: skus[2], quantity: 1 } }));
    const result = await customer.api.POST("/v1/checkout", { body: { payment_method_token: "pm_card_visa" } });
    assert.equal(result.response.status, 400);
    assert.match(result.response.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.equal(result.error.code, "BadRequest");
    assert.match(result.error.detail, /Idempotency-Key/);
    assert.throws(() => unwrap(result), (error) => error instanceof ProblemError && error.status === 400);
  });

  test("a checkout retried with its key gives the first order", async () => {
    const customer = await newCustomer(server.baseUrl);
    const cart = unwrap(await customer.api.POST("/v1/cart/lines", { body: { sku: skus[3], quantity: 2 } }));
    const key = newIdempotencyKey();
    const attempt = () =>
      customer.api.POST("/v1/checkout", {
        params: { header: { "Idempotency-Key": key } },
        body: { payment_method_token: "pm_card_visa", expected_total: cart.subtotal },
      });
    const first = await attempt();
    assert.equal(first.response.status, 201);
    assert.match(first.data.id, /^[0-9]+$/, "order ids are decimal strings");
    assert.deepEqual(first.data.total, cart.subtotal);
    const retry = await attempt();
    assert.equal(retry.data?.id, first.data.id, "the retry names the same order");

    const paid = await settledOrder(customer.api, first.data.id);
    assert.equal(paid.status, "paid");
    const { orders } = unwrap(await customer.api.GET("/v1/orders"));
    assert.deepEqual(orders.map((o) => o.id), [first.data.id], "one order, not two");

    const fresh = await customer.api.POST("/v1/checkout", {
      params: { header: { "Idempotency-Key": newIdempotencyKey() } },
      body: { payment_method_token: "pm_card_visa" },
    });
    assert.equal(fresh.response.status, 400, "a new attempt finds the cart empty");
  });

  test("a declined payment cancels the order", async () => {
    const customer = await newCustomer(server.baseUrl);
    unwrap(await customer.api.POST("/v1/cart/lines", { body: { sku: skus[4], quantity: 1 } }));
    const order = unwrap(
      await customer.api.POST("/v1/checkout", {
        params: { header: { "Idempotency-Key": newIdempotencyKey() } },
        body: { payment_method_token: "pm_decline_card" },
      }),
    );
    const settled = await settledOrder(customer.api, order.id);
    assert.equal(settled.payment_status, "failed");
    assert.notEqual(settled.status, "paid");
    const payment = unwrap(
      await customer.api.GET("/v1/orders/{order_id}/payment", { params: { path: { order_id: order.id } } }),
    );
    assert.equal(payment.status, "failed");
  });

  test("a malformed body is a 400 problem naming the field", async () => {
    const customer = await newCustomer(server.baseUrl);
    const result = await customer.api.POST("/v1/cart/lines", { body: { sku: skus[5], quantity: "two" } });
    assert.equal(result.response.status, 400);
    assert.match(result.response.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.equal(result.error.code, "BadRequest");
    assert.equal(result.error.status, 400);
    assert.match(result.error.detail, /^quantity: /);

    const unknown = await customer.api.POST("/v1/cart/lines", { body: { sku: skus[5], quantity: 1, qty: 1 } });
    assert.equal(unknown.response.status, 400);
    assert.match(unknown.error.detail, /qty/);

    const broken = await fetch(`${server.baseUrl}/v1/cart/lines`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${customer.session.access_token}` },
      body: "{",
    });
    assert.equal(broken.status, 400);
    assert.match(broken.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.equal((await broken.json()).code, "BadRequest");
  });

  test("signed-in routes without a session are 401 problems", async () => {
    const result = await api.GET("/v1/orders");
    assert.equal(result.response.status, 401);
    assert.equal(result.error.code, "Unauthenticated");
  });
});
