//! How the queries, written once for both databases, call sqlx.
//!
//! sqlx's `bind`, `try_get`, `fetch_all` and friends are generic over the database, but
//! each needs facts such as "`String` encodes for this database" or "a connection of it
//! executes queries", and Rust does not carry such facts along with a trait bound: code
//! generic over the database would have to restate a score of them on every function.
//! Instead the few sqlx calls the queries make go through [`Driver`], which both
//! databases implement with the same body (the `driver!` macro below), and the query
//! code uses the thin [`query`], [`query_as`] and [`Builder`] wrappers, which read like
//! sqlx's own and need nothing but `D: Dialect`.
//!
//! [`Param`], [`Field`] and [`Record`] name what a bound value, a read column and a
//! decoded row must be: encodable (decodable) for both databases at once.

use std::future::Future;
use std::marker::PhantomData;

use sqlx::postgres::PgRow;
use sqlx::query::Query;
use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteRow;
use sqlx::{
    Database, Decode, Encode, FromRow, Pool, Postgres, QueryBuilder, Row, SqlSafeStr, Sqlite,
    Transaction, Type,
};

/// A value bound to a statement: encodable for both databases.
/// (`'t` is sqlx's: an `Option<&'t str>` encodes for `'t` only.)
pub trait Param<'t>:
    Encode<'t, Sqlite> + Type<Sqlite> + Encode<'t, Postgres> + Type<Postgres> + Send
{
}

impl<'t, T> Param<'t> for T where
    T: Encode<'t, Sqlite> + Type<Sqlite> + Encode<'t, Postgres> + Type<Postgres> + Send
{
}

/// A column read by index from a row: decodable from both databases.
pub trait Field:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Field for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A whole row decoded at once (a tuple of columns): readable from both databases.
pub trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// Where a statement runs: inside a write transaction, or on a pool (a read).
pub enum On<'e, D: Database> {
    Tx(&'e mut D::Connection),
    Pool(&'e Pool<D>),
}

impl<'e, D: Database> From<&'e mut Transaction<'static, D>> for On<'e, D> {
    fn from(tx: &'e mut Transaction<'static, D>) -> On<'e, D> {
        On::Tx(&mut **tx)
    }
}

impl<'e, D: Database> From<&'e Pool<D>> for On<'e, D> {
    fn from(pool: &'e Pool<D>) -> On<'e, D> {
        On::Pool(pool)
    }
}

/// The sqlx calls the queries make, for one database. Both implementations are the same
/// text (see `driver!`); what differs between the databases is in
/// [`crate::backend::Dialect`].
pub trait Driver: Database {
    fn bind<'q, 't, T: Param<'t>>(
        query: Query<'q, Self, Self::Arguments>,
        value: T,
    ) -> Query<'q, Self, Self::Arguments>;
    fn push_bind<'t, T: Param<'t>>(builder: &mut QueryBuilder<Self>, value: T);
    fn push_bind_separated<'t, T: Param<'t>>(
        list: &mut Separated<'_, Self, &'static str>,
        value: T,
    );
    fn get<T: Field>(row: &Self::Row, index: usize) -> Result<T, sqlx::Error>;
    fn record<O: Record>(row: &Self::Row) -> Result<O, sqlx::Error>;
    fn fetch_all<'e>(
        query: Query<'e, Self, Self::Arguments>,
        on: On<'e, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'e;
    fn fetch_optional<'e>(
        query: Query<'e, Self, Self::Arguments>,
        on: On<'e, Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'e;
    /// Runs the statement; returns how many rows it affected.
    fn execute<'e>(
        query: Query<'e, Self, Self::Arguments>,
        on: On<'e, Self>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'e;
}

/// [`Driver`] for one database: the same calls, each resolved for that database's types.
macro_rules! driver {
    ($db:ty) => {
        impl Driver for $db {
            fn bind<'q, 't, T: Param<'t>>(
                query: Query<'q, Self, Self::Arguments>,
                value: T,
            ) -> Query<'q, Self, Self::Arguments> {
                query.bind(value)
            }
            fn push_bind<'t, T: Param<'t>>(builder: &mut QueryBuilder<Self>, value: T) {
                builder.push_bind(value);
            }
            fn push_bind_separated<'t, T: Param<'t>>(
                list: &mut Separated<'_, Self, &'static str>,
                value: T,
            ) {
                list.push_bind(value);
            }
            fn get<T: Field>(row: &Self::Row, index: usize) -> Result<T, sqlx::Error> {
                row.try_get(index)
            }
            fn record<O: Record>(row: &Self::Row) -> Result<O, sqlx::Error> {
                O::from_row(row)
            }
            async fn fetch_all<'e>(
                query: Query<'e, Self, Self::Arguments>,
                on: On<'e, Self>,
            ) -> Result<Vec<Self::Row>, sqlx::Error> {
                match on {
                    On::Tx(connection) => query.fetch_all(connection).await,
                    On::Pool(pool) => query.fetch_all(pool).await,
                }
            }
            async fn fetch_optional<'e>(
                query: Query<'e, Self, Self::Arguments>,
                on: On<'e, Self>,
            ) -> Result<Option<Self::Row>, sqlx::Error> {
                match on {
                    On::Tx(connection) => query.fetch_optional(connection).await,
                    On::Pool(pool) => query.fetch_optional(pool).await,
                }
            }
            async fn execute<'e>(
                query: Query<'e, Self, Self::Arguments>,
                on: On<'e, Self>,
            ) -> Result<u64, sqlx::Error> {
                let done = match on {
                    On::Tx(connection) => query.execute(connection).await?,
                    On::Pool(pool) => query.execute(pool).await?,
                };
                Ok(done.rows_affected())
            }
        }
    };
}

