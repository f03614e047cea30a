//! Hostile test fixture: a plugin that misbehaves on request, so the
//! runtime's limits and permission checks can be exercised end to end.
//! Each route of `handle_http` does one bad (or good) thing.

use std::hint::black_box;

use wakedock_plugin_sdk::{
    containers, events, export_plugin, http, storage, Config, HttpRequest, HttpResponse, Plugin,
};

struct Hostile {
    /// Memory deliberately kept alive across calls (`/hold`).
    held: Vec<Vec<u8>>,
}

fn spin_forever() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Unbounded, non-tail recursion with no locals in linear memory, so it
/// exhausts the wasm call stack (not Rust's shadow stack).
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    recurse(n - 1).wrapping_mul(n.rotate_left(7)) ^ n
}

/// Executes wasm's `unreachable` instruction (abort on other targets, so
/// the crate still type-checks in a host build).
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

fn result_json<T: std::fmt::Debug>(r: Result<T, wakedock_plugin_sdk::Error>) -> HttpResponse {
    match r {
        Ok(v) => HttpResponse::text(200, &format!("ok: {v:?}")),
        Err(e) => HttpResponse::text(409, &e.describe()),
    }
}

impl Plugin for Hostile {
    fn init(config: Config) -> Result<Self, String> {
        if config.get("fail-init").and_then(|v| v.as_bool()) == Some(true) {
            return Err("refusing to start: fail-init is set".into());
        }
        if config.get("loop-in-init").and_then(|v| v.as_bool()) == Some(true) {
            spin_forever();
        }
        Ok(Hostile { held: Vec::new() })
    }

    fn on_tick(&mut self) {
        // Ticks succeed quietly; used to check the ticker runs.
        let n = storage::get_json::<u64>("ticks")
            .ok()
            .flatten()
            .unwrap_or(0);
        let _ = storage::set_json("ticks", &(n + 1));
    }

    fn handle_http(&mut self, req: HttpRequest) -> HttpResponse {
        let arg = |name: &str| req.query_param(name).unwrap_or("").to_owned();
        match req.path.as_str() {
            "/ok" => HttpResponse::text(200, "fine"),
            "/compute" => {
                let n: u64 = arg("n").parse().unwrap_or(0);
                let sum: u64 = (1..=n).map(black_box).sum();
                HttpResponse::text(200, &sum.to_string())
            }
            "/loop" => spin_forever(),
            "/oom" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                // Each step reserves 1 MiB more, until the limit refuses.
                loop {
                    // Reserve without touching: grows linear memory fast.
                    hog.push(black_box(Vec::with_capacity(1 << 20)));
                }
            }
            "/hold" => {
                let mb: usize = arg("mb").parse().unwrap_or(1);
                self.held.push(black_box(vec![1u8; mb << 20]));
                HttpResponse::text(
                    200,
                    &format!(
                        "holding {} MiB",
                        self.held.iter().map(|v| v.len() >> 20).sum::<usize>()
                    ),
                )
            }
            "/recurse" => HttpResponse::text(200, &recurse(black_box(u64::MAX)).to_string()),
            "/trap" => trap(),
            // Installed under the name `wake`, it stands in for a wake
            // plugin that traps on every wake.
            p if p.starts_with("/wake/") => trap(),
            "/panic" => panic!("hostile plugin panics on purpose"),
            "/inspect" => result_json(containers::inspect(&arg("id")).map(|c| c.name)),
            "/stop" => result_json(containers::stop(&arg("id"), arg("timeout").parse().ok())),
            "/await" => result_json(containers::await_ready(&arg("id"), 600_000)),
            "/outbound" => result_json(http::get(&arg("url")).map(|r| r.status)),
            "/publish" => result_json(events::publish(&arg("topic"), "{}")),
            "/flood" => {
                let chunk = vec![0u8; 1024];
                let mut written = 0u32;
                loop {
                    match storage::set(&format!("flood/{written}"), &chunk) {
                        Ok(()) => written += 1,
                        Err(e) => {
                            return HttpResponse::text(507, &format!("{written} {}", e.describe()))
                        }
                    }
                    if written > 100_000 {
                        return HttpResponse::text(200, "quota never hit");
                    }
                }
            }
            _ => HttpResponse::not_found(),
        }
    }
}

export_plugin!(Hostile);
