#!/usr/bin/env bash
# Builds every WakeDock plugin and test fixture as a WebAssembly component
# (wasm32-wasip2, release). Output: ${CARGO_TARGET_DIR:-<workspace>/target}/wasm32-wasip2/release/*.wasm
# The plugin-runtime integration tests and the benchmark load them from there.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
cargo build --target wasm32-wasip2 --release \
    -p wakedock-plugin-example \
    -p wakedock-plugin-wake \
    -p wakedock-fixture-hostile \
    -p wakedock-fixture-wrong-version \
    -p wakedock-fixture-api-0-1-0 \
    -p wakedock-fixture-api-0-1-1
out="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}/wasm32-wasip2/release"
ls -l "$out"/wakedock_plugin_example.wasm "$out"/wakedock_plugin_wake.wasm "$out"/wakedock_fixture_hostile.wasm "$out"/wakedock_fixture_wrong_version.wasm "$out"/wakedock_fixture_api_0_1_0.wasm "$out"/wakedock_fixture_api_0_1_1.wasm