driver!(Sqlite);
driver!(Postgres);

/// A statement whose rows are read by index (sqlx's `query`).
#[must_use = "a statement does nothing until it runs"]
pub(crate) struct Statement<'q, D: Database> {
    query: Query<'q, D, D::Arguments>,
}

/// A statement whose rows decode into `O`, a tuple (sqlx's `query_as`).
#[must_use = "a statement does nothing until it runs"]
pub(crate) struct StatementAs<'q, D: Database, O> {
    statement: Statement<'q, D>,
    output: PhantomData<fn() -> O>,
}

/// A statement of `$N` placeholders, its rows read by index.
pub(crate) fn query<'q, D: Driver>(sql: impl SqlSafeStr) -> Statement<'q, D> {
    Statement {
        query: sqlx::query(sql),
    }
}

/// A statement of `$N` placeholders, its rows decoded into `O`.
pub(crate) fn query_as<'q, D: Driver, O: Record>(sql: impl SqlSafeStr) -> StatementAs<'q, D, O> {
    StatementAs {
        statement: query(sql),
        output: PhantomData,
    }
}

impl<'q, D: Driver> Statement<'q, D> {
    pub(crate) fn bind<'t, T: Param<'t>>(self, value: T) -> Self {
        Statement {
            query: D::bind(self.query, value),
        }
    }

    /// Runs the statement; returns how many rows it affected.
    pub(crate) async fn execute<'e>(self, on: impl Into<On<'e, D>>) -> Result<u64, sqlx::Error>
    where
        'q: 'e,
    {
        D::execute(self.query, on.into()).await
    }

    pub(crate) async fn fetch_all<'e>(
        self,
        on: impl Into<On<'e, D>>,
    ) -> Result<Vec<D::Row>, sqlx::Error>
    where
        'q: 'e,
    {
        D::fetch_all(self.query, on.into()).await
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e, D>>,
    ) -> Result<Option<D::Row>, sqlx::Error>
    where
        'q: 'e,
    {
        D::fetch_optional(self.query, on.into()).await
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e, D>>) -> Result<D::Row, sqlx::Error>
    where
        'q: 'e,
    {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

impl<'q, D: Driver, O: Record> StatementAs<'q, D, O> {
    pub(crate) fn bind<'t, T: Param<'t>>(self, value: T) -> Self {
        StatementAs {
            statement: self.statement.bind(value),
            output: PhantomData,
        }
    }

    pub(crate) async fn fetch_all<'e>(self, on: impl Into<On<'e, D>>) -> Result<Vec<O>, sqlx::Error>
    where
        'q: 'e,
    {
        let rows = self.statement.fetch_all(on).await?;
        rows.iter().map(D::record).collect()
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e, D>>,
    ) -> Result<Option<O>, sqlx::Error>
    where
        'q: 'e,
    {
        let row = self.statement.fetch_optional(on).await?;
        row.as_ref().map(D::record).transpose()
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e, D>>) -> Result<O, sqlx::Error>
    where
        'q: 'e,
    {
        D::record(&self.statement.fetch_one(on).await?)
    }
}

/// A statement built piece by piece (sqlx's `QueryBuilder`): each bound value writes its
/// own placeholder.
pub(crate) struct Builder<D: Database> {
    inner: QueryBuilder<D>,
}

/// A comma-separated run of bound values inside a [`Builder`] (one row of `VALUES`, or
/// an `IN` list).
pub(crate) struct List<'b, D: Database> {
    inner: Separated<'b, D, &'static str>,
}

impl<D: Driver> Builder<D> {
    pub(crate) fn new(init: impl Into<String>) -> Builder<D> {
        Builder {
            inner: QueryBuilder::new(init),
        }
    }

    pub(crate) fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        self.inner.push(sql);
        self
    }

    pub(crate) fn push_bind<'t, T: Param<'t>>(&mut self, value: T) -> &mut Self {
        D::push_bind(&mut self.inner, value);
        self
    }

    /// `VALUES (…), (…)`: one parenthesized row per item, its values pushed by `row`.
    pub(crate) fn push_values<I, F>(&mut self, tuples: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(List<'_, D>, I::Item),
    {
        self.inner
            .push_values(tuples, |inner, item| row(List { inner }, item));
        self
    }

    pub(crate) fn separated(&mut self, separator: &'static str) -> List<'_, D> {
        List {
            inner: self.inner.separated(separator),
        }
    }

    /// Hands the builder to the dialect's own text (see `Dialect::push_in`).
    pub(crate) fn inner(&mut self) -> &mut QueryBuilder<D> {
        &mut self.inner
    }

    pub(crate) fn build(&mut self) -> Statement<'_, D> {
        Statement {
            query: self.inner.build(),
        }
    }

    pub(crate) fn build_query_as<O: Record>(&mut self) -> StatementAs<'_, D, O> {
        StatementAs {
            statement: self.build(),
            output: PhantomData,
        }
    }
}

impl<D: Driver> List<'_, D> {
    pub(crate) fn push_bind<'t, T: Param<'t>>(&mut self, value: T) -> &mut Self {
        D::push_bind_separated(&mut self.inner, value);
        self
    }
}
