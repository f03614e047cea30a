-- Installed plugins (the .wasm lives in the data dir, verified by SHA-256)
-- and their key-value storage. Plugin names are at most 63 bytes and
-- storage keys at most 512 (the runtime's limits), so the composite key
-- fits InnoDB's 3072-byte index limit in utf8mb4.
CREATE TABLE IF NOT EXISTS plugins (
    name VARCHAR(64) PRIMARY KEY NOT NULL,
    version VARCHAR(64) NOT NULL,
    api_version VARCHAR(64) NOT NULL,
    manifest MEDIUMTEXT NOT NULL,
    grant_toml MEDIUMTEXT NOT NULL,
    config_json MEDIUMTEXT NOT NULL,
    wasm_sha256 VARCHAR(64) NOT NULL,
    wasm_path TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    source VARCHAR(16) NOT NULL CHECK (source IN ('api', 'cli', 'config', 'builtin')),
    installed_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS plugin_kv (
    plugin VARCHAR(64) NOT NULL,
    `key` VARCHAR(512) NOT NULL,
    value LONGBLOB NOT NULL,
    size BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (plugin, `key`),
    CONSTRAINT plugin_kv_plugin_fk FOREIGN KEY (plugin) REFERENCES plugins(name) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
