#!/usr/bin/env bash
# bench/wide.sh: memory per connection of a wide run, Volley's agent against
# wrk, against nginx (one worker, worker_connections raised) on loopback.
#
# For each connection count C: wrk -t1 -cC and a Volley agent process
# (--threads 1) run D seconds each; prints the rate nginx counted, the peak
# RSS (wrk: /usr/bin/time's maximum RSS; the agent: VmHWM, read after the run)
# and the RSS per connection above a 10-connection baseline of the same tool.
#
# One source address reaches one destination addr:port through at most the
# ephemeral port range (net.ipv4.ip_local_port_range, ~28k by default), so C
# above that needs more source addresses (Volley: --source-addr).
#
# Then one agent holds HOLD connections (default 100,000) spread over the
# source addresses SOURCES (default 127.0.0.2-127.0.0.5, four addresses: four
# times the ephemeral ports) against a target-server for D seconds, and the
# script checks what the target saw: every connection established (its
# connections by source address), requests flowing on them, and the report's
# count equal to the target's. The agent and the target-server each need
# HOLD open files: where the hard limit (`ulimit -Hn`) is lower, the script
# says so and holds what the limit allows instead.
#
# Usage: bench/wide.sh [-d SECONDS] [-c LIST] [--hold N] [--sources LIST] [--bin DIR]
#   -c LIST   connection counts, comma-separated (default 1000,10000,18000;
#             each must fit in the hard open-file limit, `ulimit -Hn`)
#   --hold N  connections for the one-agent hold (0 skips it)
#   --bin DIR take controller and agent from DIR (e.g. an older build) instead
#             of building target/release
# Needs nginx, wrk, curl, /usr/bin/time, prlimit (apt-get: nginx-light wrk curl
# time util-linux).
set -euo pipefail
D=5 CS=1000,10000,18000 BIN= HOLD=100000 SOURCES=127.0.0.2-127.0.0.5
while [[ $# -gt 0 ]]; do
  case $1 in
    -d) D=$2; shift 2 ;;
    -c) CS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --sources) SOURCES=$2; shift 2 ;;
    *) echo "usage: bench/wide.sh [-d SECONDS] [-c 1000,10000] [--hold N] [--sources LIST] [--bin DIR]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
for tool in nginx wrk curl /usr/bin/time prlimit; do
  command -v "$tool" >/dev/null || { echo "bench/wide.sh: needs $tool" >&2; exit 1; }
