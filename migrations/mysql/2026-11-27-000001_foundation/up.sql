-- Users, refresh tokens, audit log and settings: the same schema as the
-- SQLite and PostgreSQL sets, in MySQL/MariaDB terms.
--
-- * Times are Unix milliseconds (BIGINT), as on the other backends.
-- * Indexed and unique text columns are VARCHAR (MySQL cannot index TEXT
--   without a prefix); the lengths are what WakeDock itself allows.
-- * utf8mb4 with the binary collation: comparisons are case-sensitive
--   and byte-exact as on SQLite and PostgreSQL (a case-insensitive default
--   collation would make `Admin` and `admin` the same user).
-- * MySQL commits DDL at once, so a migration cannot be rolled back
--   halfway: each statement is idempotent (IF NOT EXISTS, indexes inside
--   CREATE TABLE), so running a failed migration again finishes it.
CREATE TABLE IF NOT EXISTS users (
    id VARCHAR(36) PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role VARCHAR(16) NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS refresh_tokens (
    id VARCHAR(36) PRIMARY KEY NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    token_hash VARCHAR(128) NOT NULL UNIQUE,
    family_id VARCHAR(36) NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    replaced_by VARCHAR(36),
    INDEX refresh_tokens_family (family_id),
    INDEX refresh_tokens_user (user_id),
    CONSTRAINT refresh_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY NOT NULL AUTO_INCREMENT,
    at BIGINT NOT NULL,
    actor VARCHAR(255),
    action VARCHAR(255) NOT NULL,
    target TEXT,
    result VARCHAR(32) NOT NULL,
    client_ip VARCHAR(64),
    detail MEDIUMTEXT,
    INDEX audit_log_at (at),
    INDEX audit_log_actor (actor),
    INDEX audit_log_action (action)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS settings (
    `key` VARCHAR(255) PRIMARY KEY NOT NULL,
    value MEDIUMTEXT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
