//! Governance on the [`Market`]: deposits, reviews and scores, after-sales and disputes, penalties,
//! settlement and profit sharing, persisted in the market store.
//!
//! Every change is one store transaction that writes the aggregate, its ledger postings, an audit row,
//! an outbox event and its durable timers ([`TimerAction::Governance`] deadlines,
//! [`TimerAction::GovernanceCall`] gateway calls), retried as a whole on a lost race. Governance
//! follows the marketplace through its outbox (consumer `governance`): a paid order opens a
//! settlement, a late shipment becomes a penalty, a receipt starts the settlement window, a refund
//! concludes its case. [`Ops::run_due_timers`](crate::market::handles::Ops::run_due_timers) runs that consumer before and after the timers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Agg, Change, Market};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::{Actor, OutboxEvent, Timer, TimerAction, TimerStatus};
use crate::market::governance::ledger::{Account, Txn};
use crate::market::governance::{self as gov, GovernanceConfig, Transition};
use crate::market::money::Money;
use crate::market::service::handles::Governance;
use crate::market::store::StoreTx;
use crate::market::store::governance::{LedgerAudit, Posted};

mod aftersales;
mod deposits;
mod penalties;
mod reviews;
mod settlements;
mod status;
mod transfers;

pub use aftersales::CaseRequest;
pub(super) use aftersales::settle_case_refunded_outside;
pub(super) use deposits::apply_deposit_notice;
pub use deposits::{DepositPrepay, DepositRefundView, DepositView};
pub use penalties::PenaltyLog;
pub use reviews::ReviewRequest;
pub use transfers::{CompensationView, TransferNoticeOutcome};

/// The outbox consumer governance reads the marketplace's events as.
pub const CONSUMER: &str = "market.governance";
const CONFIG_KEY: &str = "policies";

/// A merchant's ledger balances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantBalances {
    /// Sale proceeds not yet settled.
    pub pending: Money,
    /// Settled, withdrawable.
    pub available: Money,
    /// Held.
    pub frozen: Money,
    /// Deposit.
    pub deposit: Money,
}

