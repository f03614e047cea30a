//! Building the host from a configuration and serving it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::TokenKeys;
use crate::auth::password;
use crate::auth::ratelimit::RateLimits;
use crate::config::Config;
use crate::db::{self, users, Db};
use crate::docker::DockerEngine;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Connects the database (running migrations) and prepares everything the
/// handlers need. Docker need not be reachable.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let data = &config.wakedock.data_path;
    crate::private_files::create_dir(data)
        .with_context(|| format!("creating data directory {}", data.display()))?;
    let secret = match &config.security.jwt_secret {
        Some(s) => s.clone(),
        None => crate::secrets::load_or_create_jwt_secret(data)?,
    };
    let db = Db::connect(&config.database_url(), config.database.pool_size)
        .await
        .context("connecting to the database")?;
    let applied = db.migrate().await.context("running migrations")?;
    warn_if_exposed(&config);
    if !applied.is_empty() {
        tracing::info!(?applied, backend = db.backend(), "applied migrations");
    }
    let docker = DockerEngine::new(
        config.docker.socket_path.clone(),
        config.docker.stop_timeout.get(),
    );
    let metrics = Arc::new(Metrics::new()?);
    docker.requests().register(&metrics.registry)?;
    let bus = crate::events::EventBus::default();
    // Subscribed to the bus before any plugin runs: no state is missed.
    let wake = Arc::new(crate::wake::WakeHub::new(&bus));
    if let Some(hint) = crate::container_env::socket_access_hint(&config.docker.socket_path) {
        tracing::warn!("{hint}");
    }
    let own = crate::plugins::caps::own_container(&docker).await;
    if let Some((id, name)) = &own {
        tracing::info!(container = %name, id = %&id[..12.min(id.len())], "running in a container: WakeDock never stops or pauses it");
    }
    // Background loops stop after the requests, on their own token.
    let tasks = crate::tasks::Tasks::new(CancellationToken::new());
    let stacks_dir = config.stacks_dir();
    let files = Arc::new(
        crate::stacks::files::DirFiles::open(&stacks_dir)
            .with_context(|| format!("opening the stacks directory {}", stacks_dir.display()))?,
    );
    let compose = Arc::new(
        crate::stacks::Compose::new(
            &stacks_dir,
            config.stacks.compose_binary.clone(),
            config.stacks.action_timeout.get(),
            &config.docker.socket_path,
            bus.clone(),
            db.clone(),
            docker.clone(),
        )
        .with_context(|| format!("opening the stacks directory {}", stacks_dir.display()))?,
    );
    let plugins = Arc::new(
        crate::plugins::PluginManager::new(
            db.clone(),
            crate::plugins::caps::DockerContainers {
                docker: docker.clone(),
                own: own.clone(),
            },
            bus.clone(),
            metrics.registry.clone(),
            data,
            &config.plugin_runtime,
            tasks.clone(),
            (files, compose.clone()),
        )
        .context("starting the plugin runtime")?,
    );
    let declared = crate::wake::config::with_wake_config(
        &config.plugins,
        &config.services,
        own.as_ref().map(|(_, name)| name.as_str()),
        config.wakedock.instance.as_deref(),
    );
    let declared =
        crate::alerts::config::with_alerts_config(&declared, config.wakedock.instance.as_deref());
    // The stacks plugin lists, as projects to adopt, only the install's own
    // (see `wakedock.instance`).
    let declared = match config.wakedock.instance.as_deref() {
        Some(instance) => {
            let mut extra = serde_json::Map::new();
            extra.insert("instance".into(), instance.into());
            crate::wake::config::with_config_for(&declared, "stacks", &extra)
        }
        None => declared,
    };
    plugins.start(&declared).await.context("loading plugins")?;
    // Every service's real state before the listener accepts a request.
    wake.seed(&plugins).await;
    let backups = Arc::new(
        crate::backup::schedule::Backups::new(
            &config.backup,
            data,
            config.security.jwt_secret.is_some(),
        )
        .with_metrics(metrics.data.clone()),
    );
    Ok(AppState {
        backups,
        keys: Arc::new(TokenKeys::new(
            secret.as_bytes(),
            config.security.access_token_ttl.get(),
        )),
        limits: Arc::new(RateLimits::new(&config.security.rate_limit)),
        metrics,
        bus,
        plugins,
        wake,
        // Routes follow the install's scope, like label-defined services.
        routes: crate::routes::RouteHub::new(
            config
                .wakedock
                .instance
                .iter()
                .map(|i| format!("{}={i}", wakedock_plugin_wake::scope::INSTANCE_LABEL))
                .collect(),
        ),
        own_container: own.map(|(id, _)| id),
        compose,
        ui: Arc::new(crate::ui::UiState::default()),
        bridge_tokens: Arc::new(config.security.bridge_tokens.clone()),
        config: Arc::new(config),
        db,
        docker,
        tasks,
        shutdown: CancellationToken::new(),
    })
}

/// Warns about data files other users can read (they were created before
/// WakeDock made them private, or changed since).
fn warn_if_exposed(config: &Config) {
    let data = &config.wakedock.data_path;
    let mut paths = vec![data.clone(), data.join(crate::secrets::JWT_SECRET_FILE)];
    if let Ok(db::DatabaseUrl::Sqlite(file)) = db::DatabaseUrl::parse(&config.database_url()) {
        paths.extend(crate::private_files::sqlite_files(&file));
    }
    crate::private_files::warn_if_exposed(&paths);
}

/// The first admin's name.
pub const FIRST_ADMIN: &str = "admin";

