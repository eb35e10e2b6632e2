#!/usr/bin/env bash
# The native SDKs' cost: product detail through the Rust SDK (souk-loadgen),
# the Kotlin SDK (JVM, JNA) and the Python SDK (asyncio, ctypes), each over
# one QUIC connection with 32 calls in flight, against the same server in
# the same run. All three run the same Rust client underneath; what differs
# is the binding layer and the language's own event loop.
#
# The server (souk --shards 1) runs alone on core 0 and each client alone on
# core 1. Beside calls/s and p50/p99 it prints the server's CPU per call,
# read from /proc, which shows that the server did the same work for each.
#
#     cargo build --release -p souk-server -p souk-loadgen -p souk-ffi
#     SOUK_FFI_LIB=target/release/libsouk_ffi.so pip install ./client-sdk/python
#     (cd client-sdk/kotlin && mvn -q test-compile)
#     bash bench/sdk_compare.sh               # SOUK_BENCH_SECONDS=10 by default
set -euo pipefail
cd "$(dirname "$0")/.."
release=${SOUK_RELEASE_DIR:-${CARGO_TARGET_DIR:-target}/release}
souk=$release/souk
loadgen=$release/souk-loadgen
library=$release/libsouk_ffi.so
seconds=${SOUK_BENCH_SECONDS:-10}
in_flight=32
for tool in taskset python3 java mvn; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$souk" ] && [ -x "$loadgen" ] && [ -f "$library" ] || { echo "build first: $souk, $loadgen, $library" >&2; exit 1; }
installed=$(python3 -c 'import os, souk; print(os.path.join(os.path.dirname(souk.__file__), "libsouk_ffi.so"))' 2>/dev/null) ||
  { echo "install the Python SDK first (see above)" >&2; exit 1; }
cmp -s "$installed" "$library" || { echo "the installed Python SDK carries another libsouk_ffi than $library: reinstall it (see above)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_call() { python3 -c "print(f'{($2 - $1) * 1e6 / $ticks / max($3, 1):.1f}')"; }

kotlin_dir=client-sdk/kotlin
(cd "$kotlin_dir" && mvn -B -ntp -q test-compile dependency:build-classpath -Dmdep.outputFile="$work/classpath" >/dev/null)
kotlin_cp="$kotlin_dir/target/classes:$kotlin_dir/target/test-classes:$(cat "$work/classpath")"

quic_port=$(free_port)
taskset -c 0 "$souk" serve --data-dir "$work/data" --shards 1 --pin-threads false \
  --listen "127.0.0.1:$quic_port" --http-listen off \
  --rate-reads 0 --rate-cart-writes 0 --rate-checkouts 0 --purchase-limit 0 \
  --new-connections-per-sec 0 --log warn >"$work/souk.out" 2>"$work/souk.err" &
souk_pid=$!
pids+=("$souk_pid")
for _ in $(seq 100); do grep -q fingerprint: "$work/souk.out" 2>/dev/null && break; sleep 0.1; done
fingerprint=$(awk '/fingerprint:/ {print $NF}' "$work/souk.out")
server="127.0.0.1:$quic_port"

results=()
# Runs a client on core 1 that prints one JSON line (calls, warmup_calls,
# calls_per_s, p50_us, p99_us); appends a result row.
run_client() {
  local name=$1 before after
  shift
  before=$(cpu_ticks "$souk_pid")
  # The subshell pins itself, so that a shell function can be the client.
  (taskset -p -c 1 "$BASHPID" >/dev/null && "$@") >"$work/client.out" 2>"$work/client.err" || {
    cat "$work/client.err" >&2
    exit 1
  }
  after=$(cpu_ticks "$souk_pid")
  read -r served rate p50 p99 < <(python3 - "$work/client.out" <<'PY'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("{")][-1]
r = json.loads(line)
print(r["calls"] + r.get("warmup_calls", 0), r["calls_per_s"], r["p50_us"], r["p99_us"])
PY
)
  results+=("$name|$rate|$p50|$p99|$(per_call "$before" "$after" "$served")")
}

# souk-loadgen's report, as the same JSON line the other two print.
rust_client() {
  "$loadgen" --target quic --server "$server" --fingerprint "$fingerprint" --scenario browse \
    --products 100 --connections 1 --concurrency "$in_flight" --threads 1 --warmup 2 \
    --duration "$seconds" --json "$work/rust.json" >/dev/null
  python3 - "$work/rust.json" "$seconds" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
seconds = int(sys.argv[2])
latency = r["latency_us"]
# The warm-up ran at the measured rate: count its calls too.
print(json.dumps({"calls": r["completed"], "warmup_calls": round(r["completed"] * 2 / seconds),
                  "calls_per_s": round(r["completed"] / seconds), "p50_us": latency["p50"], "p99_us": latency["p99"]}))
PY
}

run_client "Rust SDK (souk-loadgen)" rust_client
run_client "Kotlin SDK (JVM 17, JNA)" java -Djna.library.path="$release" -cp "$kotlin_cp" \
  souk.sdk.bench.ProductDetailKt "$server" "$fingerprint" "$seconds" "$in_flight"
run_client "Python SDK (CPython 3, asyncio)" python3 client-sdk/python/examples/bench_product_detail.py \
  "$server" "$fingerprint" "$seconds" "$in_flight"

printf '\n%s, product detail, one connection, %s in flight, %s s each, server on core 0, client on core 1, commit %s\n' \
  "$(date -u '+%Y-%m-%d %H:%M')" "$in_flight" "$seconds" "$(git rev-parse --short HEAD)"
printf '| %s | %s | %s | %s | %s |\n' "client" "calls/s" "p50 µs" "p99 µs" "server CPU µs/call"
printf '|---|---:|---:|---:|---:|\n'
for row in "${results[@]}"; do
  IFS='|' read -r name rate p50 p99 cpu <<<"$row"
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$rate" "$p50" "$p99" "$cpu"
done
echo
echo "the Kotlin binding's own cost per call (client on core 1):"
taskset -c 1 java -Djna.library.path="$release" -cp "$kotlin_cp" souk.sdk.bench.CallCostKt "$server" "$fingerprint" |
  sed 's/^/  /'
echo
echo "native library (release, stripped):"
strip -o "$work/libsouk_ffi.so" "$library"
printf '  %s: %s bytes (%s unstripped)\n' "$(uname -m)-linux" "$(stat -c %s "$work/libsouk_ffi.so")" "$(stat -c %s "$library")"
