#!/usr/bin/env bash
# Writes tests/fixtures/upgrade-<TAG>/: the data of a WakeDock release, made
# by that release itself, for the upgrade test (tests/upgrade.rs). Run once
# per release by hand; CI never builds an old version (it costs minutes).
#
#   scripts/make-upgrade-fixture.sh [TAG]     (default v0.1.0)
#
# It checks TAG out into a temporary worktree, builds its `wakedock` and
# wake plugin (FIXTURE_TARGET_DIR, default /tmp/wakedock-fixture-target),
# starts it on SQLite with no Docker engine, and through its own API:
# signs the admin in, creates two users, installs the wake plugin, defines
# a service, and leaves a trail in the audit log. Then it stops it and
# keeps:
#   tables.json        the rows per table (blobs base64) and the release's
#                      migrations, loaded by the test into SQLite,
#                      PostgreSQL and MariaDB at that release's schema (the
#                      database file itself is not kept: *.db is ignored
#                      by git, and one form for every backend is enough)
#   plugins/<name>/<sha>.wasm   the installed component
#   expected.json      what the test checks after the upgrade
set -euo pipefail
source "$(dirname "$0")/lib.sh"
TAG="${1:-v0.1.0}"
OUT="$ROOT/tests/fixtures/upgrade-$TAG"
work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  git -C "$ROOT" worktree remove --force "$work/src" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
apt_install sqlite3 curl jq

log "checking out $TAG"
git -C "$ROOT" worktree add --detach "$work/src" "$TAG" >/dev/null
export CARGO_TARGET_DIR="${FIXTURE_TARGET_DIR:-/tmp/wakedock-fixture-target}"
log "building wakedock $TAG (target dir $CARGO_TARGET_DIR)"
(cd "$work/src" && cargo build -q -p wakedock --bin wakedock &&
  cargo build -q --target wasm32-wasip2 --release -p wakedock-plugin-wake)
bin="$CARGO_TARGET_DIR/debug/wakedock"
wasm="$CARGO_TARGET_DIR/wasm32-wasip2/release/wakedock_plugin_wake.wasm"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$work/data"
cat >"$work/wd.yaml" <<YAML
wakedock: { data_path: "$work/data", port: $port }
docker: { socket_path: "$work/no-docker.sock" }
plugins: []
YAML
admin_pw="fixture-admin-password"
WAKEDOCK_ADMIN_PASSWORD="$admin_pw" "$bin" --config "$work/wd.yaml" serve >"$work/host.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 200); do curl -sf "$base/health" -o /dev/null && break; [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" = 503 ] && break; sleep 0.2; done

api() { # METHOD PATH [JSON]
  curl -sS -f -X "$1" "$base$2" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' ${3:+--data "$3"}
}
token="$(curl -sS -f "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
  --data "{\"username\":\"admin\",\"password\":\"$admin_pw\"}" | jq -r .access_token)"
api POST /api/v1/users '{"username":"operator","password":"fixture-operator-password","role":"user"}' >/dev/null
api POST /api/v1/users '{"username":"watcher","password":"fixture-watcher-password","role":"viewer"}' >/dev/null
manifest="$(jq -Rs . <"$work/src/plugins/wake/plugin.toml")"
wasm_b64="$(base64 -w0 "$wasm")"
printf '{"manifest":%s,"wasm_base64":"%s","grant":"all"}' "$manifest" "$wasm_b64" >"$work/install.json"
curl -sS -f -X POST "$base/api/v1/plugins" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' --data-binary @"$work/install.json" >/dev/null
api POST /api/v1/services '{"name":"fixture-web","members":["fixture-web-app"],"idle_timeout":"15m","display_name":"Fixture web"}' >/dev/null
# A failed sign-in, for the audit trail.
curl -s "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
  --data '{"username":"watcher","password":"wrong-password"}' -o /dev/null || true
kill -TERM "$pid"; wait "$pid" || true; pid=""

log "writing $OUT"
rm -rf "$OUT"; mkdir -p "$OUT"
db="$work/data/wakedock.db"
sqlite3 "$db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
(cd "$work/data" && find plugins -name '*.wasm' -exec install -D -m 0644 {} "$OUT/{}" \;)
python3 - "$db" "$OUT" "$TAG" <<'PY'
import base64, json, sqlite3, sys
db, out, tag = sys.argv[1:4]
c = sqlite3.connect(db)
c.row_factory = sqlite3.Row
tables = {}
for t in ["users", "refresh_tokens", "settings", "plugins", "plugin_kv", "audit_log"]:
    rows = []
    for r in c.execute(f"SELECT * FROM {t} ORDER BY rowid"):
        rows.append({k: ({"base64": base64.b64encode(r[k]).decode()} if isinstance(r[k], bytes) else r[k]) for k in r.keys()})
    tables[t] = rows
migrations = [r[0] for r in c.execute("SELECT version FROM __diesel_schema_migrations ORDER BY version")]
json.dump({"release": tag, "migrations": migrations, "tables": tables}, open(f"{out}/tables.json", "w"), indent=1, sort_keys=True)
expected = {
    "release": tag,
    "logins": {"admin": "fixture-admin-password", "operator": "fixture-operator-password", "watcher": "fixture-watcher-password"},
    "plugins": [r["name"] for r in c.execute("SELECT name FROM plugins ORDER BY name")],
    "services": ["fixture-web"],
    "audit_entries": c.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0],
}
json.dump(expected, open(f"{out}/expected.json", "w"), indent=1, sort_keys=True)
PY
log "done: $(ls "$OUT")"
