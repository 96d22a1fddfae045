//! Storage of governance: the repositories a [`GovTx`] bundles, and what they share.
//!
//! Same rules as the rest of the store: runtime-checked statements shared by both engines (each repository's
//! written once in its `x_repo!` macro), conditional writes (`WHERE version = $n`) whose row count says who
//! won, idempotent inserts with `ON CONFLICT DO NOTHING`. Each aggregate keeps its full state as JSON in a
//! `doc` column beside the columns that queries and constraints use; a versioned one is read with
//! `get_versioned!` and written with `update_versioned!`, lists and unversioned documents with
//! `get_docs!` and `get_doc!`.
//!
//! The repositories: [`LedgerRepo`] (with [`post`], the one way into the ledger), [`DepositRepo`],
//! [`ReviewRepo`], [`AfterSaleRepo`], [`PenaltyRepo`], [`SettlementRepo`], [`TransferRepo`], [`PromoterRepo`],
//! and [`GovConfigRepo`] here; the facts governance reads about orders are on [`OrderRepo`] (paid orders,
//! flags) and [`ShipmentRepo`] (shipping deadlines, carrier scans).
//!
//! ```no_run
//! # async fn demo() -> wxshop::market::Result<()> {
//! use wxshop::market::governance::ledger::{Account, NegativePolicy, TxnBuilder, TxnKind};
//! use wxshop::market::{Money, store};
//! let store = store::open("sqlite::memory:").await?;
//! let mut tx = store.begin().await?;
//! let t = TxnBuilder::new(TxnKind::DepositPayIn, "deposit:m1")
//!     .transfer(Account::Clearing, Account::MerchantDeposit("m1".into()), Money::fen(500))
//!     .build("t1", chrono::Utc::now())
//!     .unwrap();
//! store::governance::post(&mut *tx, &t, &NegativePolicy::default()).await?;
//! assert_eq!(tx.ledger_balance("merchant:m1:deposit").await?, 500);
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub(crate) use super::json as doc;
pub use super::ledger::{LedgerAudit, Posted, post};
use super::prelude::*;
use crate::market::error::{MarketError, Result};

/// A value and the optimistic-concurrency version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub version: i64,
}

/// The governance configuration documents.
#[async_trait]
pub trait GovConfigRepo: Send {
    /// A configuration document.
    async fn gov_config(&mut self, key: &str) -> Result<Option<String>>;
    /// Writes a configuration document.
    async fn put_gov_config(&mut self, key: &str, doc: &str, at: DateTime<Utc>) -> Result<()>;
}

/// The governance repositories of one transaction: every type that implements them all is a `GovTx`.
pub trait GovTx:
    GovConfigRepo
    + LedgerRepo
    + DepositRepo
    + ReviewRepo
    + AfterSaleRepo
    + PenaltyRepo
    + SettlementRepo
    + TransferRepo
    + PromoterRepo
    + Send
{
}

impl<T> GovTx for T where
    T: GovConfigRepo
        + LedgerRepo
        + DepositRepo
        + ReviewRepo
        + AfterSaleRepo
        + PenaltyRepo
        + SettlementRepo
        + TransferRepo
        + PromoterRepo
        + Send
        + ?Sized
{
}

// ---------------------------------------------------------------- documents

pub(crate) fn undoc<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s)
        .map_err(|e| MarketError::Store { message: format!("corrupt {what} row: {e}"), retryable: false })
}

pub(crate) fn versioned<T: serde::de::DeserializeOwned>(
    what: &str,
    row: Option<(String, i64)>,
) -> Result<Option<Versioned<T>>> {
    row.map(|(d, version)| Ok(Versioned { value: undoc(what, &d)?, version })).transpose()
}

pub(crate) fn docs<T: serde::de::DeserializeOwned>(what: &str, rows: Vec<(String,)>) -> Result<Vec<T>> {
    rows.into_iter().map(|(d,)| undoc(what, &d)).collect()
}

/// Reads one versioned document: `$sql` selects `doc, version` of at most one row, `$key` binds its `$1`;
/// evaluates to `Result<Option<Versioned<T>>>` (`$what` names the row in a corruption error).
macro_rules! get_versioned {
    ($conn:expr, $what:literal, $sql:literal, $key:expr $(,)?) => {{
        let row: Option<(String, i64)> = sqlx::query_as($sql).bind($key).fetch_optional($conn).await?;
        $crate::market::store::governance::versioned($what, row)
    }};
}
pub(crate) use get_versioned;

/// Writes one versioned document if its stored version is still `expected`: `$sql` is
/// `UPDATE … SET <pre columns>, version = $n, <post columns> WHERE <key> = $m AND version = $m+1`, bound in
/// that order (`pre`, `expected + 1`, `post`, `key`, `expected`); evaluates to `Result<bool>`, whether it won.
macro_rules! update_versioned {
    (
        $conn:expr, $sql:literal, [$($pre:expr),* $(,)?], [$($post:expr),* $(,)?],
        key = $key:expr, expected = $expected:expr $(,)?
    ) => {{
        let r = sqlx::query($sql)
            $(.bind($pre))*
            .bind($expected + 1)
            $(.bind($post))*
            .bind($key)
            .bind($expected)
            .execute($conn)
            .await?;
        Ok(r.rows_affected() == 1)
    }};
}
pub(crate) use update_versioned;

/// Reads the documents of every row `$sql` selects (one `doc` column), binding `$binds` in order; evaluates
/// to `Result<Vec<T>>`.
macro_rules! get_docs {
    ($conn:expr, $what:literal, $sql:literal $(, $bind:expr)* $(,)?) => {{
        let rows: Vec<(String,)> = sqlx::query_as($sql)$(.bind($bind))*.fetch_all($conn).await?;
        $crate::market::store::governance::docs($what, rows)
    }};
}
pub(crate) use get_docs;

/// Reads the document of at most one row (one `doc` column), binding `$key`; evaluates to `Result<Option<T>>`.
macro_rules! get_doc {
    ($conn:expr, $what:literal, $sql:literal, $key:expr $(,)?) => {{
        let row: Option<(String,)> = sqlx::query_as($sql).bind($key).fetch_optional($conn).await?;
        row.map(|(d,)| $crate::market::store::governance::undoc($what, &d)).transpose()
    }};
}
pub(crate) use get_doc;

/// Implements [`GovConfigRepo`] for a backend's transaction newtype, with the same statements on every backend.
macro_rules! gov_config_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl $crate::market::store::governance::GovConfigRepo for $tx {
                async fn gov_config(&mut self, key: &str) -> Result<Option<String>> {
                    Ok(sqlx::query_scalar("SELECT doc FROM gov_config WHERE config_key = $1")
                        .bind(key)
                        .fetch_optional(&mut *self.0)
                        .await?)
                }

                async fn put_gov_config(&mut self, key: &str, doc: &str, at: DateTime<Utc>) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO gov_config (config_key, doc, updated_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (config_key) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                    )
                    .bind(key)
                    .bind(doc)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use gov_config_repo;
