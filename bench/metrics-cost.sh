#!/usr/bin/env bash
# bench/metrics-cost.sh: what `--metrics-listen` with a scraper costs the
# controller.
#
# Starts a target-server and N agent processes (--threads 1) on loopback and
# runs the controller for D seconds with one connection per agent against
# /delay/100 (10 requests per second per agent: light load, so the
# controller's CPU is mostly merging one snapshot per agent per second),
# alternately without metrics and with --metrics-listen scraped once a second
# (curl, as Prometheus would with scrape_interval: 1s), R rounds each.
# Prints the controller's user+sys CPU of every round and, from the medians,
# the extra CPU per agent-second and as a share of the run without metrics.
# Goal: under 2 % more.
#
# Usage: [BIN=DIR] bench/metrics-cost.sh [-d SECONDS] [-r ROUNDS] [N]   (default: -d 10 -r 3 20)
set -euo pipefail
D=10
R=3
while [[ ${1:-} == -* ]]; do
  case $1 in
    -d) D=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
N=${1:-20}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
# BIN=DIR uses binaries already built there instead of building release ones.
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet -p controller -p agent -p target-server
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
export RUST_LOG=warn
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

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

# run [metrics]: one run; prints the controller's user+sys CPU seconds.
run() {
  local extra=() scraper=
  if [[ ${1:-} == metrics ]]; then
    local port; port=$(free_port)
    extra=(--metrics-listen "127.0.0.1:$port")
    # One scrape a second for as long as the run goes (failures before the
    # listener is up and after it is gone are ignored).
    ( for _ in $(seq $((D + 3))); do
        curl -s -o /dev/null -H 'Accept: application/openmetrics-text; version=1.0.0' "http://127.0.0.1:$port/metrics" || true
        sleep 1
      done ) &
    scraper=$!
  fi
  local out
  out=$( { /usr/bin/time -f "%U %S" "$BIN/controller" run --agents "$list" --url "http://$target/delay/100" \
           -z "${D}s" -c "$N" --quiet --output json "${extra[@]}" >/dev/null; } 2>&1 | tail -n 1)
  [[ -n $scraper ]] && { kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; }
  awk -v o="$out" 'BEGIN { split(o, a, " "); printf "%.3f\n", a[1] + a[2] }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

without=()
with=()
printf "%6s %14s %14s\n" round "cpu s, none" "cpu s, 1/s"
for r in $(seq "$R"); do
  a=$(run)
  b=$(run metrics)
  without+=("$a")
  with+=("$b")
  printf "%6d %14s %14s\n" "$r" "$a" "$b"
done
m0=$(printf '%s\n' "${without[@]}" | median)
m1=$(printf '%s\n' "${with[@]}" | median)
awk -v n="$N" -v d="$D" -v a="$m0" -v b="$m1" 'BEGIN {
  printf "median controller CPU: %.3f s without metrics, %.3f s with 1 scrape/s (%d agents, %d s)\n", a, b, n, d
  printf "extra: %.1f us per agent-second, %+.1f %% of the controller CPU without metrics (goal < 2 %%)\n",
    (b - a) * 1e6 / (n * d), (b - a) * 100 / a
}'
