#!/usr/bin/env bash
# Runs WakeDock with the default configuration (config/wakedock.yaml, SQLite
# in ./data), or the file $WAKEDOCK_CONFIG_PATH names. Installs what running
# needs (no test tools), starts the Docker engine when none is running,
# builds the binary and the plugins the config installs, then runs
# `wakedock serve`, which prints a banner with the URL and the admin user
# (and, on the first start, the generated password).
#
# Usage: scripts/run.sh [--no-install] [--no-build] [-- WAKEDOCK-ARGS...]
#   --no-install  install nothing and start no engine (a prepared machine)
#   --no-build    run what is already built
#   WAKEDOCK-ARGS default to `serve`; e.g. `scripts/run.sh -- config check`
#
# Honours CARGO_TARGET_DIR: the binary and the plugins are built into that
# directory and run from it (the default config's plugin paths read it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install=1
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) install=0 ;;
    --no-build) build=0 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) break ;;
  esac
  shift
done
[ $# -gt 0 ] || set -- serve

if [ "$install" -eq 1 ]; then
  "$ROOT/scripts/install-deps.sh"
  ensure_docker
fi
cd "$ROOT"
# Absolute, so cargo, the binary's path below and the config's
# ${CARGO_TARGET_DIR} all name the same directory.
CARGO_TARGET_DIR="$(cargo_target_dir)"
export CARGO_TARGET_DIR
if [ "$build" -eq 1 ]; then
  log "building the plugins"
  scripts/build-plugins.sh --run >/dev/null
  log "building wakedock (release)"
  cargo build --release -p wakedock
fi
bin="$CARGO_TARGET_DIR/release/wakedock"
[ -x "$bin" ] || die "$bin is missing: run scripts/run.sh without --no-build"
config=()
[ -n "${WAKEDOCK_CONFIG_PATH:-}" ] || config=(--config "$ROOT/config/wakedock.yaml")
log "starting $bin ${config[*]} $*"
# Fixed glibc mmap threshold: large freed blocks go back to the system
# instead of staying resident in per-thread arenas (why: deploy/Dockerfile).
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-131072}"
exec "$bin" "${config[@]}" "$@"
