-- SQLite 3.35+ drops columns.
ALTER TABLE users DROP COLUMN token_version;