impl Governance<'_> {
    /// The governance policies (the defaults until the platform sets its own).
    pub async fn governance_config(&self) -> Result<GovernanceConfig> {
        config(&mut *self.read().await?).await
    }

    /// Replaces the governance policies (validated). Existing cases, penalties and settlements keep the
    /// deadlines they were given.
    pub async fn set_governance_config(&self, cfg: &GovernanceConfig) -> Result<()> {
        cfg.validate()?;
        let body = serde_json::to_string(cfg).map_err(|e| MarketError::invalid(e.to_string()))?;
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            tx.put_gov_config(CONFIG_KEY, &body, at).await?;
            Agg::new("governance", CONFIG_KEY, None)
                .record(
                    &mut *tx,
                    at,
                    &Actor::Platform,
                    Change::new("configured").event("governance.configured", json!({ "config": cfg })),
                )
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// A merchant's ledger balances.
    pub async fn merchant_balances(&self, merchant_id: &str) -> Result<MerchantBalances> {
        let mut tx = self.read().await?;
        let mut b = MerchantBalances::default();
        for (account, fen) in tx.ledger_balances(&format!("merchant:{merchant_id}:")).await? {
            let m = Money::fen(fen);
            match account.parse::<Account>()? {
                Account::MerchantPending(id) if id == merchant_id => b.pending = m,
                Account::MerchantAvailable(id) if id == merchant_id => b.available = m,
                Account::MerchantFrozen(id) if id == merchant_id => b.frozen = m,
                Account::MerchantDeposit(id) if id == merchant_id => b.deposit = m,
                _ => {}
            }
        }
        Ok(b)
    }

    /// The balance of any ledger account (`"platform:commission"`, `"buyer:o1:refund_payable"`…).
    pub async fn ledger_balance(&self, account: &Account) -> Result<Money> {
        Ok(Money::fen(self.read().await?.ledger_balance(&account.to_string()).await?))
    }

    /// The ledger transactions of a reference (`"order:…"`, `"penalty:…"`), oldest first.
    pub async fn ledger_txns(&self, reference: &str) -> Result<Vec<Txn>> {
        self.read().await?.ledger_txns(reference).await
    }

    /// Checks the ledger: every transaction sums to zero, every balance equals its entries, all
    /// balances sum to zero.
    pub async fn ledger_audit(&self) -> Result<LedgerAudit> {
        self.read().await?.ledger_audit().await
    }

    /// Applies the marketplace events governance has not seen yet; returns how many. Safe to run from
    /// several processes (each event's effect is idempotent) and after a crash (events come again).
    pub async fn sync_governance(&self) -> Result<usize> {
        let mut total = 0;
        for _ in 0..100 {
            let events = self.read().await?.poll_events(CONSUMER, 100).await?;
            if events.is_empty() {
                break;
            }
            let mut done = Vec::new();
            let mut failure = None;
            for e in events {
                match self.retry(|| self.on_event(&e)).await {
                    Ok(()) => done.push(e.id.clone()),
                    Err(err) if err.is_retryable() => {
                        tracing::warn!(event = %e.id, kind = %e.event_type, error = %err, "governance will retry an event");
                        failure = Some(err);
                        break;
                    }
                    Err(err) => {
                        // A poison event must not stop governance: park it where people look.
                        tracing::error!(event = %e.id, kind = %e.event_type, error = %err, "governance could not apply an event");
                        self.dead_letter(&e, &err).await?;
                        done.push(e.id.clone());
                    }
                }
            }
            let n = done.len();
            self.retry(|| async {
                let mut tx = self.begin().await?;
                tx.ack_events(CONSUMER, &done, self.now()).await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            total += n;
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(total)
    }
}

impl Market {
    pub(in crate::market::service) async fn sync_governance_logged(&self) {
        if let Err(e) = self.governance().sync_governance().await {
            tracing::warn!(error = %e, "governance sync stopped; the event will be retried");
        }
    }

    async fn dead_letter(&self, e: &OutboxEvent, err: &MarketError) -> Result<()> {
        let msg = err.to_string();
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            Agg::new("governance_event", &e.id, e.merchant_id.as_deref())
                .record(
                    &mut *tx,
                    at,
                    &Actor::Platform,
                    Change::new("failed").reason(Some(&msg)).event(
                        "governance.event_failed",
                        json!({ "event_id": e.id, "event_type": e.event_type, "error": msg, "payload": e.payload }),
                    ),
                )
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn on_event(&self, e: &OutboxEvent) -> Result<()> {
        let order_id = || e.payload.get("order_id").and_then(|v| v.as_str()).map(str::to_string);
        match e.event_type.as_str() {
            "order.paid" => {
                if let Some(o) = order_id() {
                    self.open_settlement(&o).await?;
                }
            }
            "order.shipped" | "order.partially_shipped" => {
                if let Some(o) = order_id() {
                    let late = e.payload.get("late").and_then(|v| v.as_bool()).unwrap_or(false);
                    self.on_shipped(&o, late, e.event_type == "order.shipped").await?;
                }
            }
            "order.ship_overdue" => {
                if let Some(o) = order_id() {
                    self.on_ship_overdue(&o).await?;
                }
            }
            "order.received" => {
                if let Some(o) = order_id() {
                    self.on_received(&o).await?;
                }
            }
            "order.completed" => {
                if let Some(o) = order_id() {
                    self.on_completed(&o).await?;
                }
            }
            "refund.requested" | "refund.succeeded" | "refund.failed" => {
                if let Some(r) = e.payload.get("refund_id").and_then(|v| v.as_str()) {
                    self.on_refund(r, &e.event_type).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A governance deadline fired (inside the timer's transaction).
    pub(in crate::market::service) async fn fire_governance(
        &self,
        tx: &mut dyn StoreTx,
        t: &Timer,
        at: DateTime<Utc>,
    ) -> Result<()> {
        // Aggregate ids are namespaced (`deposit:…`, `settlement:…`) so that governance rows never mix
        // into a merchant's or an order's own audit trail and timers.
        let id = t.aggregate_id.split_once(':').map_or(t.aggregate_id.as_str(), |(_, id)| id);

        match t.aggregate_type.as_str() {
            "case" => self.case_deadline(tx, &t.aggregate_id, at).await,
            "deposit" => self.deposit_deadline(tx, id, at).await,
            "settlement" => self.settlement_deadline(tx, id, at).await,
            "restriction" => self.restriction_deadline(tx, t.merchant_id.as_deref().unwrap_or_default(), at).await,
            "fake_shipment" => self.fake_shipment_deadline(tx, id, at).await,
            other => Err(MarketError::invalid(format!("unknown governance timer {other}"))),
        }
    }

    /// A governance gateway call gave up (inside the timer's transaction): the aggregate records it.
    pub(in crate::market::service) async fn governance_call_failed(
        &self,
        tx: &mut dyn StoreTx,
        t: &Timer,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        match t.aggregate_type.as_str() {
            "deposit_refund" => deposits::deposit_refund_call_failed(tx, &t.aggregate_id, error, at).await,
            _ => Ok(()),
        }
    }

    /// A governance gateway call (after commit, retried by the timer machinery).
    pub(in crate::market::service) async fn call_governance(&self, t: &Timer) -> Result<()> {
        match t.aggregate_type.as_str() {
            "profit_share" => self.call_profit_share(&t.aggregate_id).await,
            "compensation" => self.call_compensation(&t.aggregate_id).await,
            "deposit_refund" => self.call_deposit_refund(&t.aggregate_id).await,
            other => Err(MarketError::invalid(format!("unknown governance call {other}"))),
        }
    }
}

// ---------------------------------------------------------------- helpers shared by the submodules

pub(super) async fn config(tx: &mut dyn StoreTx) -> Result<GovernanceConfig> {
    match tx.gov_config(CONFIG_KEY).await? {
        Some(body) => serde_json::from_str(&body)
            .map_err(|e| MarketError::Store { message: format!("corrupt governance config: {e}"), retryable: false }),
        None => Ok(GovernanceConfig::default()),
    }
}

/// Posts a ledger transaction in `tx`; an overdraft is [`MarketError::NegativeBalance`] (roll back).
pub(super) async fn post(tx: &mut dyn StoreTx, t: &Txn, cfg: &GovernanceConfig) -> Result<()> {
    match crate::market::store::governance::post(tx, t, &cfg.ledger).await? {
        Posted::Posted | Posted::Duplicate => Ok(()),
        Posted::Negative { account, balance } => Err(MarketError::NegativeBalance { account, balance }),
    }
}

pub(super) async fn balance(tx: &mut dyn StoreTx, account: &Account) -> Result<Money> {
    Ok(Money::fen(tx.ledger_balance(&account.to_string()).await?))
}

/// The market actor of a governance transition.
pub(super) fn actor_of(a: gov::Actor, buyer: &str, merchant: &str) -> Actor {
    match a {
        gov::Actor::Buyer => Actor::Buyer(buyer.into()),
        gov::Actor::Merchant => Actor::Merchant(merchant.into()),
        gov::Actor::Platform => Actor::Platform,
        gov::Actor::Timer => Actor::Timer,
        gov::Actor::Gateway => Actor::WechatPay,
    }
}

/// Writes the audit row and outbox event of a governance transition.
#[allow(clippy::too_many_arguments)]
pub(super) async fn record(
    tx: &mut dyn StoreTx,
    kind: &str,
    id: &str,
    merchant: &str,
    actor: &Actor,
    tr: &Transition,
    event_type: &str,
    payload: serde_json::Value,
) -> Result<()> {
    let change = Change::new(&tr.note).reason(Some(&tr.note)).event(event_type, payload);
    let change = match &tr.from {
        Some(f) => change.states(f, &tr.to),
        None => change.to(&tr.to),
    };
    Agg::new(kind, id, Some(merchant)).record(tx, tr.at, actor, change).await?;
    Ok(())
}

/// Schedules a governance deadline; `replace` cancels the aggregate's earlier ones first.
pub(super) async fn schedule(
    tx: &mut dyn StoreTx,
    kind: &str,
    id: &str,
    merchant: &str,
    due: DateTime<Utc>,
    at: DateTime<Utc>,
    replace: bool,
) -> Result<()> {
    if replace {
        tx.cancel_timers(id, TimerAction::Governance, at).await?;
    }
    tx.insert_timer(&Agg::new(kind, id, Some(merchant)).timer(at, TimerAction::Governance, due)).await?;
    Ok(())
}

/// Schedules a governance gateway call, due now.
pub(super) async fn schedule_call(
    tx: &mut dyn StoreTx,
    kind: &str,
    id: &str,
    merchant: &str,
    at: DateTime<Utc>,
) -> Result<Timer> {
    let t = Timer {
        id: new_id(),
        merchant_id: Some(merchant.into()),
        aggregate_type: kind.into(),
        aggregate_id: id.into(),
        action: TimerAction::GovernanceCall,
        due_at: at,
        status: TimerStatus::Scheduled,
        attempts: 0,
        last_error: None,
        created_at: at,
    };
    tx.insert_timer(&t).await?;
    Ok(t)
}

pub(super) fn won(matched: bool, what: &str) -> Result<()> {
    if matched { Ok(()) } else { Err(MarketError::Conflict(what.to_string())) }
}

/// An order line's key in governance (`order_id:line_no`).
pub(super) fn line_key(order_id: &str, line_no: i64) -> String {
    format!("{order_id}:{line_no}")
}
