//! Upgrades from the previous release, on every backend: the data that
//! release wrote (`tests/fixtures/upgrade-v0.1.0`, made by that release
//! itself with `scripts/make-upgrade-fixture.sh`) is put in place, and the
//! current host starts on it: migrations apply, users sign in with their
//! old passwords, the installed plugin runs, its service definitions are
//! there, the audit log is kept.
//!
//! Every backend gets that release's schema (this binary's migrations up
//! to the release's last one: migrations are forward-only and never
//! edited) filled with the rows the release wrote (`tables.json`).

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use reqwest::StatusCode;
use serde_json::Value;
use wakedock_tests::*;

const RELEASE: &str = "v0.1.0";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/upgrade-{RELEASE}"))
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e} (made by scripts/make-upgrade-fixture.sh)"));
    serde_json::from_str(&text).unwrap()
}

/// Columns that are booleans (SQLite stores them as 0/1).
const BOOLEANS: &[&str] = &["active", "enabled"];

/// One value as an SQL literal for `backend`.
fn literal(backend: Backend, column: &str, v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Number(n) if BOOLEANS.contains(&column) => if n.as_i64() == Some(0) {
            "FALSE"
        } else {
            "TRUE"
        }
        .into(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        // Standard quoting; MariaDB runs with NO_BACKSLASH_ESCAPES below.
        Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Object(o) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(o["base64"].as_str().unwrap())
                .unwrap();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            match backend {
                Backend::Postgres => format!("decode('{hex}', 'hex')"),
                _ => format!("X'{hex}'"),
            }
        }
        Value::Array(_) => panic!("no arrays in rows"),
    }
}

/// INSERTs for every fixture row, the plugins' components pointed at
/// `plugins_dir` (the data directory moved, as it does for a user who
/// moves hosts).
fn inserts(backend: Backend, tables: &Value, plugins_dir: &Path) -> String {
    let quote = |c: &str| match backend {
        Backend::Mysql => format!("`{c}`"),
        _ => format!("\"{c}\""),
    };
    let mut sql = String::new();
    if backend == Backend::Mysql {
        sql.push_str("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');\n");
    }
    for table in [
        "users",
        "refresh_tokens",
        "settings",
        "plugins",
        "plugin_kv",
        "audit_log",
    ] {
        for row in tables["tables"][table].as_array().unwrap() {
            let mut row = row.as_object().unwrap().clone();
            if table == "plugins" {
                row.insert("wasm_path".into(), wasm_path(plugins_dir, &row).into());
            }
            let cols: Vec<String> = row.keys().map(|c| quote(c)).collect();
            let vals: Vec<String> = row.iter().map(|(c, v)| literal(backend, c, v)).collect();
            sql.push_str(&format!(
                "INSERT INTO {table} ({}) VALUES ({});\n",
                cols.join(", "),
                vals.join(", ")
            ));
        }
    }
    if backend == Backend::Postgres {
        sql.push_str(
            "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), (SELECT MAX(id) FROM audit_log));\n",
        );
    }
    sql
}

