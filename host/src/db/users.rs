//! Users and their roles.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::users;
use super::{now_ms, DbConnection, DbError};

/// What a user may do. Ordered: each role includes the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only.
    Viewer,
    /// Operate containers: start, stop, restart, read logs.
    User,
    /// Everything, including users and removal.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected admin, user or viewer"
            )),
        }
    }
}

/// A user as stored; also the user record of a backup.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = users)]
#[serde(deny_unknown_fields)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Carried in access tokens; bumped to invalidate every earlier one.
    /// (Absent in backups of schemas before it: 0.)
    #[serde(default)]
    pub token_version: i64,
}

/// A user as the rest of the host sees it (never with the hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub active: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserRow {
    pub fn to_user(&self) -> Result<User, DbError> {
        Ok(User {
            id: self.id.clone(),
            username: self.username.clone(),
            role: self
                .role
                .parse()
                .map_err(|e: String| DbError::Other(anyhow::anyhow!(e)))?,
            active: self.active,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub fn count(conn: &mut DbConnection) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn)?)
}

pub fn insert(
    conn: &mut DbConnection,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, DbError> {
    let now = now_ms();
    let row = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        password_hash: password_hash.to_string(),
        role: role.as_str().to_string(),
        active: true,
        created_at: now,
        updated_at: now,
        token_version: 0,
    };
    diesel::insert_into(users::table)
        .values(&row)
        .execute(conn)?;
    row.to_user()
}

pub fn by_username(conn: &mut DbConnection, username: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .filter(users::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn by_id(conn: &mut DbConnection, id: &str) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<User>, DbError> {
    users::table
        .order(users::username.asc())
        .select(UserRow::as_select())
        .load(conn)?
        .iter()
        .map(UserRow::to_user)
        .collect()
}

/// Changes to apply to a user; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub password_hash: Option<String>,
    pub active: Option<bool>,
}

impl UserChanges {
    /// Whether applying this to an active admin removes an admin.
    fn demotes(&self) -> bool {
        self.role.is_some_and(|r| r != Role::Admin) || self.active == Some(false)
    }

    /// A new password or a deactivation ends every session of the user.
    pub fn signs_out(&self) -> bool {
        self.password_hash.is_some() || self.active == Some(false)
    }
}

/// Applies `ch` to user `id`. A new password also bumps the token version,
/// so access tokens issued before it stop working at once.
pub fn update(conn: &mut DbConnection, id: &str, ch: &UserChanges) -> Result<bool, DbError> {
    let now = now_ms();
    conn.write_transaction(|conn| {
        let target = users::table.find(id);
        let mut n = diesel::update(target)
            .set(users::updated_at.eq(now))
            .execute(conn)?;
        if let Some(role) = ch.role {
            n = diesel::update(target)
                .set(users::role.eq(role.as_str()))
                .execute(conn)?;
        }
        if let Some(hash) = &ch.password_hash {
            n = diesel::update(target)
                .set((
                    users::password_hash.eq(hash),
                    users::token_version.eq(users::token_version + 1),
                ))
                .execute(conn)?;
        }
        if let Some(active) = ch.active {
            n = diesel::update(target)
                .set(users::active.eq(active))
                .execute(conn)?;
        }
        Ok(n == 1)
    })
}

/// Invalidates every access token of the user issued so far ("sign out
/// everywhere"). Returns false when there is no such user.
pub fn bump_token_version(conn: &mut DbConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::update(users::table.find(id))
        .set((
            users::token_version.eq(users::token_version + 1),
            users::updated_at.eq(now_ms()),
        ))
        .execute(conn)?
        == 1)
}

/// Why a guarded change was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    /// It would leave no active admin.
    LastAdmin,
}

/// The ids of every active admin, locked until the end of the transaction
/// on PostgreSQL and MySQL (`SELECT ... FOR UPDATE`, in id order so two callers lock
/// in the same order). On SQLite the caller's immediate transaction
/// already holds the only write lock. Either way, two changes that each
/// remove a different admin are serialised: the second sees the first.
fn lock_active_admins(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let admins = users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::active.eq(true))
        .order(users::id.asc())
        .select(users::id);
    Ok(match conn {
        DbConnection::Postgres(pg) => admins.for_update().load(pg)?,
        DbConnection::Mysql(my) => admins.for_update().load(my)?,
        DbConnection::Sqlite(sqlite) => admins.load(sqlite)?,
    })
}

/// Whether removing admin `id` would leave no active admin (within a write
/// transaction, after [`lock_active_admins`]).
fn is_last_admin(conn: &mut DbConnection, row: &UserRow) -> Result<bool, DbError> {
    if row.role != Role::Admin.as_str() || !row.active {
        return Ok(false);
    }
    Ok(lock_active_admins(conn)?.iter().all(|a| a == &row.id))
}

