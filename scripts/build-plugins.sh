#!/usr/bin/env bash
# Builds WakeDock's plugins as WebAssembly components (wasm32-wasip2,
# release) into $(cargo target dir)/wasm32-wasip2/release/*.wasm, where the
# default config, the plugin-runtime integration tests and the benchmarks
# load them from. Honours CARGO_TARGET_DIR.
#
# Usage: scripts/build-plugins.sh [--run]
#   (none)  every plugin and test fixture (what scripts/test.sh builds)
#   --run   only the plugins the default config installs (what scripts/run.sh builds)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
run_plugins=(wakedock-plugin-wake wakedock-plugin-stacks wakedock-plugin-alerts)
all_plugins=(
  wakedock-plugin-example
  wakedock-plugin-wake
  wakedock-plugin-stacks
  wakedock-plugin-alerts
  wakedock-fixture-hostile
  wakedock-fixture-wrong-version
  wakedock-fixture-api-0-1-0
  wakedock-fixture-api-0-1-1
  wakedock-fixture-api-0-1-2
  wakedock-fixture-api-0-1-3
)
case "${1:-}" in
  "") crates=("${all_plugins[@]}") ;;
  --run) crates=("${run_plugins[@]}") ;;
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (see --help)" ;;
esac
rust_targets wasm32-wasip2
# A branch may not have every plugin yet (each plugin's branch adds its
# own): build the workspace's, and say which are missing.
members="$(cargo metadata --no-deps --format-version 1)"
present=()
for c in "${crates[@]}"; do
  if grep -q "\"name\":\"$c\"" <<<"$members"; then
    present+=("$c")
  else
    echo "build-plugins: $c is not in this workspace; not built" >&2
  fi
done
crates=("${present[@]}")
args=()
for c in "${crates[@]}"; do args+=(-p "$c"); done
cargo build --target wasm32-wasip2 --release "${args[@]}"
out="$(cargo_target_dir)/wasm32-wasip2/release"
for c in "${crates[@]}"; do
  ls -l "$out/${c//-/_}.wasm"
done
