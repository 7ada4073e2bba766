//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod apply;
pub mod classify;
pub mod demo;
pub mod migrate;
pub mod run;
pub mod sim;
pub mod status;
