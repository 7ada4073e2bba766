//! The `datacap` binary: clap commands that wire configuration into the library crates.
//!
//! This is glue. It is the only place that reads files, stdin and the environment; every
//! decision lives in a library crate where it is tested without a process.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod config;
mod credentials;
mod notify;
mod wiring;

/// datacap imports every team member's email and calendar from Google Workspace and
/// Microsoft 365 and tells admins, per member, whether it works.
#[derive(Parser)]
#[command(name = "datacap", version, about, long_about = None)]
struct Cli {
    /// The config file (default: config/datacap.toml if present, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify STATUS_MODEL.md's JSON on stdin into member icons and banners on stdout.
    Classify(commands::classify::Args),
    /// Apply the database's pending migrations (and check the encryption key).
    Migrate(commands::migrate::Args),
    /// Declare companies, members and settings from a tenants file.
    Apply(commands::apply::Args),
    /// Print the Team members page: banners and each member's icons.
    Status(commands::status::Args),
    /// The whole system in one command: the sim, a demo company per provider, the worker,
    /// the status table; then keeps polling until Ctrl-C.
    Demo(commands::demo::Args),
    /// Check a config file (and a tenants file) offline: every problem with its line.
    CheckConfig(commands::check_config::Args),
    /// Re-encrypt every stored secret under a new encryption key id, in one transaction.
    RotateKey(commands::rotate_key::Args),
    /// Make a member's channels due now, so a running daemon polls them next.
    Poll(commands::poll::Args),
    /// List the members who must (re)connect with their personal connect links; --send
    /// mails them through the [smtp] relay.
    Remind(commands::remind::Args),
    /// Void every personal connect link of a member issued until now.
    RevokeInvites(commands::revoke_invites::Args),
    /// Run the daemon: poll every member's email and calendar until SIGTERM/SIGINT
    /// (`--once`: poll what is due now and exit).
    Run(commands::run::Args),
    /// Webhook endpoints with their backlog and health; redeliver an event or the dead.
    Webhooks(commands::webhooks::Args),
    /// Make a 256-bit web token or signing key (stdout, or a new 0600 file with --out).
    Token(commands::token::Args),
    /// Run the provider sim (a fake Google Workspace and Microsoft 365) on loopback.
    Sim(commands::sim::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(args) => commands::classify::run(args),
        Command::Sim(args) => commands::sim::run(args),
        Command::Migrate(args) => commands::migrate::run(args, cli.config.as_deref()),
        Command::Apply(args) => commands::apply::run(args, cli.config.as_deref()),
        Command::Status(args) => commands::status::run(args, cli.config.as_deref()),
        Command::Demo(args) => commands::demo::run(args),
        Command::CheckConfig(args) => commands::check_config::run(args),
        Command::RotateKey(args) => commands::rotate_key::run(args, cli.config.as_deref()),
        Command::Poll(args) => commands::poll::run(args, cli.config.as_deref()),
        Command::Remind(args) => commands::remind::run(args, cli.config.as_deref()),
        Command::RevokeInvites(args) => commands::revoke_invites::run(args, cli.config.as_deref()),
        Command::Run(args) => commands::run::run(args, cli.config.as_deref()),
        Command::Token(args) => commands::token::run(args),
        Command::Webhooks(args) => commands::webhooks::run(args, cli.config.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // The error and its causes, never a backtrace: one line, or one line per
            // problem when it lists several (a bad tenants or config file).
            #[allow(clippy::print_stderr)]
            for line in format!("{error:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
