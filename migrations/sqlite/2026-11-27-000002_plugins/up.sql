-- Installed plugins (the .wasm lives in the data dir, verified by SHA-256)
-- and their key-value storage.
CREATE TABLE plugins (
    name TEXT PRIMARY KEY NOT NULL,
    version TEXT NOT NULL,
    api_version TEXT NOT NULL,
    manifest TEXT NOT NULL,
    grant_toml TEXT NOT NULL,
    config_json TEXT NOT NULL,
    wasm_sha256 TEXT NOT NULL,
    wasm_path TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('api', 'cli', 'config', 'builtin')),
    installed_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE plugin_kv (
    plugin TEXT NOT NULL REFERENCES plugins(name) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    size BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (plugin, key)
);