/// What [`bootstrap_admin`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstAdmin {
    /// Users existed already; the oldest active admin, if any.
    Existing(Option<String>),
    /// Created `admin` with the given password.
    FromEnv,
    /// Created `admin` with this generated password (shown once, in the
    /// start banner).
    Generated(String),
}

/// On first start (no users at all) creates `admin` with `password`
/// (already validated with the configuration), or with a generated one.
pub async fn bootstrap_admin(db: &Db, password_text: Option<String>) -> anyhow::Result<FirstAdmin> {
    if db.run(users::count).await? > 0 {
        let list = db.run(users::list).await?;
        let admin = list
            .into_iter()
            .filter(|u| u.active && u.role == users::Role::Admin)
            .min_by_key(|u| u.created_at)
            .map(|u| u.username);
        return Ok(FirstAdmin::Existing(admin));
    }
    let (pw, generated) = match password_text {
        Some(p) => {
            password::validate(&p).map_err(|e| anyhow::anyhow!("WAKEDOCK_ADMIN_PASSWORD: {e}"))?;
            (p, false)
        }
        None => (password::generate(), true),
    };
    let pw2 = pw.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw2)).await??;
    let created = db
        .run(move |c| {
            // Re-check inside the write: two hosts starting on one database
            // must not both create an admin.
            if users::count(c)? > 0 {
                return Ok(false);
            }
            users::insert(c, FIRST_ADMIN, &hash, users::Role::Admin).map(|_| true)
        })
        .await?;
    if !created {
        // Another host on the same database was first.
        return Ok(FirstAdmin::Existing(Some(FIRST_ADMIN.into())));
    }
    if generated {
        // The password itself goes to the start banner (standard output),
        // not into the log and its files.
        tracing::warn!(
            username = FIRST_ADMIN,
            "created the first admin user with a generated password; it is shown once, in the \
             start banner: sign in and change it, or set WAKEDOCK_ADMIN_PASSWORD before the first start"
        );
        Ok(FirstAdmin::Generated(pw))
    } else {
        tracing::info!(
            username = FIRST_ADMIN,
            "created the first admin user from WAKEDOCK_ADMIN_PASSWORD"
        );
        Ok(FirstAdmin::FromEnv)
    }
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish and waits for the background
/// tasks (all within `wakedock.shutdown_timeout`) and returns.
///
/// Connections are served by hyper directly (axum's `serve` has no header
/// timeout): at most `wakedock.max_connections` at once (the next waits in
/// the listen backlog), each closed if its request headers take longer
/// than `wakedock.header_read_timeout`, and a request body that sends
/// nothing for `wakedock.body_read_timeout` fails.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let token = state.shutdown.clone();
    start_background(&state);

    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = state.db.backend(), "WakeDock is listening");
    let server = &state.config.wakedock;
    let grace = server.shutdown_timeout.get();
    let header_timeout = server.header_read_timeout.get();
    let body_timeout = server.body_read_timeout.get();
    let slots = Arc::new(tokio::sync::Semaphore::new(server.max_connections));
    let tasks = state.tasks.clone();
    let app = crate::http::app(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, retry.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(|body| {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body))
                });
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), req)
            });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing requests");
    // Ends streaming responses so they do not hold the shutdown open.
    token.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish in time; stopping anyway"
        );
    }
    // Requests are done: the background loops and jobs (audit writes
    // included) get what is left of the grace period.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !tasks.shut_down(left).await {
        tracing::warn!(
            running = tasks.running(),
            "background tasks did not finish in time; stopping anyway"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The host's long-running loops, supervised: one that panics is logged
/// and restarted; shutdown waits for each to end.
fn start_background(state: &AppState) {
    let tasks = &state.tasks;
    let docker = state.docker.clone();
    tasks.supervise("docker events", move |t| docker.clone().supervise(t));
    let s = state.clone();
    tasks.supervise("maintenance", move |t| maintenance(s.clone(), t));
    let s = state.clone();
    tasks.supervise("audit retention", move |t| {
        crate::retention::run(s.clone(), t)
    });
    let (backups, db) = (state.backups.clone(), state.db.clone());
    tasks.supervise("scheduled backups", move |t| {
        backups.clone().run(db.clone(), t)
    });
    let s = state.clone();
    tasks.supervise("wake hub", move |t| crate::wake::run(s.clone(), t));
    let s = state.clone();
    tasks.supervise("alerts events", move |t| crate::alerts::run(s.clone(), t));
    let (ui, docker) = (state.ui.clone(), state.docker.clone());
    tasks.supervise("ui events", move |t| ui.clone().run(docker.clone(), t));
    let (routes, docker) = (state.routes.clone(), state.docker.clone());
    tasks.supervise("routes", move |t| routes.clone().run(docker.clone(), t));
    let (plugins, docker, bus, jobs) = (
        state.plugins.clone(),
        state.docker.clone(),
        state.bus.clone(),
        tasks.clone(),
    );
    tasks.supervise("plugins", move |t| {
        plugins
            .clone()
            .run(docker.clone(), bus.clone(), jobs.clone(), t)
    });
    let followers = state.plugins.log_followers().clone();
    tasks.supervise("plugin log followers", move |t| followers.clone().run(t));
    // Plugin ticks run in the plugin runtime: on shutdown they end after
    // the tick in progress.
    let (plugins, token) = (state.plugins.clone(), tasks.token());
    tasks.spawn("plugin ticks", async move {
        token.cancelled().await;
        plugins.runtime().stop_ticks().await;
    });
}

/// Housekeeping every minute: forget idle rate-limit keys, delete long
/// expired refresh tokens.
async fn maintenance(state: AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        state.limits.shrink();
        if let Err(e) = state.db.run(db::tokens::purge_expired).await {
            tracing::warn!(error = %e, "purging expired refresh tokens");
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
