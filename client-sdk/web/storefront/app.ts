// The storefront the server serves at `/`: plain DOM over the typed client,
// with hash routes (#/category/home, #/product/P00012, #/cart, #/orders/…).
//
// The page runs under the bridge's CSP (`default-src 'self'`): no inline
// scripts or styles, so every look is a class in style.css and every
// show/hide is the `hidden` attribute. Text goes in with textContent only.

import {
  createClient,
  formatMoney,
  newIdempotencyKey,
  ProblemError,
  unwrap,
  type Cart,
  type Money,
  type Order,
  type OrderStatus,
  type Product,
  type ProductSummary,
  type StockStatus,
  type Variant,
  type paths,
} from "../src/client";

const api = createClient();

const PAGE_SIZE = 8;
const ORDER_POLL_MS = 400;
const ORDER_POLL_LIMIT_MS = 120_000;
const PAYMENT_METHODS = [
  { token: "pm_card_visa", label: "Test card (Visa)" },
  { token: "pm_decline_card", label: "Test card that is declined" },
];
/** Whether this browser signed in: spares guests a refresh call that
 * cannot succeed. The session itself is in HttpOnly cookies. */
const SIGNED_IN_HINT = "souk:signed-in";
/** The checkout attempt in progress: its key is reused on a retry. */
const CHECKOUT_ATTEMPT = "souk:checkout-attempt";

// ---------------------------------------------------------------------------
// DOM

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined>;

/** `h("a", { href: "#/cart", testid: "nav-cart" }, "Cart")`. */
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    const attribute = name === "testid" ? "data-testid" : name;
    element.setAttribute(attribute, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(parent: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "number" ? String(child) : child);
  }
}

function byTestId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.querySelector<T>(`[data-testid="${id}"]`);
  if (!element) throw new Error(`the page lacks ${id}`);
  return element;
}

const main = document.getElementById("app") as HTMLElement;

function show(...children: Child[]): void {
  main.replaceChildren();
  append(main, children);
}

function showError(error: unknown): void {
  const banner = byTestId("error");
  banner.textContent = describe(error);
  banner.hidden = false;
}

function flash(text: string): void {
  const notice = byTestId("flash");
  notice.textContent = text;
  notice.hidden = false;
}

function clearNotices(): void {
  byTestId("error").hidden = true;
  byTestId("flash").hidden = true;
}

function describe(error: unknown): string {
  if (error instanceof ProblemError) return error.detail;
  if (error instanceof TypeError) return "The shop cannot be reached. Check the connection and try again.";
  return error instanceof Error ? error.message : String(error);
}

function title(text: string): void {
  document.title = `${text} · souk`;
}

// ---------------------------------------------------------------------------
// Words

const STOCK_LABELS: Record<StockStatus, string> = {
  in_stock: "In stock",
  low_stock: "Low stock",
  out_of_stock: "Sold out",
  unknown: "Stock unknown",
};

const ORDER_LABELS: Record<OrderStatus, string> = {
  pending_payment: "Awaiting payment",
  paid: "Paid",
  fulfilled: "Fulfilled",
  cancelled: "Cancelled",
  expired: "Expired",
  refunded: "Refunded",
};

const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function money(amount: Money): string {
  return formatMoney(amount);
}

function stockBadge(status: StockStatus, testid = "stock-status"): HTMLElement {
  return h("span", { class: `stock stock-${status}`, testid, "data-status": status }, STOCK_LABELS[status]);
}

// ---------------------------------------------------------------------------
// Session

const session = {
  signedIn: false,
  email: "",
};

function renderHeader(): void {
  byTestId("nav-orders").hidden = !session.signedIn;
  byTestId("nav-login").hidden = session.signedIn;
  byTestId("nav-register").hidden = session.signedIn;
  byTestId("nav-logout").hidden = !session.signedIn;
  const user = byTestId("nav-user");
  user.hidden = !session.signedIn;
  user.textContent = session.email;
}

