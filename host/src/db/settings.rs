//! Host-wide settings as a small key-value table.

use diesel::prelude::*;

use super::schema::settings as st;
use super::{now_ms, DbConnection, DbError};

/// One setting as stored (and as a backup carries it).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = st)]
#[serde(deny_unknown_fields)]
pub struct SettingRow {
    pub key: String,
    pub value: String,
    pub updated_at: i64,
}

pub fn get(conn: &mut DbConnection, key: &str) -> Result<Option<String>, DbError> {
    Ok(st::table
        .find(key)
        .select(st::value)
        .first(conn)
        .optional()?)
}

/// Inserts or replaces. Written as update-then-insert in a transaction
/// because upsert syntax differs between the two backends.
pub fn set(conn: &mut DbConnection, key: &str, value: &str) -> Result<(), DbError> {
    let now = now_ms();
    conn.write_transaction(|conn| {
        let n = diesel::update(st::table.find(key))
            .set((st::value.eq(value), st::updated_at.eq(now)))
            .execute(conn)?;
        if n == 0 {
            diesel::insert_into(st::table)
                .values((st::key.eq(key), st::value.eq(value), st::updated_at.eq(now)))
                .execute(conn)?;
        }
        Ok(())
    })
}

pub fn delete(conn: &mut DbConnection, key: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(st::table.find(key)).execute(conn)? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;

    #[tokio::test]
    async fn set_get_replace_delete_on_every_backend() {
        for t in testing::all().await {
            let backend = t.db.backend();
            t.db.run(move |c| {
                assert_eq!(get(c, "k")?, None);
                set(c, "k", "v1")?;
                set(c, "k", "v2")?;
                assert_eq!(get(c, "k")?.as_deref(), Some("v2"), "{backend}");
                assert!(delete(c, "k")?);
                assert!(!delete(c, "k")?);
                Ok(())
            })
            .await
            .unwrap();
        }
    }
}
