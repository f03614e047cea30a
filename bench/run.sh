#!/usr/bin/env bash
# Runs every benchmark; each prints its figures with a baseline measured in
# the same run. Record what it prints in docs/benchmarks.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
echo "== host idle memory"
"$here/idle-rss.sh"
if [ -f "$here/plugin-runtime/Cargo.toml" ]; then
  echo "== plugin runtime"
  "$here/../scripts/build-plugins.sh" >/dev/null
  cargo run --release -q -p wakedock-bench-plugins
fi
echo "== wake-on-request (Caddy + wakedock)"
# 1,000 held requests need more descriptors than the default 1,024.
ulimit -n "$(ulimit -Hn)"
"$here/../scripts/build-test-images.sh" >/dev/null
"$here/../scripts/build-caddy.sh" >/dev/null
cargo build --release -q -p wakedock
cargo run --release -q -p wakedock-bench-wake
echo "== alerts (engine event -> notification)"
"$here/../scripts/build-plugins.sh" >/dev/null
cargo run --release -q -p wakedock-bench-alerts
echo "== alerts (evaluation cost: 500 containers, 50 rules)"
cargo run --release -q -p wakedock-bench-alerts --bin eval-cost
echo "== browser UI"
"$here/../scripts/build-test-images.sh" >/dev/null
cargo run --release -q -p wakedock-bench-ui

echo "== deployment (images, compose file, label routes)"
"$here/../scripts/build-images.sh" >/dev/null
cargo run --release -q -p wakedock-bench-deploy
echo "== data: backup, restore, stall during a backup (each backend the test setup runs)"
source "$here/../scripts/lib.sh"
ensure_postgres
ensure_mysql
cargo run --release -q -p wakedock-bench-data
echo "== Compose stacks (deploy/update against docker compose, list page)"
"$here/../scripts/install-compose.sh"
"$here/../scripts/build-plugins.sh" >/dev/null
cargo run --release -q -p wakedock-bench-stacks
