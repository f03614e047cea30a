use super::*;
use crate::db::testing::{self, TestDb};
use crate::db::{audit, plugin_kv, plugins, settings, tokens, users};

const WASM: &[u8] = b"\0asm-not-really-a-component";

/// Fills `t` with a bit of everything, the plugin's component in `data`.
async fn fill(t: &TestDb, data: &Path) {
    let sha = wakedock_plugin_runtime::sha256_hex(WASM);
    let wasm = crate::plugins::wasm_path(&data.join("plugins"), "wake", &sha);
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    std::fs::write(&wasm, WASM).unwrap();
    std::fs::write(data.join(crate::secrets::JWT_SECRET_FILE), "s".repeat(64)).unwrap();
    let wasm_path = wasm.display().to_string();
    t.db.run(move |c| {
        let admin = users::insert(c, "admin", "$argon2id$v=19$hash", users::Role::Admin)?;
        users::insert(c, "Viewer.Ünïcode", "h2", users::Role::Viewer)?;
        tokens::insert(c, &admin.id, "tokenhash", None, 60_000)?;
        settings::set(c, "k'ey\\", "välue \"quoted\"")?;
        plugins::upsert(
            c,
            &plugins::PluginRow {
                name: "wake".into(),
                version: "0.1.0".into(),
                api_version: "0.1.1".into(),
                manifest: "name = \"wake\"".into(),
                grant_toml: "[capabilities]".into(),
                config_json: "{\"services\":[]}".into(),
                wasm_sha256: sha,
                wasm_path,
                enabled: true,
                source: "config".into(),
                installed_at: 1,
                updated_at: 2,
            },
        )?;
        plugin_kv::set(c, "wake", "service/web", &[0, 159, 146, 150, 255], 1 << 20)?;
        plugin_kv::set(c, "wake", "history/web", b"[1,2,3]", 1 << 20)?;
        for i in 0..2500 {
            let mut e = audit::NewAuditEntry::new("auth.login", "success");
            e.actor = Some("admin".into());
            e.detail = (i % 7 == 0).then(|| format!("line\nbreak {i} \u{1F600}"));
            audit::insert(c, &e)?;
        }
        Ok(())
    })
    .await
    .unwrap();
}

/// Everything restorable, as comparable text (ids, values; not the
/// components' paths, which follow the data directory).
async fn contents(db: &Db) -> Vec<String> {
    use crate::db::schema::{
        audit_log, plugin_kv as kv, plugins as p, refresh_tokens, settings as st, users as u,
    };
    db.run(|c| {
        let mut out = Vec::new();
        for r in u::table.order(u::id).select(UserRow::as_select()).load(c)? {
            out.push(format!("{r:?}"));
        }
        for r in refresh_tokens::table
            .order(refresh_tokens::id)
            .select(RefreshTokenRow::as_select())
            .load(c)?
        {
            out.push(format!("{r:?}"));
        }
        for r in st::table
            .order(st::key)
            .select(SettingRow::as_select())
            .load(c)?
        {
            out.push(format!("{r:?}"));
        }
        for mut r in p::table
            .order(p::name)
            .select(PluginRow::as_select())
            .load(c)?
        {
            r.wasm_path.clear();
            out.push(format!("{r:?}"));
        }
        for r in kv::table
            .order((kv::plugin, kv::key))
            .select(KvRow::as_select())
            .load(c)?
        {
            out.push(format!("{r:?}"));
        }
        for r in audit_log::table
            .order(audit_log::id)
            .select(AuditEntry::as_select())
            .load(c)?
        {
            out.push(format!("{r:?}"));
        }
        Ok(out)
    })
    .await
    .unwrap()
}

