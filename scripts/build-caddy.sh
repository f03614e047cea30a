#!/usr/bin/env bash
# Builds a Caddy binary that includes WakeDock's Caddy module (caddy-bridge/,
# directive `wakedock`, module http.handlers.wakedock) with xcaddy.
#
# Output: target/caddy/caddy under the repository root (always there,
# whatever CARGO_TARGET_DIR says). The build is skipped when the binary is
# newer than every file in caddy-bridge/ and than this script; pass --force
# to rebuild anyway. The Caddy version is the one caddy-bridge/go.mod pins,
# so the binary runs the Caddy the module's tests ran against.
#
# The binary is static (CGO_ENABLED=0: Go's own DNS resolver, no libc), so
# the same file runs in the tests and in the `FROM scratch` Caddy image
# (deploy/Dockerfile, scripts/build-images.sh).
#
# Needs Go (see caddy-bridge/go.mod for the version) and the Go module proxy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=target/caddy/caddy
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [ "$force" -eq 0 ] && [ -x "$out" ] \
  && [ -z "$(find caddy-bridge scripts/build-caddy.sh -newer "$out" -print -quit)" ]; then
  echo "==> $out is up to date (use --force to rebuild)" >&2
  exit 0
fi

command -v go >/dev/null || { echo "error: go not found; install Go first" >&2; exit 1; }
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
if ! command -v xcaddy >/dev/null; then
  echo "==> installing xcaddy" >&2
  go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest
fi

caddy_version="$(awk '$1 == "github.com/caddyserver/caddy/v2" { print $2; exit }' caddy-bridge/go.mod)"
[ -n "$caddy_version" ] || { echo "error: no Caddy version in caddy-bridge/go.mod" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
export CGO_ENABLED=0
echo "==> building Caddy $caddy_version with github.com/wakedock/wakedock/caddy-bridge" >&2
xcaddy build "$caddy_version" \
  --with github.com/wakedock/wakedock/caddy-bridge@v0.0.0="$PWD/caddy-bridge" \
  --output "$out.tmp"
mv -f "$out.tmp" "$out"
"$out" list-modules | grep -qx 'http.handlers.wakedock' \
  || { echo "error: $out lacks http.handlers.wakedock" >&2; exit 1; }
if ldd "$out" >/dev/null 2>&1; then
  echo "error: $out is dynamically linked; it must be static for the image" >&2
  exit 1
fi
echo "==> built $out ($("$out" version | cut -d' ' -f1))" >&2