fn wasm_path(plugins_dir: &Path, row: &serde_json::Map<String, Value>) -> String {
    plugins_dir
        .join(row["name"].as_str().unwrap())
        .join(format!("{}.wasm", row["wasm_sha256"].as_str().unwrap()))
        .display()
        .to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The release's data on `backend`, ready for the current host.
async fn previous_release(backend: Backend) -> (TestDatabase, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins_dir = data.join("plugins");
    copy_dir(&fixture().join("plugins"), &plugins_dir);
    let tables = read_json("tables.json");
    let db = TestDatabase::new(backend, &data).unwrap();
    let conn = wakedock::db::Db::connect(&db.url, Some(1)).await.unwrap();
    let last = tables["migrations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let applied = conn.migrate_up_to(Some(last.clone())).await.unwrap();
    assert_eq!(
        applied.len(),
        tables["migrations"].as_array().unwrap().len(),
        "{backend:?}: the release's migrations, up to {last}"
    );
    let sql = inserts(backend, &tables, &plugins_dir);
    conn.run(move |c| {
        c.batch_execute(&sql)?;
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{backend:?}: loading the fixture: {e}"));
    (db, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_release_upgrades_on_every_backend() {
    let expected = read_json("expected.json");
    for backend in BACKENDS {
        let (db, dir) = previous_release(backend).await;
        let before = wakedock::db::Db::connect(&db.url, Some(1)).await.unwrap();
        let old_version = before.schema_version().await.unwrap();
        drop(before);
        // The config declares this build's wake plugin, as `run.sh` and the
        // image do: the start replaces the release's copy, installed
        // through the API and older (its storage kept). Left running, that
        // copy would answer in the release's wire format, which the typed
        // contract of issue 9 refuses (502 "invalid type: string
        // \"Missing\"" for every service).
        let host = TestHost::start_on(backend, db, dir, |c| {
            c.plugins = vec![serde_json::from_value(serde_json::json!({
                "manifest": concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/wake/plugin.toml"),
                "wasm": wasm_dir().join("wakedock_plugin_wake.wasm"),
                "grant": "all",
            }))
            .unwrap()];
        })
        .await;
        // Migrations applied: the schema is the current one.
        let now = wakedock::db::Db::connect(&host.config.database_url(), Some(1))
            .await
            .unwrap();
        assert!(
            now.schema_version().await.unwrap() > old_version,
            "{backend:?}"
        );
        assert_eq!(
            now.schema_version().await.unwrap(),
            *now.known_migrations().last().unwrap()
        );
        // Everyone signs in with their old password.
        let logins = expected["logins"].as_object().unwrap();
        for (user, pw) in logins {
            host.login(user, pw.as_str().unwrap()).await;
        }
        let admin = host.login("admin", logins["admin"].as_str().unwrap()).await;
        let users = admin.get_json("/api/v1/users").await;
        assert_eq!(users.as_array().unwrap().len(), logins.len(), "{backend:?}");
        // The plugin is installed, verified and running.
        let plugins = admin.get_json("/api/v1/plugins").await;
        for name in expected["plugins"].as_array().unwrap() {
            let p = plugins
                .as_array()
                .unwrap()
                .iter()
                .find(|p| &p["name"] == name)
                .unwrap_or_else(|| panic!("{backend:?}: plugin {name} missing: {plugins}"));
            assert!(p["load_error"].is_null(), "{backend:?}: {p}");
            assert_eq!(
                p["status"]["health"]["state"], "enabled",
                "{backend:?}: {p}"
            );
        }
        // The release's wake plugin (installed through its API) was
        // replaced by this build's, newer, at the start, and the
        // replacement is in the audit log.
        let old = &read_json("tables.json")["tables"]["plugins"][0];
        let wake = admin.get_json("/api/v1/plugins/wake").await;
        assert_eq!(wake["source"], "config", "{backend:?}: {wake}");
        assert_ne!(wake["sha256"], old["wasm_sha256"], "{backend:?}: {wake}");
        assert_ne!(wake["api_version"], old["api_version"], "{backend:?}");
        let upgrades = admin.get_json("/api/v1/audit?action=plugin.upgrade").await;
        assert_eq!(upgrades["total"], 1, "{backend:?}: {upgrades}");
        let entry = &upgrades["items"][0];
        assert_eq!(entry["actor"], "config", "{backend:?}: {entry}");
        assert_eq!(entry["target"], "wake", "{backend:?}: {entry}");
        assert_eq!(entry["result"], "success", "{backend:?}: {entry}");
        let detail = entry["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!(
                "plugin API {}",
                old["api_version"].as_str().unwrap()
            )) && detail.contains("installed through the api"),
            "{backend:?}: {detail}"
        );
        // The service defined through the API lives in the plugin's
        // storage: still there.
        for name in expected["services"].as_array().unwrap() {
            let r = admin
                .get(&format!("/api/v1/services/{}", name.as_str().unwrap()))
                .await;
            let status = r.status();
            let body = r.text().await.unwrap();
            assert_eq!(
                status,
                StatusCode::OK,
                "{backend:?}: service {name}: {body}"
            );
        }
        // The audit log kept every old entry (and the new sign-ins).
        let audit = admin.get_json("/api/v1/audit?per_page=1").await;
        assert!(
            audit["total"].as_i64().unwrap() > expected["audit_entries"].as_i64().unwrap(),
            "{backend:?}: {audit}"
        );
        host.stop().await.unwrap();
    }
}
