//! The `files` capability: the stacks directory and nothing else of the
//! host's filesystem. Every operation goes through a `cap_std::fs::Dir`
//! opened on the directory, which resolves each path beneath it and refuses
//! a symbolic link (or anything else) that leads out of it; the runtime has
//! already refused absolute paths and `..`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use cap_std::fs::Dir;
use wakedock_plugin_runtime::caps::{BoxFuture, CapError, CapResult, FileEntry, FilesHost};

/// The stacks directory as a capability.
pub struct DirFiles {
    root: Arc<Dir>,
    path: PathBuf,
}

impl std::fmt::Debug for DirFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirFiles")
            .field("path", &self.path)
            .finish()
    }
}

impl DirFiles {
    /// Opens (creating it if needed) the stacks directory.
    pub fn open(path: &Path) -> io::Result<DirFiles> {
        std::fs::create_dir_all(path)?;
        let root = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(DirFiles {
            root: Arc::new(root),
            path: path.to_path_buf(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        path: &str,
        f: impl FnOnce(&Dir) -> io::Result<T> + Send + 'static,
    ) -> CapResult<T> {
        let root = self.root.clone();
        let shown = path.to_owned();
        match tokio::task::spawn_blocking(move || f(&root)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(cap_error(what, &shown, &e)),
            Err(e) => Err(CapError::Unavailable(format!("{what}: {e}"))),
        }
    }
}

/// The capability's error for an I/O error: a way out of the directory is
/// `permission-denied`; a missing file `not-found`; the rest `invalid` (the
/// plugin asked for something impossible) or `unavailable`.
fn cap_error(what: &str, path: &str, e: &io::Error) -> CapError {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound => CapError::NotFound,
        K::PermissionDenied => CapError::PermissionDenied(format!(
            "{what} `{path}`: {e} (the stacks directory allows no way out, symbolic links included)"
        )),
        K::AlreadyExists
        | K::DirectoryNotEmpty
        | K::IsADirectory
        | K::NotADirectory
        | K::InvalidInput
        | K::InvalidFilename => CapError::Invalid(format!("{what} `{path}`: {e}")),
        _ => CapError::Unavailable(format!("{what} `{path}`: {e}")),
    }
}

fn entry(name: String, meta: &cap_std::fs::Metadata) -> FileEntry {
    let modified_ms = meta
        .modified()
        .ok()
        .map(|t| t.into_std())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    FileEntry {
        name,
        is_dir: meta.is_dir(),
        size: if meta.is_dir() { 0 } else { meta.len() },
        modified_ms,
    }
}

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

impl FilesHost for DirFiles {
    fn list<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<Vec<FileEntry>>> {
        let p = or_root(path).to_owned();
        Box::pin(self.run("list", path, move |root| {
            let mut out = Vec::new();
            for e in root.read_dir(&p)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                // A symbolic link is listed as what it is, not followed.
                let meta = e.metadata()?;
                out.push(entry(name, &meta));
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }))
    }

    fn stat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<FileEntry>> {
        let p = or_root(path).to_owned();
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        Box::pin(self.run("stat", path, move |root| {
            let meta = root.metadata(&p)?;
            Ok(entry(name, &meta))
        }))
    }

    fn read<'a>(&'a self, path: &'a str, max_bytes: u64) -> BoxFuture<'a, CapResult<Vec<u8>>> {
        let p = path.to_owned();
        Box::pin(self.run("read", path, move |root| {
            let meta = root.metadata(&p)?;
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
            if meta.len() > max_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("larger than {max_bytes} bytes"),
                ));
            }
            root.read(&p)
        }))
    }

    fn write<'a>(&'a self, path: &'a str, content: Vec<u8>) -> BoxFuture<'a, CapResult<()>> {
        let p = path.to_owned();
        Box::pin(self.run("write", path, move |root| {
            // Atomic: a reader (Compose, an editor) sees the old file or
            // the new one. The temporary sits next to the target.
            let tmp = format!("{p}.wakedock-tmp-{}", uuid::Uuid::new_v4().simple());
            root.write(&tmp, &content)?;
            root.rename(&tmp, root, &p).inspect_err(|_| {
                let _ = root.remove_file(&tmp);
            })
        }))
    }

    fn create_dir<'a>(&'a self, path: &'a str) -> BoxFuture<'a, CapResult<()>> {
        let p = path.to_owned();
        Box::pin(self.run("create-dir", path, move |root| root.create_dir(&p)))
    }

    fn remove<'a>(&'a self, path: &'a str, recursive: bool) -> BoxFuture<'a, CapResult<bool>> {
        let p = path.to_owned();
        Box::pin(self.run("remove", path, move |root| {
            let meta = match root.symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                if recursive {
                    root.remove_dir_all(&p)?;
                } else {
                    root.remove_dir(&p)?;
                }
            } else {
                // A symbolic link itself, never what it points to.
                root.remove_file(&p)?;
            }
            Ok(true)
        }))
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, CapResult<()>> {
        let (f, t) = (from.to_owned(), to.to_owned());
        Box::pin(self.run("rename", from, move |root| root.rename(&f, root, &t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_symlink_out_of_the_stacks_directory_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("web")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("web/compose.yaml"),
        )
        .unwrap();
        let files = DirFiles::open(dir.path()).unwrap();
        for path in ["escape/secret", "web/compose.yaml"] {
            match files.read(path, 1 << 20).await {
                Err(CapError::PermissionDenied(why)) => assert!(why.contains(path), "{why}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(matches!(
            files.write("escape/new", b"x".to_vec()).await,
            Err(CapError::PermissionDenied(_))
        ));
        assert!(!outside.path().join("new").exists());
        // Removing the link removes the link, not the target.
        assert!(files.remove("escape", true).await.unwrap());
        assert!(outside.path().join("secret").exists());
    }

    #[tokio::test]
    async fn files_are_written_atomically_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let files = DirFiles::open(dir.path()).unwrap();
        files.create_dir("web").await.unwrap();
        assert!(matches!(
            files.create_dir("web").await,
            Err(CapError::Invalid(_))
        ));
        files
            .write("web/compose.yaml", b"services: {}\n".to_vec())
            .await
            .unwrap();
        files
            .write("web/compose.yaml", b"services:\n  a: {}\n".to_vec())
            .await
            .unwrap();
        let list = files.list("web").await.unwrap();
        assert_eq!(list.len(), 1, "no temporary file left: {list:?}");
        assert_eq!(list[0].name, "compose.yaml");
        assert_eq!(
            files.read("web/compose.yaml", 100).await.unwrap(),
            b"services:\n  a: {}\n"
        );
        assert!(matches!(
            files.read("web/compose.yaml", 3).await,
            Err(CapError::Invalid(_))
        ));
        assert_eq!(files.list("").await.unwrap()[0].name, "web");
        assert!(matches!(
            files.read("web/missing", 100).await,
            Err(CapError::NotFound)
        ));
        assert!(files.remove("web", true).await.unwrap());
        assert!(!files.remove("web", true).await.unwrap());
    }
}