done
if [[ -z $BIN ]]; then
  cargo build --release --quiet -p controller -p agent -p target-server
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
# Every process here may open up to the hard limit (agents raise their soft
# limit themselves; wrk and nginx are started with it raised).
FILES=$(ulimit -Hn)
[[ $FILES == unlimited ]] && FILES=1048576

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $dir/nginx.pid ]] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $FILES;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections $FILES; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  server { listen 127.0.0.1:8095 reuseport backlog=65535; location /hello { default_type text/plain; return 200 "Hello World!"; } }
  server { listen 127.0.0.1:8096; location /status { stub_status; } }
}
CONF
prlimit --nofile=$FILES:$FILES nginx -c "$dir/nginx.conf"
for _ in $(seq 50); do curl -sf http://127.0.0.1:8096/status >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:8095/hello
served() { curl -s http://127.0.0.1:8096/status | awk 'NR==3{print $3}'; }

# wrk_run C: prints "rate peak_kib"
wrk_run() {
  local before after t0 t1 peak
  before=$(served); t0=$(date +%s.%N)
  peak=$( { prlimit --nofile=$FILES:$FILES /usr/bin/time -f "%M" wrk -t1 -c"$1" -d"${D}s" "$URL" >/dev/null 2>"$dir/err" || true; } 2>&1; tail -n 1 "$dir/err")
  t1=$(date +%s.%N); after=$(served)
  awk -v n=$((after - before - 1)) -v t0="$t0" -v t1="$t1" -v p="$peak" 'BEGIN{printf "%.0f %d\n", n / (t1 - t0), p}'
}

# volley_run C: a fresh agent process, one run of D seconds; prints "rate peak_kib"
volley_run() {
  local out=$dir/agent.out pid addr before after t0 t1 peak
  : >"$out"
  prlimit --nofile=$FILES:$FILES "$BIN/agent" --listen 127.0.0.1:0 --threads 1 >"$out" 2>/dev/null &
  pid=$!; pids+=("$pid")
  for _ in $(seq 100); do [[ -s $out ]] && break; sleep 0.05; done
  addr=$(awk '{print $4; exit}' "$out"); addr=${addr%,}
  before=$(served); t0=$(date +%s.%N)
  "$BIN/controller" run --agents "$addr" --url "$URL" -c "$1" -z "${D}s" --quiet >/dev/null 2>"$dir/err" || cat "$dir/err" >&2
  t1=$(date +%s.%N); after=$(served)
  peak=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v n=$((after - before - 1)) -v t0="$t0" -v t1="$t1" -v p="$peak" 'BEGIN{printf "%.0f %d\n", n / (t1 - t0), p}'
}

read -r _ wrk_base < <(wrk_run 10)
read -r _ vol_base < <(volley_run 10)
echo "baseline (c=10): wrk ${wrk_base} KiB, volley agent ${vol_base} KiB peak RSS"
for C in ${CS//,/ }; do
  read -r wr wp < <(wrk_run "$C")
  read -r vr vp < <(volley_run "$C")
  awk -v c="$C" -v wr="$wr" -v wp="$wp" -v wb="$wrk_base" -v vr="$vr" -v vp="$vp" -v vb="$vol_base" 'BEGIN{
    wk = (wp - wb) / c; vk = (vp - vb) / c
    printf "c=%-6d wrk %7d req/s %7.1f MiB %5.2f KiB/conn | volley %7d req/s %7.1f MiB %5.2f KiB/conn | KiB/conn volley/wrk %.2f, rate volley/wrk %.2f\n",
      c, wr, wp / 1024, wk, vr, vp / 1024, vk, (wk > 0 ? vk / wk : 0), (wr > 0 ? vr / wr : 0) }'
done

# The hold: one agent, HOLD connections over the source addresses.
[[ $HOLD -gt 0 ]] || exit 0
want=$HOLD
# Each side needs a descriptor per connection plus its own (64 is what the
# agent keeps for itself when it checks a plan).
if ((HOLD + 64 > FILES)); then
  HOLD=$((FILES - 64 - 64))
  echo "hold: $want connections need $((want + 64)) open files per process; the hard limit here is $FILES (ulimit -Hn): holding $HOLD instead"
fi
prlimit --nofile=$FILES:$FILES "$BIN/target-server" --listen 127.0.0.1:0 --threads 1 >"$dir/ts.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$dir/ts.out" 2>/dev/null && break; sleep 0.05; done
TS=$(grep -o '127\.0\.0\.1:[0-9]*' "$dir/ts.out" | head -n 1)
: >"$dir/agent.out"
prlimit --nofile=$FILES:$FILES "$BIN/agent" --listen 127.0.0.1:0 --threads 1 >"$dir/agent.out" 2>/dev/null &
apid=$!; pids+=("$apid")
for _ in $(seq 100); do [[ -s $dir/agent.out ]] && break; sleep 0.05; done
addr=$(awk '{print $4; exit}' "$dir/agent.out"); addr=${addr%,}
"$BIN/controller" run --agents "$addr" --url "http://$TS/hello" -c "$HOLD" -z "${D}s" --source-addr "$SOURCES" \
  --quiet --output json >"$dir/hold.json" 2>"$dir/err" || { cat "$dir/err" >&2; exit 1; }
peak=$(awk '/VmHWM/{print $2}' "/proc/$apid/status")
curl -s "http://$TS/stats" >"$dir/stats.json"
reported=$(jq .total_requests "$dir/hold.json")
failed=$(jq .failed_requests "$dir/hold.json")
served=$(jq '.by_path["/hello"] // {} | [.[]] | add // 0' "$dir/stats.json")
echo "hold: $HOLD connections over $SOURCES for ${D}s, one agent (--threads 1), peak RSS $((peak / 1024)) MiB"
jq -r --arg ts "$TS" '.connections_by_peer | to_entries[] | select(.key != "127.0.0.1")
  | "  connections from \(.key): \(.value)"' "$dir/stats.json"
established=$(jq '[.connections_by_peer | to_entries[] | select(.key != "127.0.0.1") | .value] | add // 0' "$dir/stats.json")
echo "  established $established of $HOLD; requests reported $reported ($failed failed), served by the target $served"
if [[ $established -eq $HOLD && $reported -eq $served && $served -ge $HOLD ]]; then
  echo "  hold: every connection established and used, count exact"
else
  echo "  hold: NOT as expected" >&2
  exit 1
fi
