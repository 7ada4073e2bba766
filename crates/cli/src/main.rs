//! The `datacap` binary: clap commands that wire configuration into the library crates.
//!
//! This is glue. It is the only place that reads files, stdin and the environment; every
//! decision lives in a library crate where it is tested without a process.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// datacap imports every team member's email and calendar from Google Workspace and
/// Microsoft 365 and tells admins, per member, whether it works.
#[derive(Parser)]
#[command(name = "datacap", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify STATUS_MODEL.md's JSON on stdin into member icons and banners on stdout.
    Classify(commands::classify::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(args) => commands::classify::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // One line: the error and its causes, never a backtrace.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
