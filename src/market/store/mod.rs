//! Storage of the marketplace: one repository per aggregate, one module per backend, one conformance suite.
//!
//! [`MarketStore`] opens transactions; a [`StoreTx`] is one transaction, and the bundle of every repository
//! trait: each aggregate's file holds its trait (`XRepo`), its row structs and their conversions, and one
//! `x_repo!($tx, $db)` macro with its statements, written once and instantiated for each backend by
//! `sqlite` and `postgres` (which also hold the connection, pragmas, migrations and isolation levels):
//!
//! | file | trait | what it stores |
//! |---|---|---|
//! | `merchants.rs` | [`MerchantRepo`] | merchants, categories, grants, category rules |
//! | `catalog.rs` | [`CatalogRepo`] | products, SKUs, offers, browsing |
//! | `inventory.rs` | [`InventoryRepo`] | stock levels, movements, reservations |
//! | `carts.rs` | [`CartRepo`] | cart lines |
//! | `orders.rs` | [`OrderRepo`] | checkout groups, orders, lines, idempotency keys, order flags |
//! | `shipments.rs` | [`ShipmentRepo`] | parcels, carrier scans, shipping deadlines |
//! | `payments.rs` | [`PaymentRepo`] | payments, payment notifications, refunds |
//! | `outbox.rs` | [`OutboxRepo`] | audit log, outbox events and acks, timers |
//! | `governance.rs` | [`GovConfigRepo`], [`GovTx`] | governance configuration; the bundle; document helpers |
//! | `ledger.rs` | [`LedgerRepo`] | ledger transactions, entries, balances; [`governance::post`] |
//! | `deposits.rs` | [`DepositRepo`] | deposit accounts, pay-ins, exit refunds |
//! | `reviews.rs` | [`ReviewRepo`] | reviews, category star sums |
//! | `aftersales.rs` | [`AfterSaleRepo`] | after-sale cases, disputes |
//! | `penalties.rs` | [`PenaltyRepo`] | penalties, restrictions, delistings |
//! | `settlements.rs` | [`SettlementRepo`] | commission rules, settlements, profit sharing |
//! | `transfers.rs` | [`TransferRepo`] | buyer compensation and the merchant transfers that pay it |
//! | `promoters.rs` | [`PromoterRepo`] | promoter ids, share-link clicks, attributions |
//! | `recommend.rs` | [`RecEventRepo`] | behaviour events, the catalogue facts of recommendation |
//!
//! Method calls on a `dyn StoreTx` (what [`MarketStore`] hands out) need no import; calling a repository
//! method by path or on a concrete transaction type takes `use wxshop::market::store::prelude::*;`.
//! Queries are runtime-checked (`sqlx::query_as` with `FromRow`), so neither backend needs a database at
//! compile time.
//!
//! Rules the statements follow, so that both engines (and Postgres-compatible distributed ones) behave
//! the same:
//! - every merchant-owned row is keyed by `merchant_id` first (the future distribution column);
//! - ids are UUIDv7 text, times are unix milliseconds (`BIGINT`), money is fen (`BIGINT`);
//! - no `SELECT … FOR UPDATE`: state changes are conditional updates (`WHERE version = $n`, `WHERE
//!   status = $n`, `WHERE on_hand - reserved >= $n`) whose row count says whether they won;
//! - idempotent inserts use `ON CONFLICT DO NOTHING`;
//! - a lost race is [`MarketError::Conflict`], a serialization failure, deadlock or busy database is
//!   a retryable [`MarketError::Store`]; the service retries the whole transaction, bounded.
//!
//! ```no_run
//! # async fn demo() -> wxshop::market::Result<()> {
//! use wxshop::market::store;
//! let store = store::open("sqlite::memory:").await?;
//! let mut tx = store.begin().await?;
//! assert!(tx.merchant("nope").await?.is_none());
//! tx.commit().await?;
//! # Ok(()) }
//! ```

// With `market` but neither backend feature, the repositories' statement macros have no one to serve.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code, unused_imports, unused_macros))]

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::error::{MarketError, Result};

pub mod aftersales;
pub mod anomalies;
pub mod carts;
pub mod catalog;
pub mod claims;
pub mod credentials;
pub mod deposits;
pub mod governance;
pub mod inventory;
pub mod ledger;
pub mod merchants;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod penalties;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod promoters;
pub mod recommend;
pub mod reviews;
pub mod settlements;
pub mod shipments;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod transfers;

pub use governance::GovTx;
pub use prelude::*;

