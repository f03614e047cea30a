//! The `wakedock` command line.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::password;
use crate::config::{Config, ConfigSource};
use crate::db::users::{self, Role, UserChanges};
use crate::db::{tokens, Db};

/// `--version`: the release and the newest plugin API this host runs (what
/// a plugin's `api-version` may be at most).
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (plugin API {})",
        env!("CARGO_PKG_VERSION"),
        wakedock_plugin_runtime::manifest::HOST_API_VERSION
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "wakedock",
    version = VERSION.as_str(),
    about = "Manage Docker containers; put idle ones to sleep and wake them on request"
)]
pub struct Cli {
    /// Config file (YAML or TOML). Default: $WAKEDOCK_CONFIG_PATH, else config/wakedock.yaml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users directly in the database (works with the server stopped).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage plugins in the database; a running host applies the change
    /// within two seconds.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Write a consistent backup of the database and the data directory
    /// (safe while the server runs).
    Backup {
        /// The file to write. Default: a new file in `backup.directory`.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Restore a backup into an empty database and data directory (any
    /// backend: a SQLite backup restores into PostgreSQL or MySQL).
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Ask the local server's /health; exit non-zero unless it answers 200
    /// (the container image's HEALTHCHECK).
    Healthcheck {
        /// Base URL of the server. Default: its listen address from the
        /// configuration (a wildcard address is asked on loopback).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Give up after this long (e.g. 5s).
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
        timeout: std::time::Duration,
    },
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install or upgrade a plugin from its plugin.toml and .wasm. Without
    /// --grant, shows what the plugin requests and installs nothing.
    Install {
        #[arg(long, value_name = "PLUGIN.TOML")]
        manifest: PathBuf,
        #[arg(long, value_name = "COMPONENT.WASM")]
        wasm: PathBuf,
        /// `all` to approve what the plugin requests, or a TOML file with an
        /// explicit grant: the manifest's [capabilities] and [limits]
        /// tables, narrowed (see the README, "Granting a plugin").
        #[arg(long, value_name = "all|FILE")]
        grant: Option<String>,
        /// Overrides of the manifest's [config], as a JSON object.
        #[arg(long, value_name = "JSON")]
        config: Option<String>,
        /// Install it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Installed plugins.
    List,
    Enable {
        name: String,
    },
    Disable {
        name: String,
    },
    /// Uninstall: delete the plugin, its files and its storage.
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it, secrets masked.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from stdin (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set a user's password (read from standard input); signs them out everywhere.
    Passwd {
        #[arg(long)]
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from stdin")?;
    let pw = s.trim_end_matches(['\n', '\r']).to_string();
    password::validate(&pw).map_err(|e| anyhow::anyhow!(e))?;
    Ok(pw)
}

/// Loads the configuration the way every command does.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let source = ConfigSource::resolve(cli.config.as_deref())?;
    Ok(Config::load(&source)?)
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    crate::private_files::create_dir(&config.wakedock.data_path).ok();
    let db = Db::connect(&config.database_url(), Some(2))
        .await
        .context("connecting to the database")?;
    db.migrate().await.context("running migrations")?;
    Ok(db)
}

pub async fn main(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = Db::connect(&config.database_url(), Some(1)).await?;
            let applied = db.migrate().await?;
            if applied.is_empty() {
                println!("database is up to date ({})", db.backend());
            } else {
                for v in applied {
                    println!("applied {v}");
                }
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            println!("configuration is valid");
            print!("{}", serde_yaml_like(&config.masked())?);
            Ok(())
        }
        Command::User(cmd) => user_command(&config, cmd).await,
        Command::Plugin(cmd) => plugin_command(&config, cmd).await,
        Command::Healthcheck { url, timeout } => {
            crate::healthcheck::run(&config, url, timeout).await
        }
        Command::Backup { output } => crate::backup::cli::backup(&config, output).await,
        Command::Restore { file } => crate::backup::cli::restore(&config, &file).await,
    }
}

/// Renders the effective config as pretty JSON (a subset of YAML, so it can
/// be pasted back into a config file).
fn serde_yaml_like(c: &Config) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(c)? + "\n")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init(&config.logging)?;
    let addr = std::net::SocketAddr::new(config.wakedock.host, config.wakedock.port);
    let admin_password = config.admin_password.clone();
    let state = crate::server::build_state(config).await?;
    let admin = crate::server::bootstrap_admin(&state.db, admin_password).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    // On standard output, apart from the log (stderr, maybe JSON): the
    // last thing `scripts/run.sh` shows before the host serves.
    print!("{}", crate::banner::render(listener.local_addr()?, &admin));
    crate::server::run(listener, state, crate::server::shutdown_signal()).await
}

