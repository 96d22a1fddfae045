//! Durable timers and the outbox consumer API.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::orders::{conclude_refund, receive};
use super::{Agg, Change, Market, chrono_dur};
use crate::market::checkout::GroupStatus;
use crate::market::error::{MarketError, Result};
use crate::market::events::{Actor, OutboxEvent, Timer, TimerAction, TimerReport, TimerStatus};
use crate::market::gateway::{CloseRequest, PaymentQuery, RefundRequest, SubOrder};
use crate::market::order::OrderStatus;
use crate::market::payment::NoticeOutcome;
use crate::market::payment::RefundStatus;
use crate::market::service::handles::{Ops, Payments};

/// Timers read per batch.
const BATCH: i64 = 100;
/// Batches per call, so one call cannot run forever.
const MAX_BATCHES: usize = 100;
/// Payments queried per reconciliation run.
const RECONCILE_LIMIT: i64 = 500;

/// What [`Payments::reconcile_pending_payments`](crate::market::handles::Payments::reconcile_pending_payments) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Payments asked about.
    pub checked: usize,
    /// Payments found paid and applied by this run.
    pub applied: usize,
    /// Queries or applications that failed (left to the next run).
    pub failed: usize,
}

/// How long [`Ops::prune`](crate::market::handles::Ops::prune) keeps processed outbox rows and notification dedupe rows, by default.
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
/// The shortest retention [`Ops::prune`](crate::market::handles::Ops::prune) accepts: WeChat Pay redelivers a notification for about
/// 24 hours (15 s … 6 h backoff), so a dedupe row must outlive that with a margin.
pub const MIN_RETENTION_HOURS: i64 = 48;
/// Events pruned per transaction.
const PRUNE_BATCH: i64 = 500;

/// What [`Ops::prune`](crate::market::handles::Ops::prune) keeps, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// How long processed rows are kept ([`DEFAULT_RETENTION_DAYS`]; at least [`MIN_RETENTION_HOURS`]).
    pub keep: chrono::Duration,
    /// Outbox consumers an event must have been acked by before it is deleted, besides governance
    /// ([`GOVERNANCE_CONSUMER`](crate::market::GOVERNANCE_CONSUMER)) and every consumer that has acked
    /// any event (each consumer's newest ack is never pruned). Name your own consumers here anyway, so
    /// that one that has not acked anything yet is waited for too.
    pub consumers: Vec<String>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { keep: chrono::Duration::days(DEFAULT_RETENTION_DAYS), consumers: Vec::new() }
    }
}

impl Retention {
    /// Keeps rows for `days` days.
    pub fn days(days: i64) -> Self {
        Retention { keep: chrono::Duration::days(days), ..Retention::default() }
    }

    /// Also waits for `consumer`'s acks.
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumers.push(consumer.into());
        self
    }
}

/// What [`Ops::prune`](crate::market::handles::Ops::prune) deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Outbox events acked by every consumer, older than the retention.
    pub events: u64,
    /// Acks deleted: those of the deleted events, except each consumer's newest, which stays so that
    /// a consumer that has acked nothing since is still known (and waited for).
    pub acks: u64,
    /// Payment-notification dedupe rows older than the retention.
    pub notices: u64,
    /// Expired claims ([`Ops::claims`](crate::market::handles::Ops::claims)): they refuse nothing any more.
    pub claims: u64,
}

enum Fired {
    Done,
    Skipped,
    Retry,
    Failed,
}

