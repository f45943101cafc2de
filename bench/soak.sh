#!/usr/bin/env bash
# bench/soak.sh: is memory flat in the length of a run? (Not run in CI.)
#
# Starts a target-server on loopback and measures peak RSS (VmHWM) of:
#   - the controller running with its embedded agent (`controller run`
#     without --agents), at --rate RATE for SHORT and LONG seconds;
#   - the controller and a standalone agent process (`--agents`), the same;
#   - the controller with its embedded agent for -n N_SMALL and -n N_LARGE
#     requests (closed model, as fast as loopback goes).
# Each measurement uses fresh processes. Prints one line per measurement and
# the growth from the short run to the long one; the goal is at most 2 MiB
# per process from SHORT to LONG, and at most 10 MiB from N_SMALL to N_LARGE.
#
# Usage: bench/soak.sh            (60 s vs 600 s at 1000 req/s, -n 1e5 vs 1e7)
# Environment: SHORT, LONG (seconds), RATE (req/s), CONNECTIONS, N_SMALL,
# N_LARGE, PARTS (any of "rate agent count", default all), and BIN: a
# directory holding already built controller, agent and target-server
# binaries (default: build them with --release).
set -euo pipefail
SHORT=${SHORT:-60}
LONG=${LONG:-600}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-10}
N_SMALL=${N_SMALL:-100000}
N_LARGE=${N_LARGE:-10000000}
PARTS=${PARTS:-rate agent count}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet -p controller -p agent -p target-server
  BIN=$PWD/target/release
fi
export RUST_LOG=warn
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# start VAR CMD...: runs CMD in the background, sets VAR to the first
# address on its ready line and LAST_PID to its process id.
start() {
  local var=$1 fd line; shift
  exec {fd}< <(exec "$@")
  LAST_PID=$!
  pids+=("$LAST_PID")
  read -r -u "$fd" line
  line=${line#*listening on }; line=${line#http://}
  printf -v "$var" '%s' "${line%% *}"
}

# controller_peak ARGS...: runs the controller, prints its peak RSS in KiB.
controller_peak() {
  { /usr/bin/time -f "%M" "$BIN/controller" run --url "http://$target/hello" -c "$CONNECTIONS" --threads 1 \
      --quiet --output json "$@" >/dev/null; } 2>&1 | tail -n 1
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
row() { printf "%-44s %10s MiB\n" "$1" "$(mib "$2")"; }
growth() { printf "%-44s %+10.1f MiB\n" "  growth" "$(awk -v a="$1" -v b="$2" 'BEGIN { print (b - a) / 1024 }')"; }

start target "$BIN/target-server" --listen 127.0.0.1:0 --threads 1

if [[ $PARTS == *rate* ]]; then
  s=$(controller_peak --rate "$RATE" -z "${SHORT}s")
  row "controller + embedded agent, ${SHORT} s" "$s"
  l=$(controller_peak --rate "$RATE" -z "${LONG}s")
  row "controller + embedded agent, ${LONG} s" "$l"
  growth "$s" "$l"
fi

if [[ $PARTS == *agent* ]]; then
  declare -A peak
  for d in "$SHORT" "$LONG"; do
    start agent "$BIN/agent" --listen 127.0.0.1:0 --threads 1
    agent_pid=$LAST_PID
    peak[controller$d]=$(controller_peak --agents "$agent" --rate "$RATE" -z "${d}s")
    peak[agent$d]=$(awk '/^VmHWM/ { print $2 }' "/proc/$agent_pid/status")
    kill "$agent_pid"
    row "controller with --agents, ${d} s" "${peak[controller$d]}"
    row "standalone agent, ${d} s" "${peak[agent$d]}"
  done
  printf "%-44s %+10.1f MiB\n" "  controller growth" \
    "$(awk -v a="${peak[controller$SHORT]}" -v b="${peak[controller$LONG]}" 'BEGIN { print (b - a) / 1024 }')"
  printf "%-44s %+10.1f MiB\n" "  agent growth" \
    "$(awk -v a="${peak[agent$SHORT]}" -v b="${peak[agent$LONG]}" 'BEGIN { print (b - a) / 1024 }')"
fi

if [[ $PARTS == *count* ]]; then
  s=$(controller_peak -n "$N_SMALL")
  row "controller + embedded agent, -n $N_SMALL" "$s"
  l=$(controller_peak -n "$N_LARGE")
  row "controller + embedded agent, -n $N_LARGE" "$l"
  growth "$s" "$l"
fi
