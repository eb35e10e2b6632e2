// Starts a real souk server for a test file: free ports, a temporary data
// directory with an admin account, `souk serve`, and /readyz before use.

import { spawn, spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const requireAll = process.env.SOUK_REQUIRE_ALL_TESTS === "1";

/** The server binary: `SOUK_BIN`, or the workspace's debug build. */
export const soukBin = process.env.SOUK_BIN
  ? resolve(process.env.SOUK_BIN)
  : resolve(packageDir, "../../target/debug/souk");

/**
 * Why the tests needing `things` cannot run, or false when they can. Under
 * SOUK_REQUIRE_ALL_TESTS=1 a missing thing is an error instead: CI installs
 * everything, so a skip there would hide a broken setup.
 */
export function unavailable(things) {
  const missing = [];
  if (things.includes("souk") && !existsSync(soukBin)) {
    missing.push(`the souk binary at ${soukBin} (build it with \`cargo build -p souk-server\`, or set SOUK_BIN)`);
  }
  if (things.includes("chromium") && !existsSync(chromiumPath())) {
    missing.push(`Chromium at ${chromiumPath()} (\`apt-get install chromium\`, or set CHROMIUM)`);
  }
  if (!missing.length) return false;
  const reason = `missing ${missing.join(" and ")}`;
  if (requireAll) {
    throw new Error(`SOUK_REQUIRE_ALL_TESTS=1 and ${reason}`);
  }
  console.log(`skipping: ${reason}`);
  return reason;
}

export function chromiumPath() {
  return process.env.CHROMIUM || "/usr/bin/chromium";
}

async function freeTcpPort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

async function freeUdpPort() {
  return new Promise((ok, fail) => {
    const socket = createSocket("udp4");
    socket.once("error", fail);
    socket.bind(0, "127.0.0.1", () => {
      const { port } = socket.address();
      socket.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/**
 * A running server: `{ baseUrl, admin: { email, password }, stop() }`.
 * `stop` ends the process and removes its data directory.
 */
export async function startServer({ demoProducts = 60, args = [] } = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), "souk-web-test-"));
  const admin = { email: "admin@shop.example", password: "admin-password-for-tests" };
  const common = ["--data-dir", dataDir, "--pin-threads", "false", "--log", "warn"];
  const created = spawnSync(soukBin, ["create-admin", ...common, "--email", admin.email], {
    input: `${admin.password}\n`,
    encoding: "utf8",
    timeout: 60_000,
  });
  if (created.status !== 0) {
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`souk create-admin failed (${created.status ?? created.signal}): ${created.stderr}${created.stdout}`);
  }

  // A port found free may be taken before the server binds it: try again.
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const [httpPort, quicPort] = await Promise.all([freeTcpPort(), freeUdpPort()]);
    const baseUrl = `http://127.0.0.1:${httpPort}`;
    const child = spawn(
      soukBin,
      [
        "serve",
        ...common,
        "--listen", `127.0.0.1:${quicPort}`,
        "--http-listen", `127.0.0.1:${httpPort}`,
        "--shards", "2",
        "--demo-products", String(demoProducts),
        ...args,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    const collect = (chunk) => {
      output = (output + chunk).slice(-20_000);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const exited = new Promise((ok) => child.once("exit", (code, signal) => ok({ code, signal })));
    let done = null;
    exited.then((status) => (done = status));

    const stop = async () => {
      if (!done) {
        child.kill("SIGTERM");
        let timer;
        const timeout = new Promise((ok) => (timer = setTimeout(() => ok(null), 10_000)));
        const status = await Promise.race([exited, timeout]);
        clearTimeout(timer);
        if (!status) {
          child.kill("SIGKILL");
          await exited;
        }
      }
      await rm(dataDir, { recursive: true, force: true });
    };

    const deadline = Date.now() + 60_000;
    while (!done && Date.now() < deadline) {
      try {
        const response = await fetch(`${baseUrl}/readyz`);
        if (response.status === 200) {
          return { baseUrl, admin, dataDir, stop, output: () => output };
        }
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    if (!done) {
      await stop();
      throw new Error(`souk was not ready within 60 s:\n${output}`);
    }
    lastError = new Error(`souk serve exited (${done.code ?? done.signal}) before it was ready:\n${output}`);
  }
  await rm(dataDir, { recursive: true, force: true });
  throw lastError;
}
