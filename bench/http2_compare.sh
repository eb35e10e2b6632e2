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
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

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
mkdir -p "$work/www/v1/products" "$work/nginx"
curl -skf "$base$path" >"$work/www$path"
nginx_port=$(free_port)
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  sendfile on;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  server {
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $work/data/cert.pem;
    ssl_certificate_key $work/data/key.pem;
    ssl_protocols TLSv1.3;
    root $work/www;
    location / { default_type application/json; }
  }
}
EOF
taskset -c 0 nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
pids+=("$nginx_pid")
for _ in $(seq 50); do curl -skf "https://127.0.0.1:$nginx_port$path" >/dev/null && break; sleep 0.1; done
cmp -s <(curl -skf "$base$path") <(curl -skf "https://127.0.0.1:$nginx_port$path") \
  || { echo "nginx does not serve souk's bytes" >&2; exit 1; }

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
  cpu=$(python3 -c "print(f'{($after - $before) * 1e6 / $ticks / max($done_requests, 1):.1f}')")
  printf '| %s, h2 + TLS 1.3 | %s | %s | %s |\n' "$name" "$rate" "$mean" "$cpu"
done
