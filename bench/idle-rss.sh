#!/usr/bin/env bash
# Idle memory of the host: RSS of a release `wakedock serve` (the default
# config: SQLite and the wake plugin) after start-up
# and a few API calls, first with no test containers (the baseline), then
# with 20 test containers present. Prints both and the ratio.
# Traffic goes to 127.0.0.1 only; containers are labelled wakedock.test=true
# and removed at the end.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
N="${BENCH_CONTAINERS:-20}"
apt_install curl python3
ensure_docker
scripts/build-test-images.sh >/dev/null
cargo build --release -q -p wakedock
work="$(mktemp -d /tmp/wd-bench-rss.XXXXXX)"
names=()
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for n in "${names[@]}"; do docker rm -f "$n" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

measure() {
  local label="$1"
  WAKEDOCK_ADMIN_PASSWORD=bench-admin-password WAKEDOCK_DATA_PATH="$work/data" \
    WAKEDOCK_WAKEDOCK__PORT="$port" WAKEDOCK_LOG_LEVEL=warn \
    "$ROOT/target/release/wakedock" serve 2>"$work/serve.log" &
  pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  token=$(curl -fsS -X POST -H 'content-type: application/json' \
    -d '{"username":"admin","password":"bench-admin-password"}' \
    "http://127.0.0.1:$port/api/v1/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  local count
  for _ in $(seq 1 10); do
    count=$(curl -fsS -H "authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/containers?label=wakedock.test=true" \
      | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  done
  curl -fsS "http://127.0.0.1:$port/metrics" >/dev/null
  sleep 2
  local rss
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  echo "$label $rss $count"
}

# The default config loads the wake plugin: a first start compiles it into
# the data dir's cache. Start once so both measured runs load it from there.
measure warm-up >/dev/null
read -r _ base_kb base_n < <(measure baseline)
for i in $(seq 1 "$N"); do
  n="wd-bench-rss-$$-$i"
  names+=("$n")   # before the run, so a failed start is cleaned up too
  docker run -d --label wakedock.test=true --name "$n" -p 127.0.0.1::8080 wakedock-testapp:latest >/dev/null
done
read -r _ with_kb with_n < <(measure with-containers)

awk -v b="$base_kb" -v w="$with_kb" -v n="$N" -v bn="$base_n" -v wn="$with_n" 'BEGIN {
  printf "idle RSS, no test containers (baseline): %6.1f MiB (%d listed)\n", b/1024, bn
  printf "idle RSS, %d test containers:            %6.1f MiB (%d listed)\n", n, w/1024, wn
  printf "ratio with/without: %.2fx\n", w/b
}'
