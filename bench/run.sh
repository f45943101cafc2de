#!/usr/bin/env bash
# bench/run.sh: Volley's generator and target-server against wrk and nginx, in
# one run, on one machine with two cores. Prints five figures with ratios:
#
#   1. rate per core: Volley (embedded agent, --threads 1) / wrk (-t1), both on
#      CPU 1 against nginx on CPU 0, counted by nginx; median of R alternating
#      rounds, at 50 and at 256 connections;
#   2. CPU microseconds per request (user+sys) of Volley and wrk in those runs;
#   3. an agent's peak RSS after 100,000 and after 10,000,000 requests;
#   4. server CPU microseconds per request: target-server --threads 1 vs nginx
#      with one worker, each on CPU 0, loaded by wrk on CPU 1;
#   5. total rate of two agent processes vs one embedded agent with --threads 2;
#   6. HTTPS: figures 1 and 2 against nginx serving TLS (a self-signed
#      certificate made with openssl; Volley with -k), 50 connections.
#   7. short runs: the rate `controller run -n 20000 -c 10` and `controller
#      demo` report vs `ab -k -n 20000 -c 10` against one target-server
#      (the demo runs its own, in-process), median of R rounds.
#   8. io_uring: CPU microseconds per request (user + sys, each shown) of
#      Volley on io_uring (--io uring) vs wrk and vs Volley on epoll (--io
#      epoll), all on CPU 1 against nginx on CPU 0, counted by nginx, with
#      how busy nginx's worker was: at full speed with 50 connections (nginx
#      is the bottleneck); at a fixed open-model rate (--rate RATE, default
#      20000/s, nginx not the bottleneck; wrk has no fixed rate, so epoll is
#      the peer there); and closed-loop with LOWC connections (default 2),
#      where nginx is not the bottleneck for wrk either. Medians of R rounds.
#      Figures 1, 2, 5 and 6 use --io epoll, so they keep comparing what
#      they did before io_uring.
#
# Usage: [BIN=DIR] [RATE=N] [LOWC=N] bench/run.sh [-d SECONDS] [-r ROUNDS] [-m MEMORY_REQUESTS] [--only N,...]
# Needs root on first use (apt-get installs nginx-light, wrk, util-linux, curl, time).
set -euo pipefail
D=5 R=3 BIG=10000000 ONLY=1,2,3,4,5,6,7,8 RATE=${RATE:-20000}
while [[ $# -gt 0 ]]; do
  case $1 in
    -d) D=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    -m) BIG=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "usage: bench/run.sh [-d SECONDS] [-r ROUNDS] [-m REQUESTS] [--only 1,2,3,4,5,6,7,8] (RATE=N for figure 8)" >&2; exit 2 ;;
  esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
cd "$(dirname "$0")/.."

for tool in nginx wrk taskset curl /usr/bin/time openssl ab; do
  command -v "$tool" >/dev/null || NEED=1
done
if [[ ${NEED:-0} == 1 ]]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk util-linux curl time openssl apache2-utils >/dev/null
fi
# BIN=DIR: use binaries built before (e.g. to compare two builds) instead of building.
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet -p controller -p agent -p target-server
  BIN=$PWD/target/release
fi

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $dir/nginx.pid ]] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# A throwaway certificate for the HTTPS figure.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 01;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:8089 reuseport; location /hello { default_type text/plain; return 200 "Hello World!"; } }
  server { listen 127.0.0.1:8090; location /status { stub_status; } }
  server {
    listen 127.0.0.1:8443 ssl reuseport;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    location /hello { default_type text/plain; return 200 "Hello World!"; }
  }
}
CONF
taskset -c 0 nginx -c "$dir/nginx.conf"
for _ in $(seq 50); do curl -sf http://127.0.0.1:8090/status >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:8089/hello
served() { curl -s http://127.0.0.1:8090/status | awk 'NR==3{print $3}'; }

# measure LABEL CMD...: runs CMD on CPU 1; prints "rps cpu_us_per_req
# user_us_per_req sys_us_per_req" counted by nginx (minus the status request
# itself).
measure() {
  local before after t0 t1 cpu
  before=$(served); t0=$(date +%s.%N)
  cpu=$( { /usr/bin/time -f "%U %S" taskset -c 1 "$@" >/dev/null 2>"$dir/err" || true; } 2>&1; tail -n 1 "$dir/err")
  t1=$(date +%s.%N); after=$(served)
  awk -v n=$((after - before - 1)) -v t0="$t0" -v t1="$t1" -v cpu="$cpu" 'BEGIN{
    split(cpu, c, " "); d = n > 0 ? n : 1
    printf "%.0f %.3f %.3f %.3f\n", n / (t1 - t0), (c[1] + c[2]) * 1e6 / d, c[1] * 1e6 / d, c[2] * 1e6 / d }'
}
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

