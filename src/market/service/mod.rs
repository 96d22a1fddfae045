//! [`Market`]: the marketplace service over a store, two gateways and a clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::checkout::CheckoutGroup;
use super::clock::{Clock, SystemClock, new_id, trunc_ms};
use super::error::{MarketError, Result};
use super::events::{Actor, AuditEntry, OutboxEvent, Timer, TimerAction, TimerStatus};
use super::gateway::{PaymentGateway, ShippingGateway};
use super::order::MerchantOrder;
use super::payment::Payment;
use super::store::{MarketStore, StoreTx};

mod access;
mod anomalies;
mod anomaly_records;
mod bills;
mod cart;
mod catalog;
mod checkout;
mod claims;
mod governance;
pub mod handles;
mod merchants;
mod orders;
mod recommend;
mod timers;

pub use bills::BillReport;
pub use catalog::StockReconciliation;
pub use claims::{CLAIM_LEASE, StoreClaims};
pub use governance::{
    CONSUMER as GOVERNANCE_CONSUMER, CaseRequest, DepositPrepay, DepositRefundView, DepositView, MerchantBalances,
    PenaltyLog, ReviewRequest,
};
pub use governance::{CompensationView, TransferNoticeOutcome};
pub use merchants::NewMerchant;
pub use orders::RefundSettled;
pub use recommend::{EVENT_BATCH, FeedItem, FeedPage, NewEvent, Why};
pub use timers::{DEFAULT_RETENTION_DAYS, MIN_RETENTION_HOURS, PruneReport, ReconcileReport, Retention};

/// Tunables of a [`Market`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketConfig {
    /// How long a buyer has to pay; reservations hold stock that long.
    pub pay_window: Duration,
    /// Retries of a transaction that lost a race or hit a serialization failure, deadlock or busy
    /// database.
    pub max_retries: u32,
    /// First backoff of a failed external call (close, refund); doubles per attempt, capped at 1 h.
    pub effect_backoff: Duration,
    /// Attempts of an external call before it is marked Failed.
    pub effect_max_attempts: i64,
    /// Payment description shown to the buyer.
    pub pay_description: String,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            pay_window: Duration::from_secs(15 * 60),
            max_retries: 10,
            effect_backoff: Duration::from_secs(30),
            effect_max_attempts: 12,
            pay_description: "wxshop order".into(),
        }
    }
}

/// The result of a checkout: the group, its orders and its payment (with the `wx.requestPayment`
/// parameters once WeChat Pay accepted the prepay order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// The group.
    pub group: CheckoutGroup,
    /// One order per merchant.
    pub orders: Vec<MerchantOrder>,
    /// The payment.
    pub payment: Payment,
}

