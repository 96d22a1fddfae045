//! SQLite storage (bundled; a file or memory).
//!
//! A file database runs in WAL mode (readers never block the writer), with `busy_timeout` so a
//! writer waits for the lock instead of failing, `synchronous = NORMAL` (durable across application
//! crashes; the last transactions can be lost on power failure) and foreign keys on. Write
//! transactions start with `BEGIN IMMEDIATE`, taking the single write lock up front so two writers
//! never deadlock upgrading a read lock. An in-memory database uses one connection (each SQLite memory
//! connection would otherwise be its own database).
//!
//! ```no_run
//! # async fn demo() -> wxshop::market::Result<()> {
//! use wxshop::market::store::SqliteStore;
//! let store = SqliteStore::open("sqlite://market.db").await?;   // created and migrated
//! let mem = SqliteStore::memory().await?;
//! # Ok(()) }
//! ```

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::*;

/// Connections of a file database: one writer at a time anyway, a few readers.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for the write lock before failing with a retryable busy error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A marketplace store on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://file.db`,
    /// `sqlite::memory:`).
    pub async fn open(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?;
        Self::with_options(opts, DEFAULT_MAX_CONNECTIONS).await
    }

    /// A fresh in-memory database.
    pub async fn memory() -> Result<Self> {
        Self::open("sqlite::memory:").await
    }

    /// Opens with explicit options; WAL, busy timeout, foreign keys and create-if-missing are added.
    pub async fn with_options(opts: SqliteConnectOptions, max_connections: u32) -> Result<Self> {
        let in_memory = opts.get_filename().to_string_lossy().contains("in-memory")
            || opts.get_filename().as_os_str() == ":memory:";
        let opts = opts
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal);
        let (opts, pool) = if in_memory {
            // The database lives as long as its one connection: never let the pool drop it.
            let pool =
                SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
            (opts, pool)
        } else {
            (
                opts.journal_mode(SqliteJournalMode::Wal),
                SqlitePoolOptions::new().max_connections(max_connections.max(1)),
            )
        };
        let pool = pool.connect_with(opts).await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The pool (for sharing, closing, or raw access in benchmarks).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A SQLite transaction or connection.
pub struct SqliteTx(Handle<Sqlite>);

#[async_trait]
impl MarketStore for SqliteStore {
    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(SqliteTx(Handle::Tx(self.pool.begin_with("BEGIN IMMEDIATE").await?))))
    }

    async fn read(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(SqliteTx(Handle::Conn(self.pool.acquire().await?))))
    }

    async fn snapshot(&self) -> Result<Box<dyn StoreTx>> {
        Ok(Box::new(SqliteTx(Handle::Tx(self.pool.begin().await?))))
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.0.commit().await
    }
}

governance::gov_config_repo!(SqliteTx, Sqlite);
carts::cart_repo!(SqliteTx, Sqlite);
merchants::merchant_repo!(SqliteTx, Sqlite);
catalog::catalog_repo!(SqliteTx, Sqlite);
inventory::inventory_repo!(SqliteTx, Sqlite);
orders::order_repo!(SqliteTx, Sqlite);
shipments::shipment_repo!(SqliteTx, Sqlite);
payments::payment_repo!(SqliteTx, Sqlite);
outbox::outbox_repo!(SqliteTx, Sqlite);
ledger::ledger_repo!(SqliteTx, Sqlite);
deposits::deposit_repo!(SqliteTx, Sqlite);
reviews::review_repo!(SqliteTx, Sqlite);
aftersales::aftersale_repo!(SqliteTx, Sqlite);
penalties::penalty_repo!(SqliteTx, Sqlite);
settlements::settlement_repo!(SqliteTx, Sqlite);
transfers::transfer_repo!(SqliteTx, Sqlite);
promoters::promoter_repo!(SqliteTx, Sqlite);
anomalies::anomaly_repo!(SqliteTx, Sqlite);
claims::claim_repo!(SqliteTx, Sqlite);
recommend::rec_event_repo!(SqliteTx, Sqlite);
credentials::credential_repo!(SqliteTx, Sqlite);
