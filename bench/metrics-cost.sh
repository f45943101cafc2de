#!/usr/bin/env bash
# bench/metrics-cost.sh: what `--metrics-listen` with a scraper costs the
# controller.
#
# Starts a target-server and N agent processes (--threads 1) on loopback and
# runs the controller for D seconds with one connection per agent against
# /delay/100 (10 requests per second per agent: light load, so the
# controller's CPU is mostly merging one snapshot per agent per second),
# alternately without metrics and with --metrics-listen scraped once a second
# (over one kept-alive connection, as Prometheus would with scrape_interval:
# 1s), R rounds each,
# interleaved so that a machine's slow minute hits both alike.
# Prints the controller's CPU time of every round and, from the medians, the
# extra CPU per agent-second and as a share of the run without metrics.
# Goal: under 2 % more.
#
# The CPU time is the controller's task-clock from `perf stat` (nanoseconds,
# all threads) where perf is installed, otherwise /usr/bin/time's user+sys
# (10 ms ticks: too coarse for short runs). `-s S` scrapes S times a second
# instead of once: the extra CPU grows with S, so a larger S measures the
# cost of one scrape above the round-to-round noise; the script prints it
# per scrape and what it comes to at one scrape a second.
#
# CPU time on a busy or small machine moves by more than the cost being
# measured. `--instructions` counts the controller's instructions instead
# (valgrind's callgrind: the same count for the same work whatever else the
# machine does; the controller runs ~50 times slower under it, which its one
# snapshot per agent-second leaves room for) and reports the same figures in
# instructions.
#
# Usage: [BIN=DIR] bench/metrics-cost.sh [-d SECONDS] [-r ROUNDS] [-s SCRAPES_PER_S] [--instructions] [N]
#        (default: -d 10 -r 3 -s 1 20)
set -euo pipefail
D=10
R=3
S=1
MODE=time
while [[ ${1:-} == -* ]]; do
  case $1 in
    -d) D=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    -s) S=$2; shift 2 ;;
    --instructions) MODE=instructions; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
N=${1:-20}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
if [[ $MODE == instructions ]]; then
  command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
fi
PERF=
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then PERF=perf; fi
# BIN=DIR uses binaries already built there instead of building release ones.
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet -p controller -p agent -p target-server
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
export RUST_LOG=warn
pids=()
dir=$(mktemp -d)
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

# start VAR CMD...: runs CMD in the background and sets VAR to the first
# address on its ready line.
start() {
  local var=$1 fd line; shift
  exec {fd}< <(exec "$@")
  pids+=($!)
  read -r -u "$fd" line
  line=${line#*listening on }; line=${line#http://}
  printf -v "$var" '%s' "${line%% *}"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start target "$BIN/target-server" --listen 127.0.0.1:0 --threads 1
agents=()
for _ in $(seq "$N"); do start a "$BIN/agent" --listen 127.0.0.1:0 --threads 1; agents+=("$a"); done
list=$(IFS=,; echo "${agents[*]}")

# run [metrics]: one run; prints the controller's CPU seconds.
run() {
  local extra=() scraper=
  if [[ ${1:-} == metrics ]]; then
    local port; port=$(free_port)
    : >"$dir/scrapes"
    extra=(--metrics-listen "127.0.0.1:$port")
    # S scrapes a second for as long as the run goes, over one kept-alive
    # connection as Prometheus does (failures before the listener is up and
    # after it is gone are ignored; each success adds a line to scrapes).
    python3 - "$port" "$S" "$((D + 3))" "$dir/scrapes" <<'PY' &
import http.client, sys, time
port, per_s, seconds, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
accept = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}
conn, end = None, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics", headers=accept)
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            with open(out, "a") as f:
                f.write("\n")
    except OSError:
        conn = None
    time.sleep(1 / per_s)
PY
    scraper=$!
  fi
  local cmd=("$BIN/controller" run --agents "$list" --url "http://$target/delay/100" -z "${D}s" -c "$N" --quiet
    --output json "${extra[@]}")
  local stat=$dir/stat
  if [[ $MODE == instructions ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "${cmd[@]}" >/dev/null 2>"$dir/err"
    # "==PID== Collected : N", in millions.
    awk '/Collected :/ { printf "%.2f\n", $4 / 1e6 }' "$dir/err"
  elif [[ -n $PERF ]]; then
    perf stat -x, -e task-clock -o "$stat" -- "${cmd[@]}" >/dev/null 2>"$dir/err"
    # task-clock,msec,... : the first field, in milliseconds.
    awk -F, '$3 == "task-clock" { printf "%.4f\n", $1 / 1000 }' "$stat"
  else
    /usr/bin/time -o "$stat" -f "%U %S" "${cmd[@]}" >/dev/null 2>"$dir/err"
    awk '{ printf "%.3f\n", $1 + $2 }' "$stat"
  fi
  [[ -n $scraper ]] && { kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; }
  return 0
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

without=()
with=()
scrapes=()
how=${PERF:+perf stat task-clock}
[[ $MODE == instructions ]] && how="callgrind instructions (millions)"
echo "controller CPU from ${how:-/usr/bin/time user+sys}; $N agents, ${D} s runs, $S scrape(s)/s"
unit="cpu s"; [[ $MODE == instructions ]] && unit="M instr"
printf "%6s %14s %14s %9s\n" round "$unit, none" "$unit, $S/s" scrapes
for r in $(seq "$R"); do
  a=$(run)
  b=$(run metrics)
  without+=("$a")
  with+=("$b")
  scrapes+=("$(wc -l <"$dir/scrapes")")
  printf "%6d %14s %14s %9s\n" "$r" "$a" "$b" "${scrapes[-1]}"
done
m0=$(printf '%s\n' "${without[@]}" | median)
m1=$(printf '%s\n' "${with[@]}" | median)
k=$(printf '%s\n' "${scrapes[@]}" | median)
awk -v n="$N" -v d="$D" -v s="$S" -v k="$k" -v a="$m0" -v b="$m1" -v mode="$MODE" 'BEGIN {
  # Seconds, or millions of instructions, shown as us or k instructions.
  u = (mode == "instructions") ? "k instructions" : "us"
  f = 1e3; if (mode != "instructions") f = 1e6
  printf "median controller %s: %.3f without metrics, %.3f with %g scrape(s)/s (%d agents, %d s)\n", \
    (mode == "instructions") ? "M instructions" : "CPU s", a, b, s, n, d
  printf "per agent-second without metrics: %.1f %s\n", a * f / (n * d), u
  printf "extra: %.1f %s per agent-second, %+.1f %% of the controller without metrics\n",
    (b - a) * f / (n * d), u, (b - a) * 100 / a
  per = (b - a) / k
  printf "one scrape (%d a round): %.0f %s; at 1 scrape/s: %.1f %s per agent-second, %+.2f %% (goal < 2 %%)\n",
    k, per * f, u, per * f / n, u, per * d * 100 / a
}'
