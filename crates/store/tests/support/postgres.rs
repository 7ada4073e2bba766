//! Fresh PostgreSQL databases for the tests that run on both backends (the store's, the
//! worker's, the binary's `rotate-key`) and for the store's benchmark: each makes one of
//! its own on the server at `DATACAP_TEST_POSTGRES_URL` (default: the local one) and drops
//! it at the end. Included by path from each; PostgreSQL is required: without it a test
//! fails, it never skips.

use sqlx::Connection;

/// The server's admin database.
pub fn admin_url() -> String {
    std::env::var("DATACAP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates database `{prefix}_{a random suffix}`: its name and its URL.
pub async fn create_database(prefix: &str) -> (String, String) {
    let admin = admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    on_admin(format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|error| panic!("postgresql is required at {admin}: {error}"));
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    (name, url)
}

/// Drops database `name` (and whoever is still connected to it), if it is there.
pub async fn drop_database(name: &str) -> Result<(), sqlx::Error> {
    on_admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
}

/// Runs `sql` on the admin database, over a connection of its own.
async fn on_admin(sql: String) -> Result<(), sqlx::Error> {
    let mut connection = sqlx::PgConnection::connect(&admin_url()).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut connection)
        .await?;
    connection.close().await.ok();
    Ok(())
}
