// Fails when a generated file in the repository is stale: src/schema.d.ts
// (from server/openapi.json) or server/static/ (from storefront/ and src/).
// Both are regenerated into a temporary folder and compared byte for byte.

import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STATIC_FILES, buildStorefront, packageDir, staticDir } from "./build.mjs";

const temp = await mkdtemp(join(tmpdir(), "souk-web-check-"));
const stale = [];

async function same(fresh, committed, label, fix) {
  const [a, b] = await Promise.all([readFile(fresh), readFile(committed).catch(() => null)]);
  if (b === null || !a.equals(b)) stale.push(`${label} (run \`${fix}\`)`);
}

try {
  const schema = join(temp, "schema.d.ts");
  const generator = join(packageDir, "node_modules/.bin/openapi-typescript");
  const run = spawnSync(generator, ["../../server/openapi.json", "-o", schema], {
    cwd: packageDir,
    encoding: "utf8",
  });
  if (run.status !== 0) {
    console.error(run.stdout, run.stderr);
    throw new Error("openapi-typescript failed");
  }
  await same(schema, join(packageDir, "src/schema.d.ts"), "client-sdk/web/src/schema.d.ts", "npm run generate");

  const built = join(temp, "static");
  await buildStorefront(built);
  for (const file of STATIC_FILES) {
    await same(join(built, file), join(staticDir, file), `server/static/${file}`, "npm run build");
  }
} finally {
  await rm(temp, { recursive: true, force: true });
}

if (stale.length) {
  console.error("stale generated files:\n" + stale.map((s) => `  ${s}`).join("\n"));
  process.exit(1);
}
console.log("schema.d.ts and server/static/ are fresh");
