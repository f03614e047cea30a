#!/usr/bin/env bash
# Installs the Docker Compose v2 CLI plugin at a pinned version, built from
# its Go module (Debian's `docker-compose` package is the old Python v1).
#
# Usage: scripts/install-compose.sh [--print-path]
#   (none)         build once (cached under the state dir, keyed by version)
#                  and install it where `docker compose` finds it
#   --print-path   only print the installed binary's path
#
# Where: $WD_COMPOSE_PLUGIN_DIR, default /usr/local/lib/docker/cli-plugins
# (read by every docker CLI on the machine, root or not; the image builds of
# issue 13 can call this script with the same default). The host finds the
# binary there too (`stacks.compose_binary`, see config/wakedock.yaml).
#
# Why this version: see COMPOSE_VERSION below. `go install ...@version`
# refuses the module (its go.mod has exclude directives), so the module is
# downloaded through the Go module proxy and built inside a copy of it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# v2.40.3 is the newest v2 release and deploys against Debian's Docker 20.10
# (engine API 1.41): up, down, ps, config, pull, stop/start/restart and logs
# were checked against it (tests/stacks.rs runs them on every CI run). Its
# go.mod asks for Go 1.24.9, which this machine's Go (1.26) satisfies.
COMPOSE_VERSION="${WD_COMPOSE_VERSION:-v2.40.3}"
PLUGIN_DIR="${WD_COMPOSE_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}"
dest="$PLUGIN_DIR/docker-compose"

if [ "${1:-}" = "--print-path" ]; then
  printf '%s\n' "$dest"
  exit 0
fi
[ -z "${1:-}" ] || [ "$1" = "-h" ] || [ "$1" = "--help" ] || die "unknown argument: $1 (see --help)"
case "${1:-}" in -h|--help) sed -n '2,17p' "$0"; exit 0 ;; esac

want="${COMPOSE_VERSION#v}"
installed_version() { "$1" version --short 2>/dev/null | sed 's/^v//'; }

if [ -x "$dest" ] && [ "$(installed_version "$dest")" = "$want" ]; then
  exit 0
fi

cache="$STATE_DIR/compose/$COMPOSE_VERSION/docker-compose"
if [ ! -x "$cache" ] || [ "$(installed_version "$cache")" != "$want" ]; then
  command -v go >/dev/null || die "Go is not installed (building Compose $COMPOSE_VERSION needs Go 1.24.9+)"
  log "building Docker Compose $COMPOSE_VERSION from the Go module proxy (a few minutes, once)"
  dir="$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  [ -d "$dir" ] || die "go mod download gave no directory for compose $COMPOSE_VERSION"
  work="$(mktemp -d "$STATE_DIR/compose-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  cp -r "$dir/." "$work/"
  chmod -R u+w "$work"
  mkdir -p "$(dirname "$cache")"
  # The version the binary reports (`docker compose version`).
  ldflags="-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" \
    -o "$cache.tmp" ./cmd)
  mv -f "$cache.tmp" "$cache"
  rm -rf "$work"
  trap - EXIT
fi
got="$(installed_version "$cache")"
[ "$got" = "$want" ] || die "the Compose build reports version '$got', expected $want"

as_root mkdir -p "$PLUGIN_DIR"
as_root install -m 0755 "$cache" "$dest"
log "Docker Compose $got installed at $dest"
