#!/usr/bin/env bash
# Installs what WakeDock needs on Debian. Idempotent.
#
# Usage: scripts/install-deps.sh [--test]
#   (none)  to build and run it: system libraries, the Docker engine, Rust's
#           wasm32-wasip2 target (what scripts/run.sh calls)
#   --test  also to test it: Chromium and chromedriver, fonts, PostgreSQL, MariaDB,
#           an SMTP sink (python3-aiosmtpd),
#           the musl target, rustfmt and clippy (what scripts/test.sh calls)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
  "") install_run_deps ;;
  --test) install_test_deps ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac
