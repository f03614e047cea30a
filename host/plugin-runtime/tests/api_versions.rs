//! Plugin API versions across releases: plugins compiled against 0.1.0,
//! 0.1.1 and 0.1.2 (their imports are `wakedock:plugin/...@0.1.0` and so
//! on) link and run on this 0.1.3 host; versions the host does not offer are refused
//! (see `hostile.rs` for 0.2.0 imports).

mod common;

use common::*;
use wakedock_plugin_runtime::testing::{get, test_caller};
use wakedock_plugin_runtime::Grant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_0_1_0_runs_on_a_0_1_3_host() {
    assert_eq!(wakedock_plugin_runtime::HOST_API_VERSION, "0.1.4");
    let host = host_with_containers();
    let rt = runtime(&host);
    let m = manifest("tests/plugins/api-0-1-0/plugin.toml");
    let g = Grant::approve_all(&m);
    rt.load(
        m,
        &wasm("wakedock_fixture_api_0_1_0"),
        g,
        serde_json::Value::Null,
    )
    .await
    .expect("a 0.1.0 plugin loads on a 0.1.3 host");
    let r = rt
        .handle_http("api-0-1-0", get("/count"), test_caller())
        .await
        .expect("the call runs");
    assert_eq!(r.status, 200);
    // Its 0.1.0 `containers.list` import reached the host: 3 containers.
    assert_eq!(String::from_utf8_lossy(&r.body), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_0_1_1_runs_on_a_0_1_3_host() {
    let host = host_with_containers();
    let rt = runtime(&host);
    let m = manifest("tests/plugins/api-0-1-1/plugin.toml");
    let g = Grant::approve_all(&m);
    rt.load(
        m,
        &wasm("wakedock_fixture_api_0_1_1"),
        g,
        serde_json::Value::Null,
    )
    .await
    .expect("a 0.1.1 plugin loads on a 0.1.3 host");
    for hits in 1..=2 {
        let r = rt
            .handle_http("api-0-1-1", get("/count"), test_caller())
            .await
            .expect("the call runs");
        assert_eq!(r.status, 200);
        // 0.1.1 imports reached the host: 3 containers, the stopped one
        // with an exit code (`containers.exit-code`, added in 0.1.1), and
        // a counter kept through its 0.1.1 `storage` import.
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(body, format!("3/1/{hits}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_0_1_2_runs_on_a_0_1_3_host() {
    let host = host_with_containers();
    let rt = runtime(&host);
    let m = manifest("tests/plugins/api-0-1-2/plugin.toml");
    let g = Grant::approve_all(&m);
    rt.load(
        m,
        &wasm("wakedock_fixture_api_0_1_2"),
        g,
        serde_json::Value::Null,
    )
    .await
    .expect("a 0.1.2 plugin loads on a 0.1.3 host");
    for hits in 1..=2 {
        let r = rt
            .handle_http("api-0-1-2", get("/count"), test_caller())
            .await
            .expect("the call runs");
        assert_eq!(r.status, 200);
        // Its 0.1.2 `containers.list` and `storage.compare-and-swap`
        // imports reached the host.
        assert_eq!(String::from_utf8_lossy(&r.body), format!("3/{hits}"));
    }
}
