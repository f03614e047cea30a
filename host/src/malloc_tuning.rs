//! glibc malloc settings the host needs, applied by the binary itself.
//!
//! With glibc's defaults the host's RSS grows from about 38 MiB to about
//! 98 MiB after a wake storm and stays there: glibc raises its mmap
//! threshold after the first large free (an argon2 verification's ~19 MiB
//! block), so later large blocks are carved out of per-thread arenas and
//! stay resident after they are freed (measured in docs/benchmarks.md).
//! `MALLOC_MMAP_THRESHOLD_=131072` keeps every block over 128 KiB in its own
//! mapping, returned on free: about 40 MiB after the same storm.
//!
//! glibc reads the variable once, before `main`, and setting it from Rust
//! needs `mallopt` through `unsafe` FFI, which the workspace forbids. So
//! when the variable is unset, the binary replaces itself (`exec`, same
//! PID, same arguments) with the variable set: a host started by hand, by
//! systemd or by any script gets the setting, not only the ones our scripts
//! and image start. An explicit value is kept; `WAKEDOCK_MALLOC_TUNING=off`
//! turns this off.

/// The variable glibc reads, and the value the host runs with.
pub const MMAP_THRESHOLD_VAR: &str = "MALLOC_MMAP_THRESHOLD_";
pub const MMAP_THRESHOLD: &str = "131072";
/// Set to `off` to run with the allocator's defaults.
pub const OPT_OUT_VAR: &str = "WAKEDOCK_MALLOC_TUNING";

/// Whether the process must re-exec itself to get the setting: glibc only,
/// variable unset, not opted out.
pub fn needs_reexec(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    cfg!(all(target_os = "linux", target_env = "gnu"))
        && get(MMAP_THRESHOLD_VAR).is_none()
        && get(OPT_OUT_VAR).is_none_or(|v| v != "off")
}

/// Call first in `main`, before any thread starts. Returns only if no
/// re-exec was needed or it failed (then the host runs with the defaults,
/// and says so).
pub fn apply() {
    if !needs_reexec(|k| std::env::var_os(k)) {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let argv0 = args.next();
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return warn(&e),
        };
        let mut cmd = std::process::Command::new(exe);
        if let Some(argv0) = argv0 {
            cmd.arg0(argv0);
        }
        // `exec` only returns on failure.
        let e = cmd
            .args(args)
            .env(MMAP_THRESHOLD_VAR, MMAP_THRESHOLD)
            .exec();
        warn(&e);
    }
}

fn warn(e: &std::io::Error) {
    // Logging is not set up yet.
    eprintln!(
        "wakedock: could not re-run itself with {MMAP_THRESHOLD_VAR}={MMAP_THRESHOLD} ({e}); \
         memory use after load will be higher: set the variable in the environment"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn reexec_only_without_the_variable_and_without_opt_out() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(needs_reexec(env(&[])), glibc);
        assert!(!needs_reexec(env(&[(MMAP_THRESHOLD_VAR, "65536")])));
        assert!(!needs_reexec(env(&[(OPT_OUT_VAR, "off")])));
        assert_eq!(needs_reexec(env(&[(OPT_OUT_VAR, "on")])), glibc);
    }
}
