//! Diesel table definitions, shared by both backends (the SQL types chosen
//! in `migrations/` map to the same Rust types on SQLite and PostgreSQL).

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        active -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        token_version -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        user_id -> Text,
        token_hash -> Text,
        family_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        replaced_by -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Nullable<Text>,
        action -> Text,
        target -> Nullable<Text>,
        result -> Text,
        client_ip -> Nullable<Text>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> BigInt,
    }
}

diesel::joinable!(refresh_tokens -> users (user_id));

diesel::table! {
    plugins (name) {
        name -> Text,
        version -> Text,
        api_version -> Text,
        manifest -> Text,
        grant_toml -> Text,
        config_json -> Text,
        wasm_sha256 -> Text,
        wasm_path -> Text,
        enabled -> Bool,
        source -> Text,
        installed_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    plugin_kv (plugin, key) {
        plugin -> Text,
        key -> Text,
        value -> Binary,
        size -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(plugin_kv -> plugins (plugin));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    refresh_tokens,
    audit_log,
    settings,
    plugins,
    plugin_kv
);