function setCartCount(cart: Cart): void {
  byTestId("cart-count").textContent = String(cart.item_count);
}

async function loadProfile(): Promise<void> {
  const result = await api.GET("/v1/account/profile");
  if (result.data) {
    session.signedIn = true;
    session.email = result.data.email;
    localStorage.setItem(SIGNED_IN_HINT, "1");
  } else {
    session.signedIn = false;
    session.email = "";
  }
  renderHeader();
}

let refreshing: Promise<boolean> | null = null;

/** A new access token from the refresh cookie; false when there is none.
 * One refresh at a time: the refresh token rotates, and a second request
 * with the old one would look like a stolen token being replayed. */
function refreshSession(): Promise<boolean> {
  refreshing ??= (async () => {
    if (!localStorage.getItem(SIGNED_IN_HINT)) return false;
    const result = await api.POST("/v1/account/session/refresh");
    if (result.response.ok) return true;
    localStorage.removeItem(SIGNED_IN_HINT);
    session.signedIn = false;
    renderHeader();
    return false;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** Runs a signed-in call, renewing an expired access token once. */
async function authed<R extends { response: Response }>(call: () => Promise<R>): Promise<R> {
  const result = await call();
  if (result.response.status === 401 && (await refreshSession())) {
    return call();
  }
  return result;
}

function signedIn(email: string): void {
  session.signedIn = true;
  session.email = email;
  localStorage.setItem(SIGNED_IN_HINT, "1");
  renderHeader();
}

async function logout(): Promise<void> {
  try {
    unwrap(await api.POST("/v1/account/session/logout", { body: {} }));
  } catch (error) {
    showError(error);
    return;
  }
  localStorage.removeItem(SIGNED_IN_HINT);
  saveAttempt(null);
  session.signedIn = false;
  session.email = "";
  renderHeader();
  await refreshCartCount();
  navigate("#/", "You are signed out.");
}

async function refreshCartCount(): Promise<void> {
  try {
    setCartCount(unwrap(await api.GET("/v1/cart")));
  } catch {
    // The count is a nicety; the cart page shows what went wrong.
  }
}

// ---------------------------------------------------------------------------
// Routes

interface Route {
  path: string[];
  query: URLSearchParams;
}

function currentRoute(): Route {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = hash.split("?", 2);
  return {
    path: path.split("/").filter(Boolean).map(decodeSegment),
    query: new URLSearchParams(query),
  };
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function link(path: string, query?: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value) params.set(key, value);
  }
  const search = params.toString();
  return `#${path}${search ? `?${search}` : ""}`;
}

/** Shown once the next view has rendered. */
let pendingFlash: string | undefined;

/** Goes to `hash`, with a message for the view there. */
function navigate(hash: string, message?: string): void {
  pendingFlash = message;
  if (location.hash === hash) {
    void render();
  } else {
    location.hash = hash;
  }
}

/** Bumped on every navigation: a view still loading for an older route
 * (or a poll) sees it changed and stops. */
let navigation = 0;

async function render(): Promise<void> {
  const token = ++navigation;
  const stale = () => token !== navigation;
  clearNotices();
  if (pendingFlash) {
    flash(pendingFlash);
    pendingFlash = undefined;
  }
  const { path, query } = currentRoute();
  try {
    switch (path[0]) {
      case undefined:
        return await browseView(undefined, query, stale);
      case "category":
        return await browseView(path[1], query, stale);
      case "product":
        return await productView(path[1] ?? "", stale);
      case "cart":
        return await cartView(stale);
      case "login":
        return loginView(query);
      case "register":
        return registerView(query);
      case "orders":
        return path[1] ? await orderView(path[1], stale) : await ordersView(query, stale);
      default:
        title("Not found");
        return show(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the shop")));
    }
  } catch (error) {
    if (stale()) return;
    if (error instanceof ProblemError && error.status === 401) {
      navigate(link("/login", { next: path.length ? `/${path.join("/")}` : undefined }), "Please sign in first.");
      return;
    }
    show(h("h1", {}, "Something went wrong"), h("p", {}, h("a", { href: "#/" }, "Back to the shop")));
    showError(error);
  }
}

// ---------------------------------------------------------------------------
// Browse

async function browseView(categoryId: string | undefined, query: URLSearchParams, stale: () => boolean) {
  const cursor = query.get("cursor") ?? undefined;
  const sort = parseSort(query.get("sort"));
  const [list, page] = await Promise.all([
    api.GET("/v1/categories").then(unwrap).then((l) => l.categories),
    api
      .GET("/v1/products", {
        params: { query: { category: categoryId, sort, cursor, limit: PAGE_SIZE } },
      })
      .then(unwrap),
  ]);
  if (stale()) return;
  const category = list.find((c) => c.id === categoryId);
  const heading = category?.name ?? "All products";
  title(heading);
  const base = categoryId ? `/category/${encodeURIComponent(categoryId)}` : "/";

  const nav = h(
    "nav",
    { class: "categories", "aria-label": "Categories", testid: "category-list" },
    h("a", { href: "#/", class: categoryId ? undefined : "active" }, "All products"),
    ...list.map((c) =>
      h(
        "a",
        {
          href: link(`/category/${encodeURIComponent(c.id)}`),
          class: c.id === categoryId ? "active" : undefined,
          testid: "category-link",
          "data-category-id": c.id,
        },
        c.name,
        " ",
        h("span", { class: "count" }, `(${c.product_count})`),
      ),
    ),
  );

  const sorter = h(
    "select",
    { testid: "sort", "aria-label": "Sort" },
    ...SORTS.map(([value, label]) => h("option", { value, selected: value === sort }, label)),
  );
  sorter.addEventListener("change", () => {
    navigate(link(base, { sort: sorter.value }));
  });

  const grid = h("ul", { class: "grid", testid: "product-grid" }, ...page.products.map(productCard));
  const pager = h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    cursor && h("a", { href: link(base, { sort }), testid: "first-page" }, "« First page"),
    page.next_cursor &&
      h("a", { href: link(base, { sort, cursor: page.next_cursor }), testid: "next-page", rel: "next" }, "Next page »"),
  );

  show(
    h(
      "div",
      { class: "browse" },
      nav,
      h(
        "section",
        { class: "listing", "data-category-id": categoryId ?? "" },
        h("div", { class: "listing-head" }, h("h1", {}, heading), h("label", {}, "Sort ", sorter)),
        h("p", { class: "muted", testid: "product-total" }, `${page.total} products`),
        page.products.length ? grid : h("p", {}, "Nothing here yet."),
        pager,
      ),
    ),
  );
}

type Sort = NonNullable<NonNullable<paths["/v1/products"]["get"]["parameters"]["query"]>["sort"]>;
const SORTS: [Sort, string][] = [
  ["name_asc", "Name, A–Z"],
  ["name_desc", "Name, Z–A"],
  ["price_asc", "Price, low to high"],
  ["price_desc", "Price, high to low"],
  ["newest", "Newest"],
];

function parseSort(value: string | null): Sort {
  return SORTS.find(([s]) => s === value)?.[0] ?? "name_asc";
}

function productCard(product: ProductSummary): HTMLElement {
  return h(
    "li",
    { class: "card", testid: "product-card", "data-product-id": product.id },
    h(
      "a",
      { href: link(`/product/${encodeURIComponent(product.id)}`) },
      picture(product.image?.url, product.image?.alt ?? product.name),
      h("span", { class: "card-name", testid: "product-name" }, product.name),
      product.brand && h("span", { class: "muted" }, product.brand),
      h("span", { class: "price", testid: "product-price" }, `from ${money(product.price_from)}`),
      stockBadge(product.stock_status),
    ),
  );
}

/** An image, or its alt text in a box when it does not load. */
function picture(url: string | undefined, alt: string): HTMLElement {
  const frame = h("span", { class: "picture" });
  const fallback = h("span", { class: "picture-alt" }, alt);
  if (!url) {
    frame.append(fallback);
    return frame;
  }
  const image = h("img", { src: url, alt, loading: "lazy", decoding: "async" });
  image.addEventListener("error", () => image.replaceWith(fallback), { once: true });
  frame.append(image);
  return frame;
}

// ---------------------------------------------------------------------------
// Product

async function productView(productId: string, stale: () => boolean) {
  // Revalidated with its ETag on every visit, so stock is current.
  const product = unwrap(
    await api.GET("/v1/products/{product_id}", {
      params: { path: { product_id: productId } },
      cache: "no-cache",
    }),
  );
  if (stale()) return;
  title(product.name);
  const soldOut = product.variants.every(isSoldOut);
  const category = product.category_ids?.[0];
  show(
    h(
      "article",
      { class: "product", testid: "product", "data-product-id": product.id },
      h(
        "p",
        { class: "crumbs" },
        h("a", { href: category ? link(`/category/${encodeURIComponent(category)}`) : "#/", testid: "back-to-category" }, "« Back"),
      ),
      h(
        "div",
        { class: "product-main" },
        picture(product.images?.[0]?.url, product.images?.[0]?.alt ?? product.name),
        h(
          "div",
          { class: "product-info" },
          h("h1", { testid: "product-title" }, product.name),
          product.brand && h("p", { class: "muted" }, product.brand),
          soldOut && h("p", { class: "stock stock-out_of_stock", testid: "product-sold-out" }, "Sold out"),
          product.description && h("p", {}, product.description),
          variantTable(product),
          attributes(product),
        ),
      ),
    ),
  );
}

function variantTable(product: Product): HTMLElement {
  return h(
    "table",
    { class: "variants", testid: "variants" },
    h("thead", {}, h("tr", {}, h("th", {}, "Variant"), h("th", {}, "Price"), h("th", {}, "Stock"), h("th", {}, h("span", { class: "sr-only" }, "Buy")))),
    h("tbody", {}, ...product.variants.map((variant) => variantRow(product, variant))),
  );
}

/** Live stock says so: `available` when the server sends it. */
function isSoldOut(variant: Variant): boolean {
  return variant.available !== undefined ? variant.available <= 0 : variant.stock_status === "out_of_stock";
}

function variantRow(product: Product, variant: Variant): HTMLElement {
  const soldOut = isSoldOut(variant);
  const options = (variant.options ?? []).map((o) => o.value).join(" / ");
  const button = h(
    "button",
    {
      type: "button",
      class: soldOut ? "sold-out" : "primary",
      testid: "add-to-cart",
      "data-sku": variant.sku,
      disabled: soldOut,
    },
    soldOut ? "Sold out" : "Add to cart",
  );
  if (!soldOut) {
    button.addEventListener("click", () => addToCart(button, variant, options ? `${product.name}, ${options}` : product.name));
  }
  const status = variant.stock_status ?? (soldOut ? "out_of_stock" : "unknown");
  return h(
    "tr",
    { testid: "variant", "data-sku": variant.sku },
    h("td", {}, options || variant.name || variant.sku, h("span", { class: "muted sku" }, variant.sku)),
    h(
      "td",
      {},
      h("span", { class: "price" }, money(variant.price)),
      variant.compare_at_price && h("s", { class: "muted" }, money(variant.compare_at_price)),
    ),
    h(
      "td",
      { testid: "variant-stock" },
      stockBadge(soldOut ? "out_of_stock" : status),
      !soldOut &&
        variant.available !== undefined &&
        h("span", { class: "muted", testid: "variant-available" }, `${variant.available} available`),
    ),
    h("td", {}, button),
  );
}

function attributes(product: Product): HTMLElement | null {
  const list = product.attributes ?? [];
  if (!list.length) return null;
  return h("dl", { class: "attributes" }, ...list.flatMap((a) => [h("dt", {}, a.name), h("dd", {}, a.value)]));
}

async function addToCart(button: HTMLButtonElement, variant: Variant, label: string): Promise<void> {
  clearNotices();
  button.disabled = true;
  try {
    const cart = unwrap(
      await authed(() =>
        api.POST("/v1/cart/lines", {
          params: { header: { "Idempotency-Key": newIdempotencyKey() } },
          body: { sku: variant.sku, quantity: 1 },
        }),
      ),
    );
    setCartCount(cart);
    flash(`Added ${label} to the cart.`);
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// Cart and checkout

/**
 * A checkout attempt: one Idempotency-Key, kept (in sessionStorage, so a
 * reload keeps it too) until the attempt has an answer. A retry after a
 * lost answer or a busy server sends the same key and body, and gets the
 * order the first try placed, never a second one.
 */
interface CheckoutAttempt {
  key: string;
  /** The cart it was made for: a changed cart is a new attempt. */
  cart: string;
  body: { payment_method_token: string; expected_total: Money | null };
}

function cartFingerprint(cart: Cart): string {
  const lines = cart.lines.map((l) => `${l.sku}*${l.quantity}`).join(",");
  return `${lines}=${cart.subtotal?.minor_units ?? 0}${cart.subtotal?.currency ?? ""}`;
}

function loadAttempt(): CheckoutAttempt | null {
  try {
    return JSON.parse(sessionStorage.getItem(CHECKOUT_ATTEMPT) ?? "null") as CheckoutAttempt | null;
  } catch {
    return null;
  }
}

function saveAttempt(attempt: CheckoutAttempt | null): void {
  if (attempt) sessionStorage.setItem(CHECKOUT_ATTEMPT, JSON.stringify(attempt));
  else sessionStorage.removeItem(CHECKOUT_ATTEMPT);
}

async function cartView(stale: () => boolean) {
  const cart = unwrap(await authed(() => api.GET("/v1/cart")));
  if (stale()) return;
  title("Cart");
  setCartCount(cart);
  if (!cart.lines.length) {
    const attempt = session.signedIn ? loadAttempt() : null;
    if (attempt) {
      // The cart is gone, so the unanswered checkout most likely placed
      // the order: asking again with its key fetches that order.
      const finish = h("button", { type: "button", class: "primary", testid: "checkout-recover" }, "Finish checkout");
      finish.addEventListener("click", () => submitCheckout(attempt, finish, "Finish checkout"));
      show(
        h("h1", {}, "Cart"),
        h("p", { testid: "checkout-unanswered" }, "Your last checkout did not get an answer. It may have gone through."),
        h("p", {}, finish),
      );
      return;
    }
    show(h("h1", {}, "Cart"), h("p", { testid: "cart-empty" }, "Your cart is empty. ", h("a", { href: "#/" }, "Find something")));
    return;
  }
  const rows = cart.lines.map((line) => {
    const quantity = h("input", {
      type: "number",
      min: 0,
      max: 999,
      value: line.quantity,
      testid: "line-quantity",
      "aria-label": `Quantity of ${line.name}`,
    });
    const update = h("button", { type: "button", testid: "line-update" }, "Update");
    const remove = h("button", { type: "button", class: "link", testid: "line-remove" }, "Remove");
    update.addEventListener("click", () => changeLine(line.sku, Number(quantity.value)));
    remove.addEventListener("click", () => changeLine(line.sku, 0));
    const short = line.quantity > line.available;
    return h(
      "tr",
      { testid: "cart-line", "data-sku": line.sku },
      h(
        "td",
        {},
        h("a", { href: link(`/product/${encodeURIComponent(line.product_id)}`) }, line.name),
        h("span", { class: "muted sku" }, line.sku),
        short &&
          h(
            "span",
            { class: "stock stock-out_of_stock", testid: "line-short" },
            line.available > 0 ? `Only ${line.available} left` : "Sold out",
          ),
      ),
      h("td", {}, money(line.unit_price)),
      h("td", {}, quantity, " ", update, " ", remove),
      h("td", { class: "num", testid: "line-total" }, money(line.line_total)),
    );
  });
  show(
    h("h1", {}, "Cart"),
    h(
      "table",
      { class: "cart", testid: "cart" },
      h("thead", {}, h("tr", {}, h("th", {}, "Item"), h("th", {}, "Price"), h("th", {}, "Quantity"), h("th", { class: "num" }, "Total"))),
      h("tbody", {}, ...rows),
      h(
        "tfoot",
        {},
        h(
          "tr",
          {},
          h("th", { colspan: 3 }, `Subtotal (${cart.item_count} ${cart.item_count === 1 ? "item" : "items"})`),
          h("td", { class: "num", testid: "cart-subtotal" }, cart.subtotal ? money(cart.subtotal) : ""),
        ),
      ),
    ),
    checkoutPanel(cart),
  );
}

async function changeLine(sku: string, quantity: number): Promise<void> {
  clearNotices();
  if (!Number.isInteger(quantity) || quantity < 0) {
    showError(new Error("The quantity is a whole number, 0 or more."));
    return;
  }
  try {
    const headers = { "Idempotency-Key": newIdempotencyKey() };
    const path = { sku };
    const cart = unwrap(
      await authed(() =>
        quantity === 0
          ? api.DELETE("/v1/cart/lines/{sku}", { params: { path, header: headers } })
          : api.PUT("/v1/cart/lines/{sku}", { params: { path, header: headers }, body: { quantity } }),
      ),
    );
    setCartCount(cart);
  } catch (error) {
    showError(error);
    return;
  }
  await render();
}

function checkoutPanel(cart: Cart): HTMLElement {
  if (!session.signedIn) {
    return h(
      "section",
      { class: "checkout", testid: "checkout-signin" },
      h("p", {}, "Sign in or register to check out; your cart comes with you."),
      h(
        "p",
        {},
        h("a", { class: "button primary", href: link("/login", { next: "/cart" }), testid: "checkout-login" }, "Sign in"),
        " ",
        h("a", { class: "button", href: link("/register", { next: "/cart" }), testid: "checkout-register" }, "Register"),
      ),
    );
  }
  const fingerprint = cartFingerprint(cart);
  const pending = loadAttempt();
  const retrying = pending?.cart === fingerprint ? pending : null;
  const method = h(
    "select",
    { testid: "payment-method", "aria-label": "Payment method", disabled: Boolean(retrying) },
    ...PAYMENT_METHODS.map((m) =>
      h("option", { value: m.token, selected: m.token === retrying?.body.payment_method_token }, m.label),
    ),
  );
  const label = retrying ? "Retry checkout" : "Place order";
  const button = h("button", { type: "button", class: "primary", testid: "checkout" }, label);
  button.addEventListener("click", () => {
    const current = loadAttempt();
    const attempt =
      current?.cart === fingerprint
        ? current
        : {
            key: newIdempotencyKey(),
            cart: fingerprint,
            body: { payment_method_token: method.value, expected_total: cart.subtotal ?? null },
          };
    saveAttempt(attempt);
    method.disabled = true;
    void submitCheckout(attempt, button, "Place order");
  });
  return h("section", { class: "checkout" }, h("label", {}, "Pay with ", method), " ", button);
}

async function submitCheckout(attempt: CheckoutAttempt, button: HTMLButtonElement, label: string): Promise<void> {
  clearNotices();
  button.disabled = true;
  button.textContent = "Placing order…";
  try {
    const order = unwrap(
      await authed(() =>
        api.POST("/v1/checkout", {
          params: { header: { "Idempotency-Key": attempt.key } },
          body: attempt.body,
        }),
      ),
    );
    saveAttempt(null);
    setCartCount({ lines: [], item_count: 0 });
    navigate(link(`/orders/${order.id}`));
  } catch (error) {
    // No answer, or the server was busy: the same attempt may be retried.
    // Any other answer is final, and the next try is a new attempt.
    const retryable = !(error instanceof ProblemError) || error.retryable;
    if (!retryable) {
      saveAttempt(null);
      // The cart as it is now (a sold-out line, a new price), then why.
      await render();
    }
    button.disabled = false;
    button.textContent = retryable ? "Retry checkout" : label;
    showError(error);
  }
}

// ---------------------------------------------------------------------------
// Account

function accountForm(kind: "login" | "register", query: URLSearchParams): void {
  const registering = kind === "register";
  title(registering ? "Register" : "Sign in");
  const next = query.get("next") ?? "/";
  const problem = h("p", { class: "notice error", role: "alert", testid: "form-error", hidden: true });
  const name = h("input", { name: "name", autocomplete: "name", testid: "name" });
  const email = h("input", { name: "email", type: "email", required: true, autocomplete: "email", testid: "email" });
  const password = h("input", {
    name: "password",
    type: "password",
    required: true,
    minlength: 8,
    autocomplete: registering ? "new-password" : "current-password",
    testid: "password",
  });
  const submit = h("button", { type: "submit", class: "primary", testid: "submit" }, registering ? "Create account" : "Sign in");
  const form = h(
    "form",
    { class: "account", testid: `${kind}-form`, novalidate: true },
    h("h1", {}, registering ? "Create an account" : "Sign in"),
    problem,
    registering && h("label", {}, "Name (optional)", name),
    h("label", {}, "E-mail", email),
    h("label", {}, "Password", password),
    submit,
    h(
      "p",
      { class: "muted" },
      registering ? "Already have an account? " : "New here? ",
      h("a", { href: link(registering ? "/login" : "/register", { next }) }, registering ? "Sign in" : "Create an account"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.hidden = true;
    submit.disabled = true;
    // A shopper who moves on while the request is in flight stays where
    // they went: only a form still on screen leads on to `next`.
    const view = navigation;
    try {
      const credentials = { email: email.value.trim(), password: password.value };
      unwrap(
        registering
          ? await api.POST("/v1/account/register", { body: { ...credentials, name: name.value.trim() || null } })
          : await api.POST("/v1/account/login", { body: credentials }),
      );
      signedIn(credentials.email);
      saveAttempt(null);
      await refreshCartCount();
      if (view !== navigation) return;
      navigate(link(next.startsWith("/") ? next : "/"), registering ? "Welcome! Your account is ready." : "You are signed in.");
    } catch (error) {
      problem.textContent = describe(error);
      problem.hidden = false;
      submit.disabled = false;
    }
  });
  show(form);
  email.focus();
}

function loginView(query: URLSearchParams): void {
  accountForm("login", query);
}

function registerView(query: URLSearchParams): void {
  accountForm("register", query);
}

// ---------------------------------------------------------------------------
// Orders

function orderStatus(order: Order): HTMLElement {
  return h("span", { class: `status status-${order.status}`, testid: "order-status", "data-status": order.status }, ORDER_LABELS[order.status]);
}

async function ordersView(query: URLSearchParams, stale: () => boolean) {
  const cursor = query.get("cursor") ?? undefined;
  const page = unwrap(await authed(() => api.GET("/v1/orders", { params: { query: { cursor, limit: 20 } } })));
  if (stale()) return;
  title("Orders");
  if (!page.orders.length && !cursor) {
    show(h("h1", {}, "Orders"), h("p", { testid: "orders-empty" }, "No orders yet."));
    return;
  }
  show(
    h("h1", {}, "Orders"),
    h(
      "table",
      { class: "orders", testid: "orders" },
      h("thead", {}, h("tr", {}, h("th", {}, "Order"), h("th", {}, "Placed"), h("th", {}, "Items"), h("th", {}, "Status"), h("th", { class: "num" }, "Total"))),
      h(
        "tbody",
        {},
        ...page.orders.map((order) =>
          h(
            "tr",
            { testid: "order-row", "data-order-id": order.id },
            h("td", {}, h("a", { href: link(`/orders/${order.id}`) }, `#${order.id}`)),
            h("td", {}, dates.format(order.created_at)),
            h("td", {}, order.lines.reduce((n, l) => n + l.quantity, 0)),
            h("td", {}, orderStatus(order)),
            h("td", { class: "num" }, money(order.total)),
          ),
        ),
      ),
    ),
    h(
      "nav",
      { class: "pager" },
      cursor && h("a", { href: "#/orders" }, "« Newest"),
      page.next_cursor && h("a", { href: link("/orders", { cursor: page.next_cursor }), testid: "older-orders" }, "Older »"),
    ),
  );
}

async function orderView(orderId: string, stale: () => boolean) {
  const fetchOrder = async () =>
    unwrap(await authed(() => api.GET("/v1/orders/{order_id}", { params: { path: { order_id: orderId } } })));
  let order = await fetchOrder();
  if (stale()) return;
  title(`Order #${order.id}`);
  showOrder(order);
  // A new order is paid a moment later: follow it until it settles.
  const until = Date.now() + ORDER_POLL_LIMIT_MS;
  while (order.status === "pending_payment" && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, ORDER_POLL_MS));
    if (stale()) return;
    let next: Order;
    try {
      next = await fetchOrder();
    } catch (error) {
      // A blip while waiting is not the order's fault: keep waiting.
      if (error instanceof ProblemError && !error.retryable) throw error;
      continue;
    }
    if (stale()) return;
    if (next.updated_at !== order.updated_at || next.status !== order.status) showOrder(next);
    order = next;
  }
}

function showOrder(order: Order): void {
  const cancellable = order.status === "pending_payment" || order.status === "paid";
  const cancel = cancellable && h("button", { type: "button", testid: "cancel-order" }, "Cancel order");
  if (cancel) {
    cancel.addEventListener("click", () => cancelOrder(order.id, cancel));
  }
  const failure = order.payment_status === "failed" && h("p", { class: "notice error", testid: "payment-failed" }, "The payment was declined.");
  show(
    h(
      "article",
      { class: "order", testid: "order", "data-order-id": order.id },
      h("p", { class: "crumbs" }, h("a", { href: "#/orders" }, "« Orders")),
      h("h1", {}, `Order #${order.id}`),
      h("p", {}, "Status: ", orderStatus(order), h("span", { class: "muted" }, ` · payment ${order.payment_status.replace(/_/g, " ")}`)),
      failure,
      h("p", { class: "muted" }, `Placed ${dates.format(order.created_at)}`),
      h(
        "table",
        { class: "order-lines" },
        h("tbody", {}, ...order.lines.map((line) =>
          h(
            "tr",
            { testid: "order-line", "data-sku": line.sku },
            h("td", {}, line.name),
            h("td", {}, `${line.quantity} × ${money(line.unit_price)}`),
            h("td", { class: "num" }, money(line.line_total)),
          ),
        )),
        h("tfoot", {}, h("tr", {}, h("th", { colspan: 2 }, "Total"), h("td", { class: "num", testid: "order-total" }, money(order.total)))),
      ),
      cancel,
    ),
  );
}

async function cancelOrder(orderId: string, button: HTMLButtonElement): Promise<void> {
  clearNotices();
  button.disabled = true;
  try {
    const order = unwrap(
      await authed(() =>
        api.POST("/v1/orders/{order_id}/cancel", {
          params: { path: { order_id: orderId }, header: { "Idempotency-Key": newIdempotencyKey() } },
        }),
      ),
    );
    if (currentRoute().path[1] === orderId) showOrder(order);
  } catch (error) {
    button.disabled = false;
    showError(error);
  }
}

// ---------------------------------------------------------------------------
// Start

async function start(): Promise<void> {
  byTestId("nav-logout").addEventListener("click", () => void logout());
  window.addEventListener("hashchange", () => void render());
  try {
    await loadProfile();
    if (!session.signedIn && (await refreshSession())) await loadProfile();
  } catch {
    renderHeader();
  }
  await Promise.all([render(), refreshCartCount()]);
  document.body.dataset.ready = "true";
}

void start();