/// A backup from each backend restores into each backend with the same
/// content, files and ids, and the restored database takes new writes.
#[tokio::test]
async fn backup_restores_into_every_backend() {
    for from in testing::BACKENDS {
        let source = testing::migrated(from).await;
        let src_data = tempfile::tempdir().unwrap();
        fill(&source, src_data.path()).await;
        let out = src_data.path().join("b.jsonl.gz");
        let sources = Sources {
            data_path: src_data.path().to_path_buf(),
            jwt_secret_in_config: false,
        };
        let summary = create(&source.db, &sources, &out).await.unwrap();
        assert_eq!(summary.rows["audit_log"], 2500, "{from}");
        assert_eq!(summary.rows["users"], 2);
        assert_eq!(summary.files, 2, "component and JWT secret");
        let expected = contents(&source.db).await;
        for into in testing::BACKENDS {
            let target = testing::empty(into).await;
            let data = tempfile::tempdir().unwrap();
            let restored = restore(
                &out,
                &Target {
                    database_url: target.url.clone(),
                    data_path: data.path().to_path_buf(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{from} -> {into}: {e:#}"));
            assert_eq!(restored.rows, summary.rows);
            assert_eq!(contents(&target.db).await, expected, "{from} -> {into}");
            // The component is in the new data directory, where the row
            // now points, and verifies.
            let row = target
                .db
                .run(|c| plugins::get(c, "wake"))
                .await
                .unwrap()
                .unwrap();
            assert!(row
                .wasm_path
                .starts_with(&data.path().display().to_string()));
            wakedock_plugin_runtime::read_verified(Path::new(&row.wasm_path), &row.wasm_sha256)
                .unwrap();
            assert_eq!(
                std::fs::read(data.path().join("jwt_secret")).unwrap(),
                "s".repeat(64).as_bytes()
            );
            // New audit ids continue after the restored ones.
            let id = target
                .db
                .run(|c| {
                    audit::insert(c, &audit::NewAuditEntry::new("x.y", "success"))?;
                    let (rows, _) = audit::query(c, &audit::AuditQuery::default())?;
                    Ok(rows[0].id)
                })
                .await
                .unwrap();
            assert!(id > 2500, "{from} -> {into}: new id {id}");
            // Restoring again into the now full target is refused.
            let data2 = tempfile::tempdir().unwrap();
            let again = restore(
                &out,
                &Target {
                    database_url: target.url.clone(),
                    data_path: data2.path().to_path_buf(),
                },
            )
            .await
            .unwrap_err();
            assert!(format!("{again:#}").contains("not empty"), "{again:#}");
        }
    }
}

/// A damaged, truncated or future file is refused before anything is
/// written: not even the SQLite database file is created.
#[tokio::test]
async fn bad_files_write_nothing() {
    let source = testing::sqlite().await;
    let src = tempfile::tempdir().unwrap();
    fill(&source, src.path()).await;
    let good = src.path().join("good.jsonl.gz");
    let sources = Sources {
        data_path: src.path().to_path_buf(),
        jwt_secret_in_config: false,
    };
    create(&source.db, &sources, &good).await.unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, b).unwrap();
        e.finish().unwrap()
    };
    let text = String::from_utf8(plain.clone()).unwrap();
    let future_schema = text.replacen(
        &format!(
            "\"schema_version\":\"{}\"",
            source.db.schema_version().await.unwrap()
        ),
        "\"schema_version\":\"99991231000000\"",
        1,
    );
    // The header changed, so its checksum must be redone for the schema
    // check itself to be reached.
    let rehash = |t: &str| {
        let mut lines: Vec<&str> = t.lines().collect();
        let end = lines.pop().unwrap();
        let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let mut trailer: serde_json::Value = serde_json::from_str(end).unwrap();
        trailer["sha256"] =
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())).into();
        format!("{body}{trailer}\n")
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", bytes[..bytes.len() * 2 / 3].to_vec(), ""),
        ("empty", Vec::new(), ""),
        (
            "altered",
            gz(text.replacen("auth.login", "auth.logon", 1).as_bytes()),
            "checksum",
        ),
        (
            "future format",
            gz(
                rehash(&text.replacen("\"format_version\":1", "\"format_version\":7", 1))
                    .as_bytes(),
            ),
            "format version 7",
        ),
        (
            "future schema",
            gz(rehash(&future_schema).as_bytes()),
            "newer than this WakeDock",
        ),
        (
            "unknown table",
            gz(
                rehash(&text.replacen("\"table\":\"settings\"", "\"table\":\"secrets\"", 1))
                    .as_bytes(),
            ),
            "unknown table",
        ),
    ];
    for (what, content, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.jsonl.gz");
        std::fs::write(&file, &content).unwrap();
        let data = dir.path().join("data");
        let db_file = data.join("wakedock.db");
        let err = restore(
            &file,
            &Target {
                database_url: format!("sqlite://{}", db_file.display()),
                data_path: data.clone(),
            },
        )
        .await
        .expect_err(what);
        let msg = format!("{err:#}");
        assert!(msg.contains(says), "{what}: {msg}");
        if what != "future schema" {
            // Refused before the target is touched at all.
            assert!(!data.exists(), "{what}: {msg}");
        } else {
            // Refused before any migration or row.
            let t = Db::connect(&format!("sqlite://{}", db_file.display()), Some(1))
                .await
                .unwrap();
            assert_eq!(t.schema_version().await.unwrap_or_default(), "", "{what}");
            assert!(!data.join("jwt_secret").exists());
        }
    }
}

