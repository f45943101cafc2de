#!/usr/bin/env bash
# bench/h2.sh: Volley's HTTP/2 path (--http2 --streams) against h2load, in one
# run, on one machine with two cores: nginx serving h2c (`listen ... http2`)
# with one worker on CPU 0, the generator on CPU 1, 50 connections × 10
# streams. Prints, per round and as the median of R alternating rounds:
#
#   1. rate: Volley (embedded agent, --threads 1) / h2load (-t 1 -c 50 -m 10),
#      counted by nginx's stub_status;
#   2. CPU microseconds per request (user+sys of the generator process) of
#      Volley and h2load, and their ratio;
#   3. when oha is installed (`cargo install oha`): oha --http2 (-c C -p M)
#      in the same rounds, and oha's CPU per request over Volley's (goal >= 2).
#
# Usage: bench/h2.sh [-d SECONDS] [-r ROUNDS] [-c CONNECTIONS] [-m STREAMS]
# Needs nginx (with http_v2), h2load (nghttp2-client), taskset, curl, GNU time;
# as root it installs them with apt-get when missing.
set -euo pipefail
D=5 R=3 C=50 M=10
while [[ $# -gt 0 ]]; do
  case $1 in
    -d) D=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    -c) C=$2; shift 2 ;;
    -m) M=$2; shift 2 ;;
    *) echo "usage: bench/h2.sh [-d SECONDS] [-r ROUNDS] [-c CONNECTIONS] [-m STREAMS]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

for tool in nginx h2load taskset curl /usr/bin/time; do
  command -v "$tool" >/dev/null || NEED=1
done
if [[ ${NEED:-0} == 1 ]]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light nghttp2-client util-linux curl time >/dev/null
fi
# BIN=DIR: use binaries built before (e.g. to compare two builds) instead of building.
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet -p controller -p agent -p target-server
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
fi

dir=$(mktemp -d)
cleanup() {
  [[ -f $dir/nginx.pid ]] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

PORT=${PORT:-8189} STATUS=${STATUS:-8190}
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 01;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 16384; }
http {
  access_log off;
  # No GOAWAY after 1000 requests per connection: both tools would lose requests to it.
  keepalive_requests 100000000;
  http2_max_concurrent_streams 128;
  client_body_temp_path $dir;
  proxy_temp_path $dir;
  fastcgi_temp_path $dir;
  uwsgi_temp_path $dir;
  scgi_temp_path $dir;
  server { listen 127.0.0.1:$PORT http2 reuseport; location /hello { default_type text/plain; return 200 "Hello World!"; } }
  server { listen 127.0.0.1:$STATUS; location /status { stub_status; } }
}
CONF
taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir"
for _ in $(seq 50); do curl --noproxy '*' -sf "http://127.0.0.1:$STATUS/status" >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT/hello
served() { curl --noproxy '*' -s "http://127.0.0.1:$STATUS/status" | awk 'NR==3{print $3}'; }

# measure CMD...: runs CMD on CPU 1; prints "rps cpu_us_per_req", counted by
# nginx (minus the status request itself).
measure() {
  local before after t0 t1 cpu
  before=$(served); t0=$(date +%s.%N)
  cpu=$( { /usr/bin/time -f "%U %S" taskset -c 1 "$@" >"$dir/out" 2>"$dir/err" || true; } 2>&1; tail -n 1 "$dir/err")
  t1=$(date +%s.%N); after=$(served)
  awk -v n=$((after - before - 1)) -v t0="$t0" -v t1="$t1" -v cpu="$cpu" 'BEGIN{
    split(cpu, c, " "); printf "%.0f %.3f\n", n / (t1 - t0), (c[1] + c[2]) * 1e6 / (n > 0 ? n : 1) }'
}
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

: >"$dir/ratios"; : >"$dir/cpu"; : >"$dir/oha"
for i in $(seq "$R"); do
  read -r hr hc < <(measure h2load -t 1 -c "$C" -m "$M" -D "$D" "$URL")
  read -r vr vc < <(measure "$BIN/controller" run --url "$URL" --http2 --streams "$M" -c "$C" -z "${D}s" --threads 1 --quiet)
  printf "  round %d: h2load %8s req/s %6s us/req | volley %8s req/s %6s us/req\n" "$i" "$hr" "$hc" "$vr" "$vc"
  awk -v a="$vr" -v b="$hr" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/ratios"
  awk -v a="$vc" -v b="$hc" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/cpu"
  if command -v oha >/dev/null; then
    read -r or oc < <(measure oha --http2 -c "$C" -p "$M" -z "${D}s" --no-tui "$URL")
    printf "           oha    %8s req/s %6s us/req\n" "$or" "$oc"
    awk -v a="$oc" -v b="$vc" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/oha"
  fi
done
echo "figure h2-1 (c=$C, m=$M): rate volley/h2load, median of $R: $(median <"$dir/ratios")  (goal >= 1.00)"
echo "figure h2-2 (c=$C, m=$M): cpu us/request volley/h2load, median of $R: $(median <"$dir/cpu")  (goal <= 1.00)"
if [[ -s $dir/oha ]]; then
  echo "figure h2-3 (c=$C, m=$M): cpu us/request oha/volley, median of $R: $(median <"$dir/oha")  (goal >= 2.00)"
fi
