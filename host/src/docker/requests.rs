//! Engine requests by operation: `wakedock_docker_requests_total{op}`.
//!
//! Every request [`DockerEngine`](super::DockerEngine) sends is counted
//! under a fixed operation name (never a container id or name, so the
//! series stay few), which is how a test or an operator sees what a wake
//! or a sleep costs the engine.

use prometheus::{IntCounterVec, Opts, Registry};

/// One kind of engine request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineOp {
    Ping,
    /// API version negotiation when (re)connecting.
    Version,
    List,
    Inspect,
    Start,
    Stop,
    Restart,
    Pause,
    Unpause,
    Remove,
    Logs,
    Stats,
    /// The three requests of one on-demand healthcheck run.
    ExecCreate,
    ExecStart,
    ExecInspect,
    /// Opening the event stream.
    Events,
}

impl EngineOp {
    pub const ALL: [EngineOp; 16] = [
        EngineOp::Ping,
        EngineOp::Version,
        EngineOp::List,
        EngineOp::Inspect,
        EngineOp::Start,
        EngineOp::Stop,
        EngineOp::Restart,
        EngineOp::Pause,
        EngineOp::Unpause,
        EngineOp::Remove,
        EngineOp::Logs,
        EngineOp::Stats,
        EngineOp::ExecCreate,
        EngineOp::ExecStart,
        EngineOp::ExecInspect,
        EngineOp::Events,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EngineOp::Ping => "ping",
            EngineOp::Version => "version",
            EngineOp::List => "list",
            EngineOp::Inspect => "inspect",
            EngineOp::Start => "start",
            EngineOp::Stop => "stop",
            EngineOp::Restart => "restart",
            EngineOp::Pause => "pause",
            EngineOp::Unpause => "unpause",
            EngineOp::Remove => "remove",
            EngineOp::Logs => "logs",
            EngineOp::Stats => "stats",
            EngineOp::ExecCreate => "exec_create",
            EngineOp::ExecStart => "exec_start",
            EngineOp::ExecInspect => "exec_inspect",
            EngineOp::Events => "events",
        }
    }
}

/// The counter, with every operation's series present from the start.
#[derive(Debug, Clone)]
pub struct EngineRequests {
    counter: IntCounterVec,
}

impl Default for EngineRequests {
    fn default() -> Self {
        let counter = IntCounterVec::new(
            Opts::new(
                "docker_requests_total",
                "Requests sent to the Docker engine, by operation",
            ),
            &["op"],
        )
        .expect("static metric description");
        for op in EngineOp::ALL {
            counter.with_label_values(&[op.as_str()]);
        }
        Self { counter }
    }
}

impl EngineRequests {
    pub fn count(&self, op: EngineOp) {
        self.counter.with_label_values(&[op.as_str()]).inc();
    }

    /// Requests of `op` so far.
    pub fn get(&self, op: EngineOp) -> u64 {
        self.counter.with_label_values(&[op.as_str()]).get()
    }

    /// Adds the counter to `registry` (the host's `/metrics`).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.counter.clone()))
    }
}
