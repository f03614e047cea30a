//! The JWT signing secret when none is configured: generated once and kept
//! in the data directory (mode 0600) so tokens survive restarts.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

pub const JWT_SECRET_FILE: &str = "jwt_secret";

/// The secret kept in `data_path`, if one is there; an error if that file
/// cannot be used. Reads only (configuration checks call it too).
pub fn read_jwt_secret(data_path: &Path) -> anyhow::Result<Option<String>> {
    let path = data_path.join(JWT_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => Ok(Some(s.trim().to_string())),
        Ok(_) => anyhow::bail!(
            "{} is too short to be a JWT secret (need 32+ characters); delete it to have a new one generated",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn load_or_create_jwt_secret(data_path: &Path) -> anyhow::Result<String> {
    let path = data_path.join(JWT_SECRET_FILE);
    if let Some(secret) = read_jwt_secret(data_path)? {
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "JWT secret file is readable by others; fixing to 0600");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        return Ok(secret);
    }
    crate::private_files::create_dir(data_path)
        .with_context(|| format!("creating data directory {}", data_path.display()))?;
    let mut bytes = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = hex::encode(bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    tracing::info!(path = %path.display(), "generated a JWT secret");
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_jwt_secret(dir.path()).unwrap();
        let b = load_or_create_jwt_secret(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 96);
        let mode = std::fs::metadata(dir.path().join(JWT_SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
