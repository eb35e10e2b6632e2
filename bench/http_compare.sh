#!/usr/bin/env bash
# The HTTP bridge against its anchors, in one run:
#
#   1. product detail over the bridge (wrk, keep-alive, 64 connections)
#      against nginx serving the very same JSON bytes as a static file;
#   2. product detail over the bridge and over QUIC, both driven by
#      souk-loadgen (same client code, 64 connections);
#   3. checkout ("buy now", durable) over the bridge and over QUIC.
#
# The server (souk --shards 1, or nginx with one worker) runs alone on
# core 0 and the load alone on core 1. Beside throughput and p50/p99 it
# prints the server's CPU time per request, read from /proc: the figure
# that does not move with the machine's hour.
#
#     cargo build --release -p souk-server -p souk-loadgen
#     bash bench/http_compare.sh            # SOUK_BENCH_SECONDS=10 by default
#
# Needs wrk, nginx and taskset (apt-get install wrk nginx-light util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."
release=${SOUK_RELEASE_DIR:-${CARGO_TARGET_DIR:-target}/release}
souk=$release/souk
loadgen=$release/souk-loadgen
seconds=${SOUK_BENCH_SECONDS:-10}
for tool in wrk nginx taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$souk" ] && [ -x "$loadgen" ] || { echo "build first: $souk, $loadgen" >&2; exit 1; }

source bench/http_common.sh

admin=bench-admin@souk.example
password='bench admin password'
echo "$password" | "$souk" create-admin --data-dir "$work/data" --email "$admin" >/dev/null 2>&1
quic_port=$(free_port)
http_port=$(free_port)
taskset -c 0 "$souk" serve --data-dir "$work/data" --shards 1 --pin-threads false \
  --listen "127.0.0.1:$quic_port" --http-listen "127.0.0.1:$http_port" \
  --rate-reads 0 --rate-cart-writes 0 --rate-checkouts 0 --purchase-limit 0 \
  --new-connections-per-sec 0 --log warn >"$work/souk.out" 2>"$work/souk.err" &
souk_pid=$!
pids+=("$souk_pid")
base="http://127.0.0.1:$http_port"
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
fingerprint=$(awk '/fingerprint:/ {print $NF}' "$work/souk.out")
product=$(curl -sf "$base/v1/products?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])')
path="/v1/products/$product"

mkdir -p "$work/www/v1/products"
curl -sf "$base$path" >"$work/www$path"
nginx_port=$(free_port)
start_nginx "$nginx_port" "" ""
same_bytes "$base$path" "http://127.0.0.1:$nginx_port$path"

results=()
# wrk against URL; the server's CPU from PID. Appends a result row.
run_wrk() {
  local name=$1 url=$2 pid=$3 before after
  taskset -c 1 wrk -t1 -c64 -d2s "$url" >/dev/null # warm-up
  before=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c64 -d"${seconds}s" --latency "$url" >"$work/wrk.out"
  after=$(cpu_ticks "$pid")
  local requests rate p50 p99 errors
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  rate=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
  errors=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")
  results+=("$name|$rate|$p50|$p99|$(per_request "$before" "$after" "$requests")|${errors:-0}")
}

# souk-loadgen over TARGET for SCENARIO; appends a result row.
run_loadgen() {
  local name=$1 target=$2 scenario=$3 before after
  shift 3
  local args=(--target "$target" --server "127.0.0.1:$quic_port" --fingerprint "$fingerprint"
    --http "127.0.0.1:$http_port" --scenario "$scenario" --connections 64 --concurrency 64
    --threads 1 --warmup 2 --duration "$seconds" --admin-email "$admin"
    --admin-password "$password" --json "$work/run.json" "$@")
  before=$(cpu_ticks "$souk_pid")
  taskset -c 1 "$loadgen" "${args[@]}" >/dev/null 2>"$work/loadgen.err" || {
    cat "$work/loadgen.err" >&2
    exit 1
  }
  after=$(cpu_ticks "$souk_pid")
  # The CPU was read around warm-up and measurement both: divide by both.
  read -r completed rate p50 p99 errors < <(python3 - "$work/run.json" "$seconds" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
seconds = int(sys.argv[2])
rate = report["completed"] / seconds
latency = report["latency_us"]
errors = sum(report["errors"].values())
print(round(report["completed"] * (seconds + 2) / seconds), f"{rate:.0f}",
      f"{latency['p50'] / 1000:.2f}ms", f"{latency['p99'] / 1000:.2f}ms", errors)
EOF
)
  results+=("$name|$rate|$p50|$p99|$(per_request "$before" "$after" "$completed")|$errors")
}

run_wrk "product detail, bridge (wrk)" "$base$path" "$souk_pid"
run_wrk "same bytes, nginx (wrk)" "http://127.0.0.1:$nginx_port$path" "$nginx_pid"
run_loadgen "product detail, bridge (loadgen)" http browse --products 1
run_loadgen "product detail, QUIC (loadgen)" quic browse --products 1
run_loadgen "checkout, bridge (loadgen)" http checkout --buy-now --verify-orders 0
run_loadgen "checkout, QUIC (loadgen)" quic checkout --buy-now --verify-orders 0

printf '\n%s, %s s each, server on core 0, load on core 1, commit %s\n' \
  "$(date -u '+%Y-%m-%d %H:%M')" "$seconds" "$(git rev-parse --short HEAD)"
printf '| %s | %s | %s | %s | %s | %s |\n' "what" "per s" "p50" "p99" "server CPU µs/req" "errors"
printf '|---|---:|---:|---:|---:|---:|\n'
for row in "${results[@]}"; do
  IFS='|' read -r name rate p50 p99 cpu errors <<<"$row"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$rate" "$p50" "$p99" "$cpu" "$errors"
done
