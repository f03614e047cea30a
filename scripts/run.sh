#!/usr/bin/env bash
# Runs WakeDock with the embedded default configuration (config/wakedock.yaml,
# SQLite in ./data). Installs what is missing and starts the Docker engine
# when none is running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/install-deps.sh"
ensure_docker
cd "$ROOT"
if [ -x scripts/build-plugins.sh ]; then scripts/build-plugins.sh; fi
log "building wakedock (release)"
cargo build --release -p wakedock
exec "$ROOT/target/release/wakedock" --config "$ROOT/config/wakedock.yaml" serve
