// Builds the storefront the server embeds: storefront/app.ts, bundled with
// the client and openapi-fetch, plus index.html and style.css, into
// server/static/ (or the folder given). The output depends only on the
// sources and the locked tool versions, so `npm run check` can compare it.

import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

export const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const staticDir = resolve(packageDir, "../../server/static");
export const STATIC_FILES = ["app.js", "index.html", "style.css"];

export async function buildStorefront(outDir = staticDir) {
  await mkdir(outDir, { recursive: true });
  await build({
    absWorkingDir: packageDir,
    entryPoints: ["storefront/app.ts"],
    outfile: join(outDir, "app.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    minify: true,
    legalComments: "none",
    charset: "utf8",
    sourcemap: false,
    logLevel: "warning",
  });
  await copyFile(join(packageDir, "storefront/index.html"), join(outDir, "index.html"));
  await copyFile(join(packageDir, "storefront/style.css"), join(outDir, "style.css"));
}

/** The client as an ES module for Node (the tests use it). */
export async function buildClient(outfile) {
  await build({
    absWorkingDir: packageDir,
    entryPoints: ["src/client.ts"],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: ["node20"],
    logLevel: "warning",
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = process.argv[2] ? resolve(process.argv[2]) : staticDir;
  await buildStorefront(outDir);
  console.log(`storefront built into ${outDir}`);
}
