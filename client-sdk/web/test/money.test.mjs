// Money formatting: integer minor units in, exact text out.

import assert from "node:assert/strict";
import { test } from "node:test";

const { formatMoney, newIdempotencyKey } = await import("./support/client.mjs");

test("formats minor units by the currency's decimals", () => {
  assert.equal(formatMoney({ minor_units: 1999, currency: "USD" }, "en-US"), "$19.99");
  assert.equal(formatMoney({ minor_units: 5, currency: "USD" }, "en-US"), "$0.05");
  assert.equal(formatMoney({ minor_units: -250, currency: "EUR" }, "en-US"), "-€2.50");
  assert.equal(formatMoney({ minor_units: 1500, currency: "JPY" }, "en-US"), "¥1,500");
  assert.equal(formatMoney({ minor_units: 1234, currency: "BHD" }, "en-US").replace(/\s/g, " "), "BHD 1.234");
  // Beyond what a float division would print exactly.
  assert.equal(formatMoney({ minor_units: 900719925474099, currency: "USD" }, "en-US"), "$9,007,199,254,740.99");
});

test("idempotency keys are fresh UUIDs", () => {
  const a = newIdempotencyKey();
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(a, newIdempotencyKey());
});