if want 1 || want 2; then
  for C in 50 256; do
    : >"$dir/ratios"; : >"$dir/cpu"
    for i in $(seq "$R"); do
      read -r wr wc _ < <(measure wrk -t1 -c"$C" -d"${D}s" "$URL")
      read -r vr vc _ < <(measure "$BIN/controller" run --io epoll --url "$URL" -c "$C" -z "${D}s" --threads 1)
      printf "  c=%-3s round %d: wrk %8s req/s %6s us/req | volley %8s req/s %6s us/req\n" "$C" "$i" "$wr" "$wc" "$vr" "$vc"
      awk -v a="$vr" -v b="$wr" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/ratios"
      awk -v a="$vc" -v b="$wc" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/cpu"
    done
    echo "figure 1 (c=$C): rate volley/wrk, median of $R: $(median <"$dir/ratios")  (goal >= 1.00)"
    echo "figure 2 (c=$C): cpu us/request volley/wrk, median of $R: $(median <"$dir/cpu")  (goal <= 1.05)"
  done
fi

# start_agent NAME: starts an agent on CPU 1 and a free port; sets
# NAME_pid and NAME_addr from the line it prints when ready.
start_agent() {
  local out=$dir/$1.out
  taskset -c 1 "$BIN/agent" --listen 127.0.0.1:0 --threads 1 --io epoll >"$out" 2>/dev/null &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do [[ -s $out ]] && break; sleep 0.05; done
  printf -v "$1_pid" %s "$pid"
  printf -v "$1_addr" %s "$(awk '{print $4; exit}' "$out")"
}

