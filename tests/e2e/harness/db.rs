//! The databases under the binary: a fresh PostgreSQL database per test (created on the
//! machine's server, dropped at the end) and reads of whichever database a [`Harness`]
//! points the binary at, for counts and failure messages.

use super::{Harness, block_on};

pub const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh PostgreSQL database, dropped at the end.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let name = format!("datacap_worker_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        TestDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    pub fn drop_database(&self) {
        let _ = try_psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

pub fn try_psql(sql: &str) -> Result<(), String> {
    block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(POSTGRES_ADMIN)
            .await
            .map_err(|error| format!("PostgreSQL at {POSTGRES_ADMIN} is not reachable: {error}"))?;
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        Ok(())
    })
}

pub fn psql(sql: &str) {
    try_psql(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
}

impl Harness {
    pub fn database_url(&self) -> &str {
        &self.env[0].1
    }

    /// One number from the database the binary uses.
    pub fn count(&self, sql: &str) -> i64 {
        self.rows::<(i64,)>(sql)[0].0
    }

    /// One text column of every row from the database the binary uses (for failure messages).
    pub fn texts(&self, sql: &str) -> Vec<String> {
        let rows = self.rows::<(String,)>(sql);
        rows.into_iter().map(|(text,)| text).collect()
    }

    /// Every row `sql` selects from the database the binary uses.
    fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: Send + Unpin,
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        let url = self.database_url().to_owned();
        block_on(async {
            use sqlx::Connection;
            let query = sqlx::AssertSqlSafe(sql.to_owned());
            if url.starts_with("postgres") {
                let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query_as(query)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            } else {
                let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_as(query)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            }
        })
    }

    /// How many status changes to red were ever written.
    pub fn turned_red(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM status_changes WHERE to_color = 'red'")
    }
}
