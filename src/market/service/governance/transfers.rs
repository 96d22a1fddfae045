//! Compensation paid through WeChat Pay merchant transfers (商家转账): the bill the buyer confirms, its
//! `MCHTRANSFER.BILL.FINISHED` notification, reconciliation by query, and re-issue after a failure.
//!
//! A compensation owed to a buyer sits in `BuyerRefundPayable` until WeChat Pay confirms the money
//! arrived. With [`crate::market::WechatPayGateway`] the compensation call creates a transfer bill
//! that waits for the buyer (`WAIT_USER_CONFIRM`, with the `package_info` for
//! `wx.requestMerchantTransfer`); `SUCCESS` concludes the compensation once, `FAIL` or `CANCELLED`
//! marks it Failed with the reason — still owed — until the platform re-issues it as a new bill.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::aftersales::compensation_paid_in;
use super::{config, schedule_call, won};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::Actor;
use crate::market::gateway::{CompensationTicket, TransferNotice, TransferOutcome, TransferQuery};
use crate::market::governance::settlement::{Compensation, CompensationTransfer, PayoutStatus};
use crate::market::service::handles::Transfers;

use crate::market::service::timers::ReconcileReport;
use crate::market::service::{Agg, Change, Market};
use crate::market::store::StoreTx;

/// Transfers queried per reconciliation run.
const RECONCILE_LIMIT: i64 = 500;

/// What [`Transfers::handle_transfer_notice`](crate::market::handles::Transfers::handle_transfer_notice) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferNoticeOutcome {
    /// The compensation is paid (this notice concluded it).
    Paid,
    /// The compensation failed (still owed; the platform may re-issue it).
    Failed,
    /// This notification id was applied before.
    Duplicate,
    /// Another notice or query already concluded the compensation (or the bill is an old attempt).
    AlreadyApplied,
}

/// A buyer's compensation and its latest merchant transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationView {
    /// The compensation.
    pub compensation: Compensation,
    /// Its latest transfer bill, if paid by merchant transfer.
    pub transfer: Option<CompensationTransfer>,
}

