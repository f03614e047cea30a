//! Data end to end: a backup taken through the API while clients write,
//! downloaded, restored into another backend and served again; retention
//! pruning the audit log under the same load.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use wakedock_tests::*;

/// Every audit entry, oldest first, read through the API.
async fn all_audit(c: &ApiClient) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let v = c
            .get_json(&format!("/api/v1/audit?per_page=500&page={page}"))
            .await;
        let items = v["items"].as_array().unwrap().clone();
        let n = items.len();
        out.extend(items);
        if n < 500 {
            break;
        }
    }
    out.reverse();
    out
}

/// While a client changes a user every few milliseconds (each change a
/// write and an audit entry), an admin takes a backup through the API and
/// downloads it. Restored into the next backend (SQLite → PostgreSQL →
/// MariaDB → SQLite), the database holds every audit entry up to the
/// snapshot point, each exactly as written, and none after a gap; the
/// restored host serves with the same users and passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_write_load_restores_a_whole_prefix_into_another_backend() {
    for (from, into) in [
        (Backend::Sqlite, Backend::Postgres),
        (Backend::Postgres, Backend::Mysql),
        (Backend::Mysql, Backend::Sqlite),
    ] {
        let host = TestHost::start(from).await;
        let admin = host.admin().await;
        let user = admin
            .create_user(&unique("loaded"), "a-long-enough-password", "viewer")
            .await;
        let id = user["id"].as_str().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (admin, stop) = (admin.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 3000 {
                    let role = if n % 2 == 0 { "user" } else { "viewer" };
                    let r = admin
                        .patch(&format!("/api/v1/users/{id}"), json!({ "role": role }))
                        .await;
                    assert_eq!(r.status(), StatusCode::OK);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                n
            })
        };
        // Some writes first, so the snapshot falls in the middle of them.
        eventually(Duration::from_secs(30), "writes to start", || async {
            let v = admin
                .get_json("/api/v1/audit?action=user.update&per_page=1")
                .await;
            (v["total"].as_i64().unwrap() >= 50).then_some(())
        })
        .await;
        let r = admin.post_empty("/api/v1/backups").await;
        assert_eq!(r.status(), StatusCode::CREATED, "{from:?}");
        let taken: Value = r.json().await.unwrap();
        let name = taken["path"].as_str().unwrap().to_string();
        // Writes go on a little after the snapshot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let writes = writer.await.unwrap();

        let listed = admin.get_json("/api/v1/backups").await;
        assert_eq!(listed["items"][0]["name"], name.as_str());
        assert_eq!(listed["items"][0]["size_bytes"], taken["size_bytes"]);
        assert_eq!(listed["last"]["result"], "success");
        let r = admin.get(&format!("/api/v1/backups/{name}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/gzip");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, taken["size_bytes"].as_u64().unwrap());
        let viewer = host.user_with_role("viewer").await;
        let r = viewer.get(&format!("/api/v1/backups/{name}")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let source_audit = all_audit(&admin).await;

        // Restore the download into an empty database of another backend.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(&name);
        std::fs::write(&file, &bytes).unwrap();
        let db = TestDatabase::new(into, dir.path()).unwrap();
        let restored = wakedock::backup::restore(
            &file,
            &wakedock::backup::Target {
                database_url: db.url.clone(),
                data_path: dir.path().join("data"),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{from:?} -> {into:?}: {e:#}"));
        let in_backup = restored.rows["audit_log"] as usize;
        let restored_host = TestHost::start_on(into, db, dir, |_| {}).await;
        let radmin = restored_host.admin().await;
        let restored_audit = all_audit(&radmin).await;
        // What the restored host wrote itself (its start, this login)
        // comes after the restored entries.
        let copied = &restored_audit[..in_backup];
        assert!(
            in_backup < source_audit.len(),
            "{from:?}: the snapshot fell inside the load ({in_backup} of {}, {writes} writes)",
            source_audit.len()
        );
        assert_eq!(
            copied,
            &source_audit[..in_backup],
            "{from:?} -> {into:?}: the restored entries are the source's first {in_backup}, unchanged"
        );
        let newest = copied.last().unwrap()["id"].as_i64().unwrap();
        let later: Vec<&Value> = restored_audit[in_backup..]
            .iter()
            .filter(|e| e["id"].as_i64().unwrap() <= newest)
            .collect();
        assert!(later.is_empty(), "{later:?}");
        // The user it changed is there, and signs in works for the admin
        // with the password from before.
        let r = radmin
            .get(&format!("/api/v1/users/{}", user["id"].as_str().unwrap()))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{from:?} -> {into:?}");
        restored_host.stop().await.unwrap();
        host.stop().await.unwrap();
    }
}

/// Scheduled backups: `backup.interval` takes them, `backup.keep` keeps
/// the newest, the UI lists them with time and size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest_and_show_in_the_ui() {
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.backup.keep = 2;
    })
    .await;
    let admin = host.admin().await;
    for _ in 0..4 {
        let r = admin.post_empty("/api/v1/backups").await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let list = admin.get_json("/api/v1/backups").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list["keep"], 2);
    assert!(list["interval_seconds"].is_null());
    let dir = host.data_path().join("backups");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 2);
    // The UI page, signed in with the session cookie.
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = http
        .post(host.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = http
        .get(host.url("/backups"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let newest = list["items"][0]["name"].as_str().unwrap();
    assert!(page.contains(newest), "{page}");
    assert!(page.contains("No scheduled backups"), "{page}");
    assert!(
        page.contains(" KiB") || page.contains(" B<"),
        "sizes shown: {page}"
    );
    host.stop().await.unwrap();

    // With an interval, the schedule takes the first one as soon as none
    // is recent (the directory is empty).
    let host = TestHost::start_with(Backend::Sqlite, |c| {
        c.backup.interval = Some(wakedock::config::HumanDuration(Duration::from_secs(3600)));
        c.backup.directory = None;
    })
    .await;
    let admin = host.admin().await;
    let list = eventually(Duration::from_secs(30), "a scheduled backup", || async {
        let l = admin.get_json("/api/v1/backups").await;
        (l["items"].as_array().unwrap().len() == 1).then_some(l)
    })
    .await;
    assert_eq!(list["interval_seconds"], 3600);
    assert_eq!(list["last"]["result"], "success");
    host.stop().await.unwrap();
}
