#!/usr/bin/env bash
# bench/controller-cost.sh: what coordinating costs the controller per agent.
#
# Starts a target-server and N agent processes (--threads 1) on loopback, then
# runs the controller for D seconds with one connection per agent against
# /delay/100 (10 requests per second per agent), so the agents' load is light
# and the controller's CPU time is mostly coordination: connecting, planning,
# and merging one snapshot per agent per second (HdrHistogram decode + add).
# Prints, for each N: the controller's user+sys CPU, CPU per agent per second
# of run (all of it, connecting and planning included, over N x D), the same
# in the steady state (its CPU, all threads, from 2 s into the run to 1 s
# before its end, sampled from /proc), what each agent cost once (the CPU
# beyond the steady state's rate over the whole run, divided by N: connecting,
# describing, planning, starting and ending it), its peak RSS, the agents' start skew
# (the largest |start_skew_ms| of the JSON report: how far apart their
# workers began), the requests the report counts against what the
# target-server served, and the agents' mean RSS (one agent process each;
# 1,000 of them fit in a few GiB).
#
# Usage: [VOLLEY_BIN=DIR] bench/controller-cost.sh [-d SECONDS] [N ...]   (default: -d 10 10 50 100)
set -euo pipefail
D=10
if [[ ${1:-} == -d ]]; then D=$2; shift 2; fi
COUNTS=("$@")
[[ ${#COUNTS[@]} -gt 0 ]] || COUNTS=(10 50 100)
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
# VOLLEY_BIN=DIR: take the binaries from DIR instead of building them.
if [[ -n ${VOLLEY_BIN:-} ]]; then
  BIN=$VOLLEY_BIN
else
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

start target "$BIN/target-server" --listen 127.0.0.1:0 --threads 1
printf "%8s %10s %14s %14s %14s %10s %10s %12s %12s %14s\n" agents "cpu s" "us/agent/s" "steady us/a/s" "once us/agent" "rss MiB" "skew ms" "reported" "served" "agent rss MiB"
# cpu_ns PID: CPU time of every thread of PID, in nanoseconds.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END{printf "%.0f\n", s}'; }
json=$(mktemp)
served() { curl -s "http://$target/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
for n in "${COUNTS[@]}"; do
  agents=()
  for _ in $(seq "$n"); do start a "$BIN/agent" --listen 127.0.0.1:0 --threads 1; agents+=("$a"); done
  list=$(IFS=,; echo "${agents[*]}")
  before=$(served)
  times=$(mktemp) samples=$(mktemp) err=$(mktemp)
  /usr/bin/time -o "$times" -f "%U %S %M" "$BIN/controller" run --agents "$list" --url "http://$target/delay/100" \
    -z "${D}s" -c "$n" --output json >"$json" 2>"$err" &
  timer=$!
  # Samples the controller's CPU (the child of time) every 0.2 s while it runs.
  while kill -0 "$timer" 2>/dev/null; do
    c=$(pgrep -P "$timer" | head -n 1 || true)
    [[ -n $c ]] && echo "$(date +%s%N) $(cpu_ns "$c")" >>"$samples"
    sleep 0.2
  done
  # The controller's own lines only when it failed (its progress lines are noise here).
  wait "$timer" || { tail -n 20 "$err" >&2; exit 1; }
  after=$(served)
  read -r user sys rss <"$times"
  # The run's last D s end at the last sample: from 2 s into them to 1 s before.
  steady=$(python3 -c 'import sys
s=[tuple(map(int, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2 and int(l.split()[1]) > 0]
end, d, n = s[-1][0], float(sys.argv[2]), int(sys.argv[3])
w=[x for x in s if end - (d - 2) * 1e9 <= x[0] <= end - 1e9]
print("%.1f" % ((w[-1][1] - w[0][1]) / 1e3 / ((w[-1][0] - w[0][0]) / 1e9) / n) if len(w) > 1 and w[-1][0] > w[0][0] else "-")' "$samples" "$D" "$n")
  rm -f "$times" "$samples" "$err"
  read -r skew reported < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print(max(abs(a.get("start_skew_ms") or 0) for a in r["agents"]), r["total_requests"])' "$json")
  agent_rss=$(for p in "${pids[@]:1}"; do awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null; done | awk '{s+=$1; n++} END{printf "%.1f", n ? s / n / 1024 : 0}')
  awk -v n="$n" -v d="$D" -v u="$user" -v s="$sys" -v st="$steady" -v r="$rss" -v k="$skew" -v rep="$reported" -v srv=$((after - before)) -v ar="$agent_rss" \
    'BEGIN { once = st == "-" ? "-" : sprintf("%.0f", ((u + s) * 1e6 - st * n * d) / n)
             printf "%8d %10.2f %14.1f %14s %14s %10.1f %10.1f %12d %12d %14s\n", n, u + s, (u + s) * 1e6 / (n * d), st, once, r / 1024, k, rep, srv, ar }'
  # Stop this round's agents before the next (the target-server stays).
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
done