async fn user_command(config: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    let db = open_db(config).await?;
    match cmd {
        UserCommand::Add { username, role, .. } => {
            crate::api::users::validate_username(&username).map_err(|e| anyhow::anyhow!(e))?;
            let pw = read_password_stdin()?;
            let hash = password::hash(&pw)?;
            let name = username.clone();
            let created = db
                .run(move |c| {
                    if users::by_username(c, &name)?.is_some() {
                        return Ok(None);
                    }
                    users::insert(c, &name, &hash, role).map(Some)
                })
                .await?
                .ok_or_else(|| anyhow::anyhow!("user {username:?} already exists"))?;
            audit_cli(&db, "user.create", &created.username).await;
            println!(
                "created user {} ({})",
                created.username,
                created.role.as_str()
            );
        }
        UserCommand::Passwd { username, .. } => {
            let pw = read_password_stdin()?;
            let hash = password::hash(&pw)?;
            let name = username.clone();
            let found = db
                .run(move |c| {
                    let Some(row) = users::by_username(c, &name)? else {
                        return Ok(false);
                    };
                    users::update(
                        c,
                        &row.id,
                        &UserChanges {
                            password_hash: Some(hash),
                            ..Default::default()
                        },
                    )?;
                    tokens::revoke_user(c, &row.id)?;
                    Ok(true)
                })
                .await?;
            if !found {
                anyhow::bail!("no user named {username:?}");
            }
            audit_cli(&db, "user.update", &username).await;
            println!("password changed for {username}; their sessions were signed out");
        }
        UserCommand::List => {
            let list = db.run(users::list).await?;
            println!("{:<24} {:<8} {:<7}", "USERNAME", "ROLE", "ACTIVE");
            for u in list {
                println!("{:<24} {:<8} {:<7}", u.username, u.role.as_str(), u.active);
            }
        }
    }
    Ok(())
}

async fn audit_cli(db: &Db, action: &str, target: &str) {
    let mut e = crate::db::audit::NewAuditEntry::new(action, "success");
    e.actor = Some("cli".into());
    e.target = Some(target.to_string());
    e.detail = Some("via the wakedock command line".into());
    let _ = db.run(move |c| crate::db::audit::insert(c, &e)).await;
}

async fn plugin_command(config: &Config, cmd: PluginCommand) -> anyhow::Result<()> {
    use crate::db::plugins as rows;
    use crate::plugins::{store_files, GrantSpec, PluginPackage, Source};
    use wakedock_plugin_runtime::Grant;

    let db = open_db(config).await?;
    let plugins_dir = config.wakedock.data_path.join("plugins");
    match cmd {
        PluginCommand::Install {
            manifest,
            wasm,
            grant,
            config: plugin_config,
            disabled,
        } => {
            let package = PluginPackage::from_files(&manifest, &wasm)?;
            let m = package.manifest()?;
            wakedock_plugin_runtime::manifest::check_api_version(&m.api_version)?;
            let Some(grant) = grant else {
                println!(
                    "{} {} (plugin API {}) requests:\n{}",
                    m.name,
                    m.version,
                    m.api_version,
                    toml::to_string_pretty(&m.capabilities)?
                );
                anyhow::bail!(
                    "nothing installed: pass --grant all, or --grant FILE with an explicit grant"
                );
            };
            let spec = if grant == "all" {
                GrantSpec::All(crate::plugins::AllMarker)
            } else {
                let text = std::fs::read_to_string(&grant)
                    .with_context(|| format!("reading grant file {grant}"))?;
                let parsed =
                    Grant::from_toml(&text).with_context(|| format!("grant file {grant}"))?;
                GrantSpec::Explicit(Box::new(parsed))
            };
            let grant = spec.resolve(&m).map_err(|e| match &spec {
                GrantSpec::Explicit(_) => anyhow::anyhow!("grant file {grant}: {e}"),
                GrantSpec::All(_) => anyhow::anyhow!(e),
            })?;
            let plugin_config: serde_json::Value = match plugin_config {
                Some(c) => serde_json::from_str(&c).context("--config must be a JSON object")?,
                None => serde_json::Value::Null,
            };
            if !(plugin_config.is_null() || plugin_config.is_object()) {
                anyhow::bail!("--config must be a JSON object");
            }
            let row = store_files(
                &plugins_dir,
                &m,
                &package,
                &grant,
                &plugin_config,
                !disabled,
                Source::Cli,
            )?;
            let name = row.name.clone();
            db.run(move |c| rows::upsert(c, &row)).await?;
            audit_cli(&db, "plugin.install", &name).await;
            println!(
                "installed {name} {} ({}); a running host loads it within 2 s",
                m.version,
                if disabled { "disabled" } else { "enabled" }
            );
        }
        PluginCommand::List => {
            let list = db.run(rows::list).await?;
            println!(
                "{:<20} {:<10} {:<8} {:<8} SHA-256",
                "NAME", "VERSION", "ENABLED", "SOURCE"
            );
            for p in list {
                println!(
                    "{:<20} {:<10} {:<8} {:<8} {}",
                    p.name,
                    p.version,
                    p.enabled,
                    p.source,
                    &p.wasm_sha256[..16.min(p.wasm_sha256.len())]
                );
            }
        }
        PluginCommand::Enable { name } => set_plugin_enabled(&db, &name, true).await?,
        PluginCommand::Disable { name } => set_plugin_enabled(&db, &name, false).await?,
        PluginCommand::Remove { name } => {
            let n = name.clone();
            if !db.run(move |c| rows::delete(c, &n)).await? {
                anyhow::bail!("no plugin named {name:?} is installed");
            }
            let _ = std::fs::remove_dir_all(plugins_dir.join(&name));
            audit_cli(&db, "plugin.remove", &name).await;
            println!("removed {name}");
        }
    }
    Ok(())
}

async fn set_plugin_enabled(db: &Db, name: &str, enabled: bool) -> anyhow::Result<()> {
    let n = name.to_string();
    if !db
        .run(move |c| crate::db::plugins::set_enabled(c, &n, enabled))
        .await?
    {
        anyhow::bail!("no plugin named {name:?} is installed");
    }
    let action = if enabled { "enabled" } else { "disabled" };
    audit_cli(db, "plugin.update", name).await;
    println!("{action} {name}; a running host applies it within 2 s");
    Ok(())
}
