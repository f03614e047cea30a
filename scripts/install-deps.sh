#!/usr/bin/env bash
# Installs what WakeDock needs to build and run on Debian: system libraries,
# the Docker engine and the Rust targets. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# libmariadb-dev(-compat): libmysqlclient for the MySQL/MariaDB backend.
apt_install ca-certificates pkg-config libsqlite3-dev libpq-dev libmariadb-dev libmariadb-dev-compat docker.io
# Browser tests (tests/ui.rs): headless Chromium driven through chromedriver.
apt_install chromium chromium-driver fonts-dejavu-core
ensure_rust
