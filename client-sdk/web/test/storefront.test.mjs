// The storefront in a real Chromium, against a live server.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { packageDir, startServer, unavailable } from "./support/server.mjs";

const skip = unavailable(["souk", "chromium"]);
const { createClient, unwrap, newIdempotencyKey, newCustomer, sellOut, inStockSkus } = await import(
  "./support/client.mjs"
);
const { launchBrowser, openStorefront, storefrontSource } = await import("./support/browser.mjs");

const resultsDir = join(packageDir, "test-results");

describe("storefront in Chromium", { skip, timeout: 180_000 }, () => {
  let server;
  let browser;
  let source;

  before(async () => {
    server = await startServer();
    source = await storefrontSource(server.baseUrl);
    browser = await launchBrowser();
    await mkdir(resultsDir, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("a guest browses, fills a cart, registers, checks out and sees the order paid", async () => {
    const { context, page, problems } = await openStorefront(browser, server, source);
    try {
      await page.goto(`${server.baseUrl}/`, { waitUntil: "domcontentloaded" });
      await page.locator("body[data-ready=true]").waitFor();

      // All products, a page at a time.
      const firstPage = await page.getByTestId("product-card").evaluateAll((cards) => cards.map((c) => c.dataset.productId));
      assert.ok(firstPage.length > 0);
      await page.getByTestId("next-page").click();
      await page.getByTestId("first-page").waitFor();
      const secondPage = await page.getByTestId("product-card").evaluateAll((cards) => cards.map((c) => c.dataset.productId));
      assert.ok(secondPage.length > 0 && secondPage.every((id) => !firstPage.includes(id)), "the next page has other products");

      // A category, and a product in it.
      const category = page.getByTestId("category-link").first();
      const categoryId = await category.getAttribute("data-category-id");
      await category.click();
      await page.locator(`section.listing[data-category-id="${categoryId}"]`).waitFor();
      const cards = page.locator(
        "[data-testid=product-card]:has([data-testid=stock-status]:not([data-status=out_of_stock]))",
      );
      assert.ok((await cards.count()) >= 2, "the category has two products to buy");
      assert.match(await cards.first().getByTestId("product-price").innerText(), /\$\d+\.\d\d/);
      assert.ok(await cards.first().getByTestId("stock-status").isVisible());

      const firstId = await cards.nth(0).getAttribute("data-product-id");
      await cards.nth(0).locator("a").click();
      await page.locator(`[data-testid=product][data-product-id="${firstId}"]`).waitFor();
      await page.locator("[data-testid=add-to-cart]:enabled").first().click();
      await page.getByTestId("cart-count").filter({ hasText: /^1$/ }).waitFor();

      // Back to the category, a second product.
      await page.getByTestId("back-to-category").click();
      await page.locator(`section.listing[data-category-id="${categoryId}"]`).waitFor();
      const secondId = await cards.nth(1).getAttribute("data-product-id");
      await cards.nth(1).locator("a").click();
      await page.locator(`[data-testid=product][data-product-id="${secondId}"]`).waitFor();
      await page.locator("[data-testid=add-to-cart]:enabled").first().click();
      await page.getByTestId("cart-count").filter({ hasText: /^2$/ }).waitFor();

      // The guest's cart; checking out needs an account.
      await page.getByTestId("nav-cart").click();
      await page.getByTestId("cart-line").nth(1).waitFor();
      const guestLines = await page.getByTestId("cart-line").evaluateAll((rows) => rows.map((r) => r.dataset.sku).sort());
      assert.equal(guestLines.length, 2);
      await page.getByTestId("checkout-register").click();

      const email = `browser-${newIdempotencyKey().slice(0, 8)}@shop.example`;
      const form = page.getByTestId("register-form");
      await form.getByTestId("name").fill("Browser Shopper");
      await form.getByTestId("email").fill(email);
      await form.getByTestId("password").fill("a-long-test-password");
      await form.getByTestId("submit").click();

      // Signed in, back at the cart: the guest's lines came along.
      await page.getByTestId("nav-user").filter({ hasText: email }).waitFor();
      await page.getByTestId("checkout").waitFor();
      const mergedLines = await page.getByTestId("cart-line").evaluateAll((rows) => rows.map((r) => r.dataset.sku).sort());
      assert.deepEqual(mergedLines, guestLines, "the cart was merged into the account");
      const cookies = await context.cookies();
      assert.ok(cookies.some((c) => c.name === "souk_access" && c.httpOnly), "the session is an HttpOnly cookie");

      await page.getByTestId("checkout").click();
      const status = page.getByTestId("order-status");
      await status.and(page.locator("[data-status=paid]")).waitFor({ timeout: 15_000 });
      assert.equal(await status.innerText(), "Paid");
      const orderId = await page.getByTestId("order").getAttribute("data-order-id");
      assert.match(orderId ?? "", /^[0-9]+$/);
      assert.equal(await page.getByTestId("order-line").count(), 2);
      assert.equal(await page.getByTestId("cart-count").innerText(), "0");
      await page.screenshot({ path: join(resultsDir, "storefront-paid.png"), fullPage: true });

      // The order history lists it, paid.
      await page.getByTestId("nav-orders").click();
      const row = page.locator(`[data-testid=order-row][data-order-id="${orderId}"]`);
      await row.waitFor();
      assert.equal(await row.getByTestId("order-status").innerText(), "Paid");

      assert.deepEqual(problems, [], "no script errors or CSP violations");
    } finally {
      await context.close();
    }
  });

  test("a checkout whose answer is lost is retried with the same key, and places one order", async () => {
    const [sku, other] = await inStockSkus(server.baseUrl, 2);
    const productId = sku.split("-")[0];
    const { context, page, problems } = await openStorefront(browser, server, source);
    try {
      await page.goto(`${server.baseUrl}/#/register`, { waitUntil: "domcontentloaded" });
      const email = `retry-${newIdempotencyKey().slice(0, 8)}@shop.example`;
      await page.getByTestId("email").fill(email);
      await page.getByTestId("password").fill("a-long-test-password");
      await page.getByTestId("submit").click();
      await page.getByTestId("nav-user").filter({ hasText: email }).waitFor();
      await page.getByTestId("flash").filter({ hasText: "Welcome" }).waitFor();

      await page.goto(`${server.baseUrl}/#/product/${productId}`);
      await page.locator(`[data-testid=add-to-cart][data-sku="${sku}"]`).click();
      await page.getByTestId("cart-count").filter({ hasText: /^1$/ }).waitFor();
      // A second line, added by the page's own fetch (its cookies, its Origin).
      const added = await page.evaluate(async (sku) => {
        const response = await fetch("/v1/cart/lines", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ sku, quantity: 1 }),
        });
        return response.status;
      }, other);
      assert.equal(added, 200);

      // In the cart: one line removed, the other's quantity changed.
      await page.getByTestId("nav-cart").click();
      await page.getByTestId("cart-line").nth(1).waitFor();
      await page.locator(`[data-testid=cart-line][data-sku="${other}"]`).getByTestId("line-remove").click();
      await page.locator(`[data-testid=cart-line][data-sku="${other}"]`).waitFor({ state: "detached" });
      const line = page.locator(`[data-testid=cart-line][data-sku="${sku}"]`);
      const unitTotal = await line.getByTestId("line-total").innerText();
      await line.getByTestId("line-quantity").fill("2");
      await line.getByTestId("line-update").click();
      await page.getByTestId("cart-count").filter({ hasText: /^2$/ }).waitFor();
      // The line total follows the quantity.
      await line.getByTestId("line-total").filter({ hasNotText: unitTotal }).waitFor();
      assert.equal(await page.getByTestId("cart-line").count(), 1);

      // The first checkout reaches the server, but its answer is lost;
      // so is the retry's.
      const keys = [];
      await page.route("**/v1/checkout", async (route) => {
        keys.push(route.request().headers()["idempotency-key"]);
        if (keys.length <= 2) {
          const response = await route.fetch();
          assert.equal(response.status(), 201, "the server placed the order");
          return route.abort("connectionreset");
        }
        return route.continue();
      });
      await page.getByTestId("checkout").click();
      await page.getByTestId("error").waitFor();
      await page.getByTestId("checkout").filter({ hasText: "Retry checkout" }).click();
      await page.getByTestId("checkout").filter({ hasText: "Retry checkout" }).waitFor();
      assert.equal(keys.length, 2);

      // After a reload the cart is empty (the order took it), and the
      // attempt, kept in sessionStorage, is finished with the same key.
      await page.reload();
      await page.getByTestId("checkout-unanswered").waitFor();
      await page.getByTestId("checkout-recover").click();
      await page.getByTestId("order-status").and(page.locator("[data-status=paid]")).waitFor({ timeout: 15_000 });
      assert.equal(keys.length, 3);
      assert.ok(keys[0], "checkout sends an Idempotency-Key");
      assert.deepEqual(keys, [keys[0], keys[0], keys[0]], "every retry reuses the attempt's key");

      await page.getByTestId("nav-orders").click();
      await page.getByTestId("order-row").first().waitFor();
      assert.equal(await page.getByTestId("order-row").count(), 1, "one order, not two");

      // The refresh cookie (Path=/v1/account/session) works from the page,
      // and signing out revokes it and clears the session cookies.
      const refresh = () =>
        page.evaluate(async () => (await fetch("/v1/account/session/refresh", { method: "POST" })).status);
      assert.equal(await refresh(), 200);
      await page.getByTestId("nav-logout").click();
      await page.getByTestId("flash").filter({ hasText: "signed out" }).waitFor();
      await page.getByTestId("nav-login").waitFor();
      const names = (await context.cookies()).map((c) => c.name);
      assert.ok(!names.includes("souk_access") && !names.includes("souk_refresh"), `cookies left: ${names}`);
      assert.equal(await refresh(), 401);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("a sold-out product cannot be added, and the API refuses to sell it", async () => {
    const listing = unwrap(await createClient(server.baseUrl).GET("/v1/products", { params: { query: { limit: 100 } } }));
    const target = listing.products.at(-1);
    const product = await sellOut(server, target.id);

    const { context, page, problems } = await openStorefront(browser, server, source);
    try {
      await page.goto(`${server.baseUrl}/#/product/${target.id}`, { waitUntil: "domcontentloaded" });
      await page.locator(`[data-testid=product][data-product-id="${target.id}"]`).waitFor();
      await page.getByTestId("product-sold-out").waitFor();
      const buttons = page.getByTestId("add-to-cart");
      assert.equal(await buttons.count(), product.variants.length);
      for (const button of await buttons.all()) {
        assert.equal(await button.isDisabled(), true, "its Add button is disabled");
        assert.equal(await button.innerText(), "Sold out");
      }
      for (const badge of await page.getByTestId("variant-stock").all()) {
        assert.equal(await badge.getByTestId("stock-status").getAttribute("data-status"), "out_of_stock");
      }
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }

    // Straight to the API: the cart may hold it, checkout refuses it.
    const customer = await newCustomer(server.baseUrl, "soldout");
    const sku = product.variants[0].sku;
    const added = await customer.api.POST("/v1/cart/lines", { body: { sku, quantity: 1 } });
    if (!added.response.ok) {
      assert.equal(added.response.status, 409);
      assert.equal(added.error.code, "InsufficientStock");
    }
    const checkout = await customer.api.POST("/v1/checkout", {
      params: { header: { "Idempotency-Key": newIdempotencyKey() } },
      body: { payment_method_token: "pm_card_visa", lines: added.response.ok ? [] : [{ sku, quantity: 1 }] },
    });
    assert.equal(checkout.response.status, 409);
    assert.match(checkout.response.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.equal(checkout.error.code, "InsufficientStock");
    assert.match(checkout.error.detail, new RegExp(sku));
  });
});
