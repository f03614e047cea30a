//! On-disk cache of compiled components.
//!
//! Compiling a component with Cranelift costs tens of milliseconds per
//! plugin; loading the precompiled artifact costs a fraction of a
//! millisecond. Artifacts are keyed by SHA-256 of the component bytes plus a
//! hash of the engine's compatibility settings, so a changed engine config
//! or wasmtime version never picks up a stale artifact (and wasmtime checks
//! compatibility again when deserializing).
//!
//! Deserializing an artifact is `unsafe` in wasmtime because a forged file
//! is native code. This is the one place in the crate that does it, and it
//! only reads files this module itself wrote into the host-owned cache
//! directory (plugins have no filesystem access at all).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::sha256_hex;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a cached artifact.
    Hit,
    /// Compiled and written to the cache.
    Compiled,
    /// Compiled; no cache directory configured.
    Uncached,
}

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_hash: String,
}

impl CompileCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> std::io::Result<CompileCache> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
        }
        // DefaultHasher uses fixed keys: stable for a given build of the
        // host, which is all a cache key needs (a new build at worst misses).
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(CompileCache {
            dir,
            engine_hash: format!("{:016x}", h.finish()),
        })
    }

    fn path_for(&self, dir: &Path, wasm: &[u8]) -> PathBuf {
        dir.join(format!("{}-{}.cwasm", sha256_hex(wasm), self.engine_hash))
    }

    /// Returns the compiled component for `wasm`, from the cache when
    /// possible. Blocking (compiles): call from a blocking thread.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Uncached));
        };
        let path = self.path_for(dir, wasm);
        if path.exists() {
            match load_artifact(engine, &path) {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unusable compile-cache artifact: {e:#}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = engine.precompile_component(wasm)?;
        // Write-then-rename so a concurrent reader never sees a partial file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &artifact)?;
        std::fs::rename(&tmp, &path)?;
        Ok((load_artifact(engine, &path)?, CacheOutcome::Compiled))
    }
}

/// Loads an artifact written by [`CompileCache::load_or_compile`].
///
/// Reads the file into memory rather than using
/// `Component::deserialize_file`: that one maps the file, and if anything
/// truncates or rewrites the file while the plugin is loaded the host dies
/// of SIGBUS (seen in the corrupt-artifact test). Reading costs a copy of a
/// few hundred KiB per load, well under a millisecond.
#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    // SAFETY: `path` is inside the runtime's own cache directory and was
    // produced by `Engine::precompile_component` of a compatible engine
    // (the file name carries the engine compatibility hash, and wasmtime
    // re-checks the header and version). Nothing else is meant to write
    // there: plugins have no filesystem access, and the directory belongs to
    // the host. The bytes are an owned copy, so later changes to the file
    // cannot affect the loaded code.
    unsafe { Component::deserialize(engine, &bytes) }
}
