#!/usr/bin/env bash
# Builds WakeDock's two container images locally, offline (no registry is
# needed: both are FROM scratch, see deploy/Dockerfile):
#
#   wakedock:VERSION, wakedock:MAJOR, wakedock:latest
#   wakedock-caddy:VERSION, wakedock-caddy:MAJOR, wakedock-caddy:latest
#
# The binaries are built here, on the build machine: `cargo build --release`
# of the host, the wake plugin for wasm32-wasip2, and Caddy with the
# caddy-bridge module (scripts/build-caddy.sh, static). The script copies
# them, the shared libraries the host links (ldd), CA certificates and the
# default configs into a context directory and runs `docker build` on it.
#
# --dev     Use what the test build already made instead of compiling a
#           release: target/debug/wakedock (built by `cargo test --workspace`,
#           via host/tests/healthcheck.rs), the plugins from
#           scripts/build-plugins.sh and target/caddy/caddy. Tags
#           wakedock:${WD_IMAGE_TAG:-dev} and wakedock-caddy:${WD_IMAGE_TAG:-dev},
#           labelled wakedock.test=true. Same Dockerfile. This is what
#           scripts/test.sh does, so CI pays no second host compile.
# --no-build
#           Release images from the binaries already built (target/release/
#           wakedock, the wake plugin, target/caddy/caddy): no compiling.
# --compose PATH
#           Put this Docker Compose v2 binary into the WakeDock image as
#           /usr/local/bin/docker-compose (for the stacks plugin).
#
# Needs: Docker, and for a release build Rust (rustup) and Go.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

dev=0
build=1
compose=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=1 ;;
    --no-build) build=0 ;;
    --compose) compose="${2:?--compose needs a path}"; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
version="$(cargo metadata --no-deps --format-version 1 \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wakedock"))')"
major="${version%%.*}"

if [ "$dev" -eq 1 ]; then
  binary="$target_dir/debug/wakedock"
  [ -x "$binary" ] || die "$binary is missing: run 'cargo test --workspace --no-run' (or 'cargo build -p wakedock') first"
  tags=("${WD_IMAGE_TAG:-dev}")
  labels=(--label wakedock.test=true)
else
  binary="$target_dir/release/wakedock"
  if [ "$build" -eq 1 ]; then
    log "building wakedock $version (release)"
    cargo build --release -p wakedock
    log "building the wake plugin"
    cargo build --target wasm32-wasip2 --release -p wakedock-plugin-wake
    scripts/build-caddy.sh
  fi
  [ -x "$binary" ] || die "$binary is missing: run without --no-build"
  tags=("$version" "$major" latest)
  labels=()
fi
wasm="$target_dir/wasm32-wasip2/release/wakedock_plugin_wake.wasm"
caddy="$ROOT/target/caddy/caddy"
[ -f "$wasm" ] || die "$wasm is missing: run scripts/build-plugins.sh"
[ -x "$caddy" ] || die "$caddy is missing: run scripts/build-caddy.sh"
if ldd "$caddy" >/dev/null 2>&1; then die "$caddy is dynamically linked: rebuild it with scripts/build-caddy.sh --force"; fi
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || die "$certs is missing: install Debian's ca-certificates"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/wakedock-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx"/base/etc/ssl/certs "$ctx"/base/tmp "$ctx"/wakedock/usr/local/bin \
  "$ctx"/wakedock/usr/share/wakedock/plugins/wake "$ctx"/wakedock/etc/wakedock \
  "$ctx"/compose "$ctx"/data "$ctx"/caddy/sites
chmod 1777 "$ctx"/base/tmp

# Base: certificates, the unprivileged user (10001), name resolution order.
cp "$certs" "$ctx"/base/etc/ssl/certs/ca-certificates.crt
printf 'root:x:0:0:root:/root:/sbin/nologin\nwakedock:x:10001:10001:WakeDock:/data:/sbin/nologin\n' >"$ctx"/base/etc/passwd
printf 'root:x:0:\nwakedock:x:10001:\n' >"$ctx"/base/etc/group
printf 'hosts: files dns\n' >"$ctx"/base/etc/nsswitch.conf

# WakeDock: the binary stripped (a test image keeps its symbols, for
# backtraces), and every shared library it needs at the path the loader
# looks for it.
if [ "$dev" -eq 1 ]; then
  objcopy --strip-debug "$binary" "$ctx"/wakedock/usr/local/bin/wakedock
else
  strip -o "$ctx"/wakedock/usr/local/bin/wakedock "$binary"
fi
libs="$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"
[ -n "$libs" ] || die "ldd found no libraries for $binary (a static binary needs none: adjust this script)"
for lib in $libs; do
  mkdir -p "$ctx/wakedock$(dirname "$lib")"
  cp -L "$lib" "$ctx/wakedock$lib"
done
cp "$wasm" "$ctx"/wakedock/usr/share/wakedock/plugins/wake/wakedock_plugin_wake.wasm
cp plugins/wake/plugin.toml "$ctx"/wakedock/usr/share/wakedock/plugins/wake/plugin.toml
cp deploy/wakedock.yaml "$ctx"/wakedock/etc/wakedock/wakedock.yaml
if [ -n "$compose" ]; then
  [ -x "$compose" ] || die "--compose $compose: not an executable"
  cp "$compose" "$ctx"/compose/docker-compose
fi

# Caddy.
cp "$caddy" "$ctx"/caddy/caddy
cp deploy/Caddyfile "$ctx"/caddy/Caddyfile
cp deploy/Dockerfile "$ctx"/Dockerfile

for image in caddy wakedock; do
  name=wakedock
  [ "$image" = caddy ] && name=wakedock-caddy
  log "building $name:${tags[0]}"
  docker build -q --target "$image" --build-arg VERSION="$version" "${labels[@]}" \
    -t "$name:${tags[0]}" "$ctx" >/dev/null
  for t in "${tags[@]:1}"; do docker tag "$name:${tags[0]}" "$name:$t"; done
  size="$(docker image inspect -f '{{.Size}}' "$name:${tags[0]}")"
  printf '%s:%s  %s MB\n' "$name" "$(IFS=,; echo "${tags[*]}")" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')"
done
# A rebuild leaves the previous image untagged: remove only those of ours.
for title in wakedock wakedock-caddy; do
  docker image prune -f --filter "label=org.opencontainers.image.title=$title" >/dev/null
done
