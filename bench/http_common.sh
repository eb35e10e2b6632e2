# What bench/http_compare.sh and bench/http2_compare.sh share; sourced.

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
# User + system CPU of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# µs of CPU per request between two tick readings.
per_request() { python3 -c "print(f'{($2 - $1) * 1e6 / $ticks / max($3, 1):.1f}')"; }

# Starts nginx with one worker process on core 0, serving $work/www on
# PORT with LISTEN_EXTRA (e.g. "ssl http2") and SERVER_EXTRA directives:
# keep-alive without limit, no access log (souk keeps none either),
# sendfile and the file's descriptor cached, nginx at its best for a small
# static file. Sets nginx_pid.
start_nginx() {
  local port=$1 listen_extra=$2 server_extra=$3
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  etag on;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  server {
    listen 127.0.0.1:$port $listen_extra;
    $server_extra
    root $work/www;
    location / { default_type application/json; add_header Cache-Control "public, max-age=1, stale-while-revalidate=5"; }
  }
}
CONF
  taskset -c 0 nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  nginx_pid=$!
  pids+=("$nginx_pid")
}

# Fails unless URL_A and URL_B serve the same bytes.
same_bytes() {
  for _ in $(seq 50); do curl -skf "$2" >/dev/null && break; sleep 0.1; done
  cmp -s <(curl -skf "$1") <(curl -skf "$2") || { echo "nginx does not serve souk's bytes" >&2; exit 1; }
}
