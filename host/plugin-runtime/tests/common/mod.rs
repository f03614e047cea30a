//! Shared helpers: locating the prebuilt fixture components and building a
//! runtime over in-memory capabilities.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use wakedock_plugin_runtime::testing::TestHost;
use wakedock_plugin_runtime::{Grant, Manifest, PluginRuntime, RuntimeConfig};

/// `<target>/wasm32-wasip2/release`, where `scripts/build-plugins.sh` puts
/// the components: `$CARGO_TARGET_DIR` if set, else the target directory
/// this test binary lives in, else `<workspace>/target`.
pub fn wasm_dir() -> PathBuf {
    let suffix = Path::new("wasm32-wasip2").join("release");
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
        return dir.join(&suffix);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join(&suffix).is_dir() {
                return dir.join(&suffix);
            }
        }
    }
    workspace_root().join("target").join(suffix)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bytes of fixture `crate_name` (e.g. `wakedock_fixture_hostile`).
/// Panics with instructions if it has not been built.
pub fn wasm(crate_name: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{crate_name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nBuild the plugin components first: scripts/build-plugins.sh",
            path.display()
        )
    })
}

/// A manifest file from the repository.
pub fn manifest(rel: &str) -> Manifest {
    let path = workspace_root().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Manifest::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn example_manifest() -> Manifest {
    manifest("plugins/example/plugin.toml")
}

pub fn hostile_manifest() -> Manifest {
    manifest("tests/plugins/hostile/plugin.toml")
}

/// Small pools and a short back-off, so tests are quick and many runtimes
/// can live in one test process.
pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        pool_total_instances: 48,
        backoff_base: Duration::from_millis(300),
        ..RuntimeConfig::default()
    }
}

pub fn runtime(host: &TestHost) -> PluginRuntime {
    PluginRuntime::new(test_config(), host.capabilities()).expect("runtime")
}

/// A host with three containers: two opted in (`wakedock.enable=true`),
/// one not.
pub fn host_with_containers() -> TestHost {
    let host = TestHost::new();
    host.containers
        .add("c1", "web", true, &[("wakedock.enable", "true")]);
    host.containers.add(
        "c2",
        "db",
        false,
        &[("wakedock.enable", "true"), ("team", "a")],
    );
    host.containers.add("c3", "secret", true, &[("other", "x")]);
    host
}

/// The hostile fixture from `manifest` (a changed copy of its own), with
/// everything it asks for granted.
pub async fn load_hostile_as(rt: &PluginRuntime, manifest: Manifest) {
    let grant = Grant::approve_all(&manifest);
    rt.load(
        manifest,
        &wasm("wakedock_fixture_hostile"),
        grant,
        serde_json::Value::Null,
    )
    .await
    .expect("hostile fixture loads");
}

pub async fn load_hostile(rt: &PluginRuntime, grant: Grant) {
    rt.load(
        hostile_manifest(),
        &wasm("wakedock_fixture_hostile"),
        grant,
        serde_json::Value::Null,
    )
    .await
    .expect("hostile fixture loads");
}

pub async fn load_example(rt: &PluginRuntime) {
    let m = example_manifest();
    let g = Grant::approve_all(&m);
    rt.load(
        m,
        &wasm("wakedock_plugin_example"),
        g,
        serde_json::Value::Null,
    )
    .await
    .expect("example plugin loads");
}

pub fn body(resp: &wakedock_plugin_runtime::caps::HttpResponse) -> String {
    String::from_utf8_lossy(&resp.body).into_owned()
}