impl Transfers<'_> {
    /// Applies a verified `MCHTRANSFER.BILL.FINISHED` notification (or a query's answer): `SUCCESS`
    /// pays the compensation exactly once (clearing the buyer's payable and concluding its case);
    /// `FAIL` or `CANCELLED` marks it Failed with the reason, still owed, for
    /// [`Transfers::reissue_compensation`](crate::market::handles::Transfers::reissue_compensation). Deduplicated by `notify_id`; amount and payee must match the
    /// compensation. A bill this market did not ask for is [`MarketError::NotFound`].
    pub async fn handle_transfer_notice(&self, n: &TransferNotice) -> Result<TransferNoticeOutcome> {
        if n.notify_id.is_empty() || n.out_bill_no.is_empty() || n.transfer_bill_no.is_empty() {
            return Err(MarketError::invalid("notify_id, out_bill_no and transfer_bill_no are required"));
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            if !tx.insert_notice(&n.notify_id, &n.out_bill_no, &n.transfer_bill_no, at).await? {
                return Ok(TransferNoticeOutcome::Duplicate);
            }
            let t = tx
                .compensation_transfer(&n.out_bill_no)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "compensation transfer", id: n.out_bill_no.clone() })?;
            let c = tx
                .compensation(&t.compensation_id)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "compensation", id: t.compensation_id.clone() })?;
            if n.amount != c.amount || n.openid != c.buyer_id {
                return Err(MarketError::PaymentMismatch {
                    out_trade_no: n.out_bill_no.clone(),
                    reason: format!(
                        "transfer of {} fen to {} does not match compensation {} of {} fen to {}",
                        n.amount.as_fen(),
                        n.openid,
                        c.id,
                        c.amount.as_fen(),
                        c.buyer_id
                    ),
                });
            }
            let latest = tx.compensation_transfers(&c.id).await?.last().map(|x| x.out_bill_no.clone());
            let outcome = apply_outcome(&mut *tx, &c, t, n, latest.as_deref() == Some(&n.out_bill_no), at).await?;
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }

    /// Re-issues a Failed compensation as a new merchant transfer (a new `out_bill_no`), and calls
    /// WeChat Pay. Idempotent: a compensation already Requested again (or still waiting) is returned
    /// as it is; a paid one is [`MarketError::AlreadyDone`].
    pub async fn reissue_compensation(&self, id: &str) -> Result<CompensationView> {
        let timers = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let c = tx
                    .compensation(id)
                    .await?
                    .ok_or_else(|| MarketError::NotFound { entity: "compensation", id: id.into() })?;
                match c.status {
                    PayoutStatus::Succeeded => return Err(MarketError::AlreadyDone("compensation paid")),
                    PayoutStatus::Requested => return Ok(Vec::new()),
                    PayoutStatus::Failed => {}
                }
                let mut next = c.clone();
                next.status = PayoutStatus::Requested;
                next.updated_at = at;
                won(tx.update_compensation(&next, c.status).await?, "compensation")?;
                let attempt = tx.compensation_transfers(id).await?.last().map_or(1, |t| t.attempt + 1);
                let t = CompensationTransfer {
                    out_bill_no: new_id(),
                    compensation_id: c.id.clone(),
                    merchant_id: c.merchant_id.clone(),
                    buyer_id: c.buyer_id.clone(),
                    attempt,
                    state: CompensationTransfer::NEW.into(),
                    transfer_bill_no: None,
                    package_info: None,
                    fail_reason: None,
                    created_at: at,
                    updated_at: at,
                };
                won(tx.insert_compensation_transfer(&t).await?, "compensation transfer")?;
                Agg::new("compensation", id, Some(&c.merchant_id))
                    .record(
                        &mut *tx,
                        at,
                        &Actor::Platform,
                        Change::new("reissued").states(c.status, next.status).event(
                            "compensation.reissued",
                            json!({ "id": id, "out_bill_no": t.out_bill_no, "attempt": attempt, "amount": c.amount }),
                        ),
                    )
                    .await?;
                let timer = schedule_call(&mut *tx, "compensation", id, &c.merchant_id, at).await?;
                tx.commit().await?;
                Ok(vec![timer])
            })
            .await?;
        self.fire_now(timers).await;
        self.compensation_view(id).await
    }

    /// A compensation and its latest transfer.
    pub async fn compensation_view(&self, id: &str) -> Result<CompensationView> {
        let mut tx = self.read().await?;
        let compensation = tx
            .compensation(id)
            .await?
            .ok_or_else(|| MarketError::NotFound { entity: "compensation", id: id.into() })?;
        let transfer = tx.compensation_transfers(id).await?.pop();
        Ok(CompensationView { compensation, transfer })
    }

    /// A buyer's compensations (newest first, at most 100) with their latest transfers: those
    /// waiting carry the `package_info` for `wx.requestMerchantTransfer`.
    pub async fn buyer_compensations(&self, buyer_openid: &str) -> Result<Vec<CompensationView>> {
        let mut tx = self.read().await?;
        let mut out = Vec::new();
        for compensation in tx.compensations_of_buyer(buyer_openid, 100).await? {
            let transfer = tx.compensation_transfers(&compensation.id).await?.pop();
            out.push(CompensationView { compensation, transfer });
        }
        Ok(out)
    }

    /// Reconciles lost transfer notifications: asks the payment gateway about every compensation
    /// transfer WeChat Pay accepted that is not final yet, and applies each final answer exactly like
    /// a notification ([`Transfers::handle_transfer_notice`](crate::market::handles::Transfers::handle_transfer_notice)). Safe to run from several processes.
    pub async fn reconcile_pending_transfers(&self, now: DateTime<Utc>) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let pending = self.read().await?.pending_compensation_transfers(RECONCILE_LIMIT).await?;
        for t in pending.into_iter().filter(|t| t.updated_at <= now) {
            report.checked += 1;
            match self.inner.pay.query_transfer(&t.out_bill_no).await {
                Ok(TransferQuery::Finished(n)) => match self.handle_transfer_notice(&n).await {
                    Ok(TransferNoticeOutcome::Paid | TransferNoticeOutcome::Failed) => report.applied += 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(out_bill_no = %t.out_bill_no, error = %e, "reconciled transfer not applied");
                        report.failed += 1;
                    }
                },
                Ok(TransferQuery::Pending { .. } | TransferQuery::Unknown) => {}
                Err(e) => {
                    tracing::warn!(out_bill_no = %t.out_bill_no, error = %e, "transfer query failed; will retry");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}

impl Market {
    /// WeChat Pay accepted (or refused at once) the transfer of compensation `c` as `out_bill_no`:
    /// records the bill, and applies a final state at once.
    pub(super) async fn transfer_accepted(
        &self,
        c: &Compensation,
        out_bill_no: &str,
        ticket: &CompensationTicket,
    ) -> Result<()> {
        let state = ticket.state.clone().unwrap_or_default();
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let Some(cur) = tx.compensation(&c.id).await? else { return Ok(()) };
            let existing = tx.compensation_transfer(out_bill_no).await?;
            let mut t = existing.clone().unwrap_or_else(|| CompensationTransfer {
                out_bill_no: out_bill_no.to_string(),
                compensation_id: c.id.clone(),
                merchant_id: c.merchant_id.clone(),
                buyer_id: c.buyer_id.clone(),
                attempt: 1,
                state: CompensationTransfer::NEW.into(),
                transfer_bill_no: None,
                package_info: None,
                fail_reason: None,
                created_at: at,
                updated_at: at,
            });
            if t.is_final() {
                return Ok(()); // a notification got here first
            }
            let from = t.state.clone();
            t.transfer_bill_no = Some(ticket.id.clone());
            t.package_info = ticket.package_info.clone().or(t.package_info);
            t.fail_reason = ticket.fail_reason.clone();
            t.updated_at = at;
            match TransferOutcome::from_state(&state) {
                Some(outcome) => {
                    // Refused (or paid) at once: apply it like its notification.
                    t.state = from.clone();
                    if existing.is_none() {
                        won(tx.insert_compensation_transfer(&t).await?, "compensation transfer")?;
                    }
                    let n = TransferNotice {
                        notify_id: String::new(),
                        out_bill_no: out_bill_no.to_string(),
                        transfer_bill_no: ticket.id.clone(),
                        outcome,
                        amount: c.amount,
                        openid: c.buyer_id.clone(),
                        fail_reason: ticket.fail_reason.clone(),
                    };
                    apply_outcome(&mut *tx, &cur, t, &n, true, at).await?;
                }
                None => {
                    t.state = state.clone();
                    if existing.is_none() {
                        won(tx.insert_compensation_transfer(&t).await?, "compensation transfer")?;
                    } else {
                        won(tx.update_compensation_transfer(&t, &from).await?, "compensation transfer")?;
                    }
                    if from != t.state {
                        Agg::new("compensation", &c.id, Some(&c.merchant_id))
                            .record(
                                &mut *tx,
                                at,
                                &Actor::WechatPay,
                                Change::new("transfer_accepted").event(
                                    "compensation.transfer_accepted",
                                    json!({ "id": c.id, "out_bill_no": out_bill_no, "transfer_bill_no": ticket.id,
                                            "state": t.state, "amount": c.amount }),
                                ),
                            )
                            .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

/// Applies a transfer's final state in `tx`: the bill's row, then the compensation (paid, or Failed
/// when `latest` — an old attempt's failure changes nothing).
async fn apply_outcome(
    tx: &mut dyn StoreTx,
    c: &Compensation,
    mut t: CompensationTransfer,
    n: &TransferNotice,
    latest: bool,
    at: DateTime<Utc>,
) -> Result<TransferNoticeOutcome> {
    let cfg = config(tx).await?;
    if !t.is_final() {
        let from = t.state.clone();
        t.state = n.outcome.as_str().into();
        t.transfer_bill_no = Some(n.transfer_bill_no.clone());
        t.fail_reason = n.fail_reason.clone();
        t.package_info = None;
        t.updated_at = at;
        won(tx.update_compensation_transfer(&t, &from).await?, "compensation transfer")?;
    }
    match n.outcome {
        TransferOutcome::Success => Ok(if compensation_paid_in(tx, &c.id, &cfg, at).await? {
            TransferNoticeOutcome::Paid
        } else {
            TransferNoticeOutcome::AlreadyApplied
        }),
        TransferOutcome::Fail | TransferOutcome::Cancelled => {
            if !latest || c.status != PayoutStatus::Requested {
                return Ok(TransferNoticeOutcome::AlreadyApplied);
            }
            let mut next = c.clone();
            next.status = PayoutStatus::Failed;
            next.updated_at = at;
            won(tx.update_compensation(&next, c.status).await?, "compensation")?;
            let reason = n.fail_reason.clone().unwrap_or_else(|| n.outcome.as_str().to_string());
            Agg::new("compensation", &c.id, Some(&c.merchant_id))
                .record(
                    tx,
                    at,
                    &Actor::WechatPay,
                    Change::new("failed").states(c.status, next.status).reason(Some(&reason)).event(
                        "compensation.failed",
                        json!({ "id": c.id, "buyer": c.buyer_id, "amount": c.amount, "out_bill_no": n.out_bill_no,
                                "state": n.outcome.as_str(), "reason": reason }),
                    ),
                )
                .await?;
            Ok(TransferNoticeOutcome::Failed)
        }
    }
}
