// The typed client of souk's HTTP/JSON bridge, for browsers (and Node 20+).
//
// Every route, parameter and body is typed from server/openapi.json through
// the generated `schema.d.ts` (`npm run generate`), so a change to the API
// is a compile error here rather than a surprise in production.
//
//     const api = createClient();                      // same origin, cookies
//     const { data, error } = await api.GET("/v1/products/{product_id}", {
//       params: { path: { product_id: "P00012" } },
//     });
//     const cart = unwrap(await api.POST("/v1/cart/lines", {
//       body: { sku: "P00012-BLK", quantity: 1 },
//     }));                                             // throws ProblemError
//
// In a browser on the bridge's own origin the session lives in HttpOnly
// cookies and nothing else is needed. Elsewhere (a server, a test, another
// origin without cookies) pass `accessToken` to send `Authorization: Bearer`.

import createFetchClient from "openapi-fetch";
import type { Client, Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type { components, paths };

type Schemas = components["schemas"];
export type Money = Schemas["Money"];
export type Category = Schemas["Category"];
export type ProductSummary = Schemas["ProductSummary"];
export type ProductPage = Schemas["ProductPage"];
export type Product = Schemas["Product"];
export type Variant = Schemas["Variant"];
export type StockStatus = Schemas["StockStatus"];
export type Cart = Schemas["Cart"];
export type CartLine = Schemas["CartLine"];
export type Order = Schemas["Order"];
export type OrderStatus = Schemas["OrderStatus"];
export type OrderPage = Schemas["OrderPage"];
export type Payment = Schemas["Payment"];
export type Session = Schemas["Session"];
export type Profile = Schemas["Profile"];
export type Problem = Schemas["Problem"];

export type SoukClient = Client<paths>;

export interface SoukClientOptions {
  /** An access token (or a function returning the current one) to send as
   * `Authorization: Bearer`; leave it out in a browser using cookies. */
  accessToken?: string | (() => string | undefined | null);
  /** Extra headers on every request (for example `Origin` outside a browser). */
  headers?: Record<string, string>;
  /** `same-origin` (default) for the storefront on the bridge's origin;
   * `include` for a page on another, CORS-allowed origin. */
  credentials?: RequestCredentials;
  fetch?: (input: Request) => Promise<Response>;
}

/**
 * A client for the bridge at `baseUrl` (default: this page's origin). The
 * base URL is the origin only: the paths carry their `/v1/` prefix.
 */
export function createClient(baseUrl?: string, options: SoukClientOptions = {}): SoukClient {
  const client = createFetchClient<paths>({
    baseUrl: baseUrl ?? (typeof location === "undefined" ? "" : location.origin),
    credentials: options.credentials ?? "same-origin",
    headers: options.headers,
    fetch: options.fetch,
  });
  const { accessToken } = options;
  if (accessToken !== undefined) {
    client.use(bearer(accessToken));
  }
  return client;
}

function bearer(token: NonNullable<SoukClientOptions["accessToken"]>): Middleware {
  return {
    onRequest({ request }) {
      const value = typeof token === "function" ? token() : token;
      if (value && !request.headers.has("authorization")) {
        request.headers.set("authorization", `Bearer ${value}`);
      }
      return request;
    },
  };
}

/** A refusal or failure from the bridge: its problem+json, as an Error. */
export class ProblemError extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** The stable name of the failure: `InsufficientStock`, `Unauthenticated`… */
  readonly code: string;
  readonly detail: string;
  /** For `Busy` and `LimitExceeded`: when to try again, in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(status: number, code: string, detail: string, retryAfterMs?: number) {
    super(`${status} ${code}: ${detail}`);
    this.name = "ProblemError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfterMs = retryAfterMs;
  }

  /** From openapi-fetch's `error` (the parsed body) and the response. A
   * body that is not a problem (a proxy's HTML page) still gives an error. */
  static from(error: unknown, response: Response): ProblemError {
    if (isProblem(error)) {
      return new ProblemError(response.status, error.code, error.detail, error.retry_after_ms ?? undefined);
    }
    const detail = typeof error === "string" && error ? error.slice(0, 200) : response.statusText;
    return new ProblemError(response.status, `Http${response.status}`, detail || "request failed");
  }

  /** Worth retrying with the same Idempotency-Key: the server was busy or
   * unavailable, or the answer never came. */
  get retryable(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

function isProblem(value: unknown): value is Problem {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Problem).code === "string" &&
    typeof (value as Problem).detail === "string"
  );
}

/** The body of a successful call; throws `ProblemError` otherwise. (A 304
 * answers a request that sent `If-None-Match`: check `response.status`
 * before unwrapping such a call.) */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    throw ProblemError.from(result.error, result.response);
  }
  return result.data as T;
}

/** A fresh `Idempotency-Key`: one per attempt, reused for its retries. */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  // Pages served over plain http from a non-local host lack randomUUID.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Money for display. The amount stays in integer minor units until here,
 * and even here it is not divided: the digits are placed around the
 * currency's decimal point as text, which Intl formats exactly.
 */
export function formatMoney(money: Money, locale?: string): string {
  const format = new Intl.NumberFormat(locale, { style: "currency", currency: money.currency });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  const negative = money.minor_units < 0;
  const units = String(Math.abs(money.minor_units)).padStart(digits + 1, "0");
  const whole = units.slice(0, units.length - digits);
  const decimal = digits > 0 ? `${whole}.${units.slice(units.length - digits)}` : whole;
  return format.format(`${negative ? "-" : ""}${decimal}` as `${number}`);
}
