//! PostgreSQL storage (feature `postgres`).
//!
//! Transactions run at READ COMMITTED: every state change is a conditional update, which Postgres
//! re-checks against the newest row version after waiting for a concurrent writer, so there is no
//! oversell and no lost update without `SERIALIZABLE`. Deadlocks (40P01) and serialization failures
//! (40001, e.g. on CockroachDB) are retryable and retried by the service.
//!
//! [`PgStore::open_in_schema`] keeps a store in its own schema (a tenant, or a test run).
//!
//! ```no_run
//! # async fn demo() -> wxshop::market::Result<()> {
//! use wxshop::market::store::PgStore;
//! let store = PgStore::open("postgres://postgres@127.0.0.1:5432/test").await?;
//! # Ok(()) }
//! ```

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres};

use super::*;

/// Default pool size.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A marketplace store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    schema: Option<String>,
}

fn check_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(()) } else { Err(MarketError::invalid("schema must match [a-z_][a-z0-9_]{0,62}")) }
}

impl PgStore {
    /// Connects to `url` and migrates.
    pub async fn open(url: &str) -> Result<Self> {
        Self::with_options(PgConnectOptions::from_str(url)?, DEFAULT_MAX_CONNECTIONS, None).await
    }

    /// Connects to `url`, creates `schema` if missing, makes it the connections' `search_path`, and
    /// migrates it.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self> {
        check_schema(schema)?;
        let opts = PgConnectOptions::from_str(url)?;
        let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
        // `CREATE SCHEMA IF NOT EXISTS` is not safe against itself: two instances starting at once both
        // see no schema and one fails on pg_namespace's unique index. Serialise them on an advisory lock
        // held until commit (the migrator then takes its own lock).
        let mut tx = sqlx::Connection::begin(&mut conn).await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('wxshop.create_schema'))").execute(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).execute(&mut *tx).await?;
        tx.commit().await?;
        conn.close().await?;
        let opts = opts.options([("search_path", schema)]);
        Self::with_options(opts, DEFAULT_MAX_CONNECTIONS, Some(schema.to_string())).await
    }

    /// Connects with explicit options and pool size, and migrates.
    pub async fn with_options(opts: PgConnectOptions, max_connections: u32, schema: Option<String>) -> Result<Self> {
        let pool = PgPoolOptions::new().max_connections(max_connections.max(1)).connect_with(opts).await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore { pool, schema })
    }

    /// Drops the schema this store was opened in (with everything in it) and closes the pool. For
    /// throwaway stores (tests, benchmarks).
    pub async fn drop_schema(self) -> Result<()> {
        let Some(schema) = self.schema.clone() else {
            return Err(MarketError::invalid("this store was not opened in its own schema"));
        };
        check_schema(&schema)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&self.pool).await?;
        self.pool.close().await;
        Ok(())
    }

    /// The pool (for sharing, closing, or raw access in benchmarks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A PostgreSQL transaction or connection.
pub struct PgTx(Handle<Postgres>);

#[async_trait]
impl MarketStore for PgStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(PgTx(Handle::Tx(self.pool.begin().await?))))
    }

    async fn read(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(PgTx(Handle::Conn(self.pool.acquire().await?))))
    }

    async fn snapshot(&self) -> Result<Box<dyn StoreTx>> {
        let tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        Ok(Box::new(PgTx(Handle::Tx(tx))))
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }
}

#[async_trait]
impl StoreTx for PgTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.0.commit().await
    }
}

governance::gov_config_repo!(PgTx, Postgres);
carts::cart_repo!(PgTx, Postgres);
merchants::merchant_repo!(PgTx, Postgres);
catalog::catalog_repo!(PgTx, Postgres);
inventory::inventory_repo!(PgTx, Postgres);
orders::order_repo!(PgTx, Postgres);
shipments::shipment_repo!(PgTx, Postgres);
payments::payment_repo!(PgTx, Postgres);
outbox::outbox_repo!(PgTx, Postgres);
ledger::ledger_repo!(PgTx, Postgres);
deposits::deposit_repo!(PgTx, Postgres);
reviews::review_repo!(PgTx, Postgres);
aftersales::aftersale_repo!(PgTx, Postgres);
penalties::penalty_repo!(PgTx, Postgres);
settlements::settlement_repo!(PgTx, Postgres);
transfers::transfer_repo!(PgTx, Postgres);
promoters::promoter_repo!(PgTx, Postgres);
anomalies::anomaly_repo!(PgTx, Postgres);
claims::claim_repo!(PgTx, Postgres);
recommend::rec_event_repo!(PgTx, Postgres);
credentials::credential_repo!(PgTx, Postgres);
