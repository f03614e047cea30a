#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API: schemathesis (from PyPI, pinned,
# in a venv under the state dir) generates requests from
# /api/v1/openapi.json and checks every answer against it (status codes,
# content types, headers, schemas, positive and negative data, auth).
# The host it fuzzes is a real `wakedock serve` with SQLite and NO Docker
# engine (docker.socket_path names a socket that does not exist): a fuzzer
# would otherwise stop and delete every container it can list.
# Bounded: FUZZ_MAX_EXAMPLES per operation and FUZZ_MAX_TIME seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ST_VERSION=4.32.5
venv="$STATE_DIR/schemathesis-$ST_VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
  # Debian's python3 has venv and pip as separate packages.
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv python3-pip
  log "installing schemathesis $ST_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$ST_VERSION"
fi

target="${CARGO_TARGET_DIR:-$ROOT/target}"
bin="$target/debug/wakedock"
[ -x "$bin" ] || cargo build -q -p wakedock

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
password="fuzz-admin-password-$(date +%s%N)"
cat >"$work/wakedock.yaml" <<YAML
wakedock: { data_path: "$work/data", port: $port }
docker: { socket_path: "$work/no-docker-here.sock" }
logging: { level: warn }
security:
  rate_limit: { api_per_ip_per_second: 100000, api_burst: 100000, login_per_ip_per_minute: 100000, login_per_user_per_minute: 100000 }
YAML
# The wake plugin serves /api/v1/services and is loaded, so those
# operations are fuzzed too (FUZZ_WITH_WAKE=0 leaves it out: they answer 503,
# as documented).
wake_wasm="$target/wasm32-wasip2/release/wakedock_plugin_wake.wasm"
if [ "${FUZZ_WITH_WAKE:-1}" = 1 ]; then
  [ -f "$wake_wasm" ] || scripts/build-plugins.sh
  printf 'plugins:\n  - { manifest: "%s", wasm: "%s" }\n' "$ROOT/plugins/wake/plugin.toml" "$wake_wasm" >>"$work/wakedock.yaml"
else
  echo "plugins: []" >>"$work/wakedock.yaml"
fi
WAKEDOCK_ADMIN_PASSWORD="$password" "$bin" --config "$work/wakedock.yaml" serve >"$work/host.log" 2>&1 &
host_pid=$!
cleanup() {
  kill "$host_pid" 2>/dev/null || true
  wait "$host_pid" 2>/dev/null || true
  [ -n "${FUZZ_KEEP:-}" ] && cp -r "$work" /tmp/fuzz-kept || true
  rm -rf "$work"
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  python3 -c "import urllib.request as u; u.urlopen('$base/api/v1/openapi.json')" 2>/dev/null && break
  kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.log" >&2; die "the fuzzed host did not start"; }
  sleep 0.2
done

export WAKEDOCK_FUZZ_BASE="$base" WAKEDOCK_FUZZ_PASSWORD="$password"
export SCHEMATHESIS_HOOKS=fuzz_auth
export PYTHONPATH="$ROOT/tests/fuzz${PYTHONPATH:+:$PYTHONPATH}"
log "fuzzing $base (no Docker engine): ${FUZZ_MAX_EXAMPLES:-25} examples per operation, at most ${FUZZ_MAX_TIME:-150} s"
fuzz() { # SEED
  "$venv/bin/schemathesis" --config-file "$ROOT/tests/fuzz/schemathesis.toml" run "$base/api/v1/openapi.json" \
    --checks all \
    --max-examples "${FUZZ_MAX_EXAMPLES:-25}" \
    --max-time "${FUZZ_MAX_TIME:-150}" \
    --workers 2 \
    --seed "$1" \
    --request-timeout 20 \
    --no-color \
    --generation-database none \
    --report junit --report-dir "${WD_ARTIFACTS_DIR:-$work}/schemathesis" \
    "${extra[@]}" 2>&1 | tee "$work/fuzz.out"
  return "${PIPESTATUS[0]}"
}
extra=("$@")
seed="${FUZZ_SEED:-10}"
status=0
fuzz "$seed" || status=$?
# The tool itself may crash on an operation ("Runtime Error": a CPython
# 3.11 AST recursion error inside hypothesis, seen once on POST
# /api/v1/plugins). That is not a finding about the API: with no failure
# in the summary, run once more with the next seed; a second crash fails.
summary="$(grep -E '^=+ .* in [0-9.]+s =+$' "$work/fuzz.out" | tail -1)"
if [ "$status" -ne 0 ] && ! grep -q "failure" <<<"$summary" && grep -q "Runtime Error" "$work/fuzz.out"; then
  log "schemathesis crashed on its own (no failure found): $summary; once more with seed $((seed + 1))"
  status=0
  fuzz "$((seed + 1))" || status=$?
fi
if grep -q "panicked" "$work/host.log"; then
  grep -B2 -A10 "panicked" "$work/host.log" >&2
  die "the fuzzed host panicked"
fi
[ "$status" -eq 0 ] || die "schemathesis found failures (exit $status)"
log "fuzzing found no failures"
