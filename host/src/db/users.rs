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

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
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

/// Active admins other than `except`: guards against locking everyone out.
pub fn other_active_admins(conn: &mut DbConnection, except: &str) -> Result<i64, DbError> {
    Ok(users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::active.eq(true))
        .filter(users::id.ne(except))
        .count()
        .get_result(conn)?)
}

/// Changes to apply to a user; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub password_hash: Option<String>,
    pub active: Option<bool>,
}

pub fn update(conn: &mut DbConnection, id: &str, ch: &UserChanges) -> Result<bool, DbError> {
    let now = now_ms();
    conn.transaction(|conn| {
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
                .set(users::password_hash.eq(hash))
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

pub fn delete(conn: &mut DbConnection, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(users::table.find(id)).execute(conn)? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;

    #[tokio::test]
    async fn user_crud_on_both_backends() {
        for t in testing::both().await {
            let backend = t.db.backend();
            let (alice, listed, other_admins) =
                t.db.run(|c| {
                    let alice = insert(c, "alice", "h1", Role::Admin)?;
                    insert(c, "bob", "h2", Role::Viewer)?;
                    let other = other_active_admins(c, &alice.id)?;
                    Ok((alice, list(c)?, other))
                })
                .await
                .unwrap();
            assert_eq!(listed.len(), 2, "{backend}");
            assert_eq!(listed[0].username, "alice");
            assert_eq!(other_admins, 0);

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
            let id = alice.id.clone();
            assert!(t.db.run(move |c| delete(c, &id)).await.unwrap());
            assert_eq!(t.db.run(count).await.unwrap(), 1);
        }
    }
}
