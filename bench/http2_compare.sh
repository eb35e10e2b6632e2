#!/usr/bin/env bash
# Product detail over the bridge's HTTP/2 with TLS (`--http-tls`) against
# nginx serving the same bytes over HTTP/2 with TLS and the same
# certificate, both driven by h2load (64 connections, one stream each).
# As in http_compare.sh: the server alone on core 0, the load on core 1,
# the server's CPU per request from /proc.
#
#     cargo build --release -p souk-server
#     bash bench/http2_compare.sh           # SOUK_BENCH_SECONDS=10
#
# Needs h2load (apt-get install nghttp2-client), nginx with http_v2.
set -euo pipefail
cd "$(dirname "$0")/.."
release=${SOUK_RELEASE_DIR:-${CARGO_TARGET_DIR:-target}/release}
souk=$release/souk
seconds=${SOUK_BENCH_SECONDS:-10}
for tool in h2load nginx taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
source bench/http_common.sh

port=$(free_port)
taskset -c 0 "$souk" serve --data-dir "$work/data" --shards 1 --pin-threads false \
  --listen 127.0.0.1:0 --http-listen "127.0.0.1:$port" --http-tls --rate-reads 0 \
  --log warn >/dev/null 2>&1 &
souk_pid=$!
pids+=("$souk_pid")
base="https://127.0.0.1:$port"
for _ in $(seq 100); do curl -skf "$base/readyz" >/dev/null && break; sleep 0.1; done
product=$(curl -skf "$base/v1/products?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])')
path="/v1/products/$product"
mkdir -p "$work/www/v1/products"
curl -skf "$base$path" >"$work/www$path"
nginx_port=$(free_port)
start_nginx "$nginx_port" "ssl http2" "ssl_certificate $work/data/cert.pem; ssl_certificate_key $work/data/key.pem; ssl_protocols TLSv1.3;"
same_bytes "$base$path" "https://127.0.0.1:$nginx_port$path"

printf '| what | per s | mean latency | server CPU µs/req |\n|---|---:|---:|---:|\n'
for target in "souk|$base$path|$souk_pid" "nginx|https://127.0.0.1:$nginx_port$path|$nginx_pid"; do
  IFS='|' read -r name url pid <<<"$target"
  taskset -c 1 h2load -t1 -c64 -m1 -D 2 "$url" >/dev/null
  before=$(cpu_ticks "$pid")
  taskset -c 1 h2load -t1 -c64 -m1 -D "$seconds" "$url" >"$work/h2load.out"
  after=$(cpu_ticks "$pid")
  done_requests=$(awk '/^requests:/ {print $8}' "$work/h2load.out")
  rate=$(awk '/^finished in/ {print $4}' "$work/h2load.out")
  mean=$(awk '/^time for request:/ {print $6}' "$work/h2load.out")
  cpu=$(per_request "$before" "$after" "$done_requests")
  printf '| %s, h2 + TLS 1.3 | %s | %s | %s |\n' "$name" "$rate" "$mean" "$cpu"
done
