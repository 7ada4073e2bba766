//! `datacap classify`: STATUS_MODEL.md's JSON on stdin (or a file), its JSON on stdout.
//!
//! The whole answer is built before anything is written, so bad input never leaves a
//! partial output behind.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `datacap classify`.
#[derive(clap::Args)]
pub struct Args {
    /// Read the input from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = match &args.input {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
            text
        }
    };
    let mut output = datacap_core::classify_json(&input).context("invalid input")?;
    output.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write stdout")?;
    Ok(ExitCode::SUCCESS)
}
