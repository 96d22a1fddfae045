//! Storage of the marketplace: one trait, one module per backend, one conformance suite.
//!
//! [`MarketStore`] opens transactions; a [`StoreTx`] is one transaction with typed operations. All SQL
//! lives here (shared statements, written once in the `sql_store_tx!` macro and instantiated for each
//! backend) and in the backend modules (connection, pragmas, migrations, error classification).
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

// With `market` but neither backend feature, the shared statements have no one to serve.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::cart::CartLine;
use super::catalog::{BrowseQuery, Cursor, Product, Sku, SkuOffer};
use super::category::{Category, CategoryRule, RuleSpec};
use super::checkout::CheckoutGroup;
use super::error::{MarketError, Result};
use super::events::{AuditEntry, OutboxEvent, Timer, TimerAction, TimerStatus};
use super::inventory::{Demand, Movement, Reservation, ReservationStatus, StockLevel};
use super::merchant::{Merchant, Restrictions};
use super::money::Money;
use super::order::{MerchantOrder, OrderLine, OrderStatus, Shipment};
use super::payment::{Payment, Refund, RefundStatus};

#[macro_use]
pub mod anomalies;
#[macro_use]
pub mod claims;
#[macro_use]
pub mod credentials;
#[macro_use]
pub mod governance;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use anomalies::AnomalyRepo;
pub use claims::ClaimRepo;
pub use credentials::CredentialRepo;
pub use governance::GovTx;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

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
pub trait StoreTx: GovTx + AnomalyRepo + ClaimRepo + CredentialRepo + Send {
    /// Commits.
    async fn commit(self: Box<Self>) -> Result<()>;

