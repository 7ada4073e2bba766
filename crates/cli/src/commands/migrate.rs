//! `datacap migrate`: applies the configured database's pending migrations, and, when an
//! encryption key is configured, proves it is the key this database was set up with (a
//! wrong or missing key fails here, at start-up, not on the first refresh).
//!
//! Also home of the little that the database commands share: opening the store the
//! config names, and a runtime to run it on.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datacap_store::{Store, StoreOptions};

use crate::config::{self, Config};

/// Arguments of `datacap migrate`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn run(_args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    let key = config
        .encryption
        .as_ref()
        .map(config::load_key)
        .transpose()?;
    block_on(async {
        let store = connect(&config).await?;
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
        if let Some(key) = &key {
            store
                .verify_key(key, time::OffsetDateTime::now_utc())
                .await
                .context("encryption key check failed")?;
        }
        store.close().await;
        let backend = match store.kind() {
            datacap_store::BackendKind::Sqlite => "sqlite",
            datacap_store::BackendKind::Postgres => "postgresql",
        };
        say(&format!("migrated the {backend} database"))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Connects to the configured database; migrates it first when `migrate_on_start` is set.
pub(crate) async fn open(config: &Config) -> anyhow::Result<Store> {
    let store = connect(config).await?;
    if config.database.migrate_on_start {
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
    }
    Ok(store)
}

async fn connect(config: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        thresholds: config::thresholds(config),
    };
    // The URL may hold a password: name the backend, never the URL.
    Store::connect(&config.database.url, options)
        .await
        .context("cannot open the database named by database.url")
}

/// Runs a command's async body on a small runtime of its own.
pub(crate) fn block_on<T>(body: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(body)
}

/// One line on stdout.
pub(crate) fn say(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write stdout")
}
