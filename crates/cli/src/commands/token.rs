//! `datacap token [--out FILE]`: makes a web token (operator or company) or a signing key
//! with 256 bits from the operating system's random source, as 43 URL-safe base64
//! characters, so nobody needs to invent one (`[web]` refuses tokens under 128 bits).
//! With `--out` it writes the file with mode 0600 (refusing to overwrite one) and prints
//! only the path; without, it prints the token on stdout for a secret manager to take.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::migrate::say;

/// Arguments of `datacap token`.
#[derive(clap::Args)]
pub struct Args {
    /// Write the token to this new file (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    let bytes = datacap_web::auth::random_bytes()?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    match args.out {
        None => say(&token)?,
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options
                .open(&path)
                .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
            writeln!(file, "{token}")
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            say(&format!("wrote a new 256-bit token to {}", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