/// The marketplace service. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Market {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn MarketStore>,
    clock: Arc<dyn Clock>,
    pay: Arc<dyn PaymentGateway>,
    ship: Arc<dyn ShippingGateway>,
    config: MarketConfig,
    rec: recommend::RecState,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market")
            .field("store", &self.inner.store)
            .field("clock", &self.inner.clock)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Market`].
pub struct MarketBuilder {
    store: Arc<dyn MarketStore>,
    clock: Arc<dyn Clock>,
    pay: Option<Arc<dyn PaymentGateway>>,
    ship: Option<Arc<dyn ShippingGateway>>,
    config: MarketConfig,
}

impl MarketBuilder {
    /// The payment gateway (required).
    pub fn payments(mut self, p: Arc<dyn PaymentGateway>) -> Self {
        self.pay = Some(p);
        self
    }
    /// The shipping gateway (required).
    pub fn shipping(mut self, s: Arc<dyn ShippingGateway>) -> Self {
        self.ship = Some(s);
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }
    /// Tunables.
    pub fn config(mut self, c: MarketConfig) -> Self {
        self.config = c;
        self
    }
    /// Builds; fails without both gateways (a marketplace that cannot take money or ship must be
    /// asked for explicitly, e.g. with [`RecordingGateway`](super::RecordingGateway)).
    pub fn build(self) -> Result<Market> {
        let pay = self.pay.ok_or_else(|| MarketError::invalid("MarketBuilder needs a payment gateway"))?;
        let ship = self.ship.ok_or_else(|| MarketError::invalid("MarketBuilder needs a shipping gateway"))?;
        Ok(Market {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                pay,
                ship,
                config: self.config,
                rec: recommend::RecState::default(),
            }),
        })
    }
}

impl Market {
    /// Starts a builder over a store.
    pub fn builder(store: Arc<dyn MarketStore>) -> MarketBuilder {
        MarketBuilder { store, clock: Arc::new(SystemClock), pay: None, ship: None, config: MarketConfig::default() }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn MarketStore> {
        &self.inner.store
    }

    /// The tunables.
    pub fn config(&self) -> &MarketConfig {
        &self.inner.config
    }

    /// Now, per the injected clock, at the store's millisecond resolution.
    pub fn now(&self) -> DateTime<Utc> {
        trunc_ms(self.inner.clock.now())
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>> {
        self.inner.store.begin().await
    }

    /// For reads of one statement each.
    async fn read(&self) -> Result<Box<dyn StoreTx>> {
        self.inner.store.read().await
    }

    /// For reads that must agree with each other.
    async fn snapshot(&self) -> Result<Box<dyn StoreTx>> {
        self.inner.store.snapshot().await
    }

    /// Runs `f` (one whole transaction) again while it fails with a retryable error, with bounded,
    /// jittered exponential backoff.
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            match f().await {
                Err(e) if e.is_retryable() && attempt < self.inner.config.max_retries => {
                    attempt += 1;
                    let cap_ms = (2u64 << attempt.min(7)).min(200);
                    let ms = rand::random_range(cap_ms / 2..=cap_ms);
                    tracing::debug!(attempt, error = %e, "retrying market transaction");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                other => return other,
            }
        }
    }
}

/// Identifies an aggregate for audit rows, events and timers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Agg<'a> {
    kind: &'a str,
    id: &'a str,
    merchant: Option<&'a str>,
}

impl<'a> Agg<'a> {
    pub(crate) fn new(kind: &'a str, id: &'a str, merchant: Option<&'a str>) -> Self {
        Agg { kind, id, merchant }
    }

    fn audit(
        &self,
        at: DateTime<Utc>,
        actor: &Actor,
        action: &str,
        from: Option<String>,
        to: Option<String>,
        reason: Option<&str>,
    ) -> AuditEntry {
        AuditEntry {
            id: new_id(),
            merchant_id: self.merchant.map(str::to_string),
            aggregate_type: self.kind.into(),
            aggregate_id: self.id.into(),
            actor: actor.label(),
            action: action.into(),
            from_state: from,
            to_state: to,
            reason: reason.map(str::to_string),
            at,
        }
    }

    fn event(&self, at: DateTime<Utc>, event_type: &str, payload: serde_json::Value) -> OutboxEvent {
        OutboxEvent {
            id: new_id(),
            merchant_id: self.merchant.map(str::to_string),
            aggregate_type: self.kind.into(),
            aggregate_id: self.id.into(),
            event_type: event_type.into(),
            payload,
            created_at: at,
        }
    }

    fn timer(&self, at: DateTime<Utc>, action: TimerAction, due: DateTime<Utc>) -> Timer {
        Timer {
            id: new_id(),
            merchant_id: self.merchant.map(str::to_string),
            aggregate_type: self.kind.into(),
            aggregate_id: self.id.into(),
            action,
            due_at: due,
            status: TimerStatus::Scheduled,
            attempts: 0,
            last_error: None,
            created_at: at,
        }
    }

    /// Writes the audit row of a state change and its outbox event.
    pub(crate) async fn record(
        &self,
        tx: &mut dyn StoreTx,
        at: DateTime<Utc>,
        actor: &Actor,
        change: Change<'_>,
    ) -> Result<()> {
        tx.insert_audit(&self.audit(at, actor, change.action, change.from, change.to, change.reason)).await?;
        if let Some((event_type, payload)) = change.event {
            tx.insert_event(&self.event(at, event_type, payload)).await?;
        }
        Ok(())
    }
}

/// One recorded change: audit fields plus an optional event.
pub(crate) struct Change<'a> {
    action: &'a str,
    from: Option<String>,
    to: Option<String>,
    reason: Option<&'a str>,
    event: Option<(&'a str, serde_json::Value)>,
}

impl<'a> Change<'a> {
    pub(crate) fn new(action: &'a str) -> Self {
        Change { action, from: None, to: None, reason: None, event: None }
    }
    pub(crate) fn states(mut self, from: impl ToString, to: impl ToString) -> Self {
        self.from = Some(from.to_string());
        self.to = Some(to.to_string());
        self
    }
    pub(crate) fn to(mut self, to: impl ToString) -> Self {
        self.to = Some(to.to_string());
        self
    }
    pub(crate) fn reason(mut self, r: Option<&'a str>) -> Self {
        self.reason = r;
        self
    }
    pub(crate) fn event(mut self, event_type: &'a str, payload: serde_json::Value) -> Self {
        self.event = Some((event_type, payload));
        self
    }
}

/// `Conflict` unless a conditional write matched.
pub(crate) fn won(matched: bool, what: &str) -> Result<()> {
    if matched { Ok(()) } else { Err(MarketError::Conflict(what.to_string())) }
}

pub(crate) fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
