//! Installed plugins: what was installed, what the admin granted, the
//! plugin's configuration, and where its verified `.wasm` is.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::plugins as p;
use super::{now_ms, DbConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = p)]
#[serde(deny_unknown_fields)]
pub struct PluginRow {
    pub name: String,
    pub version: String,
    pub api_version: String,
    /// The `plugin.toml` as installed.
    pub manifest: String,
    /// The grant (same shape as the manifest's capabilities), TOML.
    pub grant_toml: String,
    pub config_json: String,
    pub wasm_sha256: String,
    pub wasm_path: String,
    pub enabled: bool,
    /// `api`, `cli`, `config` or `builtin`.
    pub source: String,
    pub installed_at: i64,
    pub updated_at: i64,
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<PluginRow>, DbError> {
    Ok(p::table
        .order(p::name.asc())
        .select(PluginRow::as_select())
        .load(conn)?)
}

pub fn get(conn: &mut DbConnection, name: &str) -> Result<Option<PluginRow>, DbError> {
    Ok(p::table
        .find(name)
        .select(PluginRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts or replaces (an upgrade keeps `installed_at` and the storage).
pub fn upsert(conn: &mut DbConnection, row: &PluginRow) -> Result<(), DbError> {
    conn.write_transaction(|conn| {
        let n = diesel::update(p::table.find(&row.name))
            .set((
                p::version.eq(&row.version),
                p::api_version.eq(&row.api_version),
                p::manifest.eq(&row.manifest),
                p::grant_toml.eq(&row.grant_toml),
                p::config_json.eq(&row.config_json),
                p::wasm_sha256.eq(&row.wasm_sha256),
                p::wasm_path.eq(&row.wasm_path),
                p::enabled.eq(row.enabled),
                p::source.eq(&row.source),
                p::updated_at.eq(now_ms()),
            ))
            .execute(conn)?;
        if n == 0 {
            diesel::insert_into(p::table).values(row).execute(conn)?;
        }
        Ok(())
    })
}

pub fn set_enabled(conn: &mut DbConnection, name: &str, enabled: bool) -> Result<bool, DbError> {
    Ok(diesel::update(p::table.find(name))
        .set((p::enabled.eq(enabled), p::updated_at.eq(now_ms())))
        .execute(conn)?
        == 1)
}

pub fn set_config(conn: &mut DbConnection, name: &str, config_json: &str) -> Result<bool, DbError> {
    Ok(diesel::update(p::table.find(name))
        .set((p::config_json.eq(config_json), p::updated_at.eq(now_ms())))
        .execute(conn)?
        == 1)
}

pub fn set_grant(conn: &mut DbConnection, name: &str, grant_toml: &str) -> Result<bool, DbError> {
    Ok(diesel::update(p::table.find(name))
        .set((p::grant_toml.eq(grant_toml), p::updated_at.eq(now_ms())))
        .execute(conn)?
        == 1)
}

/// Removes the plugin and (by cascade) its storage.
pub fn delete(conn: &mut DbConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(p::table.find(name)).execute(conn)? == 1)
}

/// A fingerprint of the whole table, to notice changes made by another
/// process (the CLI) cheaply.
pub fn fingerprint(conn: &mut DbConnection) -> Result<(i64, i64), DbError> {
    let count: i64 = p::table.count().get_result(conn)?;
    let latest: Option<i64> = p::table
        .select(diesel::dsl::max(p::updated_at))
        .first(conn)?;
    Ok((count, latest.unwrap_or(0)))
}
