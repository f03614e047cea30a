//! The `wakedock` command line.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::password;
use crate::config::{Config, ConfigSource};
use crate::db::users::{self, Role, UserChanges};
use crate::db::{tokens, Db};

#[derive(Debug, Parser)]
#[command(
    name = "wakedock",
    version,
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
    std::fs::create_dir_all(&config.wakedock.data_path).ok();
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
    let state = crate::server::build_state(config).await?;
    crate::server::bootstrap_admin(&state.db, std::env::var("WAKEDOCK_ADMIN_PASSWORD").ok())
        .await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
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
