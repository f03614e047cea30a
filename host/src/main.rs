//! The `wakedock` binary: parses the command line and hands over to
//! [`wakedock::cli::main`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = wakedock::cli::Cli::parse();
    match wakedock::cli::main(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
