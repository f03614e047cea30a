# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# State of the services the scripts start (sockets, logs, data dirs).
STATE_DIR="${WD_STATE_DIR:-/tmp/wakedock-dev}"
export STATE_DIR
mkdir -p "$STATE_DIR"

# Bold only on a terminal (and not with NO_COLOR): a log file or CI output
# gets plain text.
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
  log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
  log() { printf '==> %s\n' "$*" >&2; }
fi
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Cargo's target directory as an absolute path: $CARGO_TARGET_DIR (a relative
# one is relative to the repository, where the scripts run cargo), else
# <repository>/target.
cargo_target_dir() {
  local dir="${CARGO_TARGET_DIR:-$ROOT/target}"
  case "$dir" in
    /*) printf '%s\n' "$dir" ;;
    *) printf '%s\n' "$ROOT/$dir" ;;
  esac
}

# Installs Debian packages that are missing (apt-get update only when needed).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Adds the Rust targets and components named (rustup), unless installed.
rust_targets() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
  local have
  have="$(rustup target list --installed 2>/dev/null || true)"
  for t in "$@"; do
    grep -qx "$t" <<<"$have" || { log "adding Rust target $t"; rustup target add "$t" >/dev/null; }
  done
}
rust_components() {
  local have
  have="$(rustup component list --installed 2>/dev/null || true)"
  for c in "$@"; do
    grep -q "^$c" <<<"$have" || { log "adding Rust component $c"; rustup component add "$c" >/dev/null; }
  done
}

# What building and running WakeDock needs: system libraries, the Docker
# engine, and the wasm target its plugins are built for.
install_run_deps() {
  # libmariadb-dev(-compat): libmysqlclient for the MySQL/MariaDB backend.
  apt_install ca-certificates pkg-config libsqlite3-dev libpq-dev libmariadb-dev libmariadb-dev-compat docker.io
  rust_targets wasm32-wasip2
}

# What the test suite needs on top: headless Chromium and chromedriver
# (tests/ui.rs), fonts for its screenshots, PostgreSQL and MariaDB (every DB
# test runs on them too), the musl target for the static test images, rustfmt
# and clippy, and Debian's image registry (tests/stacks.rs starts one per test
# on a free loopback port, so stack updates pull for real; its own service
# stays off).
install_test_deps() {
  install_run_deps
  apt_install chromium chromium-driver fonts-dejavu-core postgresql mariadb-server mariadb-client docker-registry
  # The SMTP sink of the alerts e-mail tests (tests/smtp_sink.py) and the
  # throwaway certificates it serves.
  apt_install python3-aiosmtpd openssl
  rust_targets x86_64-unknown-linux-musl
  rust_components rustfmt clippy
}

# Starts the Docker engine unless one answers already.
ensure_docker() {
  apt_install docker.io
  if docker info >/dev/null 2>&1; then return 0; fi
  log "starting the Docker engine"
  # containerd and dockerd run in the background; their logs stay in STATE_DIR.
  nohup dockerd --host=unix:///var/run/docker.sock >"$STATE_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  tail -20 "$STATE_DIR/dockerd.log" >&2
  die "the Docker engine did not come up (log: $STATE_DIR/dockerd.log)"
}

# A private PostgreSQL cluster on 127.0.0.1:$PG_PORT for tests; exports
# WAKEDOCK_TEST_PG_URL.
PG_PORT="${WD_TEST_PG_PORT:-55432}"
ensure_postgres() {
  apt_install postgresql libpq-dev
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  local data="$STATE_DIR/pg"
  export WAKEDOCK_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then return 0; fi
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    install -d -o postgres -g postgres "$data"
    runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
  fi
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$data -c fsync=off -c max_connections=200" \
    start >/dev/null
}

# A private MariaDB server on 127.0.0.1:$MYSQL_PORT for tests (its own
# datadir under STATE_DIR, a real user with a password: no
# --skip-grant-tables); exports WAKEDOCK_TEST_MYSQL_URL. The user may
# create and drop the databases named wd_test* that tests make.
MYSQL_PORT="${WD_TEST_MYSQL_PORT:-53306}"
MYSQL_TEST_USER="wakedock_test"
MYSQL_TEST_PASSWORD="wakedock-test-password"
ensure_mysql() {
  apt_install mariadb-server mariadb-client libmariadb-dev libmariadb-dev-compat
  local data="$STATE_DIR/mysql"
  local sock="$data/mysqld.sock"
  export WAKEDOCK_TEST_MYSQL_URL="mysql://$MYSQL_TEST_USER:$MYSQL_TEST_PASSWORD@127.0.0.1:$MYSQL_PORT/wd_test"
  if mariadb-admin --protocol=tcp -h 127.0.0.1 -P "$MYSQL_PORT" -u "$MYSQL_TEST_USER" \
      -p"$MYSQL_TEST_PASSWORD" ping >/dev/null 2>&1; then
    return 0
  fi
  log "starting MariaDB on 127.0.0.1:$MYSQL_PORT"
  if [ ! -d "$data/db/mysql" ]; then
    rm -rf "$data"
    install -d -o mysql -g mysql "$data" "$data/db"
    mariadb-install-db --user=mysql --datadir="$data/db" --auth-root-authentication-method=socket \
      --skip-test-db >"$data/install.log" 2>&1 || { cat "$data/install.log" >&2; die "mariadb-install-db failed"; }
  fi
  # Durability settings stay at their defaults except the binary log
  # (not needed) so a kill -9 test sees the real crash recovery.
  nohup /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$data/db" \
    --bind-address=127.0.0.1 --skip-name-resolve --port="$MYSQL_PORT" --socket="$sock" \
    --pid-file="$data/mysqld.pid" --log-error="$data/server.log" --skip-log-bin \
    --max-connections=300 --innodb-buffer-pool-size=128M \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_bin >/dev/null 2>&1 &
  for _ in $(seq 1 120); do
    mariadb-admin --socket="$sock" -u root ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb-admin --socket="$sock" -u root ping >/dev/null 2>&1 || {
    tail -20 "$data/server.log" >&2; die "MariaDB did not come up (log: $data/server.log)"; }
  mariadb --socket="$sock" -u root <<SQL
CREATE USER IF NOT EXISTS '$MYSQL_TEST_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_TEST_PASSWORD';
CREATE USER IF NOT EXISTS '$MYSQL_TEST_USER'@'localhost' IDENTIFIED BY '$MYSQL_TEST_PASSWORD';
GRANT ALL PRIVILEGES ON \`wd\\_test%\`.* TO '$MYSQL_TEST_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`wd\\_test%\`.* TO '$MYSQL_TEST_USER'@'localhost';
CREATE DATABASE IF NOT EXISTS wd_test;
FLUSH PRIVILEGES;
SQL
}
