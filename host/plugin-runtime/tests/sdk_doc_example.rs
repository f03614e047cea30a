//! The plugin the SDK's documentation shows (`plugin-api/src/lib.rs`) builds
//! as written and runs: its `Cargo.toml`, `src/lib.rs`, `plugin.toml` and
//! `grant.toml` are taken from the documentation text itself, built as a
//! crate of its own outside this workspace (with the documented `path`
//! dependency on the SDK) for wasm32-wasip2, loaded with the documented
//! grant and called. The plugin API version the documentation and
//! `plugins/example` declare is the one the SDK implements and this host
//! runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use wakedock_plugin_runtime::testing::{get, test_caller, TestHost};
use wakedock_plugin_runtime::{Grant, Manifest, HOST_API_VERSION};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The crate documentation of the SDK, as Markdown.
fn sdk_docs() -> String {
    let text = std::fs::read_to_string(repo().join("plugin-api/src/lib.rs")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fenced blocks of `docs`, as (info string, body).
fn blocks(docs: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in docs.lines() {
        match (current.as_mut(), line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => out.push(current.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The first block whose body contains `needle`.
fn block<'a>(all: &'a [(String, String)], needle: &str) -> &'a str {
    &all.iter()
        .find(|(_, b)| b.contains(needle))
        .unwrap_or_else(|| panic!("no block with {needle:?} in the SDK docs"))
        .1
}

fn sdk_api_version() -> String {
    let text = std::fs::read_to_string(repo().join("plugin-api/src/lib.rs")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("pub const API_VERSION: &str = \""))
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("API_VERSION in plugin-api/src/lib.rs")
        .to_owned()
}

#[test]
fn documented_and_example_api_versions_are_the_one_the_sdk_implements() {
    let sdk = sdk_api_version();
    assert_eq!(
        sdk, HOST_API_VERSION,
        "the SDK and the host speak one version"
    );
    let docs = blocks(&sdk_docs());
    let manifest = Manifest::from_toml(block(&docs, "api-version")).unwrap();
    assert_eq!(manifest.api_version, sdk, "the documented plugin.toml");
    assert_eq!(
        example_manifest().api_version,
        sdk,
        "plugins/example/plugin.toml"
    );
}

#[test]
fn the_readme_grant_file_example_is_a_grant() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let docs = blocks(&readme);
    let grant = Grant::from_toml(block(&docs, "# grant.toml")).expect("README grant.toml");
    assert!(grant.capabilities.containers.is_some() && grant.limits.memory_bytes.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_plugin_builds_as_written_and_runs() {
    let docs = blocks(&sdk_docs());
    let cargo_toml = block(&docs, "[package]");
    let lib_rs = block(&docs, "export_plugin!(Hello)");
    let plugin_toml = block(&docs, "api-version");
    let grant_toml = block(&docs, "grant.toml");

    // The documented layout: the plugin next to a WakeDock checkout, both
    // outside this workspace (inside it, cargo would take the plugin for a
    // member). One directory per checkout, kept, so a second run builds
    // incrementally.
    let id = wakedock_plugin_runtime::sha256_hex(repo().to_string_lossy().as_bytes());
    let base = std::env::temp_dir().join(format!("wakedock-sdk-doc-example-{}", &id[..12]));
    let checkout = base.join("wakedock");
    let plugin = base.join("hello-plugin");
    std::fs::create_dir_all(plugin.join("src")).unwrap();
    if std::fs::symlink_metadata(&checkout).is_err() {
        std::os::unix::fs::symlink(repo(), &checkout).unwrap();
    }
    assert!(
        cargo_toml.contains("path = \"../wakedock/plugin-api\""),
        "the docs show a path dependency: {cargo_toml}"
    );
    let write = |path: PathBuf, text: &str| {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            std::fs::write(path, text).unwrap();
        }
    };
    write(plugin.join("Cargo.toml"), cargo_toml);
    // `# ` lines are rustdoc's hidden lines, not part of the file.
    let lib: String = lib_rs
        .lines()
        .filter(|l| !l.starts_with("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    write(plugin.join("src/lib.rs"), &lib);
    // The versions this workspace was tested with, and no network.
    if !plugin.join("Cargo.lock").exists() {
        std::fs::copy(repo().join("Cargo.lock"), plugin.join("Cargo.lock")).unwrap();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--offline",
        ])
        .current_dir(&plugin)
        .env("CARGO_TARGET_DIR", plugin.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "the documented plugin does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm =
        std::fs::read(plugin.join("target/wasm32-wasip2/release/hello_plugin.wasm")).unwrap();

    // Loaded with the documented manifest and grant file, it answers.
    let host = TestHost::new();
    let rt = runtime(&host);
    let manifest = Manifest::from_toml(plugin_toml).unwrap();
    let grant = Grant::from_toml(grant_toml).unwrap();
    rt.load(manifest, &wasm, grant, serde_json::Value::Null)
        .await
        .expect("the documented plugin loads with the documented grant");
    for hits in 1..=2 {
        let r = rt
            .handle_http("hello", get("/hello"), test_caller())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", body(&r));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, serde_json::json!({"message": "hello", "hits": hits}));
    }
}
