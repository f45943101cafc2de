#!/usr/bin/env bash
# bench/scenario.sh: Volley's scenario engine against Locust (its FastHttpUser,
# Locust's fastest client) on the same scenario, in one run: each virtual user
# logs in once, then sends weighted requests with no think time (list items
# x3, add item x1, with its token). target-server --threads 1 on CPU 0, each
# generator on CPU 1 for D seconds, requests counted by target-server's /stats.
# Prints served requests per second and generator CPU microseconds per request
# of each, and their ratios; R alternating rounds, median.
#
# Usage: bench/scenario.sh [-d SECONDS] [-u USERS] [-r ROUNDS]
# Needs root on first use (apt-get installs util-linux and time; pip installs locust).
set -euo pipefail
D=10 U=50 R=3
while [[ $# -gt 0 ]]; do
  case $1 in
    -d) D=$2; shift 2 ;;
    -u) U=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    *) echo "usage: bench/scenario.sh [-d SECONDS] [-u USERS] [-r ROUNDS]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
command -v taskset >/dev/null && [[ -x /usr/bin/time ]] || {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux time >/dev/null
}
python3 -m locust --version >/dev/null 2>&1 || pip install --quiet locust
cargo build --release --quiet -p controller -p target-server
BIN=$PWD/target/release

dir=$(mktemp -d)
cleanup() { [[ -n ${TS:-} ]] && kill "$TS" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

taskset -c 0 "$BIN/target-server" --listen 127.0.0.1:0 --threads 1 >"$dir/ts.out" 2>/dev/null &
TS=$!
for _ in $(seq 50); do grep -q listening "$dir/ts.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$dir/ts.out")

cat >"$dir/shop.toml" <<TOML
[[user]]
name = "shopper"
[[user.setup]]
name = "login"
method = "POST"
path = "/login"
json = { user = "alice", password = "secret" }
capture = { token = { json = "/token" } }
[[user.request]]
name = "list items"
weight = 3
path = "/items"
query = { limit = "10" }
headers = { authorization = "Bearer \${token}" }
[[user.request]]
name = "add item"
weight = 1
method = "POST"
path = "/items"
headers = { authorization = "Bearer \${token}" }
json = { name = "apple" }
TOML

cat >"$dir/locustfile.py" <<'PY'
from locust import FastHttpUser, constant, task


class Shopper(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        r = self.client.post("/login", json={"user": "alice", "password": "secret"})
        self.auth = {"authorization": "Bearer " + r.json()["token"]}

    @task(3)
    def list_items(self):
        self.client.get("/items?limit=10", headers=self.auth, name="list items")

    @task(1)
    def add_item(self):
        self.client.post("/items", json={"name": "apple"}, headers=self.auth, name="add item")
PY

served() { curl -s "$BASE/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }

# Runs "$@" on CPU 1; prints "requests-per-second cpu-us-per-request".
measure() {
  local before after cpu
  before=$(served)
  taskset -c 1 /usr/bin/time -f "%U %S" -o "$dir/time" "$@" >/dev/null 2>"$dir/err" || { cat "$dir/err" >&2; exit 1; }
  after=$(served)
  cpu=$(awk '{print $1 + $2}' "$dir/time")
  awk -v n=$((after - before)) -v d="$D" -v c="$cpu" 'BEGIN { printf "%.0f %.3f\n", n / d, c * 1e6 / n }'
}

volley=() locust=()
for round in $(seq "$R"); do
  v=$(measure "$BIN/controller" run --scenario "$dir/shop.toml" --url "$BASE" -u "$U" -r 100000 -z "${D}s" --threads 1 --quiet)
  l=$(measure python3 -m locust -f "$dir/locustfile.py" --headless -u "$U" -r "$U" -t "${D}s" --host "$BASE" --only-summary --loglevel ERROR)
  echo "  round $round: volley $(cut -d' ' -f1 <<<"$v") req/s $(cut -d' ' -f2 <<<"$v") us/req | locust $(cut -d' ' -f1 <<<"$l") req/s $(cut -d' ' -f2 <<<"$l") us/req"
  volley+=("$v") locust+=("$l")
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rate_ratio=$(for i in $(seq 0 $((R - 1))); do awk -v a="${volley[$i]% *}" -v b="${locust[$i]% *}" 'BEGIN{print a/b}'; done | median)
cpu_ratio=$(for i in $(seq 0 $((R - 1))); do awk -v a="${locust[$i]#* }" -v b="${volley[$i]#* }" 'BEGIN{print a/b}'; done | median)
printf 'scenario rate per generator core volley/locust, median of %s: %.2f\n' "$R" "$rate_ratio"
printf 'generator CPU per request locust/volley, median of %s: %.2f\n' "$R" "$cpu_ratio"
