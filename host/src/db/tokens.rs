//! Refresh tokens: stored as SHA-256 hashes, rotated on every use, revocable,
//! grouped in families so that a stolen token replayed after rotation
//! revokes the whole family.

use diesel::prelude::*;

use super::schema::refresh_tokens as rt;
use super::{now_ms, DbConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = rt)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenRow {
    pub id: String,
    pub user_id: String,
    pub token_hash: String,
    pub family_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub replaced_by: Option<String>,
}

/// Stores a new token; `family` continues a rotation chain or starts one.
pub fn insert(
    conn: &mut DbConnection,
    user_id: &str,
    token_hash: &str,
    family: Option<&str>,
    ttl_ms: i64,
) -> Result<RefreshTokenRow, DbError> {
    let now = now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let row = RefreshTokenRow {
        family_id: family.map(str::to_string).unwrap_or_else(|| id.clone()),
        id,
        user_id: user_id.to_string(),
        token_hash: token_hash.to_string(),
        created_at: now,
        expires_at: now + ttl_ms,
        revoked_at: None,
        replaced_by: None,
    };
    diesel::insert_into(rt::table).values(&row).execute(conn)?;
    Ok(row)
}

pub fn by_hash(conn: &mut DbConnection, hash: &str) -> Result<Option<RefreshTokenRow>, DbError> {
    Ok(rt::table
        .filter(rt::token_hash.eq(hash))
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// Marks a token used, pointing at its successor. Returns false when it was
/// already revoked (a concurrent refresh won the race).
pub fn mark_rotated(conn: &mut DbConnection, id: &str, successor: &str) -> Result<bool, DbError> {
    let n = diesel::update(rt::table.find(id).filter(rt::revoked_at.is_null()))
        .set((rt::revoked_at.eq(now_ms()), rt::replaced_by.eq(successor)))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn revoke(conn: &mut DbConnection, id: &str) -> Result<(), DbError> {
    diesel::update(rt::table.find(id).filter(rt::revoked_at.is_null()))
        .set(rt::revoked_at.eq(now_ms()))
        .execute(conn)?;
    Ok(())
}

pub fn revoke_family(conn: &mut DbConnection, family: &str) -> Result<usize, DbError> {
    Ok(diesel::update(
        rt::table
            .filter(rt::family_id.eq(family))
            .filter(rt::revoked_at.is_null()),
    )
    .set(rt::revoked_at.eq(now_ms()))
    .execute(conn)?)
}

/// Revokes every token of a user (password change, deactivation).
pub fn revoke_user(conn: &mut DbConnection, user_id: &str) -> Result<usize, DbError> {
    Ok(diesel::update(
        rt::table
            .filter(rt::user_id.eq(user_id))
            .filter(rt::revoked_at.is_null()),
    )
    .set(rt::revoked_at.eq(now_ms()))
    .execute(conn)?)
}

/// Deletes tokens that expired more than a day ago.
pub fn purge_expired(conn: &mut DbConnection) -> Result<usize, DbError> {
    let cutoff = now_ms() - 24 * 3600 * 1000;
    Ok(diesel::delete(rt::table.filter(rt::expires_at.lt(cutoff))).execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{testing, users};

    #[tokio::test]
    async fn rotation_and_family_revocation_on_every_backend() {
        for t in testing::all().await {
            let backend = t.db.backend();
            t.db.run(move |c| {
                let u = users::insert(c, "carol", "h", users::Role::User)?;
                let first = insert(c, &u.id, "hash1", None, 60_000)?;
                assert_eq!(first.family_id, first.id);
                let second = insert(c, &u.id, "hash2", Some(&first.family_id), 60_000)?;
                assert!(mark_rotated(c, &first.id, &second.id)?);
                // The same token cannot be rotated twice.
                assert!(!mark_rotated(c, &first.id, &second.id)?);
                let again = by_hash(c, "hash1")?.unwrap();
                assert!(again.revoked_at.is_some());
                assert_eq!(again.replaced_by.as_deref(), Some(second.id.as_str()));
                assert_eq!(revoke_family(c, &first.family_id)?, 1, "{backend}");
                assert!(by_hash(c, "hash2")?.unwrap().revoked_at.is_some());
                // Deleting the user deletes the tokens (foreign keys are on).
                users::delete(c, &u.id)?;
                assert!(by_hash(c, "hash2")?.is_none(), "{backend}: cascade");
                Ok(())
            })
            .await
            .unwrap();
        }
    }
}
