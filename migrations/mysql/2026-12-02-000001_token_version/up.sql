-- A per-user token version, carried in every access token: bumping it
-- (password change, admin reset, "sign out everywhere") makes every earlier
-- access token invalid at once instead of at its expiry. One statement:
-- it either happens or not.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
