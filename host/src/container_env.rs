//! WakeDock running inside a container: finding its own container (so
//! nothing it does ever stops or pauses it) and explaining a Docker socket
//! it may not open (the usual mistake with a non-root image).

use std::path::Path;

use crate::error::ApiError;
use crate::state::AppState;

/// Ways to name our own container to the engine, best first: the
/// container id from `/proc/self/mountinfo` (Docker bind-mounts
/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` from
/// `.../containers/<id>/`, whatever `hostname:` says), then the hostname
/// (Docker's default hostname is the short id). Empty outside a container.
pub fn own_container_candidates() -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let from_mounts = container_id_from_mountinfo(&mountinfo);
    let in_container = from_mounts.is_some()
        || Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists();
    if !in_container {
        return Vec::new();
    }
    let mut out: Vec<String> = from_mounts.into_iter().collect();
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !out.iter().any(|id| id.starts_with(h)) {
            out.push(h.to_owned());
        }
    }
    out
}

/// The 64-hex container id in a mount source such as
/// `/var/lib/docker/containers/<id>/hostname`.
fn container_id_from_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (_, rest) = line.split_once("/containers/")?;
        let id: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        (id.len() == 64 && rest[64..].starts_with('/')).then_some(id)
    })
}

/// A sentence for the log when the socket exists but this process may not
/// open it: which group owns it and how to join that group.
pub fn socket_access_hint(socket: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let err = std::os::unix::net::UnixStream::connect(socket).err()?;
    if err.kind() != std::io::ErrorKind::PermissionDenied {
        return None;
    }
    let gid = std::fs::metadata(socket).ok()?.gid();
    Some(format!(
        "cannot open the Docker socket {}: permission denied; it belongs to group {gid}: \
         run WakeDock with that group (compose: group_add: [\"{gid}\"]; docker run --group-add {gid})",
        socket.display()
    ))
}

/// Refuses an API action that would stop, pause or remove WakeDock's own
/// container (it would take the UI and the wake API down with it).
pub async fn refuse_own(state: &AppState, target: &str, action: &str) -> Result<(), ApiError> {
    let Some(own) = &state.own_container else {
        return Ok(());
    };
    let d = state.docker.inspect(target).await?;
    if &d.id == own {
        return Err(ApiError::Conflict(format!(
            "container {} is WakeDock's own: WakeDock does not {action} itself (use docker or compose)",
            d.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c0a6e9b2d4c5e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e";

    #[test]
    fn container_id_from_docker_mounts() {
        let text = format!(
            "1200 1180 0:52 / / rw,relatime master:1 - overlay overlay rw\n\
             1205 1200 254:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda1 rw\n\
             1206 1200 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&text).as_deref(), Some(ID));
    }

    #[test]
    fn no_container_id_on_a_plain_host() {
        let text = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                    40 22 254:1 /srv/containers/short/x /x rw - ext4 /dev/vda1 rw\n";
        assert_eq!(container_id_from_mountinfo(text), None);
    }

    #[test]
    fn socket_hint_only_for_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing there: another problem than permissions.
        assert_eq!(socket_access_hint(&dir.path().join("none.sock")), None);
        // A socket anyone may open: no hint.
        let path = dir.path().join("ok.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(socket_access_hint(&path), None);
    }
}