/// Applies `ch` to user `id` unless that would leave no active admin; the
/// check and the write are one atomic step on both backends. A change that
/// signs the user out also revokes their refresh tokens.
pub fn update_guarded(
    conn: &mut DbConnection,
    id: &str,
    ch: &UserChanges,
) -> Result<Result<UserRow, Refusal>, DbError> {
    conn.write_transaction(|c| {
        if ch.demotes() {
            // Lock first, read second: the row read below is then current.
            lock_active_admins(c)?;
        }
        let Some(row) = by_id(c, id)? else {
            return Ok(Err(Refusal::NotFound));
        };
        if ch.demotes() && is_last_admin(c, &row)? {
            return Ok(Err(Refusal::LastAdmin));
        }
        update(c, id, ch)?;
        if ch.signs_out() {
            super::tokens::revoke_user(c, id)?;
        }
        by_id(c, id)?
            .map(Ok)
            .ok_or_else(|| DbError::Other(anyhow::anyhow!("user {id} vanished")))
    })
}

/// Deletes user `id` unless it is the last active admin (atomic, as
/// [`update_guarded`]). Returns the deleted row.
pub fn delete_guarded(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Result<UserRow, Refusal>, DbError> {
    conn.write_transaction(|c| {
        lock_active_admins(c)?;
        let Some(row) = by_id(c, id)? else {
            return Ok(Err(Refusal::NotFound));
        };
        if is_last_admin(c, &row)? {
            return Ok(Err(Refusal::LastAdmin));
        }
        delete(c, id)?;
        Ok(Ok(row))
    })
}

pub fn delete(conn: &mut DbConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(users::table.find(id)).execute(conn)? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;

    #[tokio::test]
    async fn user_crud_on_every_backend() {
        for t in testing::all().await {
            let backend = t.db.backend();
            let (alice, listed, last) =
                t.db.run(|c| {
                    let alice = insert(c, "alice", "h1", Role::Admin)?;
                    insert(c, "bob", "h2", Role::Viewer)?;
                    let demote = UserChanges {
                        role: Some(Role::User),
                        ..Default::default()
                    };
                    let last = update_guarded(c, &alice.id, &demote)?;
                    Ok((alice, list(c)?, last))
                })
                .await
                .unwrap();
            assert_eq!(listed.len(), 2, "{backend}");
            assert_eq!(listed[0].username, "alice");
            assert_eq!(last.unwrap_err(), Refusal::LastAdmin);

            // Unique usernames are enforced by the schema on both backends.
            let dup = t.db.run(|c| insert(c, "alice", "h", Role::User)).await;
            assert!(dup.is_err(), "{backend}: duplicate username accepted");

            let id = alice.id.clone();
            let row =
                t.db.run(move |c| {
                    update(
                        c,
                        &id,
                        &UserChanges {
                            role: Some(Role::User),
                            active: Some(false),
                            password_hash: Some("h9".into()),
                        },
                    )?;
                    by_id(c, &id)
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.role, "user");
            assert!(!row.active);
            assert_eq!(row.password_hash, "h9");
            assert_eq!(row.token_version, 1, "{backend}: a new password bumps it");
            let id = alice.id.clone();
            assert!(t.db.run(move |c| delete(c, &id)).await.unwrap());
            assert_eq!(t.db.run(count).await.unwrap(), 1);
        }
    }

    /// Two admins demote each other at the same moment, 50 times: every
    /// round exactly one change wins and an active admin remains (before
    /// the check and the write were one step, PostgreSQL let both through
    /// and SQLite failed one with "database is locked").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_admins_demoting_each_other_leave_one_on_every_backend() {
        use std::sync::{Arc, Barrier};
        for t in testing::all().await {
            let backend = t.db.backend();
            let (a, b) =
                t.db.run(|c| {
                    let a = insert(c, "admin-a", "h", Role::Admin)?.id;
                    let b = insert(c, "admin-b", "h", Role::Admin)?.id;
                    Ok((a, b))
                })
                .await
                .unwrap();
            for round in 0..50 {
                let barrier = Arc::new(Barrier::new(2));
                let demote = |target: &String| {
                    let (barrier, target) = (barrier.clone(), target.clone());
                    move |c: &mut DbConnection| {
                        barrier.wait();
                        let ch = UserChanges {
                            role: Some(Role::User),
                            ..Default::default()
                        };
                        update_guarded(c, &target, &ch)
                    }
                };
                let (ra, rb) = tokio::join!(t.db.run(demote(&a)), t.db.run(demote(&b)));
                let (ra, rb) = (ra.unwrap(), rb.unwrap());
                let won = [ra.is_ok(), rb.is_ok()];
                assert_eq!(
                    won.iter().filter(|w| **w).count(),
                    1,
                    "{backend} round {round}: {ra:?} / {rb:?}"
                );
                assert!([&ra, &rb]
                    .iter()
                    .any(|r| matches!(r, Err(Refusal::LastAdmin))));
                let (a, b) = (a.clone(), b.clone());
                let admins =
                    t.db.run(move |c| {
                        let n = lock_active_admins(c)?.len();
                        let promote = UserChanges {
                            role: Some(Role::Admin),
                            ..Default::default()
                        };
                        update(c, &a, &promote)?;
                        update(c, &b, &promote)?;
                        Ok(n)
                    })
                    .await
                    .unwrap();
                assert_eq!(admins, 1, "{backend} round {round}");
            }
        }
    }
}
