//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod apply;
pub mod check_config;
pub mod classify;
pub mod demo;
pub mod migrate;
pub mod poll;
pub mod remind;
pub mod revoke_invites;
pub mod rotate_key;
pub mod run;
pub mod sim;
pub mod status;
pub mod token;
pub mod webhooks;
