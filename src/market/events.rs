//! Audit rows, outbox events and durable timers: written in the same transaction as the change they
//! belong to.
//!
//! - The **audit log** says who moved what from which state to which, and why.
//! - The **outbox** carries events to consumers at least once: a consumer polls, handles, acks; it
//!   may see an event again after a crash, so it dedupes by [`OutboxEvent::id`].
//! - A **timer** is a deadline stored with its action (`due_at`, `action`, aggregate); firing one
//!   re-checks the aggregate's state, so firing twice or late is harmless. Timers also carry the
//!   gateway calls that must happen after a commit (close a prepay order, send a refund): retried with
//!   backoff until they succeed or fail for good.
//!
//! ```
//! use wxshop::market::TimerAction;
//! assert!(TimerAction::Refund.is_external());
//! assert!(!TimerAction::AutoConfirm.is_external());
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// A buyer, by openid.
    Buyer(String),
    /// A merchant, by id.
    Merchant(String),
    /// The platform operator.
    Platform,
    /// WeChat Pay (a notification).
    WechatPay,
    /// A timer.
    Timer,
}

impl Actor {
    /// The stored form: `buyer:…`, `merchant:…`, `platform`, `wechatpay`, `timer`.
    pub fn label(&self) -> String {
        match self {
            Actor::Buyer(o) => format!("buyer:{o}"),
            Actor::Merchant(m) => format!("merchant:{m}"),
            Actor::Platform => "platform".into(),
            Actor::WechatPay => "wechatpay".into(),
            Actor::Timer => "timer".into(),
        }
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Id.
    pub id: String,
    /// The merchant concerned, if any.
    pub merchant_id: Option<String>,
    /// `merchant`, `product`, `group`, `order`, `payment`, `refund`, `stock`.
    pub aggregate_type: String,
    /// Its id.
    pub aggregate_id: String,
    /// Who ([`Actor::label`]).
    pub actor: String,
    /// What (`created`, `paid`, `shipped`…).
    pub action: String,
    /// State before.
    pub from_state: Option<String>,
    /// State after.
    pub to_state: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// One outbox event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Id (UUIDv7): consumers dedupe by it.
    pub id: String,
    /// The merchant concerned, if any.
    pub merchant_id: Option<String>,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Event type: `order.paid`, `order.shipped`, `checkout.expired`, `refund.requested`…
    pub event_type: String,
    /// Body.
    pub payload: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

str_enum! {
    /// What a timer does when it fires.
    pub enum TimerAction {
        /// Close an unpaid checkout group at its deadline (release stock, close the prepay order).
        CloseUnpaid,
        /// Report an order not shipped within its SLA (`order.ship_overdue`).
        ShipOverdue,
        /// Confirm receipt of a shipped order.
        AutoConfirm,
        /// Complete a received order when its after-sale window ends.
        Complete,
        /// Call WeChat Pay to close a prepay order (external).
        ClosePrepay,
        /// Call WeChat Pay to refund (external).
        Refund,
        /// A governance deadline (after-sale case, deposit grace, settlement window, restriction end,
        /// fake-shipment check); the aggregate type says which.
        Governance,
        /// A governance call to WeChat Pay (profit sharing, compensation) (external).
        GovernanceCall,
    }
}

impl TimerAction {
    /// Calls a gateway (at least once, retried with backoff) rather than changing state in one
    /// transaction.
    pub fn is_external(self) -> bool {
        matches!(self, TimerAction::ClosePrepay | TimerAction::Refund | TimerAction::GovernanceCall)
    }
}

str_enum! {
    /// Where a timer is.
    pub enum TimerStatus {
        /// Waiting for its time.
        Scheduled,
        /// Done.
        Fired,
        /// No longer needed.
        Cancelled,
        /// An external call that failed for good (needs a person).
        Failed,
    }
}

/// A durable timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Id.
    pub id: String,
    /// The merchant concerned, if any.
    pub merchant_id: Option<String>,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Action.
    pub action: TimerAction,
    /// Due.
    pub due_at: DateTime<Utc>,
    /// Status.
    pub status: TimerStatus,
    /// Attempts so far (external actions).
    pub attempts: i64,
    /// The last failure (external actions).
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// What [`run_due_timers`](crate::market::handles::Ops::run_due_timers) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimerReport {
    /// Timers fired.
    pub fired: usize,
    /// External calls that failed and will be retried.
    pub retried: usize,
    /// External calls that failed for good.
    pub failed: usize,
}
