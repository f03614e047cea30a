//! The data directory and the database files hold password hashes, refresh
//! token hashes and the audit log: they are created readable by the owner
//! only (directories 0700, files 0600, as the JWT secret already is), and
//! the host warns at start about an existing one that others can read.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) with mode 0700. An existing
/// directory is left as it is (see [`warn_if_exposed`]).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `file` empty with mode 0600 if it does not exist, so that the
/// program that fills it (SQLite) does not create it with its own default.
pub fn create_file(file: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why `path` is exposed to other users (group or world permission bits
/// set), or `None` when it is private or absent.
pub fn exposure(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        let want = if path.is_dir() { "0700" } else { "0600" };
        format!(
            "{} has mode {mode:04o}: other users can read it; it holds password hashes and \
             the audit log (chmod {want} it)",
            path.display()
        )
    })
}

/// Logs a warning for each of `paths` that others can read.
pub fn warn_if_exposed(paths: &[PathBuf]) {
    for p in paths {
        if let Some(why) = exposure(p) {
            tracing::warn!(path = %p.display(), "{why}");
        }
    }
}

/// The SQLite database file and its write-ahead log and shared-memory
/// files.
pub fn sqlite_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_wider_ones_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        let f = dir.join("x.db");
        create_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(exposure(&f), None);
        assert_eq!(exposure(&dir), None);
        assert_eq!(exposure(&dir.join("absent")), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let why = exposure(&f).unwrap();
        assert!(why.contains("0644") && why.contains("chmod 0600"), "{why}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(exposure(&dir).unwrap().contains("chmod 0700"));
        // An existing file is not truncated or re-moded.
        std::fs::write(&f, "data").unwrap();
        create_file(&f).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "data");
        assert_eq!(
            sqlite_files(&f)[1].file_name().unwrap().to_str(),
            Some("x.db-wal")
        );
    }
}