/// Rows written while a backup runs are either wholly in it (before the
/// snapshot) or not at all: the snapshot is one point in time, on every
/// backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_is_one_point_in_time_under_writes() {
    for backend in testing::BACKENDS {
        let t = testing::migrated(backend).await;
        let dir = tempfile::tempdir().unwrap();
        // Enough rows that the backup takes a while.
        t.db.run(|c| {
            c.write_transaction(|c| {
                for _ in 0..5000 {
                    audit::insert(c, &audit::NewAuditEntry::new("seed", "success"))?;
                }
                Ok(())
            })
        })
        .await
        .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, stop) = (t.db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                    // Two rows per transaction: a backup holding one but
                    // not the other would be a torn write.
                    db.run(|c| {
                        c.write_transaction(|c| {
                            audit::insert(c, &audit::NewAuditEntry::new("pair.first", "success"))?;
                            audit::insert(c, &audit::NewAuditEntry::new("pair.second", "success"))
                        })
                    })
                    .await
                    .unwrap();
                    n += 1;
                }
                n
            })
        };
        // Let writes start, then back up in the middle of them.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let out = dir.path().join("b.jsonl.gz");
        let sources = Sources {
            data_path: dir.path().to_path_buf(),
            jwt_secret_in_config: false,
        };
        create(&t.db, &sources, &out).await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let pairs = writer.await.unwrap();
        assert!(pairs > 0, "{backend}: the writer ran");
        let mut actions = Vec::new();
        let mut ids = Vec::new();
        let f = std::fs::File::open(&out).unwrap();
        format::read(f, |r| {
            if let Record::Row { table, row } = r {
                if table == "audit_log" {
                    actions.push(row["action"].as_str().unwrap().to_string());
                    ids.push(row["id"].as_i64().unwrap());
                }
            }
            Ok(())
        })
        .unwrap();
        let first = actions.iter().filter(|a| *a == "pair.first").count();
        let second = actions.iter().filter(|a| *a == "pair.second").count();
        assert_eq!(first, second, "{backend}: a pair was torn by the snapshot");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{backend}: ids in order"
        );
        assert_eq!(ids.len(), 5000 + 2 * first, "{backend}");
        // Every id up to the newest in the backup is present (nothing
        // committed before the snapshot point is missing).
        let newest = *ids.last().unwrap();
        let all_before: i64 =
            t.db.run(move |c| {
                use crate::db::schema::audit_log as al;
                Ok(al::table.filter(al::id.le(newest)).count().get_result(c)?)
            })
            .await
            .unwrap();
        assert_eq!(all_before as usize, ids.len(), "{backend}");
    }
}
