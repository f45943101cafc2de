#!/usr/bin/env bash
# bench/controller-cost.sh: what coordinating costs the controller per agent.
#
# Starts a target-server and N agent processes (--threads 1) on loopback, then
# runs the controller for D seconds with one connection per agent against
# /delay/100 (10 requests per second per agent), so the agents' load is light
# and the controller's CPU time is mostly coordination: connecting, planning,
# and merging one snapshot per agent per second (HdrHistogram decode + add).
# Prints, for each N: the controller's user+sys CPU, CPU per agent per second
# of run, and its peak RSS.
#
# Usage: bench/controller-cost.sh [-d SECONDS] [N ...]   (default: -d 10 10 50 100)
set -euo pipefail
D=10
if [[ ${1:-} == -d ]]; then D=$2; shift 2; fi
COUNTS=("$@")
[[ ${#COUNTS[@]} -gt 0 ]] || COUNTS=(10 50 100)
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet -p controller -p agent -p target-server
BIN=$PWD/target/release
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

start target "$BIN/target-server" --listen 127.0.0.1:0 --threads 1
printf "%8s %10s %14s %10s\n" agents "cpu s" "us/agent/s" "rss MiB"
for n in "${COUNTS[@]}"; do
  agents=()
  for _ in $(seq "$n"); do start a "$BIN/agent" --listen 127.0.0.1:0 --threads 1; agents+=("$a"); done
  list=$(IFS=,; echo "${agents[*]}")
  out=$( { /usr/bin/time -f "%U %S %M" "$BIN/controller" run --agents "$list" --url "http://$target/delay/100" \
           -z "${D}s" -c "$n" --output json >/dev/null; } 2>&1 | tail -n 1)
  read -r user sys rss <<<"$out"
  awk -v n="$n" -v d="$D" -v u="$user" -v s="$sys" -v r="$rss" \
    'BEGIN { printf "%8d %10.2f %14.1f %10.1f\n", n, u + s, (u + s) * 1e6 / (n * d), r / 1024 }'
  # Stop this round's agents before the next (the target-server stays).
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
done
