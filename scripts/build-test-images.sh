#!/usr/bin/env bash
# Builds the images used by WakeDock's end-to-end tests, locally (there is no
# image registry):
#   wakedock-testapp:latest  (label wakedock.test=true), from tests/testapp
#
# The testapp binary is built fully static for x86_64-unknown-linux-musl so it
# runs in a `FROM scratch` image. The Docker build context is a temporary
# directory holding only that binary and the Dockerfile. Re-running is cheap:
# cargo builds incrementally and Docker reuses its layer cache.
#
# Usage: scripts/build-test-images.sh   (from any directory)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

target=x86_64-unknown-linux-musl
image=wakedock-testapp:latest

rustup target add "$target" >/dev/null

cargo build --release -p wakedock-testapp --target "$target"

binary="$(cargo_target_dir)/$target/release/testapp"
if [[ ! -x "$binary" ]]; then
  echo "build-test-images: $binary was not built" >&2
  exit 1
fi

context="$(mktemp -d "${TMPDIR:-/tmp}/wakedock-testapp-context.XXXXXX")"
trap 'rm -rf "$context"' EXIT
# -p keeps timestamps, so an unchanged binary hits Docker's layer cache.
cp -p "$binary" "$context/testapp"
cp -p tests/testapp/Dockerfile "$context/Dockerfile"

docker build --label wakedock.test=true -t "$image" -f "$context/Dockerfile" "$context"
echo "build-test-images: built $image"
# A rebuild leaves the previous image untagged: remove such leftovers, and
# only ours (dangling and labelled as test objects).
docker image prune -f --filter label=wakedock.test=true >/dev/null