# Peak resident memory (VmHWM, KiB) of an agent process after N requests.
agent_peak_after() {
  local n=$1 pid
  start_agent mem
  pid=$mem_pid
  taskset -c 1 "$BIN/controller" run --agents "$mem_addr" --url "$URL" -n "$n" -c 50 >/dev/null
  awk '/VmHWM/{print $2}' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
if want 3; then
  small=$(agent_peak_after 100000)
  big=$(agent_peak_after "$BIG")
  echo "figure 3: agent peak RSS after 100,000 requests: ${small} KiB; after $BIG: ${big} KiB; growth $(( (big - small) / 1024 )) MiB (goal <= 10 MiB)"
fi

# CPU ticks (user+sys, all threads) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
if want 4; then
  taskset -c 0 "$BIN/target-server" --listen 127.0.0.1:8091 --threads 1 >/dev/null 2>&1 &
  ts=$!; pids+=("$ts")
  for _ in $(seq 50); do curl -sf http://127.0.0.1:8091/hello >/dev/null && break; sleep 0.1; done
  hz=$(getconf CLK_TCK)
  ts_served() { curl -s http://127.0.0.1:8091/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
  nginx_worker=$(pgrep -P "$(cat "$dir/nginx.pid")" | head -n 1)
  : >"$dir/srv"
  for i in $(seq "$R"); do
    b=$(ticks "$ts"); n0=$(ts_served)
    taskset -c 1 wrk -t1 -c50 -d"${D}s" http://127.0.0.1:8091/hello >/dev/null
    a=$(ticks "$ts"); n1=$(ts_served)
    t_us=$(awk -v t=$((a - b)) -v n=$((n1 - n0)) -v hz="$hz" 'BEGIN{printf "%.3f", t * 1e6 / hz / n}')
    b=$(ticks "$nginx_worker"); s0=$(served)
    taskset -c 1 wrk -t1 -c50 -d"${D}s" "$URL" >/dev/null
    a=$(ticks "$nginx_worker"); s1=$(served)
    n_us=$(awk -v t=$((a - b)) -v n=$((s1 - s0 - 1)) -v hz="$hz" 'BEGIN{printf "%.3f", t * 1e6 / hz / n}')
    echo "  round $i: server cpu us/request: target-server $t_us, nginx $n_us"
    awk -v a="$t_us" -v b="$n_us" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/srv"
  done
  echo "figure 4: server cpu per request target-server/nginx, median of $R: $(median <"$dir/srv")  (goal <= 1.00)"
  kill "$ts"
fi

if want 5; then
  : >"$dir/scale"
  for i in $(seq "$R"); do
    start_agent a1
    start_agent a2
    p1=$a1_pid p2=$a2_pid agents="$a1_addr,$a2_addr"
    read -r two _ < <(measure "$BIN/controller" run --agents "$agents" --url "$URL" -c 100 -z "${D}s")
    read -r one _ < <(measure "$BIN/controller" run --io epoll --url "$URL" -c 100 -z "${D}s" --threads 2)
    kill "$p1" "$p2"; wait "$p1" "$p2" 2>/dev/null || true
    echo "  round $i: two agents $two req/s, one embedded agent with 2 threads $one req/s"
    awk -v a="$two" -v b="$one" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/scale"
  done
  echo "figure 5: rate two agents / one agent with 2 threads, median of $R: $(median <"$dir/scale")  (goal 0.95..1.05)"
fi

if want 6; then
  HTTPS=https://127.0.0.1:8443/hello
  : >"$dir/ratios"; : >"$dir/cpu"
  for i in $(seq "$R"); do
    read -r wr wc _ < <(measure wrk -t1 -c50 -d"${D}s" "$HTTPS")
    read -r vr vc _ < <(measure "$BIN/controller" run --io epoll --url "$HTTPS" -k -c 50 -z "${D}s" --threads 1)
    printf "  https c=50 round %d: wrk %8s req/s %6s us/req | volley %8s req/s %6s us/req\n" "$i" "$wr" "$wc" "$vr" "$vc"
    awk -v a="$vr" -v b="$wr" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/ratios"
    awk -v a="$vc" -v b="$wc" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/cpu"
  done
  echo "figure 6 (https, c=50): rate volley/wrk, median of $R: $(median <"$dir/ratios")  (goal >= 1.00)"
  echo "figure 6 (https, c=50): cpu us/request volley/wrk, median of $R: $(median <"$dir/cpu")  (goal <= 1.05)"
fi

if want 7; then
  "$BIN/target-server" --listen 127.0.0.1:8093 >/dev/null 2>&1 &
  ts7=$!; pids+=("$ts7")
  for _ in $(seq 50); do curl -sf http://127.0.0.1:8093/hello >/dev/null && break; sleep 0.1; done
  rps() { awk '/^Requests per second/{print $4; exit}'; }
  : >"$dir/short"; : >"$dir/demo"
  for i in $(seq "$R"); do
    ab_rps=$(ab -k -q -n 20000 -c 10 http://127.0.0.1:8093/hello 2>/dev/null | rps)
    run_rps=$("$BIN/controller" run --url http://127.0.0.1:8093/hello -n 20000 -c 10 --quiet | rps)
    demo_rps=$("$BIN/controller" demo 2>/dev/null | rps)
    echo "  round $i: ab -k $ab_rps req/s | controller run -n 20000 -c 10 $run_rps req/s | demo $demo_rps req/s"
    awk -v a="$run_rps" -v b="$ab_rps" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/short"
    awk -v a="$demo_rps" -v b="$ab_rps" 'BEGIN{printf "%.3f\n", a/b}' >>"$dir/demo"
  done
  echo "figure 7: rate of -n 20000 -c 10 / ab -k, median of $R: $(median <"$dir/short")  (goal 0.90..1.10)"
  echo "figure 7: rate of controller demo / ab -k, median of $R: $(median <"$dir/demo")  (goal 0.90..1.10)"
  kill "$ts7"
fi

if want 8; then
  # One line per run: tool, req/s, cpu us/request (user + sys), and how busy
  # nginx's one worker was (so a run where it is not the bottleneck shows).
  hz=$(getconf CLK_TCK)
  nginx_worker=$(pgrep -P "$(cat "$dir/nginx.pid")" | head -n 1)
  run8() { # LABEL CMD...: prints the line, appends "label rps cpu user sys busy" to $dir/f8
    local label=$1 b a t0 t1 busy r c u k
    shift
    b=$(ticks "$nginx_worker"); t0=$(date +%s.%N)
    read -r r c u k < <(measure "$@")
    a=$(ticks "$nginx_worker"); t1=$(date +%s.%N)
    busy=$(awk -v t=$((a - b)) -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.0f", 100 * t / hz / (t1 - t0)}')
    printf "    %-22s %8s req/s %6s us/req (user %6s, sys %6s) nginx %3s%% busy\n" "$label" "$r" "$c" "$u" "$k" "$busy"
    echo "${label// /_} $r $c $u $k $busy" >>"$dir/f8"
  }
  # LOWC connections: few enough that nginx idles part of the time for every
  # generator (closed loop: the rate is what the round trips allow), the
  # comparison with wrk where nginx is not the bottleneck (wrk has no fixed rate).
  LOWC=${LOWC:-2}
  : >"$dir/f8"
  for i in $(seq "$R"); do
    echo "  round $i"
    run8 "wrk c=50" wrk -t1 -c50 -d"${D}s" "$URL"
    run8 "epoll c=50" "$BIN/controller" run --io epoll --url "$URL" -c 50 -z "${D}s" --threads 1
    run8 "uring c=50" "$BIN/controller" run --io uring --url "$URL" -c 50 -z "${D}s" --threads 1
    run8 "epoll c=50 rate" "$BIN/controller" run --io epoll --url "$URL" -c 50 -z "${D}s" --threads 1 --rate "$RATE"
    run8 "uring c=50 rate" "$BIN/controller" run --io uring --url "$URL" -c 50 -z "${D}s" --threads 1 --rate "$RATE"
    run8 "wrk c=$LOWC" wrk -t1 -c"$LOWC" -d"${D}s" "$URL"
    run8 "epoll c=$LOWC" "$BIN/controller" run --io epoll --url "$URL" -c "$LOWC" -z "${D}s" --threads 1
    run8 "uring c=$LOWC" "$BIN/controller" run --io uring --url "$URL" -c "$LOWC" -z "${D}s" --threads 1
  done
  # f8 FIELD LABEL: the median of a column (2 rps, 3 cpu, 4 user, 5 sys, 6 nginx busy) over the rounds.
  f8() { awk -v f="$1" -v l="${2// /_}" '$1 == l {print $f}' "$dir/f8" | median; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
  for t in "wrk c=50" "epoll c=50" "uring c=50" "epoll c=50 rate" "uring c=50 rate" "wrk c=$LOWC" "epoll c=$LOWC" "uring c=$LOWC"; do
    printf "figure 8 medians %-16s %8s req/s %6s us/req = user %6s + sys %6s, nginx %3s%% busy\n" \
      "$t:" "$(f8 2 "$t")" "$(f8 3 "$t")" "$(f8 4 "$t")" "$(f8 5 "$t")" "$(f8 6 "$t")"
  done
  echo "figure 8 (full speed, c=50): cpu us/request uring/wrk, medians of $R: $(ratio "$(f8 3 "uring c=50")" "$(f8 3 "wrk c=50")")  (goal <= 0.70)"
  echo "figure 8 (full speed, c=50): cpu us/request uring/epoll, medians of $R: $(ratio "$(f8 3 "uring c=50")" "$(f8 3 "epoll c=50")")"
  echo "figure 8 (full speed, c=50): rate uring/wrk, medians of $R: $(ratio "$(f8 2 "uring c=50")" "$(f8 2 "wrk c=50")")"
  echo "figure 8 (rate $RATE/s, c=50): cpu us/request uring/epoll, medians of $R: $(ratio "$(f8 3 "uring c=50 rate")" "$(f8 3 "epoll c=50 rate")")"
  echo "figure 8 (c=$LOWC, nginx not the bottleneck): cpu us/request uring/wrk, medians of $R: $(ratio "$(f8 3 "uring c=$LOWC")" "$(f8 3 "wrk c=$LOWC")")"
  echo "figure 8 (c=$LOWC, nginx not the bottleneck): cpu us/request uring/epoll, medians of $R: $(ratio "$(f8 3 "uring c=$LOWC")" "$(f8 3 "epoll c=$LOWC")")"
fi
