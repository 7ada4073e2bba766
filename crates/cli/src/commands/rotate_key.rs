//! `datacap rotate-key --new-key-id ID (--new-key-file FILE | --new-key-env VAR)`:
//! re-encrypts every stored secret (members' refresh tokens) from the configured key to a
//! new one, in one transaction, on SQLite or PostgreSQL.
//!
//! The current key is the one `[encryption]` names; the new one is read from a file or an
//! environment variable, never from the command line (it would land in shell history and
//! `ps`). Afterwards the operator points `[encryption]` at the new key and id and restarts
//! the daemons (docs/operations.md, "Rotating the encryption key"). Running it again is
//! harmless: tokens already under the new key are checked and left.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use datacap_store::EncryptionKey;

use crate::commands::migrate::{block_on, open, say};
use crate::config::{self, KeySource};

/// Arguments of `datacap rotate-key`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("new_key").required(true).args(["new_key_file", "new_key_env"])))]
pub struct Args {
    /// The new key's id, stored beside every ciphertext (must differ from the current one).
    #[arg(long, value_name = "ID")]
    new_key_id: String,
    /// A file holding the new key: 32 bytes as base64 or hex (`openssl rand -base64 32`).
    #[arg(long, value_name = "FILE")]
    new_key_file: Option<PathBuf>,
    /// An environment variable holding the new key.
    #[arg(long, value_name = "VAR")]
    new_key_env: Option<String>,
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    let current = config
        .encryption
        .as_ref()
        .context("rotate-key needs the current key: the config has no [encryption] section")?;
    let old = config::load_key(current)?;
    let source = match (args.new_key_file, args.new_key_env) {
        (Some(path), _) => KeySource::File(path),
        (None, Some(name)) => KeySource::Env(name),
        (None, None) => anyhow::bail!("give --new-key-file or --new-key-env"),
    };
    let text = config::read_secret(&source, "new encryption key")?;
    let new = EncryptionKey::parse(&args.new_key_id, &text)?;
    block_on(async {
        let store = open(&config).await?;
        let rotation = store
            .rotate_key(&old, &new, time::OffsetDateTime::now_utc())
            .await
            .context("key rotation failed, nothing was changed")?;
        store.close().await;
        say(&format!(
            "re-encrypted {} member secrets from key {:?} to key {:?} ({} were under it already)",
            rotation.resealed,
            old.id(),
            new.id(),
            rotation.already_new
        ))?;
        say(&format!(
            "now set [encryption] key_id = {:?} with key_file or key_env pointing at the new key, and restart every daemon",
            new.id()
        ))?;
        Ok(ExitCode::SUCCESS)
    })
}