impl Ops<'_> {
    /// Fires every timer due at `now`: closes unpaid checkouts, reports late shipments, confirms
    /// receipt, completes orders, and makes the gateway calls that must follow a commit (close a prepay
    /// order, refund). Each firing re-checks its aggregate's state in its own transaction, so running
    /// this from several processes, twice, or late is harmless. A failing gateway call is retried later
    /// with backoff and marked Failed after `effect_max_attempts`.
    pub async fn run_due_timers(&self, now: DateTime<Utc>) -> Result<TimerReport> {
        // Governance follows the marketplace's events (payments, shipments, receipts, refunds) before
        // and after the timers, so what they cause is settled in the same run.
        self.sync_governance_logged().await;
        let mut report = TimerReport::default();
        for _ in 0..MAX_BATCHES {
            let due = self.read().await?.due_timers(now, BATCH).await?;
            if due.is_empty() {
                break;
            }
            let mut progressed = false;
            for t in due {
                match self.fire(&t, now).await {
                    Ok(Fired::Done) => {
                        report.fired += 1;
                        progressed = true;
                    }
                    Ok(Fired::Skipped) => {}
                    Ok(Fired::Retry) => report.retried += 1,
                    Ok(Fired::Failed) => {
                        report.failed += 1;
                        progressed = true;
                    }
                    Err(e) => {
                        tracing::warn!(timer = %t.id, action = %t.action, error = %e, "timer failed; will retry");
                        report.retried += 1;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        self.sync_governance_logged().await;
        Ok(report)
    }

    /// Events the consumer has not acked yet, oldest first. Delivery is at least once: after a crash
    /// between handling and [`ack_events`](crate::market::handles::Ops::ack_events) an event comes again, so consumers
    /// dedupe by [`OutboxEvent::id`].
    pub async fn poll_events(&self, consumer: &str, limit: i64) -> Result<Vec<OutboxEvent>> {
        check_consumer(consumer)?;
        self.read().await?.poll_events(consumer, limit.clamp(1, 1000)).await
    }

    /// Marks events handled by a consumer (idempotent).
    pub async fn ack_events(&self, consumer: &str, event_ids: &[String]) -> Result<()> {
        check_consumer(consumer)?;
        self.retry(|| async {
            let mut tx = self.begin().await?;
            tx.ack_events(consumer, event_ids, self.now()).await?;
            tx.commit().await
        })
        .await
    }

    /// Polls up to `limit` events, hands them to `handler` in order and acks each one handled; stops at
    /// the first handler error (that event comes again next time). Returns how many were acked.
    pub async fn consume_events<F, Fut>(&self, consumer: &str, limit: i64, mut handler: F) -> Result<usize>
    where
        F: FnMut(OutboxEvent) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let events = self.poll_events(consumer, limit).await?;
        let mut done = Vec::new();
        let mut failure = None;
        for e in events {
            let id = e.id.clone();
            match handler(e).await {
                Ok(()) => done.push(id),
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        self.ack_events(consumer, &done).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(done.len()),
        }
    }

    /// Housekeeping: deletes outbox events older than `retention.keep` that every consumer has acked
    /// (with their acks) and payment-notification dedupe rows older than it. An event some consumer
    /// has not acked is never deleted, whatever its age; a retention shorter than
    /// [`MIN_RETENTION_HOURS`] (WeChat Pay redelivers a notification for about a day) is refused.
    /// Safe to run from several processes; the storefront runs it once an hour.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> wxshop::market::Result<()> {
    /// use wxshop::market::{Market, RecordingGateway, Retention, store};
    /// let gw = std::sync::Arc::new(RecordingGateway::default());
    /// let market = Market::builder(store::open("sqlite::memory:").await?).payments(gw.clone()).shipping(gw).build()?;
    /// let report = market.ops().prune(&Retention::default()).await?;
    /// assert_eq!((report.events, report.acks, report.notices), (0, 0, 0));
    /// assert!(market.ops().prune(&Retention::days(1)).await.is_err(), "shorter than WeChat's redelivery");
    /// # Ok(()) }
    /// ```
    pub async fn prune(&self, retention: &Retention) -> Result<PruneReport> {
        if retention.keep < chrono::Duration::hours(MIN_RETENTION_HOURS) {
            return Err(MarketError::invalid(format!(
                "keep processed rows at least {MIN_RETENTION_HOURS} h: WeChat Pay redelivers notifications for about a day"
            )));
        }
        for c in &retention.consumers {
            check_consumer(c)?;
        }
        let mut consumers = retention.consumers.clone();
        consumers.push(super::GOVERNANCE_CONSUMER.to_string());
        consumers.sort();
        consumers.dedup();
        let before = self.now() - retention.keep;
        let mut report = PruneReport::default();
        for _ in 0..MAX_BATCHES {
            let (events, acks) = self
                .retry(|| async {
                    let mut tx = self.begin().await?;
                    let n = tx.prune_outbox(before, &consumers, PRUNE_BATCH).await?;
                    tx.commit().await?;
                    Ok(n)
                })
                .await?;
            report.events += events;
            report.acks += acks;
            if events < PRUNE_BATCH as u64 {
                break;
            }
        }
        report.notices = self
            .retry(|| async {
                let mut tx = self.begin().await?;
                let n = tx.prune_notices(before).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await?;
        let now = self.now();
        report.claims = self
            .retry(|| async {
                let mut tx = self.begin().await?;
                let n = tx.prune_claims(now).await?;
                tx.commit().await?;
                Ok(n)
            })
            .await?;
        Ok(report)
    }

    /// The audit rows of an aggregate (merchant, product, sku, group, order, refund), oldest first.
    pub async fn audit_trail(&self, aggregate_id: &str) -> Result<Vec<crate::market::AuditEntry>> {
        self.read().await?.audit_of(aggregate_id).await
    }

    /// The timers of an aggregate.
    pub async fn timers(&self, aggregate_id: &str) -> Result<Vec<Timer>> {
        self.read().await?.timers_of(aggregate_id).await
    }
}

impl Market {
    /// Fires freshly scheduled external calls right after their commit (best effort: a failure leaves
    /// them to [`run_due_timers`](crate::market::handles::Ops::run_due_timers)).
    pub(super) async fn fire_now(&self, timers: Vec<Timer>) {
        let now = self.now();
        for t in timers {
            if let Err(e) = self.fire(&t, now).await {
                tracing::warn!(timer = %t.id, action = %t.action, error = %e, "immediate timer failed; left scheduled");
            }
        }
    }

    async fn fire(&self, t: &Timer, now: DateTime<Utc>) -> Result<Fired> {
        if t.action.is_external() {
            self.fire_external(t, now).await
        } else {
            self.retry(|| self.fire_internal(t, now)).await
        }
    }

    async fn fire_internal(&self, t: &Timer, now: DateTime<Utc>) -> Result<Fired> {
        let at = self.now().max(now);
        let mut tx = self.begin().await?;
        if !tx.finish_timer(&t.id, TimerStatus::Fired, None, at).await? {
            return Ok(Fired::Skipped); // cancelled or fired elsewhere
        }
        match t.action {
            TimerAction::CloseUnpaid => {
                if let Some(g) = tx.group(&t.aggregate_id).await?
                    && g.status == GroupStatus::AwaitingPayment
                {
                    // The ClosePrepay it schedules is due now: the next batch of run_due_timers fires it.
                    let _ = self
                        .close_group(&mut *tx, g, GroupStatus::Expired, &Actor::Timer, "payment deadline passed", at)
                        .await?;
                }
            }
            TimerAction::ShipOverdue => {
                if let Some(o) = tx.order(&t.aggregate_id).await?
                    && matches!(o.status, OrderStatus::Paid | OrderStatus::PartiallyShipped)
                {
                    Agg::new("order", &o.id, Some(&o.merchant_id))
                        .record(
                            &mut *tx,
                            at,
                            &Actor::Timer,
                            Change::new("ship_overdue").reason(Some("not shipped within the SLA")).event(
                                "order.ship_overdue",
                                json!({ "order_id": o.id, "merchant_id": o.merchant_id, "ship_deadline": o.ship_deadline }),
                            ),
                        )
                        .await?;
                }
            }
            TimerAction::AutoConfirm => {
                if let Some(o) = tx.order(&t.aggregate_id).await?
                    && o.status == OrderStatus::Shipped
                {
                    receive(&mut *tx, o, &Actor::Timer, "timer", at).await?;
                }
            }
            TimerAction::Complete => {
                if let Some(o) = tx.order(&t.aggregate_id).await?
                    && o.status == OrderStatus::Received
                {
                    let mut next = o.clone();
                    next.status = OrderStatus::Completed;
                    next.completed_at = Some(at);
                    next.version = o.version + 1;
                    next.updated_at = at;
                    super::won(tx.update_order(&next, o.version).await?, "order")?;
                    Agg::new("order", &o.id, Some(&o.merchant_id))
                        .record(
                            &mut *tx,
                            at,
                            &Actor::Timer,
                            Change::new("completed").states(o.status, next.status).event(
                                "order.completed",
                                json!({ "order_id": o.id, "merchant_id": o.merchant_id, "total": o.total,
                                        "commission": o.commission }),
                            ),
                        )
                        .await?;
                }
            }
            TimerAction::Governance => self.fire_governance(&mut *tx, t, at).await?,
            TimerAction::ClosePrepay | TimerAction::Refund | TimerAction::GovernanceCall => {
                return Err(MarketError::invalid("external actions are fired by fire_external"));
            }
        }
        tx.commit().await?;
        Ok(Fired::Done)
    }

    async fn fire_external(&self, t: &Timer, now: DateTime<Utc>) -> Result<Fired> {
        let cfg = self.config();
        let backoff = cfg
            .effect_backoff
            .saturating_mul(1u32 << t.attempts.clamp(0, 7) as u32)
            .min(std::time::Duration::from_secs(3600));
        let leased = self
            .retry(|| async {
                let mut tx = self.begin().await?;
                let ok = tx.lease_timer(&t.id, now, now + chrono_dur(backoff)).await?;
                tx.commit().await?;
                Ok(ok)
            })
            .await?;
        if !leased {
            return Ok(Fired::Skipped);
        }
        let call = match t.action {
            TimerAction::ClosePrepay => self.call_close(&t.aggregate_id).await,
            TimerAction::Refund => self.call_refund(&t.aggregate_id).await,
            TimerAction::GovernanceCall => self.call_governance(t).await.map(|()| None),
            _ => Err(MarketError::invalid("not an external action")),
        };
        let attempts = t.attempts + 1;
        match call {
            Ok(result) => {
                self.retry(|| async {
                    let at = self.now();
                    let mut tx = self.begin().await?;
                    if !tx.finish_timer(&t.id, TimerStatus::Fired, None, at).await? {
                        return Ok(());
                    }
                    if let Some((refund_id, wx_id, succeeded)) = &result
                        && let Some(r) = tx.refund(refund_id).await?
                        && r.status == RefundStatus::Requested
                    {
                        let to = if *succeeded { RefundStatus::Succeeded } else { RefundStatus::Processing };
                        conclude_refund(&mut *tx, r, to, Some(wx_id.clone()), at).await?;
                    }
                    tx.commit().await
                })
                .await?;
                Ok(Fired::Done)
            }
            Err(e) if e.is_retryable() || matches!(&e, MarketError::Gateway(g) if g.is_retryable()) => {
                if attempts >= cfg.effect_max_attempts {
                    self.fail_external(t, &e.to_string()).await?;
                    return Ok(Fired::Failed);
                }
                let msg = e.to_string();
                self.retry(|| async {
                    let mut tx = self.begin().await?;
                    tx.note_timer_error(&t.id, &msg).await?;
                    tx.commit().await
                })
                .await?;
                Ok(Fired::Retry)
            }
            Err(e) => {
                self.fail_external(t, &e.to_string()).await?;
                Ok(Fired::Failed)
            }
        }
    }

    async fn fail_external(&self, t: &Timer, error: &str) -> Result<()> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            if !tx.finish_timer(&t.id, TimerStatus::Failed, Some(error), at).await? {
                return Ok(());
            }
            if t.action == TimerAction::Refund
                && let Some(r) = tx.refund(&t.aggregate_id).await?
                && matches!(r.status, RefundStatus::Requested | RefundStatus::Processing)
            {
                conclude_refund(&mut *tx, r, RefundStatus::Failed, None, at).await?;
            }
            if t.action == TimerAction::GovernanceCall {
                self.governance_call_failed(&mut *tx, t, error, at).await?;
            }
            Agg::new(&t.aggregate_type, &t.aggregate_id, t.merchant_id.as_deref())
                .record(
                    &mut *tx,
                    at,
                    &Actor::Timer,
                    Change::new("external_call_failed").reason(Some(error)).event(
                        "effect.failed",
                        json!({ "timer_id": t.id, "action": t.action, "aggregate_id": t.aggregate_id, "error": error }),
                    ),
                )
                .await?;
            tx.commit().await
        })
        .await
    }

    async fn call_close(&self, group_id: &str) -> Result<Option<(String, String, bool)>> {
        let req = self.payment_ref(group_id).await?;
        self.inner.pay.close(&req).await?;
        Ok(None)
    }

    /// How WeChat Pay knows a group's payment (to close or query it).
    async fn payment_ref(&self, group_id: &str) -> Result<CloseRequest> {
        let co = self.orders().checkout_view(group_id).await?;
        let mut subs = Vec::new();
        {
            let mut tx = self.read().await?;
            for o in &co.orders {
                let m = tx.merchant(&o.merchant_id).await?;
                subs.push(SubOrder {
                    out_trade_no: o.id.clone(),
                    merchant_id: o.merchant_id.clone(),
                    sub_mchid: m.and_then(|m| m.sub_mchid),
                    amount: o.total,
                    description: self.config().pay_description.clone(),
                });
            }
        }
        let mode = co.payment.mode;
        Ok(CloseRequest {
            mode,
            out_trade_no: group_id.into(),
            sub_mchid: if mode == crate::market::PayMode::Partner {
                subs.first().and_then(|s| s.sub_mchid.clone())
            } else {
                None
            },
            sub_orders: if mode == crate::market::PayMode::Combine { subs } else { Vec::new() },
        })
    }

    async fn call_refund(&self, refund_id: &str) -> Result<Option<(String, String, bool)>> {
        let r =
            self.read().await?.refund(refund_id).await?.ok_or_else(|| MarketError::not_found("refund", refund_id))?;
        let req = RefundRequest {
            out_refund_no: r.id.clone(),
            out_trade_no: r.out_trade_no.clone(),
            transaction_id: r.transaction_id.clone(),
            sub_mchid: r.sub_mchid.clone(),
            refund: r.amount,
            total: r.total,
            reason: r.reason.clone(),
        };
        let ticket = self.inner.pay.refund(&req).await?;
        Ok(Some((r.id, ticket.refund_id, ticket.succeeded)))
    }
}

impl Payments<'_> {
    /// Reconciles lost payment notifications: asks the payment gateway about every checkout still
    /// awaiting payment whose prepay order exists (created before `now`), and applies each payment it
    /// reports as paid exactly like a notification ([`handle_payment_notice`](crate::market::handles::Payments::handle_payment_notice)),
    /// so a notification arriving later changes nothing. Safe to run from several processes at once.
    /// A failing query is logged and left to the next run.
    ///
    /// Deposits too: pending deposit payments ([`Deposits::deposit_prepay`](crate::market::handles::Deposits::deposit_prepay)) created at least a minute
    /// before `now` are queried and a paid one applied the same way; one WeChat Pay still reports
    /// unpaid after its prepay order expired (`pay_window` after it was created) is closed there and
    /// here. Deposit exit refunds still processing a minute after their last change are queried and a
    /// settled one concluded like its refund notification. They count in the same report.
    pub async fn reconcile_pending_payments(&self, now: DateTime<Utc>) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let pending = self.read().await?.awaiting_payments(RECONCILE_LIMIT).await?;
        for p in pending.into_iter().filter(|p| p.created_at <= now) {
            report.checked += 1;
            let answer = match self.payment_ref(&p.group_id).await {
                Ok(req) => self.inner.pay.query(&req).await.map_err(MarketError::from),
                Err(e) => Err(e),
            };
            match answer {
                Ok(PaymentQuery::Paid(n)) => match self.handle_payment_notice(&n).await {
                    Ok(NoticeOutcome::Paid | NoticeOutcome::LateRefunded { .. }) => report.applied += 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(group = %p.group_id, error = %e, "reconciled payment not applied");
                        report.failed += 1;
                    }
                },
                Ok(PaymentQuery::Unpaid | PaymentQuery::Unknown) => {}
                Err(e) => {
                    tracing::warn!(group = %p.group_id, error = %e, "payment query failed; will retry");
                    report.failed += 1;
                }
            }
        }
        self.reconcile_deposits(now, RECONCILE_LIMIT, &mut report).await?;
        Ok(report)
    }
}

fn check_consumer(c: &str) -> Result<()> {
    if c.is_empty() || c.len() > 64 {
        return Err(MarketError::invalid("consumer name must be 1..=64 characters"));
    }
    Ok(())
}