#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The repository traits a [`StoreTx`] bundles, for calling their methods on a concrete transaction type or
/// by path (`CartRepo::cart_lines(&mut *tx, …)`): `use wxshop::market::store::prelude::*;`. Method calls on a
/// `dyn StoreTx` (what [`MarketStore`] hands out) resolve without it.
pub mod prelude {
    pub use super::aftersales::AfterSaleRepo;
    pub use super::anomalies::AnomalyRepo;
    pub use super::carts::CartRepo;
    pub use super::catalog::CatalogRepo;
    pub use super::claims::ClaimRepo;
    pub use super::credentials::CredentialRepo;
    pub use super::deposits::DepositRepo;
    pub use super::governance::GovConfigRepo;
    pub use super::inventory::InventoryRepo;
    pub use super::ledger::LedgerRepo;
    pub use super::merchants::MerchantRepo;
    pub use super::orders::OrderRepo;
    pub use super::outbox::OutboxRepo;
    pub use super::payments::PaymentRepo;
    pub use super::penalties::PenaltyRepo;
    pub use super::promoters::PromoterRepo;
    pub use super::recommend::RecEventRepo;
    pub use super::reviews::ReviewRepo;
    pub use super::settlements::SettlementRepo;
    pub use super::shipments::ShipmentRepo;
    pub use super::transfers::TransferRepo;
    pub use super::{GovTx, MarketStore, StoreTx};
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (bundled).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Opens a store by URL: `sqlite::memory:`, `sqlite://path/to/file.db` (created if missing) or
/// `postgres://…` (feature `postgres`). Migrations are applied on open.
pub async fn open(url: &str) -> Result<Arc<dyn MarketStore>> {
    #[cfg(feature = "sqlite")]
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open(url).await?));
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Ok(Arc::new(PgStore::open(url).await?));
    }
    let scheme = url.split(':').next().unwrap_or_default();
    Err(MarketError::invalid(format!("unsupported store URL scheme {scheme:?} (enabled: {})", enabled_schemes())))
}

fn enabled_schemes() -> &'static str {
    if cfg!(all(feature = "sqlite", feature = "postgres")) {
        "sqlite:, postgres:"
    } else if cfg!(feature = "postgres") {
        "postgres:"
    } else {
        "sqlite:"
    }
}

/// A marketplace database.
#[async_trait]
pub trait MarketStore: Send + Sync + fmt::Debug {
    /// Begins a read-write transaction (on SQLite it takes the write lock up front, so it cannot
    /// deadlock on a lock upgrade).
    async fn begin(&self) -> Result<Box<dyn StoreTx>>;
    /// A pooled connection outside any transaction, for reads of one statement each (every statement
    /// sees the latest committed data; no BEGIN/COMMIT round trips).
    async fn read(&self) -> Result<Box<dyn StoreTx>>;
    /// A read-only transaction whose statements all see one snapshot (SQLite: a deferred transaction;
    /// PostgreSQL: REPEATABLE READ READ ONLY), for reads that must agree with each other.
    async fn snapshot(&self) -> Result<Box<dyn StoreTx>>;
    /// The engine.
    fn backend(&self) -> Backend;
}

/// One transaction (or, from [`MarketStore::read`], a plain connection). Dropping it without
/// [`commit`](StoreTx::commit) rolls it back.
///
/// Methods that return `bool` report whether their conditional write matched a row: `false` means a
/// concurrent change won (or the row is missing) and nothing was written.
#[async_trait]
pub trait StoreTx:
    MerchantRepo
    + CatalogRepo
    + InventoryRepo
    + CartRepo
    + OrderRepo
    + ShipmentRepo
    + PaymentRepo
    + OutboxRepo
    + AnomalyRepo
    + ClaimRepo
    + recommend::RecEventRepo
    + CredentialRepo
    + GovTx
    + Send
{
    /// Commits.
    async fn commit(self: Box<Self>) -> Result<()>;
}

// ---------------------------------------------------------------- handles and conversions

/// What a backend's [`StoreTx`] wraps: a transaction, or a plain pooled connection for single reads.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) enum Handle<DB: sqlx::Database> {
    Tx(sqlx::Transaction<'static, DB>),
    Conn(sqlx::pool::PoolConnection<DB>),
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: sqlx::Database> Handle<DB> {
    async fn commit(self) -> Result<()> {
        match self {
            Handle::Tx(t) => Ok(t.commit().await?),
            Handle::Conn(_) => Ok(()),
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: sqlx::Database> std::ops::Deref for Handle<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        match self {
            Handle::Tx(t) => t,
            Handle::Conn(c) => c,
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: sqlx::Database> std::ops::DerefMut for Handle<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Handle::Tx(t) => t,
            Handle::Conn(c) => c,
        }
    }
}

pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn corrupt(what: &str, e: impl fmt::Display) -> MarketError {
    MarketError::Store { message: format!("corrupt {what} row: {e}"), retryable: false }
}

/// SQLSTATEs and SQLite result codes that mean "retry the transaction": Postgres serialization
/// failure, deadlock, lock not available; SQLite BUSY (and its extended codes) and LOCKED.
const RETRYABLE_CODES: &[&str] = &["40001", "40P01", "55P03", "5", "261", "517", "773", "6", "262"];

impl From<sqlx::Error> for MarketError {
    fn from(e: sqlx::Error) -> Self {
        let retryable = match &e {
            sqlx::Error::Database(db) => db.code().is_some_and(|c| RETRYABLE_CODES.contains(&c.as_ref())),
            _ => false,
        };
        MarketError::Store { message: e.to_string(), retryable }
    }
}

impl From<sqlx::migrate::MigrateError> for MarketError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        MarketError::Store { message: format!("migration failed: {e}"), retryable: false }
    }
}

pub(crate) fn convert<R, T: TryFrom<R, Error = MarketError>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

/// Pushes `ids` as bound parameters separated by commas, then `)`: the body of an `IN (` the query ends with.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn push_list<DB: sqlx::Database>(q: &mut sqlx::QueryBuilder<DB>, ids: &[String])
where
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(id.clone());
    }
    q.push(")");
}

pub(crate) fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| MarketError::Store { message: format!("encode: {e}"), retryable: false })
}
