// Chromium for the storefront tests, through playwright-core.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { chromiumPath, packageDir, requireAll } from "./server.mjs";

const staticDir = join(packageDir, "../../server/static");

export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      "--no-sandbox",
      // The demo images live on a host that does not exist: fail fast.
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ],
  });
}

/**
 * Whether the server serves the storefront in server/static/ now. The
 * binary embeds those files when it is built, so one built before the last
 * `npm run build` serves an older page. In CI the binary is built from the
 * same tree, and a difference fails; elsewhere the tests serve the files
 * from disk instead, under the server's own CSP, and say so.
 */
export async function storefrontSource(baseUrl) {
  const page = await fetch(`${baseUrl}/`);
  const html = await page.text();
  const csp = page.headers.get("content-security-policy");
  const names = Object.fromEntries(
    [...html.matchAll(/\/assets\/((app|style)\.[0-9a-f]+\.(js|css))/g)].map((m) => [`${m[2]}.${m[3]}`, m[1]]),
  );
  const stale = [];
  for (const file of ["app.js", "style.css"]) {
    const [served, built] = await Promise.all([
      names[file] ? fetch(`${baseUrl}/assets/${names[file]}`).then((r) => r.arrayBuffer()) : null,
      readFile(join(staticDir, file)),
    ]);
    if (!served || !built.equals(Buffer.from(served))) stale.push(file);
  }
  const index = await readFile(join(staticDir, "index.html"), "utf8");
  const expected = index.replace("{{app.js}}", `/assets/${names["app.js"]}`).replace("{{style.css}}", `/assets/${names["style.css"]}`);
  if (html !== expected) stale.push("index.html");
  if (!stale.length) return { fromDisk: false, csp };
  const message =
    `the server binary serves an older storefront than server/static/ (${stale.join(", ")} differ): ` +
    "rebuild it (cargo build -p souk-server)";
  if (requireAll) throw new Error(message);
  console.log(`${message}; serving server/static/ from disk for these tests`);
  return { fromDisk: true, csp };
}

/** Serves `/` and `/assets/*` of `baseUrl` from server/static/. */
export async function serveStorefrontFromDisk(context, baseUrl, csp) {
  const types = { "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8" };
  await context.route(
    (url) => url.origin === baseUrl && (url.pathname === "/" || url.pathname.startsWith("/assets/")),
    async (route) => {
      const { pathname } = new URL(route.request().url());
      const headers = { "content-security-policy": csp, "cache-control": "no-cache" };
      if (pathname === "/") {
        const html = (await readFile(join(staticDir, "index.html"), "utf8"))
          .replace("{{app.js}}", "/assets/app.disk.js")
          .replace("{{style.css}}", "/assets/style.disk.css");
        return route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", headers, body: html });
      }
      const file = { "/assets/app.disk.js": "app.js", "/assets/style.disk.css": "style.css" }[pathname];
      if (!file) return route.fulfill({ status: 404, body: "" });
      return route.fulfill({
        status: 200,
        contentType: types[file],
        headers,
        body: await readFile(join(staticDir, file)),
      });
    },
  );
}

/** A fresh browser context (its own cookies) on the storefront, which
 * collects the page's errors and CSP reports. */
export async function openStorefront(browser, server, source) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  if (source.fromDisk) await serveStorefrontFromDisk(context, server.baseUrl, source.csp);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    const text = message.text();
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`CSP: ${text}`);
  });
  return { context, page, problems };
}
