//! Per-plugin key-value storage with a byte quota.

use diesel::prelude::*;

use super::schema::plugin_kv as kv;
use super::{now_ms, DbConnection, DbError};

/// One stored value (and how a backup carries it: the value in base64).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = kv)]
#[serde(deny_unknown_fields)]
pub struct KvRow {
    pub plugin: String,
    pub key: String,
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
    pub size: i64,
    pub updated_at: i64,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

pub fn get(conn: &mut DbConnection, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, DbError> {
    Ok(kv::table
        .find((plugin, key))
        .select(kv::value)
        .first(conn)
        .optional()?)
}

/// Outcome of a quota-checked write.
#[derive(Debug, PartialEq, Eq)]
pub enum SetOutcome {
    Stored,
    OverQuota { used: i64, needed: i64, quota: i64 },
}

/// Writes `value`, unless the plugin's total with this write applied would
/// exceed `quota`; checked and written in one transaction.
pub fn set(
    conn: &mut DbConnection,
    plugin: &str,
    key: &str,
    value: &[u8],
    quota: i64,
) -> Result<SetOutcome, DbError> {
    let size = (key.len() + value.len()) as i64;
    conn.write_transaction(|conn| {
        let old: Option<i64> = kv::table
            .find((plugin, key))
            .select(kv::size)
            .first(conn)
            .optional()?;
        let used_now = used(conn, plugin)?;
        let after = used_now - old.unwrap_or(0) + size;
        if after > quota {
            return Ok(SetOutcome::OverQuota {
                used: used_now,
                needed: size,
                quota,
            });
        }
        let now = now_ms();
        if old.is_some() {
            diesel::update(kv::table.find((plugin, key)))
                .set((
                    kv::value.eq(value),
                    kv::size.eq(size),
                    kv::updated_at.eq(now),
                ))
                .execute(conn)?;
        } else {
            diesel::insert_into(kv::table)
                .values((
                    kv::plugin.eq(plugin),
                    kv::key.eq(key),
                    kv::value.eq(value),
                    kv::size.eq(size),
                    kv::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok(SetOutcome::Stored)
    })
}

/// Bytes used by a plugin: the sum of key and value lengths. (Summed here,
/// not in SQL: PostgreSQL's SUM(bigint) is NUMERIC, SQLite's an integer.)
pub fn used(conn: &mut DbConnection, plugin: &str) -> Result<i64, DbError> {
    Ok(used_bytes(conn, plugin)?)
}

fn used_bytes(conn: &mut DbConnection, plugin: &str) -> QueryResult<i64> {
    let sizes: Vec<i64> = kv::table
        .filter(kv::plugin.eq(plugin))
        .select(kv::size)
        .load(conn)?;
    Ok(sizes.iter().sum())
}

/// Outcome of a compare-and-swap.
#[derive(Debug, PartialEq, Eq)]
pub enum CasOutcome {
    Swapped,
    /// The stored value was not the expected one; nothing changed.
    Mismatch,
    OverQuota {
        quota: i64,
    },
}

/// Why a compare-and-swap transaction is rolled back.
enum CasAbort {
    Mismatch,
    OverQuota,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for CasAbort {
    fn from(e: diesel::result::Error) -> Self {
        CasAbort::Db(e)
    }
}

/// Stores `new` (`None` deletes) under `key` if the stored value is exactly
/// `expected` (`None`: absent). The first statement is the conditional
/// write itself (`UPDATE … WHERE value = expected`, `INSERT` that a
/// present key refuses, `DELETE … WHERE value = expected`), so the compare
/// and the write are one atomic step on both backends: on PostgreSQL a
/// concurrent writer waits for the row lock and then re-checks the
/// condition; on SQLite the write takes the database's write lock first.
/// The quota is checked after the write, in the same transaction.
pub fn compare_and_swap(
    conn: &mut DbConnection,
    plugin: &str,
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    quota: i64,
) -> Result<CasOutcome, DbError> {
    let r = conn.transaction::<_, CasAbort, _>(|conn| {
        let now = now_ms();
        let row = kv::table
            .filter(kv::plugin.eq(plugin))
            .filter(kv::key.eq(key));
        let changed = match (expected, new) {
            (None, None) => {
                let present: Option<String> = row.select(kv::key).first(conn).optional()?;
                return if present.is_none() {
                    Ok(CasOutcome::Swapped)
                } else {
                    Err(CasAbort::Mismatch)
                };
            }
            (Some(old), None) => diesel::delete(row.filter(kv::value.eq(old))).execute(conn)?,
            (Some(old), Some(value)) => diesel::update(row.filter(kv::value.eq(old)))
                .set((
                    kv::value.eq(value),
                    kv::size.eq((key.len() + value.len()) as i64),
                    kv::updated_at.eq(now),
                ))
                .execute(conn)?,
            (None, Some(value)) => match diesel::insert_into(kv::table)
                .values((
                    kv::plugin.eq(plugin),
                    kv::key.eq(key),
                    kv::value.eq(value),
                    kv::size.eq((key.len() + value.len()) as i64),
                    kv::updated_at.eq(now),
                ))
                .execute(conn)
            {
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => return Err(CasAbort::Mismatch),
                other => other?,
            },
        };
        if changed != 1 {
            return Err(CasAbort::Mismatch);
        }
        if new.is_some() && used_bytes(conn, plugin)? > quota {
            return Err(CasAbort::OverQuota);
        }
        Ok(CasOutcome::Swapped)
    });
    match r {
        Ok(o) => Ok(o),
        Err(CasAbort::Mismatch) => Ok(CasOutcome::Mismatch),
        Err(CasAbort::OverQuota) => Ok(CasOutcome::OverQuota { quota }),
        Err(CasAbort::Db(e)) => Err(e.into()),
    }
}

pub fn delete(conn: &mut DbConnection, plugin: &str, key: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(kv::table.find((plugin, key))).execute(conn)? == 1)
}

pub fn keys(conn: &mut DbConnection, plugin: &str, prefix: &str) -> Result<Vec<String>, DbError> {
    let mut keys: Vec<String> = kv::table
        .filter(kv::plugin.eq(plugin))
        .select(kv::key)
        .load(conn)?;
    // Prefix filtering in Rust: LIKE would need escaping of % and _ and
    // differs in case sensitivity between the backends.
    keys.retain(|k| k.starts_with(prefix));
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::plugins::{self, PluginRow};
    use crate::db::testing;

    fn row(name: &str) -> PluginRow {
        PluginRow {
            name: name.into(),
            version: "0.1.0".into(),
            api_version: "0.1.0".into(),
            manifest: String::new(),
            grant_toml: String::new(),
            config_json: "{}".into(),
            wasm_sha256: "00".into(),
            wasm_path: "/x.wasm".into(),
            enabled: true,
            source: "api".into(),
            installed_at: 0,
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn quota_and_cascade_on_every_backend() {
        for t in testing::all().await {
            let backend = t.db.backend();
            t.db.run(move |c| {
                plugins::upsert(c, &row("p1"))?;
                plugins::upsert(c, &row("p2"))?;
                assert_eq!(set(c, "p1", "a", b"12345", 20)?, SetOutcome::Stored);
                assert_eq!(used(c, "p1")?, 6);
                // Replacing a value counts only the new size.
                assert_eq!(set(c, "p1", "a", b"123456789", 20)?, SetOutcome::Stored);
                assert_eq!(used(c, "p1")?, 10);
                assert!(matches!(
                    set(c, "p1", "b", b"0123456789012", 20)?,
                    SetOutcome::OverQuota { used: 10, .. }
                ));
                assert_eq!(get(c, "p1", "b")?, None, "{backend}: nothing written");
                // Quotas are per plugin.
                assert_eq!(set(c, "p2", "b", b"0123456789012", 20)?, SetOutcome::Stored);
                set(c, "p1", "ab", b"x", 20)?;
                assert_eq!(keys(c, "p1", "a")?, vec!["a".to_string(), "ab".to_string()]);
                assert_eq!(get(c, "p1", "a")?.as_deref(), Some(&b"123456789"[..]));
                assert!(delete(c, "p1", "ab")?);
                // Compare-and-swap: absent → value, value → value, value → absent.
                use CasOutcome::*;
                assert_eq!(
                    compare_and_swap(c, "p1", "s", None, Some(b"v1"), 30)?,
                    Swapped
                );
                assert_eq!(
                    compare_and_swap(c, "p1", "s", None, Some(b"v9"), 30)?,
                    Mismatch
                );
                assert_eq!(
                    compare_and_swap(c, "p1", "s", Some(b"v0"), Some(b"v9"), 30)?,
                    Mismatch
                );
                assert_eq!(get(c, "p1", "s")?.as_deref(), Some(&b"v1"[..]), "{backend}");
                assert_eq!(
                    compare_and_swap(c, "p1", "s", Some(b"v1"), Some(b"v2"), 30)?,
                    Swapped
                );
                assert_eq!(
                    compare_and_swap(
                        c,
                        "p1",
                        "s",
                        Some(b"v2"),
                        Some(b"far-too-long-for-the-quota"),
                        30
                    )?,
                    OverQuota { quota: 30 }
                );
                assert_eq!(
                    get(c, "p1", "s")?.as_deref(),
                    Some(&b"v2"[..]),
                    "{backend}: rolled back"
                );
                assert_eq!(compare_and_swap(c, "p1", "s", None, None, 30)?, Mismatch);
                assert_eq!(
                    compare_and_swap(c, "p1", "s", Some(b"v1"), None, 30)?,
                    Mismatch
                );
                assert_eq!(
                    compare_and_swap(c, "p1", "s", Some(b"v2"), None, 30)?,
                    Swapped
                );
                assert_eq!(get(c, "p1", "s")?, None);
                assert_eq!(compare_and_swap(c, "p1", "s", None, None, 30)?, Swapped);
                // Uninstalling removes the storage.
                plugins::delete(c, "p1")?;
                assert_eq!(used(c, "p1")?, 0, "{backend}: cascade");
                assert_eq!(used(c, "p2")?, 14);
                Ok(())
            })
            .await
            .unwrap();
        }
    }

    /// Many writers racing from the same expected value: exactly one wins,
    /// on every backend (no lost update).
    #[tokio::test]
    async fn compare_and_swap_has_one_winner_per_race() {
        for t in testing::all().await {
            let backend = t.db.backend();
            t.db.run(|c| {
                plugins::upsert(c, &row("p"))?;
                set(c, "p", "k", b"0", 1 << 20)?;
                Ok(())
            })
            .await
            .unwrap();
            for round in 0..5u8 {
                let from = vec![b'0' + round];
                let racers = (0..8u8).map(|i| {
                    let db = t.db.clone();
                    let from = from.clone();
                    tokio::spawn(async move {
                        db.run(move |c| {
                            compare_and_swap(
                                c,
                                "p",
                                "k",
                                Some(&from),
                                Some(&[b'0' + round + 1, i]),
                                1 << 20,
                            )
                        })
                        .await
                    })
                });
                let outcomes: Vec<CasOutcome> = futures::future::join_all(racers)
                    .await
                    .into_iter()
                    .map(|r| r.unwrap().unwrap())
                    .collect();
                let wins = outcomes
                    .iter()
                    .filter(|o| **o == CasOutcome::Swapped)
                    .count();
                assert_eq!(wins, 1, "{backend} round {round}: {outcomes:?}");
                // Move on from the winner's value.
                let now = t.db.run(|c| get(c, "p", "k")).await.unwrap().unwrap();
                t.db.run(move |c| {
                    compare_and_swap(c, "p", "k", Some(&now), Some(&[b'0' + round + 1]), 1 << 20)
                })
                .await
                .unwrap();
            }
        }
    }
}
