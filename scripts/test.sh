#!/usr/bin/env bash
# Runs every test WakeDock has, on a fresh Debian machine: installs what is
# missing, starts the Docker engine, a private PostgreSQL and a private
# MariaDB, builds the test images and plugins, checks formatting and lints, then runs the
# unit, integration and end-to-end suites. `.ci/run` calls this.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
started=$(date +%s)

"$ROOT/scripts/install-deps.sh" --test
ensure_docker
ensure_postgres
log "PostgreSQL for tests: $WAKEDOCK_TEST_PG_URL"
ensure_mysql
log "MariaDB for tests: 127.0.0.1:$MYSQL_PORT"

log "building test images"
scripts/build-test-images.sh
if [ -x scripts/build-plugins.sh ]; then
  log "building plugins"
  scripts/build-plugins.sh
fi

log "Caddy bridge: gofmt, go vet, go test"
command -v go >/dev/null || die "Go is not installed (the Caddy bridge needs Go 1.26+)"
unformatted="$(gofmt -l caddy-bridge)"
[ -z "$unformatted" ] || die "gofmt: unformatted files: $unformatted"
(cd caddy-bridge && go vet ./... && go test -count=1 ./...)
log "building Caddy with the wakedock module"
scripts/build-caddy.sh
target/caddy/caddy validate --config config/Caddyfile --adapter caddyfile
# The Caddy image's Caddyfile, in each of its modes for generated sites.
for sites in https internal http; do
  WAKEDOCK_SITES=$sites WAKEDOCK_BRIDGE_TOKEN=validate-only-token \
    target/caddy/caddy validate --config deploy/Caddyfile --adapter caddyfile 2>/dev/null \
    || die "deploy/Caddyfile is invalid with WAKEDOCK_SITES=$sites"
done
log "Docker Compose v2 (tests/stacks.rs runs the real CLI)"
scripts/install-compose.sh

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The plugins' host glue only exists on wasm32.
cargo clippy -p wakedock-plugin-wake --target wasm32-wasip2 -- -D warnings
cargo clippy -p wakedock-plugin-stacks --target wasm32-wasip2 -- -D warnings
cargo clippy -p wakedock-plugin-alerts --target wasm32-wasip2 -- -D warnings

log "cargo test"
# Artifacts (screenshots, logs) of end-to-end tests land here.
export WD_ARTIFACTS="${WD_ARTIFACTS:-$ROOT/ci-artifacts}"
export WD_ARTIFACTS_DIR="${WD_ARTIFACTS_DIR:-$WD_ARTIFACTS}"
mkdir -p "$WD_ARTIFACTS_DIR/screenshots"
log "browser test screenshots: $WD_ARTIFACTS_DIR/screenshots/"
# Compile every test first: that also links target/debug/wakedock (host's
# integration test needs it), which the deploy suite's images reuse, so the
# images cost no second compile of the host.
cargo test --workspace --no-run
log "building the images from the test build (scripts/build-images.sh --dev)"
scripts/build-images.sh --dev
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"

log "schema-driven API fuzzing (schemathesis, host without Docker)"
# Bounded: ~25 examples per operation, 150 s of fuzzing (about 3 min with
# the install check and the host's start).
WD_ARTIFACTS_DIR="$WD_ARTIFACTS_DIR" scripts/fuzz-api.sh

log "screenshots of every UI page: $WD_ARTIFACTS_DIR/screenshots/"
log "all tests passed in $(( $(date +%s) - started )) s"