    // ---- merchants and categories
    /// Inserts a merchant.
    async fn insert_merchant(&mut self, m: &Merchant) -> Result<()>;
    /// A merchant by id.
    async fn merchant(&mut self, id: &str) -> Result<Option<Merchant>>;
    /// Merchants by id, up to `limit`.
    async fn merchants(&mut self, limit: i64) -> Result<Vec<Merchant>>;
    /// Writes `m` (status, restrictions, name, sub_mchid, version, updated_at) if the stored version is
    /// `expected_version`.
    async fn update_merchant(&mut self, m: &Merchant, expected_version: i64) -> Result<bool>;
    /// Allows a merchant to sell in a category (idempotent).
    async fn grant_category(&mut self, merchant_id: &str, category_id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Whether the merchant may sell in the category.
    async fn has_category(&mut self, merchant_id: &str, category_id: &str) -> Result<bool>;
    /// Inserts a category.
    async fn insert_category(&mut self, c: &Category) -> Result<()>;
    /// A category by id.
    async fn category(&mut self, id: &str) -> Result<Option<Category>>;
    /// Inserts a rule version; `false` when that version already exists.
    async fn insert_rule(&mut self, r: &CategoryRule) -> Result<bool>;
    /// One rule version.
    async fn rule(&mut self, category_id: &str, version: i64) -> Result<Option<CategoryRule>>;
    /// The latest rule version of each category.
    async fn current_rules(&mut self, category_ids: &[String]) -> Result<Vec<CategoryRule>>;

    // ---- catalog
    /// Inserts a product.
    async fn insert_product(&mut self, p: &Product) -> Result<()>;
    /// Inserts a SKU and its (empty) stock level.
    async fn insert_sku(&mut self, s: &Sku) -> Result<()>;
    /// A product by id.
    async fn product(&mut self, id: &str) -> Result<Option<Product>>;
    /// The SKUs of a product.
    async fn skus_of(&mut self, merchant_id: &str, product_id: &str) -> Result<Vec<Sku>>;
    /// Writes `p` (title, description, status, price range, version, updated_at) if the stored version
    /// is `expected_version`.
    async fn update_product(&mut self, p: &Product, expected_version: i64) -> Result<bool>;
    /// Sets a SKU's price.
    async fn update_sku_price(
        &mut self,
        merchant_id: &str,
        sku_id: &str,
        price: Money,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// SKUs joined with product and merchant, for pricing carts and checkouts.
    async fn offers(&mut self, sku_ids: &[String]) -> Result<Vec<SkuOffer>>;
    /// Listed products of selling merchants matching `q`, after `cursor`, at most `limit`.
    async fn browse(&mut self, q: &BrowseQuery, cursor: Option<&Cursor>, limit: i64) -> Result<Vec<Product>>;

    // ---- inventory
    /// Stock levels by SKU id.
    async fn stock_of(&mut self, sku_ids: &[String]) -> Result<BTreeMap<String, StockLevel>>;
    /// `on_hand += delta` if the result stays `>= reserved`; the new level, or `None` if refused.
    async fn add_on_hand(
        &mut self,
        merchant_id: &str,
        sku_id: &str,
        delta: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<StockLevel>>;
    /// Sets `on_hand` to `new` if it is still `expected` and `new >= reserved`; the new level, or `None`.
    async fn set_on_hand(
        &mut self,
        merchant_id: &str,
        sku_id: &str,
        expected: i64,
        new: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<StockLevel>>;
    /// Reserves all of `demand` with ONE conditional statement; returns the SKU ids that had enough.
    /// If fewer than `demand.len()` come back, the caller must roll back.
    async fn reserve(&mut self, demand: &[Demand], at: DateTime<Utc>) -> Result<Vec<String>>;
    /// `reserved -= qty` if `reserved >= qty`.
    async fn release(&mut self, merchant_id: &str, sku_id: &str, qty: i64, at: DateTime<Utc>) -> Result<bool>;
    /// Sells reserved units: `on_hand -= qty, reserved -= qty` if `reserved >= qty`.
    async fn commit_stock(&mut self, merchant_id: &str, sku_id: &str, qty: i64, at: DateTime<Utc>) -> Result<bool>;
    /// Appends a movement.
    async fn insert_movement(&mut self, m: &Movement) -> Result<()>;
    /// Movements of a SKU, oldest first.
    async fn movements(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Movement>>;
    /// Inserts a reservation.
    async fn insert_reservation(&mut self, r: &Reservation) -> Result<()>;
    /// Reservations of a checkout group.
    async fn reservations_of_group(&mut self, group_id: &str) -> Result<Vec<Reservation>>;
    /// Reservations of a SKU.
    async fn reservations_of_sku(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Reservation>>;
    /// Moves a reservation `from → to`.
    async fn set_reservation_status(
        &mut self,
        merchant_id: &str,
        reservation_id: &str,
        from: ReservationStatus,
        to: ReservationStatus,
        at: DateTime<Utc>,
    ) -> Result<bool>;

    // ---- carts
    /// Lines of a cart (by owner key), by SKU.
    async fn cart_lines(&mut self, owner: &str) -> Result<Vec<CartLine>>;
    /// Inserts or replaces a line.
    async fn put_cart_line(&mut self, owner: &str, line: &CartLine) -> Result<()>;
    /// Removes a line.
    async fn delete_cart_line(&mut self, owner: &str, sku_id: &str) -> Result<()>;
    /// Removes every line.
    async fn clear_cart(&mut self, owner: &str) -> Result<()>;

    // ---- idempotency
    /// `(request_hash, response)` stored under a key.
    async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>>;
    /// Stores a key; `false` if it exists.
    async fn insert_idempotency(
        &mut self,
        scope: &str,
        key: &str,
        hash: &str,
        response: &str,
        at: DateTime<Utc>,
    ) -> Result<bool>;

    // ---- checkout groups, orders, shipments
    /// Inserts a group.
    async fn insert_group(&mut self, g: &CheckoutGroup) -> Result<()>;
    /// A group by id.
    async fn group(&mut self, id: &str) -> Result<Option<CheckoutGroup>>;
    /// Writes `g` (status, version, updated_at) if the stored version is `expected_version`.
    async fn update_group(&mut self, g: &CheckoutGroup, expected_version: i64) -> Result<bool>;
    /// Inserts an order.
    async fn insert_order(&mut self, o: &MerchantOrder) -> Result<()>;
    /// Inserts an order line.
    async fn insert_order_line(&mut self, l: &OrderLine) -> Result<()>;
    /// An order by id.
    async fn order(&mut self, id: &str) -> Result<Option<MerchantOrder>>;
    /// The lines of an order.
    async fn order_lines(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<OrderLine>>;
    /// The orders of a group, by merchant.
    async fn orders_of_group(&mut self, group_id: &str) -> Result<Vec<MerchantOrder>>;
    /// Writes every mutable field of `o` if the stored version is `expected_version`.
    async fn update_order(&mut self, o: &MerchantOrder, expected_version: i64) -> Result<bool>;
    /// Sets a line's shipped quantity.
    async fn set_line_shipped(&mut self, merchant_id: &str, order_id: &str, line_no: i64, shipped: i64) -> Result<()>;
    /// A buyer's orders, newest first, with ids below `before`.
    async fn orders_of_buyer(&mut self, openid: &str, before: Option<&str>, limit: i64) -> Result<Vec<MerchantOrder>>;
    /// A merchant's orders, newest first, optionally in one status, with ids below `before`.
    async fn orders_of_merchant(
        &mut self,
        merchant_id: &str,
        status: Option<OrderStatus>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MerchantOrder>>;
    /// Orders of a merchant not yet Completed or Cancelled.
    async fn count_open_orders(&mut self, merchant_id: &str) -> Result<i64>;
    /// Records a parcel; `false` if this waybill was already recorded for the order.
    async fn insert_shipment(&mut self, s: &Shipment) -> Result<bool>;
    /// Parcels of an order.
    async fn shipments(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<Shipment>>;
    /// Replaces a parcel's waybill (a shipping-info correction); `false` if the parcel no longer has
    /// `old_tracking_no` or the new waybill is already another parcel's of the order.
    async fn correct_shipment(
        &mut self,
        merchant_id: &str,
        shipment_id: &str,
        old_tracking_no: &str,
        tracking_no: &str,
        express_company: &str,
    ) -> Result<bool>;

    // ---- payments and refunds
    /// Inserts a payment.
    async fn insert_payment(&mut self, p: &Payment) -> Result<()>;
    /// The payment of a group.
    async fn payment(&mut self, group_id: &str) -> Result<Option<Payment>>;
    /// Initiated payments with a prepay order whose group still awaits payment, oldest first.
    async fn awaiting_payments(&mut self, limit: i64) -> Result<Vec<Payment>>;
    /// Writes every mutable field of `p` if the stored version is `expected_version`.
    async fn update_payment(&mut self, p: &Payment, expected_version: i64) -> Result<bool>;
    /// Records a payment notification id; `false` if seen before.
    async fn insert_notice(
        &mut self,
        notify_id: &str,
        out_trade_no: &str,
        transaction_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Inserts a refund.
    async fn insert_refund(&mut self, r: &Refund) -> Result<()>;
    /// A refund by id.
    async fn refund(&mut self, id: &str) -> Result<Option<Refund>>;
    /// Writes `r` (status, wx_refund_id, updated_at) if the stored status is `expected`.
    async fn update_refund(&mut self, r: &Refund, expected: RefundStatus) -> Result<bool>;
    /// Refunds of a group.
    async fn refunds_of_group(&mut self, group_id: &str) -> Result<Vec<Refund>>;

    // ---- audit, outbox, timers
    /// Appends an audit row.
    async fn insert_audit(&mut self, a: &AuditEntry) -> Result<()>;
    /// Audit rows of an aggregate, oldest first.
    async fn audit_of(&mut self, aggregate_id: &str) -> Result<Vec<AuditEntry>>;
    /// Audit rows of an aggregate type, oldest first, at most `limit`.
    async fn audit_of_type(&mut self, aggregate_type: &str, limit: i64) -> Result<Vec<AuditEntry>>;
    /// Appends an outbox event.
    async fn insert_event(&mut self, e: &OutboxEvent) -> Result<()>;
    /// Events the consumer has not acked, oldest first.
    async fn poll_events(&mut self, consumer: &str, limit: i64) -> Result<Vec<OutboxEvent>>;
    /// Acks events for a consumer (idempotent).
    async fn ack_events(&mut self, consumer: &str, event_ids: &[String], at: DateTime<Utc>) -> Result<()>;
    /// Deletes up to `limit` outbox events created before `before` that every consumer has acked (each
    /// of `consumers`, and every consumer that has acked any event), with their acks except each
    /// consumer's newest (kept, so the consumer stays known); returns `(events, acks)` deleted. An
    /// event some consumer has not acked is never deleted.
    async fn prune_outbox(&mut self, before: DateTime<Utc>, consumers: &[String], limit: i64) -> Result<(u64, u64)>;
    /// Deletes the payment-notification dedupe rows received before `before`; how many.
    async fn prune_notices(&mut self, before: DateTime<Utc>) -> Result<u64>;
    /// Inserts a timer.
    async fn insert_timer(&mut self, t: &Timer) -> Result<()>;
    /// Timers of an aggregate.
    async fn timers_of(&mut self, aggregate_id: &str) -> Result<Vec<Timer>>;
    /// Scheduled timers due at `now`, earliest first.
    async fn due_timers(&mut self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Timer>>;
    /// Cancels the scheduled timers of an aggregate with this action; how many.
    async fn cancel_timers(&mut self, aggregate_id: &str, action: TimerAction, at: DateTime<Utc>) -> Result<u64>;
    /// Moves a scheduled timer to `to` (Fired, Failed), recording `error`.
    async fn finish_timer(&mut self, id: &str, to: TimerStatus, error: Option<&str>, at: DateTime<Utc>)
    -> Result<bool>;
    /// Claims a due scheduled timer for an external call: pushes `due_at` to `until` (the retry time if
    /// the caller dies) and counts an attempt.
    async fn lease_timer(&mut self, id: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool>;
    /// Records the last error of a timer.
    async fn note_timer_error(&mut self, id: &str, error: &str) -> Result<()>;
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

fn from_ms(v: i64) -> DateTime<Utc> {
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

#[derive(sqlx::FromRow)]
struct MerchantRow {
    merchant_id: String,
    name: String,
    sub_mchid: Option<String>,
    status: String,
    restrictions: i64,
    manual_restrictions: i64,
    manual_suspension: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<MerchantRow> for Merchant {
    type Error = MarketError;
    fn try_from(r: MerchantRow) -> Result<Self> {
        Ok(Merchant {
            id: r.merchant_id,
            name: r.name,
            sub_mchid: r.sub_mchid,
            status: r.status.parse().map_err(|e| corrupt("merchant", e))?,
            restrictions: Restrictions::from_bits(r.restrictions as u32).map_err(|e| corrupt("merchant", e))?,
            manual_restrictions: Restrictions::from_bits(r.manual_restrictions as u32)
                .map_err(|e| corrupt("merchant", e))?,
            manual_suspension: r.manual_suspension,
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct CategoryRow {
    category_id: String,
    parent_id: Option<String>,
    name: String,
    created_at: i64,
}

impl From<CategoryRow> for Category {
    fn from(r: CategoryRow) -> Self {
        Category { id: r.category_id, parent_id: r.parent_id, name: r.name, created_at: from_ms(r.created_at) }
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    category_id: String,
    version: i64,
    deposit_fen: i64,
    ship_sla_hours: i64,
    auto_confirm_days: i64,
    after_sale_days: i64,
    seven_day_return: String,
    commission_bps: i64,
    effective_from: i64,
}

impl TryFrom<RuleRow> for CategoryRule {
    type Error = MarketError;
    fn try_from(r: RuleRow) -> Result<Self> {
        Ok(CategoryRule {
            category_id: r.category_id,
            version: r.version,
            spec: RuleSpec {
                deposit_required: Money::fen(r.deposit_fen),
                ship_sla_hours: r.ship_sla_hours,
                auto_confirm_days: r.auto_confirm_days,
                after_sale_days: r.after_sale_days,
                seven_day_return: r.seven_day_return.parse().map_err(|e| corrupt("rule", e))?,
                commission_bps: r.commission_bps,
            },
            effective_from: from_ms(r.effective_from),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ProductRow {
    merchant_id: String,
    product_id: String,
    category_id: String,
    title: String,
    description: String,
    status: String,
    min_price_fen: i64,
    max_price_fen: i64,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ProductRow> for Product {
    type Error = MarketError;
    fn try_from(r: ProductRow) -> Result<Self> {
        Ok(Product {
            id: r.product_id,
            merchant_id: r.merchant_id,
            category_id: r.category_id,
            title: r.title,
            description: r.description,
            status: r.status.parse().map_err(|e| corrupt("product", e))?,
            min_price: Money::fen(r.min_price_fen),
            max_price: Money::fen(r.max_price_fen),
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct SkuRow {
    merchant_id: String,
    sku_id: String,
    product_id: String,
    attrs: String,
    price_fen: i64,
    purchase_limit: Option<i64>,
    created_at: i64,
}

impl TryFrom<SkuRow> for Sku {
    type Error = MarketError;
    fn try_from(r: SkuRow) -> Result<Self> {
        Ok(Sku {
            id: r.sku_id,
            merchant_id: r.merchant_id,
            product_id: r.product_id,
            attrs: serde_json::from_str(&r.attrs).map_err(|e| corrupt("sku", e))?,
            price: Money::fen(r.price_fen),
            purchase_limit: r.purchase_limit,
            created_at: from_ms(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct OfferRow {
    merchant_id: String,
    sku_id: String,
    product_id: String,
    attrs: String,
    price_fen: i64,
    purchase_limit: Option<i64>,
    created_at: i64,
    title: String,
    category_id: String,
    product_status: String,
    m_name: String,
    m_sub_mchid: Option<String>,
    m_status: String,
    m_restrictions: i64,
    m_manual_restrictions: i64,
    m_manual_suspension: bool,
    m_version: i64,
    m_created_at: i64,
    m_updated_at: i64,
}

impl TryFrom<OfferRow> for SkuOffer {
    type Error = MarketError;
    fn try_from(r: OfferRow) -> Result<Self> {
        let merchant = MerchantRow {
            merchant_id: r.merchant_id.clone(),
            name: r.m_name,
            sub_mchid: r.m_sub_mchid,
            status: r.m_status,
            restrictions: r.m_restrictions,
            manual_restrictions: r.m_manual_restrictions,
            manual_suspension: r.m_manual_suspension,
            version: r.m_version,
            created_at: r.m_created_at,
            updated_at: r.m_updated_at,
        };
        let sku = SkuRow {
            merchant_id: r.merchant_id,
            sku_id: r.sku_id,
            product_id: r.product_id,
            attrs: r.attrs,
            price_fen: r.price_fen,
            purchase_limit: r.purchase_limit,
            created_at: r.created_at,
        };
        Ok(SkuOffer {
            sku: sku.try_into()?,
            title: r.title,
            category_id: r.category_id,
            product_status: r.product_status.parse().map_err(|e| corrupt("product", e))?,
            merchant: merchant.try_into()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct StockRow {
    sku_id: String,
    on_hand: i64,
    reserved: i64,
}

#[derive(sqlx::FromRow)]
struct MovementRow {
    merchant_id: String,
    movement_id: String,
    sku_id: String,
    kind: String,
    on_hand_delta: i64,
    reserved_delta: i64,
    ref_id: Option<String>,
    at: i64,
}

impl TryFrom<MovementRow> for Movement {
    type Error = MarketError;
    fn try_from(r: MovementRow) -> Result<Self> {
        Ok(Movement {
            id: r.movement_id,
            merchant_id: r.merchant_id,
            sku_id: r.sku_id,
            kind: r.kind.parse().map_err(|e| corrupt("movement", e))?,
            on_hand_delta: r.on_hand_delta,
            reserved_delta: r.reserved_delta,
            ref_id: r.ref_id,
            at: from_ms(r.at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ReservationRow {
    merchant_id: String,
    reservation_id: String,
    group_id: String,
    order_id: String,
    sku_id: String,
    qty: i64,
    status: String,
    expires_at: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = MarketError;
    fn try_from(r: ReservationRow) -> Result<Self> {
        Ok(Reservation {
            id: r.reservation_id,
            merchant_id: r.merchant_id,
            group_id: r.group_id,
            order_id: r.order_id,
            sku_id: r.sku_id,
            qty: r.qty,
            status: r.status.parse().map_err(|e| corrupt("reservation", e))?,
            expires_at: from_ms(r.expires_at),
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct CartRow {
    sku_id: String,
    merchant_id: String,
    qty: i64,
    unit_price_fen: i64,
    added_at: i64,
    updated_at: i64,
}

impl From<CartRow> for CartLine {
    fn from(r: CartRow) -> Self {
        CartLine {
            sku_id: r.sku_id,
            merchant_id: r.merchant_id,
            qty: r.qty,
            unit_price: Money::fen(r.unit_price_fen),
            added_at: from_ms(r.added_at),
            updated_at: from_ms(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    group_id: String,
    buyer_openid: String,
    status: String,
    subtotal_fen: i64,
    discount_fen: i64,
    total_fen: i64,
    merchant_count: i64,
    pay_deadline: i64,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<GroupRow> for CheckoutGroup {
    type Error = MarketError;
    fn try_from(r: GroupRow) -> Result<Self> {
        Ok(CheckoutGroup {
            id: r.group_id,
            buyer_openid: r.buyer_openid,
            status: r.status.parse().map_err(|e| corrupt("group", e))?,
            subtotal: Money::fen(r.subtotal_fen),
            discount: Money::fen(r.discount_fen),
            total: Money::fen(r.total_fen),
            merchant_count: r.merchant_count,
            pay_deadline: from_ms(r.pay_deadline),
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    merchant_id: String,
    order_id: String,
    group_id: String,
    buyer_openid: String,
    status: String,
    subtotal_fen: i64,
    discount_fen: i64,
    total_fen: i64,
    commission_fen: i64,
    ship_sla_hours: i64,
    auto_confirm_days: i64,
    after_sale_days: i64,
    transaction_id: Option<String>,
    paid_at: Option<i64>,
    ship_deadline: Option<i64>,
    shipped_at: Option<i64>,
    received_at: Option<i64>,
    received_by: Option<String>,
    completed_at: Option<i64>,
    cancelled_at: Option<i64>,
    cancel_reason: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<OrderRow> for MerchantOrder {
    type Error = MarketError;
    fn try_from(r: OrderRow) -> Result<Self> {
        Ok(MerchantOrder {
            id: r.order_id,
            group_id: r.group_id,
            merchant_id: r.merchant_id,
            buyer_openid: r.buyer_openid,
            status: r.status.parse().map_err(|e| corrupt("order", e))?,
            subtotal: Money::fen(r.subtotal_fen),
            discount: Money::fen(r.discount_fen),
            total: Money::fen(r.total_fen),
            commission: Money::fen(r.commission_fen),
            ship_sla_hours: r.ship_sla_hours,
            auto_confirm_days: r.auto_confirm_days,
            after_sale_days: r.after_sale_days,
            transaction_id: r.transaction_id,
            paid_at: r.paid_at.map(from_ms),
            ship_deadline: r.ship_deadline.map(from_ms),
            shipped_at: r.shipped_at.map(from_ms),
            received_at: r.received_at.map(from_ms),
            received_by: r.received_by,
            completed_at: r.completed_at.map(from_ms),
            cancelled_at: r.cancelled_at.map(from_ms),
            cancel_reason: r.cancel_reason,
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct LineRow {
    merchant_id: String,
    order_id: String,
    line_no: i64,
    sku_id: String,
    product_id: String,
    title: String,
    attrs: String,
    category_id: String,
    rule_version: i64,
    unit_price_fen: i64,
    qty: i64,
    line_total_fen: i64,
    discount_fen: i64,
    commission_bps: i64,
    commission_fen: i64,
    shipped_qty: i64,
}

impl TryFrom<LineRow> for OrderLine {
    type Error = MarketError;
    fn try_from(r: LineRow) -> Result<Self> {
        Ok(OrderLine {
            order_id: r.order_id,
            merchant_id: r.merchant_id,
            line_no: r.line_no,
            sku_id: r.sku_id,
            product_id: r.product_id,
            title: r.title,
            attrs: serde_json::from_str(&r.attrs).map_err(|e| corrupt("order line", e))?,
            category_id: r.category_id,
            rule_version: r.rule_version,
            unit_price: Money::fen(r.unit_price_fen),
            qty: r.qty,
            line_total: Money::fen(r.line_total_fen),
            discount: Money::fen(r.discount_fen),
            commission_bps: r.commission_bps,
            commission: Money::fen(r.commission_fen),
            shipped_qty: r.shipped_qty,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ShipmentRow {
    merchant_id: String,
    shipment_id: String,
    order_id: String,
    tracking_no: String,
    express_company: String,
    items: String,
    shipped_at: i64,
}

impl TryFrom<ShipmentRow> for Shipment {
    type Error = MarketError;
    fn try_from(r: ShipmentRow) -> Result<Self> {
        Ok(Shipment {
            id: r.shipment_id,
            merchant_id: r.merchant_id,
            order_id: r.order_id,
            tracking_no: r.tracking_no,
            express_company: r.express_company,
            items: serde_json::from_str(&r.items).map_err(|e| corrupt("shipment", e))?,
            shipped_at: from_ms(r.shipped_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct PaymentRow {
    group_id: String,
    buyer_openid: String,
    mode: String,
    amount_fen: i64,
    status: String,
    prepay_id: Option<String>,
    pay_params: Option<String>,
    transaction_id: Option<String>,
    paid_at: Option<i64>,
    refunded_fen: i64,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = MarketError;
    fn try_from(r: PaymentRow) -> Result<Self> {
        Ok(Payment {
            group_id: r.group_id,
            buyer_openid: r.buyer_openid,
            mode: r.mode.parse().map_err(|e| corrupt("payment", e))?,
            amount: Money::fen(r.amount_fen),
            status: r.status.parse().map_err(|e| corrupt("payment", e))?,
            prepay_id: r.prepay_id,
            pay_params: r
                .pay_params
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| corrupt("payment", e))?,
            transaction_id: r.transaction_id,
            paid_at: r.paid_at.map(from_ms),
            refunded: Money::fen(r.refunded_fen),
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct RefundRow {
    refund_id: String,
    group_id: String,
    order_id: Option<String>,
    merchant_id: Option<String>,
    out_trade_no: String,
    transaction_id: Option<String>,
    sub_mchid: Option<String>,
    amount_fen: i64,
    total_fen: i64,
    reason: String,
    status: String,
    wx_refund_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RefundRow> for Refund {
    type Error = MarketError;
    fn try_from(r: RefundRow) -> Result<Self> {
        Ok(Refund {
            id: r.refund_id,
            group_id: r.group_id,
            order_id: r.order_id,
            merchant_id: r.merchant_id,
            out_trade_no: r.out_trade_no,
            transaction_id: r.transaction_id,
            sub_mchid: r.sub_mchid,
            amount: Money::fen(r.amount_fen),
            total: Money::fen(r.total_fen),
            reason: r.reason,
            status: r.status.parse().map_err(|e| corrupt("refund", e))?,
            wx_refund_id: r.wx_refund_id,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    audit_id: String,
    merchant_id: Option<String>,
    aggregate_type: String,
    aggregate_id: String,
    actor: String,
    action: String,
    from_state: Option<String>,
    to_state: Option<String>,
    reason: Option<String>,
    at: i64,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.audit_id,
            merchant_id: r.merchant_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            actor: r.actor,
            action: r.action,
            from_state: r.from_state,
            to_state: r.to_state,
            reason: r.reason,
            at: from_ms(r.at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: String,
    merchant_id: Option<String>,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    payload: String,
    created_at: i64,
}

impl TryFrom<EventRow> for OutboxEvent {
    type Error = MarketError;
    fn try_from(r: EventRow) -> Result<Self> {
        Ok(OutboxEvent {
            id: r.event_id,
            merchant_id: r.merchant_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            event_type: r.event_type,
            payload: serde_json::from_str(&r.payload).map_err(|e| corrupt("outbox", e))?,
            created_at: from_ms(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct TimerRow {
    timer_id: String,
    merchant_id: Option<String>,
    aggregate_type: String,
    aggregate_id: String,
    action: String,
    due_at: i64,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
}

impl TryFrom<TimerRow> for Timer {
    type Error = MarketError;
    fn try_from(r: TimerRow) -> Result<Self> {
        Ok(Timer {
            id: r.timer_id,
            merchant_id: r.merchant_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            action: r.action.parse().map_err(|e| corrupt("timer", e))?,
            due_at: from_ms(r.due_at),
            status: r.status.parse().map_err(|e| corrupt("timer", e))?,
            attempts: r.attempts,
            last_error: r.last_error,
            created_at: from_ms(r.created_at),
        })
    }
}

fn convert<R, T: TryFrom<R, Error = MarketError>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| MarketError::Store { message: format!("encode: {e}"), retryable: false })
}

const MERCHANT_COLS: &str = "merchant_id, name, sub_mchid, status, restrictions, manual_restrictions, \
     manual_suspension, version, created_at, updated_at";
const PRODUCT_COLS: &str = "merchant_id, product_id, category_id, title, description, status, min_price_fen, \
     max_price_fen, version, created_at, updated_at";
const ORDER_COLS: &str = "merchant_id, order_id, group_id, buyer_openid, status, subtotal_fen, discount_fen, \
     total_fen, commission_fen, ship_sla_hours, auto_confirm_days, after_sale_days, transaction_id, paid_at, \
     ship_deadline, shipped_at, received_at, received_by, completed_at, cancelled_at, cancel_reason, version, \
     created_at, updated_at";

/// Implements [`StoreTx`] for a backend's newtype over [`Handle`] (`struct XTx(Handle<DB>)`). The statements are the same on every backend; `$db` only picks the placeholder style of the
/// few dynamically built ones.
#[allow(unused_macros)]
macro_rules! sql_store_tx {
    ($tx:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::market::store::StoreTx for $tx {
            async fn commit(self: Box<Self>) -> Result<()> {
                self.0.commit().await
            }

            async fn insert_merchant(&mut self, m: &Merchant) -> Result<()> {
                sqlx::query(
                    "INSERT INTO merchants (merchant_id, name, sub_mchid, status, restrictions, sellable, version, \
                     created_at, updated_at, manual_restrictions, manual_suspension) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&m.id)
                .bind(&m.name)
                .bind(&m.sub_mchid)
                .bind(m.status.as_str())
                .bind(m.restrictions.bits() as i64)
                .bind(m.can_sell())
                .bind(m.version)
                .bind(ms(m.created_at))
                .bind(ms(m.updated_at))
                .bind(m.manual_restrictions.bits() as i64)
                .bind(m.manual_suspension)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn merchant(&mut self, id: &str) -> Result<Option<Merchant>> {
                let sql = format!("SELECT {MERCHANT_COLS} FROM merchants WHERE merchant_id = $1");
                let row = sqlx::query_as::<_, MerchantRow>(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                row.map(Merchant::try_from).transpose()
            }

            async fn merchants(&mut self, limit: i64) -> Result<Vec<Merchant>> {
                let sql = format!("SELECT {MERCHANT_COLS} FROM merchants ORDER BY merchant_id LIMIT $1");
                let rows = sqlx::query_as::<_, MerchantRow>(sqlx::AssertSqlSafe(sql))
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                convert(rows)
            }

            async fn update_merchant(&mut self, m: &Merchant, expected_version: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE merchants SET name = $1, sub_mchid = $2, status = $3, restrictions = $4, sellable = $5, \
                     version = $6, updated_at = $7, manual_restrictions = $8, manual_suspension = $9 \
                     WHERE merchant_id = $10 AND version = $11",
                )
                .bind(&m.name)
                .bind(&m.sub_mchid)
                .bind(m.status.as_str())
                .bind(m.restrictions.bits() as i64)
                .bind(m.can_sell())
                .bind(m.version)
                .bind(ms(m.updated_at))
                .bind(m.manual_restrictions.bits() as i64)
                .bind(m.manual_suspension)
                .bind(&m.id)
                .bind(expected_version)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn grant_category(&mut self, merchant_id: &str, category_id: &str, at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO merchant_categories (merchant_id, category_id, granted_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (merchant_id, category_id) DO NOTHING",
                )
                .bind(merchant_id)
                .bind(category_id)
                .bind(ms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn has_category(&mut self, merchant_id: &str, category_id: &str) -> Result<bool> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM merchant_categories WHERE merchant_id = $1 AND category_id = $2",
                )
                .bind(merchant_id)
                .bind(category_id)
                .fetch_one(&mut *self.0)
                .await?;
                Ok(n > 0)
            }

            async fn insert_category(&mut self, c: &Category) -> Result<()> {
                sqlx::query("INSERT INTO categories (category_id, parent_id, name, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&c.id)
                    .bind(&c.parent_id)
                    .bind(&c.name)
                    .bind(ms(c.created_at))
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn category(&mut self, id: &str) -> Result<Option<Category>> {
                let row = sqlx::query_as::<_, CategoryRow>(
                    "SELECT category_id, parent_id, name, created_at FROM categories WHERE category_id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(row.map(Category::from))
            }

            async fn insert_rule(&mut self, r: &CategoryRule) -> Result<bool> {
                let res = sqlx::query(
                    "INSERT INTO category_rules (category_id, version, deposit_fen, ship_sla_hours, auto_confirm_days, \
                     after_sale_days, seven_day_return, commission_bps, effective_from) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (category_id, version) DO NOTHING",
                )
                .bind(&r.category_id)
                .bind(r.version)
                .bind(r.spec.deposit_required.as_fen())
                .bind(r.spec.ship_sla_hours)
                .bind(r.spec.auto_confirm_days)
                .bind(r.spec.after_sale_days)
                .bind(r.spec.seven_day_return.as_str())
                .bind(r.spec.commission_bps)
                .bind(ms(r.effective_from))
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn rule(&mut self, category_id: &str, version: i64) -> Result<Option<CategoryRule>> {
                let row = sqlx::query_as::<_, RuleRow>(
                    "SELECT category_id, version, deposit_fen, ship_sla_hours, auto_confirm_days, after_sale_days, \
                     seven_day_return, commission_bps, effective_from FROM category_rules \
                     WHERE category_id = $1 AND version = $2",
                )
                .bind(category_id)
                .bind(version)
                .fetch_optional(&mut *self.0)
                .await?;
                row.map(CategoryRule::try_from).transpose()
            }

            async fn current_rules(&mut self, category_ids: &[String]) -> Result<Vec<CategoryRule>> {
                if category_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT r.category_id, r.version, r.deposit_fen, r.ship_sla_hours, r.auto_confirm_days, \
                     r.after_sale_days, r.seven_day_return, r.commission_bps, r.effective_from \
                     FROM category_rules r WHERE r.version = (SELECT MAX(r2.version) FROM category_rules r2 \
                     WHERE r2.category_id = r.category_id) AND r.category_id IN (",
                );
                let mut sep = q.separated(", ");
                for id in category_ids {
                    sep.push_bind(id.clone());
                }
                q.push(")");
                let rows = q.build_query_as::<RuleRow>().fetch_all(&mut *self.0).await?;
                convert(rows)
            }

            async fn insert_product(&mut self, p: &Product) -> Result<()> {
                let sql = format!(
                    "INSERT INTO products ({PRODUCT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&p.merchant_id)
                    .bind(&p.id)
                    .bind(&p.category_id)
                    .bind(&p.title)
                    .bind(&p.description)
                    .bind(p.status.as_str())
                    .bind(p.min_price.as_fen())
                    .bind(p.max_price.as_fen())
                    .bind(p.version)
                    .bind(ms(p.created_at))
                    .bind(ms(p.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn insert_sku(&mut self, s: &Sku) -> Result<()> {
                sqlx::query(
                    "INSERT INTO skus (merchant_id, sku_id, product_id, attrs, price_fen, purchase_limit, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&s.merchant_id)
                .bind(&s.id)
                .bind(&s.product_id)
                .bind(json(&s.attrs)?)
                .bind(s.price.as_fen())
                .bind(s.purchase_limit)
                .bind(ms(s.created_at))
                .execute(&mut *self.0)
                .await?;
                sqlx::query(
                    "INSERT INTO inventory (merchant_id, sku_id, on_hand, reserved, updated_at) VALUES ($1, $2, 0, 0, $3)",
                )
                .bind(&s.merchant_id)
                .bind(&s.id)
                .bind(ms(s.created_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn product(&mut self, id: &str) -> Result<Option<Product>> {
                let sql = format!("SELECT {PRODUCT_COLS} FROM products WHERE product_id = $1");
                let row = sqlx::query_as::<_, ProductRow>(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                row.map(Product::try_from).transpose()
            }

            async fn skus_of(&mut self, merchant_id: &str, product_id: &str) -> Result<Vec<Sku>> {
                let rows = sqlx::query_as::<_, SkuRow>(
                    "SELECT merchant_id, sku_id, product_id, attrs, price_fen, purchase_limit, created_at FROM skus \
                     WHERE merchant_id = $1 AND product_id = $2 ORDER BY sku_id",
                )
                .bind(merchant_id)
                .bind(product_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn update_product(&mut self, p: &Product, expected_version: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE products SET title = $1, description = $2, status = $3, min_price_fen = $4, \
                     max_price_fen = $5, version = $6, updated_at = $7 \
                     WHERE merchant_id = $8 AND product_id = $9 AND version = $10",
                )
                .bind(&p.title)
                .bind(&p.description)
                .bind(p.status.as_str())
                .bind(p.min_price.as_fen())
                .bind(p.max_price.as_fen())
                .bind(p.version)
                .bind(ms(p.updated_at))
                .bind(&p.merchant_id)
                .bind(&p.id)
                .bind(expected_version)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn update_sku_price(
                &mut self,
                merchant_id: &str,
                sku_id: &str,
                price: Money,
                at: DateTime<Utc>,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE skus SET price_fen = $1, updated_at = $2 WHERE merchant_id = $3 AND sku_id = $4",
                )
                .bind(price.as_fen())
                .bind(ms(at))
                .bind(merchant_id)
                .bind(sku_id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn offers(&mut self, sku_ids: &[String]) -> Result<Vec<SkuOffer>> {
                if sku_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT s.merchant_id, s.sku_id, s.product_id, s.attrs, s.price_fen, s.purchase_limit, \
                     s.created_at, p.title, p.category_id, p.status AS product_status, m.name AS m_name, \
                     m.sub_mchid AS m_sub_mchid, m.status AS m_status, m.restrictions AS m_restrictions, \
                     m.manual_restrictions AS m_manual_restrictions, m.manual_suspension AS m_manual_suspension, \
                     m.version AS m_version, m.created_at AS m_created_at, m.updated_at AS m_updated_at \
                     FROM skus s JOIN products p ON p.merchant_id = s.merchant_id AND p.product_id = s.product_id \
                     JOIN merchants m ON m.merchant_id = s.merchant_id WHERE s.sku_id IN (",
                );
                let mut sep = q.separated(", ");
                for id in sku_ids {
                    sep.push_bind(id.clone());
                }
                q.push(") ORDER BY s.merchant_id, s.sku_id");
                let rows = q.build_query_as::<OfferRow>().fetch_all(&mut *self.0).await?;
                convert(rows)
            }

            async fn browse(&mut self, bq: &BrowseQuery, cursor: Option<&Cursor>, limit: i64) -> Result<Vec<Product>> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT p.merchant_id, p.product_id, p.category_id, p.title, p.description, p.status, \
                     p.min_price_fen, p.max_price_fen, p.version, p.created_at, p.updated_at \
                     FROM products p JOIN merchants m ON m.merchant_id = p.merchant_id WHERE p.status = ",
                );
                q.push_bind("Listed").push(" AND m.sellable = ").push_bind(true);
                if let Some(c) = &bq.category_id {
                    q.push(" AND p.category_id = ").push_bind(c.clone());
                }
                if let Some(m) = &bq.merchant_id {
                    q.push(" AND p.merchant_id = ").push_bind(m.clone());
                }
                if let Some(min) = bq.min_price {
                    q.push(" AND p.max_price_fen >= ").push_bind(min.as_fen());
                }
                if let Some(max) = bq.max_price {
                    q.push(" AND p.min_price_fen <= ").push_bind(max.as_fen());
                }
                if let Some(pat) = bq.like_pattern() {
                    q.push(" AND lower(p.title) LIKE ").push_bind(pat).push(" ESCAPE '\\'");
                }
                match cursor {
                    Some(Cursor::Newest { product_id }) => {
                        q.push(" AND p.product_id < ").push_bind(product_id.clone());
                    }
                    Some(Cursor::Price { min_price, product_id }) => {
                        q.push(" AND (p.min_price_fen > ")
                            .push_bind(min_price.as_fen())
                            .push(" OR (p.min_price_fen = ")
                            .push_bind(min_price.as_fen())
                            .push(" AND p.product_id > ")
                            .push_bind(product_id.clone())
                            .push("))");
                    }
                    None => {}
                }
                match bq.sort {
                    $crate::market::BrowseSort::Newest => q.push(" ORDER BY p.product_id DESC"),
                    $crate::market::BrowseSort::PriceAsc => q.push(" ORDER BY p.min_price_fen, p.product_id"),
                };
                q.push(" LIMIT ").push_bind(limit);
                let rows = q.build_query_as::<ProductRow>().fetch_all(&mut *self.0).await?;
                convert(rows)
            }

            async fn stock_of(&mut self, sku_ids: &[String]) -> Result<BTreeMap<String, StockLevel>> {
                if sku_ids.is_empty() {
                    return Ok(BTreeMap::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT sku_id, on_hand, reserved FROM inventory WHERE sku_id IN (",
                );
                let mut sep = q.separated(", ");
                for id in sku_ids {
                    sep.push_bind(id.clone());
                }
                q.push(")");
                let rows = q.build_query_as::<StockRow>().fetch_all(&mut *self.0).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| (r.sku_id, StockLevel { on_hand: r.on_hand, reserved: r.reserved }))
                    .collect())
            }

            async fn add_on_hand(
                &mut self,
                merchant_id: &str,
                sku_id: &str,
                delta: i64,
                at: DateTime<Utc>,
            ) -> Result<Option<StockLevel>> {
                let row = sqlx::query_as::<_, StockRow>(
                    "UPDATE inventory SET on_hand = on_hand + $1, updated_at = $2 \
                     WHERE merchant_id = $3 AND sku_id = $4 AND on_hand + $1 >= reserved \
                     RETURNING sku_id, on_hand, reserved",
                )
                .bind(delta)
                .bind(ms(at))
                .bind(merchant_id)
                .bind(sku_id)
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(row.map(|r| StockLevel { on_hand: r.on_hand, reserved: r.reserved }))
            }

            async fn set_on_hand(
                &mut self,
                merchant_id: &str,
                sku_id: &str,
                expected: i64,
                new: i64,
                at: DateTime<Utc>,
            ) -> Result<Option<StockLevel>> {
                let row = sqlx::query_as::<_, StockRow>(
                    "UPDATE inventory SET on_hand = $1, updated_at = $2 \
                     WHERE merchant_id = $3 AND sku_id = $4 AND on_hand = $5 AND $1 >= reserved \
                     RETURNING sku_id, on_hand, reserved",
                )
                .bind(new)
                .bind(ms(at))
                .bind(merchant_id)
                .bind(sku_id)
                .bind(expected)
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(row.map(|r| StockLevel { on_hand: r.on_hand, reserved: r.reserved }))
            }

            async fn reserve(&mut self, demand: &[Demand], at: DateTime<Utc>) -> Result<Vec<String>> {
                if demand.is_empty() {
                    return Ok(Vec::new());
                }
                // One statement over the demand aggregated per SKU: each row is updated only if it
                // still has enough, atomically, with no prior read.
                let mut q = sqlx::QueryBuilder::<$db>::new("WITH d (d_merchant, d_sku, d_qty) AS (");
                q.push_values(demand, |mut b, d| {
                    b.push_bind(d.merchant_id.clone()).push_bind(d.sku_id.clone()).push_bind(d.qty);
                });
                q.push(") UPDATE inventory SET reserved = inventory.reserved + d.d_qty, updated_at = ")
                    .push_bind(ms(at))
                    .push(
                        " FROM d WHERE inventory.merchant_id = d.d_merchant AND inventory.sku_id = d.d_sku \
                         AND inventory.on_hand - inventory.reserved >= d.d_qty RETURNING sku_id",
                    );
                let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *self.0).await?;
                Ok(ids)
            }

            async fn release(&mut self, merchant_id: &str, sku_id: &str, qty: i64, at: DateTime<Utc>) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE inventory SET reserved = reserved - $1, updated_at = $2 \
                     WHERE merchant_id = $3 AND sku_id = $4 AND reserved >= $1",
                )
                .bind(qty)
                .bind(ms(at))
                .bind(merchant_id)
                .bind(sku_id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn commit_stock(
                &mut self,
                merchant_id: &str,
                sku_id: &str,
                qty: i64,
                at: DateTime<Utc>,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE inventory SET on_hand = on_hand - $1, reserved = reserved - $1, updated_at = $2 \
                     WHERE merchant_id = $3 AND sku_id = $4 AND reserved >= $1",
                )
                .bind(qty)
                .bind(ms(at))
                .bind(merchant_id)
                .bind(sku_id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_movement(&mut self, m: &Movement) -> Result<()> {
                sqlx::query(
                    "INSERT INTO stock_movements (merchant_id, movement_id, sku_id, kind, on_hand_delta, \
                     reserved_delta, ref_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&m.merchant_id)
                .bind(&m.id)
                .bind(&m.sku_id)
                .bind(m.kind.as_str())
                .bind(m.on_hand_delta)
                .bind(m.reserved_delta)
                .bind(&m.ref_id)
                .bind(ms(m.at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn movements(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Movement>> {
                let rows = sqlx::query_as::<_, MovementRow>(
                    "SELECT merchant_id, movement_id, sku_id, kind, on_hand_delta, reserved_delta, ref_id, at \
                     FROM stock_movements WHERE merchant_id = $1 AND sku_id = $2 ORDER BY movement_id",
                )
                .bind(merchant_id)
                .bind(sku_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn insert_reservation(&mut self, r: &Reservation) -> Result<()> {
                sqlx::query(
                    "INSERT INTO reservations (merchant_id, reservation_id, group_id, order_id, sku_id, qty, status, \
                     expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&r.merchant_id)
                .bind(&r.id)
                .bind(&r.group_id)
                .bind(&r.order_id)
                .bind(&r.sku_id)
                .bind(r.qty)
                .bind(r.status.as_str())
                .bind(ms(r.expires_at))
                .bind(ms(r.created_at))
                .bind(ms(r.updated_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn reservations_of_group(&mut self, group_id: &str) -> Result<Vec<Reservation>> {
                let rows = sqlx::query_as::<_, ReservationRow>(
                    "SELECT merchant_id, reservation_id, group_id, order_id, sku_id, qty, status, expires_at, \
                     created_at, updated_at FROM reservations WHERE group_id = $1 ORDER BY merchant_id, sku_id",
                )
                .bind(group_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn reservations_of_sku(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Reservation>> {
                let rows = sqlx::query_as::<_, ReservationRow>(
                    "SELECT merchant_id, reservation_id, group_id, order_id, sku_id, qty, status, expires_at, \
                     created_at, updated_at FROM reservations WHERE merchant_id = $1 AND sku_id = $2 \
                     ORDER BY reservation_id",
                )
                .bind(merchant_id)
                .bind(sku_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn set_reservation_status(
                &mut self,
                merchant_id: &str,
                reservation_id: &str,
                from: ReservationStatus,
                to: ReservationStatus,
                at: DateTime<Utc>,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE reservations SET status = $1, updated_at = $2 \
                     WHERE merchant_id = $3 AND reservation_id = $4 AND status = $5",
                )
                .bind(to.as_str())
                .bind(ms(at))
                .bind(merchant_id)
                .bind(reservation_id)
                .bind(from.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn cart_lines(&mut self, owner: &str) -> Result<Vec<CartLine>> {
                let rows = sqlx::query_as::<_, CartRow>(
                    "SELECT sku_id, merchant_id, qty, unit_price_fen, added_at, updated_at FROM cart_lines \
                     WHERE owner = $1 ORDER BY sku_id",
                )
                .bind(owner)
                .fetch_all(&mut *self.0)
                .await?;
                Ok(rows.into_iter().map(CartLine::from).collect())
            }

            async fn put_cart_line(&mut self, owner: &str, l: &CartLine) -> Result<()> {
                sqlx::query(
                    "INSERT INTO cart_lines (owner, sku_id, merchant_id, qty, unit_price_fen, added_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (owner, sku_id) DO UPDATE SET \
                     qty = excluded.qty, unit_price_fen = excluded.unit_price_fen, updated_at = excluded.updated_at",
                )
                .bind(owner)
                .bind(&l.sku_id)
                .bind(&l.merchant_id)
                .bind(l.qty)
                .bind(l.unit_price.as_fen())
                .bind(ms(l.added_at))
                .bind(ms(l.updated_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_cart_line(&mut self, owner: &str, sku_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM cart_lines WHERE owner = $1 AND sku_id = $2")
                    .bind(owner)
                    .bind(sku_id)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn clear_cart(&mut self, owner: &str) -> Result<()> {
                sqlx::query("DELETE FROM cart_lines WHERE owner = $1").bind(owner).execute(&mut *self.0).await?;
                Ok(())
            }

            async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>> {
                let row: Option<(String, String)> = sqlx::query_as(
                    "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
                )
                .bind(scope)
                .bind(key)
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(row)
            }

            async fn insert_idempotency(
                &mut self,
                scope: &str,
                key: &str,
                hash: &str,
                response: &str,
                at: DateTime<Utc>,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO idempotency_keys (scope, idem_key, request_hash, response, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, idem_key) DO NOTHING",
                )
                .bind(scope)
                .bind(key)
                .bind(hash)
                .bind(response)
                .bind(ms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_group(&mut self, g: &CheckoutGroup) -> Result<()> {
                sqlx::query(
                    "INSERT INTO checkout_groups (group_id, buyer_openid, status, subtotal_fen, discount_fen, \
                     total_fen, merchant_count, pay_deadline, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&g.id)
                .bind(&g.buyer_openid)
                .bind(g.status.as_str())
                .bind(g.subtotal.as_fen())
                .bind(g.discount.as_fen())
                .bind(g.total.as_fen())
                .bind(g.merchant_count)
                .bind(ms(g.pay_deadline))
                .bind(g.version)
                .bind(ms(g.created_at))
                .bind(ms(g.updated_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn group(&mut self, id: &str) -> Result<Option<CheckoutGroup>> {
                let row = sqlx::query_as::<_, GroupRow>(
                    "SELECT group_id, buyer_openid, status, subtotal_fen, discount_fen, total_fen, merchant_count, \
                     pay_deadline, version, created_at, updated_at FROM checkout_groups WHERE group_id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
                row.map(CheckoutGroup::try_from).transpose()
            }

            async fn update_group(&mut self, g: &CheckoutGroup, expected_version: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE checkout_groups SET status = $1, version = $2, updated_at = $3 \
                     WHERE group_id = $4 AND version = $5",
                )
                .bind(g.status.as_str())
                .bind(g.version)
                .bind(ms(g.updated_at))
                .bind(&g.id)
                .bind(expected_version)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_order(&mut self, o: &MerchantOrder) -> Result<()> {
                let sql = format!(
                    "INSERT INTO merchant_orders ({ORDER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&o.merchant_id)
                    .bind(&o.id)
                    .bind(&o.group_id)
                    .bind(&o.buyer_openid)
                    .bind(o.status.as_str())
                    .bind(o.subtotal.as_fen())
                    .bind(o.discount.as_fen())
                    .bind(o.total.as_fen())
                    .bind(o.commission.as_fen())
                    .bind(o.ship_sla_hours)
                    .bind(o.auto_confirm_days)
                    .bind(o.after_sale_days)
                    .bind(&o.transaction_id)
                    .bind(o.paid_at.map(ms))
                    .bind(o.ship_deadline.map(ms))
                    .bind(o.shipped_at.map(ms))
                    .bind(o.received_at.map(ms))
                    .bind(&o.received_by)
                    .bind(o.completed_at.map(ms))
                    .bind(o.cancelled_at.map(ms))
                    .bind(&o.cancel_reason)
                    .bind(o.version)
                    .bind(ms(o.created_at))
                    .bind(ms(o.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn insert_order_line(&mut self, l: &OrderLine) -> Result<()> {
                sqlx::query(
                    "INSERT INTO order_lines (merchant_id, order_id, line_no, sku_id, product_id, title, attrs, \
                     category_id, rule_version, unit_price_fen, qty, line_total_fen, discount_fen, commission_bps, \
                     commission_fen, shipped_qty) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                )
                .bind(&l.merchant_id)
                .bind(&l.order_id)
                .bind(l.line_no)
                .bind(&l.sku_id)
                .bind(&l.product_id)
                .bind(&l.title)
                .bind(json(&l.attrs)?)
                .bind(&l.category_id)
                .bind(l.rule_version)
                .bind(l.unit_price.as_fen())
                .bind(l.qty)
                .bind(l.line_total.as_fen())
                .bind(l.discount.as_fen())
                .bind(l.commission_bps)
                .bind(l.commission.as_fen())
                .bind(l.shipped_qty)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn order(&mut self, id: &str) -> Result<Option<MerchantOrder>> {
                let sql = format!("SELECT {ORDER_COLS} FROM merchant_orders WHERE order_id = $1");
                let row = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                row.map(MerchantOrder::try_from).transpose()
            }

            async fn order_lines(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<OrderLine>> {
                let rows = sqlx::query_as::<_, LineRow>(
                    "SELECT merchant_id, order_id, line_no, sku_id, product_id, title, attrs, category_id, \
                     rule_version, unit_price_fen, qty, line_total_fen, discount_fen, commission_bps, commission_fen, \
                     shipped_qty FROM order_lines WHERE merchant_id = $1 AND order_id = $2 ORDER BY line_no",
                )
                .bind(merchant_id)
                .bind(order_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn orders_of_group(&mut self, group_id: &str) -> Result<Vec<MerchantOrder>> {
                let sql = format!("SELECT {ORDER_COLS} FROM merchant_orders WHERE group_id = $1 ORDER BY merchant_id");
                let rows = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                    .bind(group_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                convert(rows)
            }

            async fn update_order(&mut self, o: &MerchantOrder, expected_version: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE merchant_orders SET status = $1, transaction_id = $2, paid_at = $3, ship_deadline = $4, \
                     shipped_at = $5, received_at = $6, received_by = $7, completed_at = $8, cancelled_at = $9, \
                     cancel_reason = $10, version = $11, updated_at = $12 \
                     WHERE merchant_id = $13 AND order_id = $14 AND version = $15",
                )
                .bind(o.status.as_str())
                .bind(&o.transaction_id)
                .bind(o.paid_at.map(ms))
                .bind(o.ship_deadline.map(ms))
                .bind(o.shipped_at.map(ms))
                .bind(o.received_at.map(ms))
                .bind(&o.received_by)
                .bind(o.completed_at.map(ms))
                .bind(o.cancelled_at.map(ms))
                .bind(&o.cancel_reason)
                .bind(o.version)
                .bind(ms(o.updated_at))
                .bind(&o.merchant_id)
                .bind(&o.id)
                .bind(expected_version)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn set_line_shipped(
                &mut self,
                merchant_id: &str,
                order_id: &str,
                line_no: i64,
                shipped: i64,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE order_lines SET shipped_qty = $1 WHERE merchant_id = $2 AND order_id = $3 AND line_no = $4",
                )
                .bind(shipped)
                .bind(merchant_id)
                .bind(order_id)
                .bind(line_no)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn orders_of_buyer(
                &mut self,
                openid: &str,
                before: Option<&str>,
                limit: i64,
            ) -> Result<Vec<MerchantOrder>> {
                let sql = format!(
                    "SELECT {ORDER_COLS} FROM merchant_orders WHERE buyer_openid = $1 \
                     AND ($2 IS NULL OR order_id < $2) ORDER BY order_id DESC LIMIT $3"
                );
                let rows = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                    .bind(openid)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                convert(rows)
            }

            async fn orders_of_merchant(
                &mut self,
                merchant_id: &str,
                status: Option<OrderStatus>,
                before: Option<&str>,
                limit: i64,
            ) -> Result<Vec<MerchantOrder>> {
                let sql = format!(
                    "SELECT {ORDER_COLS} FROM merchant_orders WHERE merchant_id = $1 \
                     AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR order_id < $3) \
                     ORDER BY order_id DESC LIMIT $4"
                );
                let rows = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                    .bind(merchant_id)
                    .bind(status.map(|s| s.as_str()))
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                convert(rows)
            }

            async fn count_open_orders(&mut self, merchant_id: &str) -> Result<i64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM merchant_orders WHERE merchant_id = $1 \
                     AND status NOT IN ('Completed', 'Cancelled')",
                )
                .bind(merchant_id)
                .fetch_one(&mut *self.0)
                .await?;
                Ok(n)
            }

            async fn insert_shipment(&mut self, s: &Shipment) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO shipments (merchant_id, shipment_id, order_id, tracking_no, express_company, items, \
                     shipped_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (merchant_id, order_id, tracking_no) DO NOTHING",
                )
                .bind(&s.merchant_id)
                .bind(&s.id)
                .bind(&s.order_id)
                .bind(&s.tracking_no)
                .bind(&s.express_company)
                .bind(json(&s.items)?)
                .bind(ms(s.shipped_at))
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn shipments(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<Shipment>> {
                let rows = sqlx::query_as::<_, ShipmentRow>(
                    "SELECT merchant_id, shipment_id, order_id, tracking_no, express_company, items, shipped_at \
                     FROM shipments WHERE merchant_id = $1 AND order_id = $2 ORDER BY shipment_id",
                )
                .bind(merchant_id)
                .bind(order_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn correct_shipment(
                &mut self,
                merchant_id: &str,
                shipment_id: &str,
                old_tracking_no: &str,
                tracking_no: &str,
                express_company: &str,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE shipments SET tracking_no = $4, express_company = $5 \
                     WHERE merchant_id = $1 AND shipment_id = $2 AND tracking_no = $3 \
                     AND NOT EXISTS (SELECT 1 FROM shipments o WHERE o.merchant_id = $1 \
                     AND o.order_id = shipments.order_id AND o.shipment_id <> $2 AND o.tracking_no = $4)",
                )
                .bind(merchant_id)
                .bind(shipment_id)
                .bind(old_tracking_no)
                .bind(tracking_no)
                .bind(express_company)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_payment(&mut self, p: &Payment) -> Result<()> {
                sqlx::query(
                    "INSERT INTO payments (group_id, buyer_openid, mode, amount_fen, status, prepay_id, pay_params, \
                     transaction_id, paid_at, refunded_fen, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&p.group_id)
                .bind(&p.buyer_openid)
                .bind(p.mode.as_str())
                .bind(p.amount.as_fen())
                .bind(p.status.as_str())
                .bind(&p.prepay_id)
                .bind(p.pay_params.as_ref().map(json).transpose()?)
                .bind(&p.transaction_id)
                .bind(p.paid_at.map(ms))
                .bind(p.refunded.as_fen())
                .bind(p.version)
                .bind(ms(p.created_at))
                .bind(ms(p.updated_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn payment(&mut self, group_id: &str) -> Result<Option<Payment>> {
                let row = sqlx::query_as::<_, PaymentRow>(
                    "SELECT group_id, buyer_openid, mode, amount_fen, status, prepay_id, pay_params, transaction_id, \
                     paid_at, refunded_fen, version, created_at, updated_at FROM payments WHERE group_id = $1",
                )
                .bind(group_id)
                .fetch_optional(&mut *self.0)
                .await?;
                row.map(Payment::try_from).transpose()
            }

            async fn awaiting_payments(&mut self, limit: i64) -> Result<Vec<Payment>> {
                let rows = sqlx::query_as::<_, PaymentRow>(
                    "SELECT p.group_id, p.buyer_openid, p.mode, p.amount_fen, p.status, p.prepay_id, p.pay_params, \
                     p.transaction_id, p.paid_at, p.refunded_fen, p.version, p.created_at, p.updated_at \
                     FROM payments p JOIN checkout_groups g ON g.group_id = p.group_id \
                     WHERE p.status = $1 AND p.prepay_id IS NOT NULL AND g.status = $2 \
                     ORDER BY p.created_at, p.group_id LIMIT $3",
                )
                .bind($crate::market::PaymentStatus::Initiated.as_str())
                .bind($crate::market::GroupStatus::AwaitingPayment.as_str())
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                rows.into_iter().map(Payment::try_from).collect()
            }

            async fn update_payment(&mut self, p: &Payment, expected_version: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE payments SET status = $1, prepay_id = $2, pay_params = $3, transaction_id = $4, \
                     paid_at = $5, refunded_fen = $6, version = $7, updated_at = $8 \
                     WHERE group_id = $9 AND version = $10",
                )
                .bind(p.status.as_str())
                .bind(&p.prepay_id)
                .bind(p.pay_params.as_ref().map(json).transpose()?)
                .bind(&p.transaction_id)
                .bind(p.paid_at.map(ms))
                .bind(p.refunded.as_fen())
                .bind(p.version)
                .bind(ms(p.updated_at))
                .bind(&p.group_id)
                .bind(expected_version)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_notice(
                &mut self,
                notify_id: &str,
                out_trade_no: &str,
                transaction_id: &str,
                at: DateTime<Utc>,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO payment_notices (notify_id, out_trade_no, transaction_id, received_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (notify_id) DO NOTHING",
                )
                .bind(notify_id)
                .bind(out_trade_no)
                .bind(transaction_id)
                .bind(ms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_refund(&mut self, r: &Refund) -> Result<()> {
                sqlx::query(
                    "INSERT INTO refunds (refund_id, group_id, order_id, merchant_id, out_trade_no, transaction_id, \
                     sub_mchid, amount_fen, total_fen, reason, status, wx_refund_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&r.id)
                .bind(&r.group_id)
                .bind(&r.order_id)
                .bind(&r.merchant_id)
                .bind(&r.out_trade_no)
                .bind(&r.transaction_id)
                .bind(&r.sub_mchid)
                .bind(r.amount.as_fen())
                .bind(r.total.as_fen())
                .bind(&r.reason)
                .bind(r.status.as_str())
                .bind(&r.wx_refund_id)
                .bind(ms(r.created_at))
                .bind(ms(r.updated_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn refund(&mut self, id: &str) -> Result<Option<Refund>> {
                let row = sqlx::query_as::<_, RefundRow>(
                    "SELECT refund_id, group_id, order_id, merchant_id, out_trade_no, transaction_id, sub_mchid, \
                     amount_fen, total_fen, reason, status, wx_refund_id, created_at, updated_at FROM refunds \
                     WHERE refund_id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
                row.map(Refund::try_from).transpose()
            }

            async fn update_refund(&mut self, r: &Refund, expected: RefundStatus) -> Result<bool> {
                let res = sqlx::query(
                    "UPDATE refunds SET status = $1, wx_refund_id = $2, updated_at = $3 \
                     WHERE refund_id = $4 AND status = $5",
                )
                .bind(r.status.as_str())
                .bind(&r.wx_refund_id)
                .bind(ms(r.updated_at))
                .bind(&r.id)
                .bind(expected.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn refunds_of_group(&mut self, group_id: &str) -> Result<Vec<Refund>> {
                let rows = sqlx::query_as::<_, RefundRow>(
                    "SELECT refund_id, group_id, order_id, merchant_id, out_trade_no, transaction_id, sub_mchid, \
                     amount_fen, total_fen, reason, status, wx_refund_id, created_at, updated_at FROM refunds \
                     WHERE group_id = $1 ORDER BY refund_id",
                )
                .bind(group_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn insert_audit(&mut self, a: &AuditEntry) -> Result<()> {
                sqlx::query(
                    "INSERT INTO audit_log (audit_id, merchant_id, aggregate_type, aggregate_id, actor, action, \
                     from_state, to_state, reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&a.id)
                .bind(&a.merchant_id)
                .bind(&a.aggregate_type)
                .bind(&a.aggregate_id)
                .bind(&a.actor)
                .bind(&a.action)
                .bind(&a.from_state)
                .bind(&a.to_state)
                .bind(&a.reason)
                .bind(ms(a.at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn audit_of(&mut self, aggregate_id: &str) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query_as::<_, AuditRow>(
                    "SELECT audit_id, merchant_id, aggregate_type, aggregate_id, actor, action, from_state, to_state, \
                     reason, at FROM audit_log WHERE aggregate_id = $1 ORDER BY audit_id",
                )
                .bind(aggregate_id)
                .fetch_all(&mut *self.0)
                .await?;
                Ok(rows.into_iter().map(AuditEntry::from).collect())
            }

            async fn audit_of_type(&mut self, aggregate_type: &str, limit: i64) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query_as::<_, AuditRow>(
                    "SELECT audit_id, merchant_id, aggregate_type, aggregate_id, actor, action, from_state, to_state, \
                     reason, at FROM audit_log WHERE aggregate_type = $1 ORDER BY audit_id LIMIT $2",
                )
                .bind(aggregate_type)
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                Ok(rows.into_iter().map(AuditEntry::from).collect())
            }

            async fn insert_event(&mut self, e: &OutboxEvent) -> Result<()> {
                sqlx::query(
                    "INSERT INTO outbox (event_id, merchant_id, aggregate_type, aggregate_id, event_type, payload, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&e.id)
                .bind(&e.merchant_id)
                .bind(&e.aggregate_type)
                .bind(&e.aggregate_id)
                .bind(&e.event_type)
                .bind(json(&e.payload)?)
                .bind(ms(e.created_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn poll_events(&mut self, consumer: &str, limit: i64) -> Result<Vec<OutboxEvent>> {
                let rows = sqlx::query_as::<_, EventRow>(
                    "SELECT e.event_id, e.merchant_id, e.aggregate_type, e.aggregate_id, e.event_type, e.payload, \
                     e.created_at FROM outbox e WHERE NOT EXISTS (SELECT 1 FROM outbox_acks a \
                     WHERE a.consumer = $1 AND a.event_id = e.event_id) ORDER BY e.created_at, e.event_id LIMIT $2",
                )
                .bind(consumer)
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn ack_events(&mut self, consumer: &str, event_ids: &[String], at: DateTime<Utc>) -> Result<()> {
                for id in event_ids {
                    sqlx::query(
                        "INSERT INTO outbox_acks (consumer, event_id, acked_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (consumer, event_id) DO NOTHING",
                    )
                    .bind(consumer)
                    .bind(id)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                }
                Ok(())
            }

            async fn prune_outbox(
                &mut self,
                before: DateTime<Utc>,
                consumers: &[String],
                limit: i64,
            ) -> Result<(u64, u64)> {
                // The consumers to wait for: the named ones and every one that has acked anything.
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT e.event_id FROM outbox e WHERE e.created_at < ",
                );
                q.push_bind(ms(before));
                q.push(
                    " AND NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT consumer FROM outbox_acks",
                );
                for c in consumers {
                    q.push(" UNION SELECT CAST(").push_bind(c.clone()).push(" AS TEXT)");
                }
                q.push(
                    ") c WHERE NOT EXISTS (SELECT 1 FROM outbox_acks a \
                     WHERE a.consumer = c.consumer AND a.event_id = e.event_id)) \
                     ORDER BY e.created_at, e.event_id LIMIT ",
                );
                q.push_bind(limit);
                let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *self.0).await?;
                if ids.is_empty() {
                    return Ok((0, 0));
                }
                // Each consumer's newest ack stays (even once its event is gone): it is how a consumer
                // that has acked nothing since is still known, and so still waited for.
                const NOT_NEWEST: &str = " AND NOT EXISTS (SELECT 1 FROM (SELECT consumer AS c, \
                     MAX(event_id) AS m FROM outbox_acks GROUP BY consumer) k \
                     WHERE k.c = outbox_acks.consumer AND k.m = outbox_acks.event_id)";
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM outbox_acks WHERE event_id IN (");
                let mut sep = q.separated(", ");
                for id in &ids {
                    sep.push_bind(id.clone());
                }
                q.push(")");
                q.push(NOT_NEWEST);
                let mut acks = q.build().execute(&mut *self.0).await?.rows_affected();
                // Markers left by earlier runs whose consumer has acked something newer since.
                let stale = format!(
                    "DELETE FROM outbox_acks WHERE NOT EXISTS (SELECT 1 FROM outbox e \
                     WHERE e.event_id = outbox_acks.event_id){NOT_NEWEST}"
                );
                acks += sqlx::query(sqlx::AssertSqlSafe(stale)).execute(&mut *self.0).await?.rows_affected();
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM outbox WHERE event_id IN (");
                let mut sep = q.separated(", ");
                for id in &ids {
                    sep.push_bind(id.clone());
                }
                q.push(")");
                let events = q.build().execute(&mut *self.0).await?.rows_affected();
                Ok((events, acks))
            }

            async fn prune_notices(&mut self, before: DateTime<Utc>) -> Result<u64> {
                let r = sqlx::query("DELETE FROM payment_notices WHERE received_at < $1")
                    .bind(ms(before))
                    .execute(&mut *self.0)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn insert_timer(&mut self, t: &Timer) -> Result<()> {
                sqlx::query(
                    "INSERT INTO timers (timer_id, merchant_id, aggregate_type, aggregate_id, action, due_at, status, \
                     attempts, last_error, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                )
                .bind(&t.id)
                .bind(&t.merchant_id)
                .bind(&t.aggregate_type)
                .bind(&t.aggregate_id)
                .bind(t.action.as_str())
                .bind(ms(t.due_at))
                .bind(t.status.as_str())
                .bind(t.attempts)
                .bind(&t.last_error)
                .bind(ms(t.created_at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn timers_of(&mut self, aggregate_id: &str) -> Result<Vec<Timer>> {
                let rows = sqlx::query_as::<_, TimerRow>(
                    "SELECT timer_id, merchant_id, aggregate_type, aggregate_id, action, due_at, status, attempts, \
                     last_error, created_at FROM timers WHERE aggregate_id = $1 ORDER BY timer_id",
                )
                .bind(aggregate_id)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn due_timers(&mut self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Timer>> {
                let rows = sqlx::query_as::<_, TimerRow>(
                    "SELECT timer_id, merchant_id, aggregate_type, aggregate_id, action, due_at, status, attempts, \
                     last_error, created_at FROM timers WHERE status = 'Scheduled' AND due_at <= $1 \
                     ORDER BY due_at, timer_id LIMIT $2",
                )
                .bind(ms(now))
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                convert(rows)
            }

            async fn cancel_timers(&mut self, aggregate_id: &str, action: TimerAction, at: DateTime<Utc>) -> Result<u64> {
                let r = sqlx::query(
                    "UPDATE timers SET status = 'Cancelled', updated_at = $1 \
                     WHERE aggregate_id = $2 AND action = $3 AND status = 'Scheduled'",
                )
                .bind(ms(at))
                .bind(aggregate_id)
                .bind(action.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected())
            }

            async fn finish_timer(
                &mut self,
                id: &str,
                to: TimerStatus,
                error: Option<&str>,
                at: DateTime<Utc>,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE timers SET status = $1, last_error = COALESCE($2, last_error), updated_at = $3 \
                     WHERE timer_id = $4 AND status = 'Scheduled'",
                )
                .bind(to.as_str())
                .bind(error)
                .bind(ms(at))
                .bind(id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn lease_timer(&mut self, id: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE timers SET due_at = $1, attempts = attempts + 1, updated_at = $2 \
                     WHERE timer_id = $3 AND status = 'Scheduled' AND due_at <= $2",
                )
                .bind(ms(until))
                .bind(ms(now))
                .bind(id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn note_timer_error(&mut self, id: &str, error: &str) -> Result<()> {
                sqlx::query("UPDATE timers SET last_error = $1 WHERE timer_id = $2")
                    .bind(error)
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use sql_store_tx;
