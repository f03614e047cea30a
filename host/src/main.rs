//! The `wakedock` binary: parses the command line and hands over to
//! [`wakedock::cli::main`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before the runtime starts any thread: it may replace the process.
    wakedock::malloc_tuning::apply();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime")
        .block_on(run())
}

async fn run() -> std::process::ExitCode {
    let cli = wakedock::cli::Cli::parse();
    match wakedock::cli::main(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
