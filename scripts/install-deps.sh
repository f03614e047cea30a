#!/usr/bin/env bash
# Installs what WakeDock needs to build and run on Debian: system libraries,
# the Docker engine and the Rust targets. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install ca-certificates pkg-config libsqlite3-dev libpq-dev docker.io
ensure_rust
