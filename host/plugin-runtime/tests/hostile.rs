//! Hostile plugins through the real runtime: each gets a clear error, and
//! the runtime (and other plugins) keep serving.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use wakedock_plugin_runtime::caps::{BoxFuture, CapResult, StorageHost};
use wakedock_plugin_runtime::testing::{get, test_caller, TestHost};
use wakedock_plugin_runtime::{
    CallError, Grant, Manifest, PluginHealth, PluginRuntime, RuntimeConfig, RuntimeError,
};

async fn call(rt: &PluginRuntime, path: &str) -> Result<(u16, String), RuntimeError> {
    rt.handle_http("hostile", get(path), test_caller())
        .await
        .map(|r| (r.status, body(&r)))
}

fn call_error(r: Result<(u16, String), RuntimeError>) -> CallError {
    match r {
        Err(RuntimeError::Call { plugin, kind }) => {
            assert_eq!(plugin, "hostile");
            kind
        }
        other => panic!("expected a failed call, got {other:?}"),
    }
}

async fn setup() -> (TestHost, PluginRuntime) {
    let host = host_with_containers();
    let rt = runtime(&host);
    load_hostile(&rt, Grant::approve_all(&hostile_manifest())).await;
    load_example(&rt).await;
    (host, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_by_the_cpu_budget() {
    let (_host, rt) = setup().await;
    let started = Instant::now();
    assert_eq!(
        call_error(call(&rt, "/loop").await),
        CallError::CpuLimit { limit_ms: 100 }
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The same plugin still serves, on a fresh instance.
    assert_eq!(call(&rt, "/ok").await.unwrap(), (200, "fine".into()));
}

/// On a single-threaded runtime the other plugin can only be served if the
/// looping plugin yields to tokio (it does, on every epoch tick).
#[tokio::test(flavor = "current_thread")]
async fn a_looping_plugin_does_not_block_the_executor() {
    let host = host_with_containers();
    let rt = runtime(&host);
    let mut m = hostile_manifest();
    m.limits.cpu_ms_per_call = Some(1500);
    // A wall limit far above the CPU budget: on a loaded machine the
    // epoch ticks that count CPU come slower than the clock (the
    // manifest's 2 s wall limit struck first at load average 10).
    m.limits.wall_ms_per_call = Some(30_000);
    load_hostile_as(&rt, m).await;
    load_example(&rt).await;
    let started = Instant::now();
    let (looping, other) = tokio::join!(
        async {
            let r = call(&rt, "/loop").await;
            (r, started.elapsed())
        },
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let r = rt
                .handle_http("example", get("/hello"), test_caller())
                .await;
            (r, started.elapsed())
        }
    );
    let (loop_result, loop_done) = looping;
    let (other_result, other_done) = other;
    assert_eq!(
        call_error(loop_result),
        CallError::CpuLimit { limit_ms: 1500 }
    );
    assert_eq!(other_result.unwrap().status, 200);
    assert!(
        other_done < loop_done,
        "served at {other_done:?}, loop ended at {loop_done:?}"
    );
    assert!(other_done < Duration::from_millis(1000), "{other_done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_limit() {
    let host = host_with_containers();
    let rt = runtime(&host);
    // A generous CPU budget, so only the memory limit can stop it even on a
    // loaded machine.
    let mut grant = Grant::approve_all(&hostile_manifest());
    grant.limits.cpu_ms_per_call = None;
    let mut m = hostile_manifest();
    m.limits.cpu_ms_per_call = Some(2000);
    m.limits.wall_ms_per_call = Some(5000);
    rt.load(
        m,
        &wasm("wakedock_fixture_hostile"),
        grant,
        serde_json::Value::Null,
    )
    .await
    .unwrap();
    assert_eq!(
        call_error(call(&rt, "/oom").await),
        CallError::MemoryLimit {
            limit_bytes: 32 << 20
        }
    );
    let st = rt.plugin_status("hostile").unwrap();
    assert!(st.memory_high_water_bytes <= 32 << 20);
    assert!(
        st.memory_high_water_bytes > 16 << 20,
        "{}",
        st.memory_high_water_bytes
    );
    assert_eq!(call(&rt, "/ok").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_traps_with_stack_overflow() {
    let (_host, rt) = setup().await;
    match call_error(call(&rt, "/recurse").await) {
        CallError::Trap(msg) => assert!(msg.contains("stack"), "{msg}"),
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
    assert_eq!(call(&rt, "/ok").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_and_panic_fail_only_that_call() {
    let (_host, rt) = setup().await;
    match call_error(call(&rt, "/trap").await) {
        CallError::Trap(msg) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        call_error(call(&rt, "/panic").await),
        CallError::Trap(_)
    ));
    assert_eq!(call(&rt, "/ok").await.unwrap().0, 200);
    let st = rt.plugin_status("hostile").unwrap();
    assert_eq!(st.errors, 2);
    assert!(st.last_error.unwrap().contains("trapped"));
    assert_eq!(
        st.health,
        PluginHealth::Enabled,
        "a success resets the failure streak"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_suspend_with_backoff_then_retry_automatically() {
    let (_host, rt) = setup().await;
    for _ in 0..3 {
        let _ = call(&rt, "/trap").await;
    }
    let st = rt.plugin_status("hostile").unwrap();
    let PluginHealth::Failed {
        reason,
        retry_at,
        consecutive_failures,
    } = st.health
    else {
        panic!("expected failed, got {:?}", st.health);
    };
    assert!(reason.contains("unreachable"), "{reason}");
    assert_eq!(consecutive_failures, 3);
    assert!(retry_at > std::time::SystemTime::now());
    // Refused while suspended, without running the plugin.
    match call(&rt, "/ok").await {
        Err(RuntimeError::Failed { plugin, .. }) => assert_eq!(plugin, "hostile"),
        other => panic!("expected Failed, got {other:?}"),
    }
    // Other plugins unaffected.
    assert_eq!(
        rt.handle_http("example", get("/hello"), test_caller())
            .await
            .unwrap()
            .status,
        200
    );
    // After the back-off (300 ms in tests) it is retried on probation...
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = call(&rt, "/trap").await;
    // ...and one more failure suspends it again, for twice as long.
    let PluginHealth::Failed {
        retry_at: again, ..
    } = rt.plugin_status("hostile").unwrap().health
    else {
        panic!("expected failed again");
    };
    let wait = again.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        wait > Duration::from_millis(400),
        "back-off doubled: {wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(call(&rt, "/ok").await.unwrap().0, 200);
    assert_eq!(
        rt.plugin_status("hostile").unwrap().health,
        PluginHealth::Enabled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_outside_selector_or_without_write_is_denied_and_audited() {
    let (host, rt) = setup().await;
    // c3 has no wakedock.enable label.
    let (status, msg) = call(&rt, "/stop?id=c3").await.unwrap();
    assert_eq!(status, 409);
    assert!(
        msg.contains("permission denied") && msg.contains("outside the granted selector"),
        "{msg}"
    );
    let (status, msg) = call(&rt, "/inspect?id=c3").await.unwrap();
    assert_eq!(
        (status, msg.contains("permission denied")),
        (409, true),
        "{msg}"
    );
    // c1 is inside: the stop reaches the host.
    assert_eq!(call(&rt, "/stop?id=c1").await.unwrap().0, 200);
    let actions = host.containers.actions.lock().unwrap().clone();
    assert_eq!(actions, vec![("stop".to_owned(), "c1".to_owned())]);
    let audit = host.audit_entries();
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (
            audit[0].plugin.as_str(),
            audit[0].capability,
            audit[0].action,
            audit[0].target.as_str()
        ),
        ("hostile", "containers", "stop", "c3")
    );

    // Same plugin, granted read only: stop is refused even inside the selector.
    let host = host_with_containers();
    let rt = runtime(&host);
    let grant = Grant::from_toml(
        r#"
[capabilities]
containers = { access = "read" }
storage = { quota-bytes = 16384 }
http-outbound = { hosts = ["hooks.example.com"] }
events = { publish = ["hostile.*"] }
"#,
    )
    .unwrap();
    load_hostile(&rt, grant).await;
    let (status, msg) = call(&rt, "/stop?id=c1").await.unwrap();
    assert_eq!(status, 409);
    assert!(msg.contains("needs containers access"), "{msg}");
    assert!(host.containers.actions.lock().unwrap().is_empty());
    assert_eq!(host.audit_entries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_is_checked_by_inspect_and_a_grant_of_everything_needs_none() {
    use std::sync::atomic::Ordering;
    // Granted `wakedock.enable=true`: the container's labels must be read.
    let (host, rt) = setup().await;
    assert_eq!(call(&rt, "/stop?id=web").await.unwrap().0, 200);
    assert_eq!(host.containers.inspects.load(Ordering::Relaxed), 1);
    // The id the runtime resolved is what reaches the host.
    assert_eq!(
        host.containers.actions.lock().unwrap().clone(),
        vec![("stop".to_owned(), "c1".to_owned())]
    );

    // Asking for and granted every container (as the wake plugin does):
    // nothing to look at before acting.
    let host = host_with_containers();
    let rt = runtime(&host);
    let mut m = hostile_manifest();
    m.capabilities
        .containers
        .as_mut()
        .expect("the fixture asks for containers")
        .selector = None;
    load_hostile_as(&rt, m).await;
    assert_eq!(call(&rt, "/stop?id=web").await.unwrap().0, 200);
    assert_eq!(call(&rt, "/stop?id=secret").await.unwrap().0, 200);
    assert_eq!(host.containers.inspects.load(Ordering::Relaxed), 0);
    assert_eq!(host.containers.actions.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeouts_above_the_maximum_are_refused() {
    let (host, rt) = setup().await;
    for t in ["3601", "2147483648", "4294967295"] {
        let (status, msg) = call(&rt, &format!("/stop?id=c1&timeout={t}"))
            .await
            .unwrap();
        assert_eq!(status, 409, "{msg}");
        assert!(msg.contains("above the maximum of 3600"), "{t}: {msg}");
    }
    assert!(host.containers.actions.lock().unwrap().is_empty());
    assert_eq!(call(&rt, "/stop?id=c1&timeout=3600").await.unwrap().0, 200);
    assert_eq!(host.containers.actions.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_only_to_allowlisted_hosts_and_rate_limited() {
    let (host, rt) = setup().await;
    for url in [
        "http://evil.example.org/steal",
        "http://hooks.example.com.evil.org/",
        "http://127.0.0.1:9/",
    ] {
        let (status, msg) = call(&rt, &format!("/outbound?url={url}")).await.unwrap();
        assert_eq!(status, 409, "{url}");
        assert!(msg.contains("not in the granted allowlist"), "{url}: {msg}");
    }
    let (status, msg) = call(&rt, "/outbound?url=http://user:pw@hooks.example.com/")
        .await
        .unwrap();
    assert_eq!((status, msg.contains("credentials")), (409, true), "{msg}");
    assert_eq!(host.audit_entries().len(), 3);
    assert!(
        host.http.sent.lock().unwrap().is_empty(),
        "nothing left the sandbox"
    );

    // Allowed host: 5 per minute, then quota-exceeded.
    for _ in 0..5 {
        assert_eq!(
            call(&rt, "/outbound?url=https://hooks.example.com/x")
                .await
                .unwrap(),
            (200, "ok: 200".into())
        );
    }
    let (status, msg) = call(&rt, "/outbound?url=https://hooks.example.com/x")
        .await
        .unwrap();
    assert_eq!((status, msg.as_str()), (409, "quota exceeded"));
    assert_eq!(host.http.sent.lock().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_flood_stops_at_the_quota() {
    let (host, rt) = setup().await;
    let (status, msg) = call(&rt, "/flood").await.unwrap();
    assert_eq!(status, 507, "{msg}");
    assert!(msg.ends_with("quota exceeded"), "{msg}");
    let written: u64 = msg.split(' ').next().unwrap().parse().unwrap();
    assert!(
        (10..16).contains(&written),
        "{written} KiB chunks in a 16 KiB quota"
    );
    assert!(host.storage.usage("hostile") <= 16384);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_outside_granted_topics_is_denied() {
    let (host, rt) = setup().await;
    assert_eq!(
        call(&rt, "/publish?topic=hostile.alert").await.unwrap().0,
        200
    );
    let (status, msg) = call(&rt, "/publish?topic=wake.started").await.unwrap();
    assert_eq!(status, 409);
    assert!(msg.contains("not in the granted publish list"), "{msg}");
    assert_eq!(host.events.published.lock().unwrap().len(), 1);
    assert_eq!(host.audit_entries()[0].capability, "events");
}

/// A storage backend that never answers: the wall-time limit must still end
/// the call (CPU epochs do not advance while the plugin awaits the host).
struct HangingStorage;

impl StorageHost for HangingStorage {
    fn get<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, CapResult<Option<Vec<u8>>>> {
        Box::pin(std::future::pending())
    }
    fn set<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Vec<u8>,
        _: u64,
    ) -> BoxFuture<'a, CapResult<()>> {
        Box::pin(std::future::pending())
    }
    fn delete<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, CapResult<bool>> {
        Box::pin(std::future::pending())
    }
    fn list_keys<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, CapResult<Vec<String>>> {
        Box::pin(std::future::pending())
    }
    fn compare_and_swap<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<Vec<u8>>,
        _: Option<Vec<u8>>,
        _: u64,
    ) -> BoxFuture<'a, CapResult<bool>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_time_limit_covers_time_in_host_calls() {
    let host = host_with_containers();
    let mut caps = host.capabilities();
    caps.storage = Arc::new(HangingStorage);
    let rt = PluginRuntime::new(test_config(), caps).unwrap();
    let mut grant = Grant::approve_all(&hostile_manifest());
    grant.limits.wall_ms_per_call = Some(300);
    load_hostile(&rt, grant).await;
    let started = Instant::now();
    assert_eq!(
        call_error(call(&rt, "/flood").await),
        CallError::WallTimeout { limit_ms: 300 }
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(call(&rt, "/ok").await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_runaway_init_refuses_the_load() {
    let host = host_with_containers();
    let rt = runtime(&host);
    let m = hostile_manifest();
    let err = rt
        .load(
            m.clone(),
            &wasm("wakedock_fixture_hostile"),
            Grant::approve_all(&m),
            serde_json::json!({"fail-init": true}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::InitFailed { message, .. } if message.contains("fail-init is set")),
        "{err}"
    );
    let err = rt
        .load(
            m.clone(),
            &wasm("wakedock_fixture_hostile"),
            Grant::approve_all(&m),
            serde_json::json!({"loop-in-init": true}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::InitFailed { message, .. } if message.contains("CPU budget")),
        "{err}"
    );
    assert!(rt.status().is_empty(), "nothing half-loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_into_one_plugin_are_correct() {
    let (_host, rt) = setup().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let rt = rt.clone();
        tasks.spawn(async move {
            let n = 1000 + i;
            let r = rt
                .handle_http("hostile", get(&format!("/compute?n={n}")), test_caller())
                .await
                .unwrap();
            (n, body(&r))
        });
    }
    let mut seen = 0;
    while let Some(r) = tasks.join_next().await {
        let (n, got) = r.unwrap();
        assert_eq!(got, (n * (n + 1) / 2).to_string(), "n={n}");
        seen += 1;
    }
    assert_eq!(seen, 200);
    let st = rt.plugin_status("hostile").unwrap();
    assert_eq!((st.calls, st.errors), (200, 0));
    assert!(
        st.live_instances >= 1 && st.live_instances <= 4,
        "{}",
        st.live_instances
    );
}

// A burst of concurrent calls grows the pool; once the burst is over, the
// instances left idle past the TTL are dropped, all but one (issue 9: the
// host's RSS after a wake storm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_after_a_burst_are_dropped_but_one() {
    let host = host_with_containers();
    let ttl = Duration::from_millis(300);
    let config = RuntimeConfig {
        idle_instance_ttl: ttl,
        ..test_config()
    };
    let rt = PluginRuntime::new(config, host.capabilities()).expect("runtime");
    load_hostile(&rt, Grant::approve_all(&hostile_manifest())).await;
    // Slow calls side by side, so each needs its own instance.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let rt = rt.clone();
        tasks.spawn(async move {
            rt.handle_http("hostile", get("/compute?n=5000000"), test_caller())
                .await
                .unwrap()
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let grown = rt.plugin_status("hostile").unwrap().live_instances;
    assert!(grown >= 2, "the burst ran on {grown} instance(s)");
    // Returning an instance trims the pool: calls after the TTL leave one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        rt.handle_http("hostile", get("/compute?n=10"), test_caller())
            .await
            .unwrap();
        let live = rt.plugin_status("hostile").unwrap().live_instances;
        if live == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} instances stayed live");
        tokio::time::sleep(ttl / 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_ticks_on_its_interval() {
    let host = host_with_containers();
    let rt = runtime(&host);
    let mut m = hostile_manifest();
    m.tick_interval = Some("100ms".into());
    load_hostile_as(&rt, m).await;
    tokio::time::sleep(Duration::from_millis(550)).await;
    let ticks = host
        .storage
        .data
        .lock()
        .unwrap()
        .get(&("hostile".to_owned(), "ticks".to_owned()))
        .cloned();
    let n: u64 = serde_json::from_slice(&ticks.expect("ticked")).unwrap();
    assert!((3..=6).contains(&n), "{n} ticks in 550 ms at 100 ms");
    rt.unload("hostile").unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let after: u64 = serde_json::from_slice(
        &host.storage.data.lock().unwrap()[&("hostile".to_owned(), "ticks".to_owned())],
    )
    .unwrap();
    assert!(after <= n + 1, "ticker stopped after unload");
}

/// The hostile fixture ticking every 100 ms under a grant without storage:
/// its tick reads and writes storage, so every tick is refused twice.
async fn ticking_without_storage(interval: Duration) -> (TestHost, PluginRuntime) {
    let host = host_with_containers();
    let rt = PluginRuntime::new(
        RuntimeConfig {
            denial_report_interval: interval,
            ..test_config()
        },
        host.capabilities(),
    )
    .expect("runtime");
    let mut m = hostile_manifest();
    m.tick_interval = Some("100ms".into());
    let grant = Grant::from_toml(
        r#"
[capabilities]
containers = { access = "read", selector = "wakedock.enable=true" }
"#,
    )
    .unwrap();
    rt.load(
        m,
        &wasm("wakedock_fixture_hostile"),
        grant,
        serde_json::Value::Null,
    )
    .await
    .unwrap();
    (host, rt)
}

/// Waits (on a condition, not a duration) until the plugin has run `n` calls.
async fn until_calls(rt: &PluginRuntime, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.plugin_status("hostile").unwrap().calls < n {
        assert!(Instant::now() < deadline, "fewer than {n} ticks in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn storage_denials(host: &TestHost) -> Vec<(&'static str, u64)> {
    host.audit_entries()
        .into_iter()
        .filter(|e| e.capability == "storage")
        .map(|e| (e.action, e.repeated))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_refused_on_every_tick_is_audited_once_per_interval() {
    let (host, rt) = ticking_without_storage(Duration::from_secs(600)).await;
    until_calls(&rt, 10).await;
    // Ten ticks, twenty refusals: one record per distinct refusal.
    assert_eq!(storage_denials(&host), vec![("get", 0), ("set", 0)]);
    let st = rt.plugin_status("hostile").unwrap();
    let last = st.last_error.expect("the refusal is the last error");
    assert!(
        last.contains("permission denied: storage.") && last.contains("not granted"),
        "{last}"
    );
    // Refusals are answers, not failed calls: the plugin stays healthy.
    assert_eq!(st.errors, 0);
    assert_eq!(st.health, PluginHealth::Enabled);
    rt.unload("hostile").unwrap();

    // With a short interval the refusal is recorded again once it has
    // passed, counting the ticks left out in between.
    let (host, rt) = ticking_without_storage(Duration::from_millis(500)).await;
    until_calls(&rt, 2).await;
    let first = rt.plugin_status("hostile").unwrap().calls;
    let deadline = Instant::now() + Duration::from_secs(30);
    while storage_denials(&host).len() < 4 {
        assert!(Instant::now() < deadline, "not recorded again within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let denials = storage_denials(&host);
    let again = &denials[2..4];
    assert!(
        again.iter().all(|(_, repeated)| *repeated >= 1),
        "the second records count the refusals left out: {denials:?}"
    );
    let calls = rt.plugin_status("hostile").unwrap().calls;
    assert!(
        (denials.len() as u64) < 2 * (calls - first + 1),
        "fewer records than refusals: {denials:?} after {calls} calls"
    );
}

// ---- refused at load time ----

fn load_err(rt: &PluginRuntime, m: Manifest, wasm_bytes: Vec<u8>, grant: Grant) -> RuntimeError {
    let rt = rt.clone();
    tokio::runtime::Handle::current().block_on(async move {
        rt.load(m, &wasm_bytes, grant, serde_json::Value::Null)
            .await
            .unwrap_err()
    })
}

#[test]
fn refused_at_load_with_clear_errors() {
    let tokio_rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = tokio_rt.enter();
    let host = host_with_containers();
    let rt = runtime(&host);
    let hostile = wasm("wakedock_fixture_hostile");

    // Imports an interface of API 0.2 while the manifest claims 0.1.
    let liar = manifest("tests/plugins/wrong-version/plugin.toml");
    let g = Grant::approve_all(&liar);
    let err = load_err(&rt, liar, wasm("wakedock_fixture_wrong_version"), g);
    assert!(
        matches!(&err, RuntimeError::ImportVersionMismatch { import, .. } if import == "wakedock:plugin/log@0.2.0"),
        "{err}"
    );
    assert!(err.to_string().contains("rebuild the plugin"), "{err}");

    // Manifest declares an API this host does not implement.
    let mut m = hostile_manifest();
    m.api_version = "9.0.0".into();
    let g = Grant::approve_all(&m);
    let err = load_err(&rt, m, hostile.clone(), g);
    assert!(
        matches!(err, RuntimeError::IncompatibleApi { ref plugin, .. } if plugin == "9.0.0"),
        "{err}"
    );

    // Not wasm; and a valid core module that is not a component.
    for bytes in [
        b"this is not wasm".to_vec(),
        b"\0asm\x01\0\0\0".to_vec(),
        hostile[..hostile.len() / 2].to_vec(),
    ] {
        let m = hostile_manifest();
        let g = Grant::approve_all(&m);
        let err = load_err(&rt, m, bytes, g);
        assert!(matches!(err, RuntimeError::MalformedWasm { .. }), "{err}");
    }

    // Requested but not granted: the plugin loads (admins may grant part
    // of a request) and a call to the capability is refused at the host
    // function.
    let m = hostile_manifest();
    let mut g = Grant::approve_all(&m);
    g.capabilities.http_outbound = None;
    tokio_rt
        .block_on(rt.load(m, &hostile, g, serde_json::Value::Null))
        .unwrap();
    let (status, body) = tokio_rt
        .block_on(call(&rt, "/outbound?url=https://hooks.example.com/x"))
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("permission"), "{body}");
    rt.unload("hostile").unwrap();

    // Not even requested by the manifest.
    let mut m = hostile_manifest();
    m.capabilities.storage = None;
    let g = Grant::approve_all(&m);
    let err = load_err(&rt, m, hostile.clone(), g);
    assert!(
        matches!(&err, RuntimeError::ImportNotGranted { reason, .. } if reason.contains("manifest does not request capability `storage`")),
        "{err}"
    );

    // Loading the same name twice.
    let m = hostile_manifest();
    let g = Grant::approve_all(&m);
    tokio_rt
        .block_on(rt.load(m.clone(), &hostile, g.clone(), serde_json::Value::Null))
        .unwrap();
    let err = load_err(&rt, m, hostile, g);
    assert!(matches!(err, RuntimeError::AlreadyLoaded(_)), "{err}");
}

#[test]
fn bad_manifest_fixtures_name_their_field() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/plugins/manifests");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect-field: "))
            .unwrap_or_else(|| panic!("{} lacks an `# expect-field:` line", path.display()))
            .trim()
            .to_owned();
        match Manifest::from_toml(&text) {
            Err(wakedock_plugin_runtime::ManifestError::Field { field, message }) => {
                assert_eq!(field, expected, "{}: {message}", path.display());
            }
            other => panic!("{}: expected a field error, got {other:?}", path.display()),
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} bad-manifest fixtures found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_hits_and_survives_a_corrupt_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_containers();
    let config = || wakedock_plugin_runtime::RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..test_config()
    };
    let m = example_manifest();
    let g = Grant::approve_all(&m);
    let bytes = wasm("wakedock_plugin_example");

    let rt = PluginRuntime::new(config(), host.capabilities()).unwrap();
    let first = rt
        .load(m.clone(), &bytes, g.clone(), serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(first.cache, wakedock_plugin_runtime::CacheOutcome::Compiled);

    let rt2 = PluginRuntime::new(config(), host.capabilities()).unwrap();
    let second = rt2
        .load(m.clone(), &bytes, g.clone(), serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(second.cache, wakedock_plugin_runtime::CacheOutcome::Hit);
    assert!(rt2.plugin_status("example").unwrap().loaded_from_cache);
    assert_eq!(
        rt2.handle_http("example", get("/hello"), test_caller())
            .await
            .unwrap()
            .status,
        200
    );

    // Corrupt every artifact: the next load recompiles instead of failing.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    let rt3 = PluginRuntime::new(config(), host.capabilities()).unwrap();
    let third = rt3
        .load(m, &bytes, g, serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(third.cache, wakedock_plugin_runtime::CacheOutcome::Compiled);
}
