//! Deposits (保证金): requirement from the merchant's categories, pay-in, grace, restriction, exit.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::status::sync_merchant_status;
use super::{balance, config, post, record, schedule, schedule_call, won};
use crate::market::error::{MarketError, Result};
use crate::market::events::Actor;
use crate::market::gateway::{
    PaymentQuery, PrepayRequest, QueryRequest, RefundQuery, RefundQueryRequest, RefundRequest,
};
use crate::market::governance::deposit::{
    DepositAccount, DepositPayment, DepositRefund, DepositRefundStatus, DepositStatus, ExitCheck,
    new_deposit_refund_no, new_deposit_trade_no, pay_in_txn, refund_paid_txn, refund_payable_txn, required_amount,
    split_refund,
};
use crate::market::governance::ledger::Account;
use crate::market::governance::{GovernanceConfig, Transition};
use crate::market::money::Money;
use crate::market::payment::PayMode;
use crate::market::service::Market;
use crate::market::service::handles::Deposits;
use crate::market::store::StoreTx;
use crate::market::store::governance::Versioned;

/// A deposit pay-in started through WeChat Pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositPrepay {
    /// The `out_trade_no` (the [`DepositPayment`] id).
    pub out_trade_no: String,
    /// Amount.
    pub amount: Money,
    /// The prepay id.
    pub prepay_id: String,
    /// What `wx.requestPayment` needs.
    pub pay_params: serde_json::Value,
}

/// A leaving merchant's deposit with its exit refunds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRefundView {
    /// The account (Refunding while refunds are in flight, Closed once all succeeded).
    pub account: DepositAccount,
    /// What the deposit still holds (zero once the refund was asked for, unless paid in since).
    pub balance: Money,
    /// Owed to the merchant and not yet confirmed paid (the ledger's deposit refund payable).
    pub refunding: Money,
    /// Of which no refund is open: failed parts waiting for the platform to retry
    /// ([`Deposits::refund_deposit`](crate::market::handles::Deposits::refund_deposit) again).
    pub awaiting_retry: Money,
    /// Every refund row, oldest first: WeChat Pay refunds per deposit payment and manual payouts.
    pub refunds: Vec<DepositRefund>,
}

/// A deposit account with its balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositView {
    /// The account (status, requirement, grace).
    pub account: DepositAccount,
    /// The balance (the ledger's deposit account).
    pub balance: Money,
}

impl Deposits<'_> {
    /// A merchant's deposit (opened, with its requirement, on first use).
    pub async fn deposit(&self, merchant_id: &str) -> Result<DepositView> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let v = ensure_deposit(&mut *tx, merchant_id, &cfg, at).await?;
            let view = DepositView { balance: deposit_balance(&mut *tx, merchant_id).await?, account: v.value };
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// Recomputes the requirement from the merchant's categories (after a grant or a rule change).
    pub async fn refresh_deposit_requirement(&self, merchant_id: &str) -> Result<DepositView> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let mut v = ensure_deposit(&mut *tx, merchant_id, &cfg, at).await?;
            let required = requirement(&mut *tx, merchant_id, &cfg).await?;
            if required != v.value.required {
                let bal = deposit_balance(&mut *tx, merchant_id).await?;
                let tr = v.value.set_required(required, bal, at, &cfg.deposit);
                write_deposit(&mut *tx, &v, &cfg, tr, &Actor::Platform, at).await?;
                v.version += 1;
            }
            let view = DepositView { balance: deposit_balance(&mut *tx, merchant_id).await?, account: v.value };
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// A deposit payment (or top-up) WeChat Pay confirmed. Idempotent by `transaction_id`.
    pub async fn deposit_paid_in(&self, merchant_id: &str, transaction_id: &str, amount: Money) -> Result<DepositView> {
        check_pay_in(transaction_id, amount)?;
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let view = pay_in(&mut *tx, merchant_id, transaction_id, amount, at).await?;
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// Starts a deposit pay-in (or top-up) through WeChat Pay (JSAPI): records a pending
    /// [`DepositPayment`] whose id is the `out_trade_no` (`dep…`), then asks for a prepay order. The
    /// payment notification applies it (see [`Payments::handle_payment_notice`](crate::market::handles::Payments::handle_payment_notice)).
    ///
    /// Idempotent by `(merchant, idempotency_key)`: the same request returns the same payment (and asks
    /// WeChat Pay again, which returns the same prepay order); another amount or payer under the same key
    /// is [`MarketError::Invalid`].
    pub async fn deposit_prepay(
        &self,
        merchant_id: &str,
        amount: Money,
        payer_openid: &str,
        idempotency_key: &str,
    ) -> Result<DepositPrepay> {
        if !amount.is_positive() || payer_openid.is_empty() || idempotency_key.is_empty() || idempotency_key.len() > 64
        {
            return Err(MarketError::invalid("a deposit prepay needs a positive amount, a payer and a key (1..=64)"));
        }
        let payment = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                if let Some(p) = tx.deposit_payment_by_key(merchant_id, idempotency_key).await? {
                    if p.amount != amount || p.payer_openid != payer_openid {
                        return Err(MarketError::invalid("this idempotency key was used for another deposit payment"));
                    }
                    return Ok(p);
                }
                let cfg = config(&mut *tx).await?;
                ensure_deposit(&mut *tx, merchant_id, &cfg, at).await?;
                let p = DepositPayment {
                    id: new_deposit_trade_no(),
                    merchant_id: merchant_id.into(),
                    idempotency_key: idempotency_key.into(),
                    amount,
                    payer_openid: payer_openid.into(),
                    transaction_id: None,
                    created_at: crate::market::clock::trunc_ms(at),
                    paid_at: None,
                    closed_at: None,
                };
                if !tx.insert_deposit_payment(&p).await? {
                    // A concurrent prepay with this key committed first: retry and find it.
                    return Err(MarketError::Conflict("deposit idempotency key".into()));
                }
                tx.commit().await?;
                Ok(p)
            })
            .await?;
        if payment.is_paid() {
            return Err(MarketError::AlreadyDone("deposit payment"));
        }
        // The prepay order expires a pay window after the payment was created, whatever the retries:
        // the same request stays the same (WeChat Pay returns the same prepay order), and reconciliation
        // knows when an unpaid one can be closed.
        let expires = payment.created_at + crate::market::service::chrono_dur(self.config().pay_window);
        if payment.is_closed() || self.now() >= expires {
            return Err(MarketError::Window { what: "deposit payment (use a new idempotency key)", at: expires });
        }
        let req = PrepayRequest {
            mode: PayMode::Jsapi,
            out_trade_no: payment.id.clone(),
            description: format!("保证金 {merchant_id}"),
            payer_openid: payment.payer_openid.clone(),
            total: payment.amount,
            time_expire: expires,
            sub_mchid: None,
            sub_orders: Vec::new(),
            purpose: crate::market::payment::PaymentPurpose::Deposit,
        };
        let ticket = self.inner.pay.prepay(&req).await.map_err(MarketError::from)?;
        Ok(DepositPrepay {
            out_trade_no: payment.id,
            amount: payment.amount,
            prepay_id: ticket.prepay_id,
            pay_params: ticket.pay_params,
        })
    }

    /// The merchant leaves: the deposit waits until every window has closed with nothing open.
    pub async fn request_deposit_exit(&self, merchant_id: &str) -> Result<DepositView> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let mut v = ensure_deposit(&mut *tx, merchant_id, &cfg, at).await?;
            let tr = v.value.request_exit(at)?;
            won(tx.update_deposit(&v.value, v.version).await?, "deposit")?;
            tx.cancel_timers(&deposit_key(merchant_id), crate::market::events::TimerAction::Governance, at).await?;
            record_deposit(&mut *tx, merchant_id, &Actor::Merchant(merchant_id.into()), &tr).await?;
            let view = DepositView { balance: deposit_balance(&mut *tx, merchant_id).await?, account: v.value };
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// Refunds a leaving merchant's deposit through WeChat Pay, once the after-sale and dispute windows
    /// have closed and no order, case, dispute or settlement is open.
    ///
    /// In one transaction: the balance moves from the deposit to the ledger's deposit refund payable,
    /// the deposit goes Exiting → Refunding (Closed at once if there is nothing to refund), and one
    /// [`DepositRefund`] row per WeChat Pay refund is written, spread over the merchant's paid
    /// [`DepositPayment`]s newest first ([`split_refund`]); what no payment refundable within a year can
    /// carry becomes a [`DepositRefundStatus::Manual`] row (pay it, then
    /// [`deposit_refund_paid_manually`](crate::market::handles::Deposits::deposit_refund_paid_manually)). After commit each refund
    /// is asked of WeChat Pay (idempotent by its `out_refund_no`, retried by the timers); a success
    /// (answer, notification or query) moves its amount payable → clearing, and the last one closes the
    /// deposit.
    ///
    /// Calling it again is safe: while Refunding it only re-asks what failed (new refunds, linked by
    /// `retry_of`) and refunds anything paid in since; once Closed it changes nothing.
    ///
    /// ```no_run
    /// # async fn demo(market: wxshop::market::Market) -> wxshop::market::Result<()> {
    /// market.governance().deposits().request_deposit_exit("m1").await?;
    /// // … after the after-sale and dispute windows:
    /// let view = market.governance().deposits().refund_deposit("m1").await?;
    /// for r in &view.refunds {
    ///     println!("{} {} of {:?}: {}", r.id, r.amount, r.payment_id, r.status);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn refund_deposit(&self, merchant_id: &str) -> Result<DepositRefundView> {
        let timers = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let mut v = ensure_deposit(&mut *tx, merchant_id, &cfg, at).await?;
                let bal = deposit_balance(&mut *tx, merchant_id).await?;
                match v.value.status {
                    DepositStatus::Closed => return Ok(Vec::new()),
                    DepositStatus::Refunding => {
                        // A retry; anything paid in since the exit refund goes back too.
                        if bal.is_negative() {
                            return Err(MarketError::OpenItems(format!(
                                "the merchant owes {}",
                                Money::fen(-bal.as_fen())
                            )));
                        }
                        if bal.is_positive() {
                            let id = format!("deposit_refund:{merchant_id}:{}", crate::market::clock::new_id());
                            post(&mut *tx, &refund_payable_txn(merchant_id, bal).build(id, at)?, &cfg).await?;
                        }
                    }
                    _ => {
                        let check = exit_check(&mut *tx, merchant_id, &cfg).await?;
                        let (txn, tr) = v.value.exit_refund(bal, &check, at)?;
                        if let Some(t) = txn {
                            post(&mut *tx, &t.build(format!("deposit_refund:{merchant_id}"), at)?, &cfg).await?;
                        }
                        won(tx.update_deposit(&v.value, v.version).await?, "deposit")?;
                        v.version += 1;
                        record_deposit(&mut *tx, merchant_id, &Actor::Platform, &tr).await?;
                    }
                }
                let timers = plan_refunds(&mut *tx, merchant_id, at).await?;
                tx.commit().await?;
                Ok(timers)
            })
            .await?;
        self.fire_now(timers).await;
        self.deposit_refunds(merchant_id).await
    }

    /// A merchant's deposit with its exit refunds.
    pub async fn deposit_refunds(&self, merchant_id: &str) -> Result<DepositRefundView> {
        let mut tx = self.read().await?;
        let v = tx
            .deposit(merchant_id)
            .await?
            .ok_or_else(|| MarketError::NotFound { entity: "deposit", id: merchant_id.into() })?;
        let refunds = tx.deposit_refunds_of(merchant_id).await?;
        let refunding = balance(&mut *tx, &Account::DepositRefundPayable(merchant_id.into())).await?;
        let open: i64 = refunds.iter().filter(|r| r.is_open()).map(|r| r.amount.as_fen()).sum();
        Ok(DepositRefundView {
            account: v.value,
            balance: deposit_balance(&mut *tx, merchant_id).await?,
            refunding,
            awaiting_retry: Money::fen((refunding.as_fen() - open).max(0)),
            refunds,
        })
    }

    /// Applies what WeChat Pay reported about a deposit refund (its notification or a query): success
    /// moves the amount payable → clearing (closing the deposit after the last one), failure leaves it
    /// owed and visible for a retry. Anything but a Requested or Processing refund is left as it is, so
    /// a redelivered notification changes nothing.
    pub async fn deposit_refund_settled(
        &self,
        out_refund_no: &str,
        succeeded: bool,
        wx_refund_id: Option<&str>,
    ) -> Result<DepositRefund> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let r = tx
                .deposit_refund(out_refund_no)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "deposit refund", id: out_refund_no.into() })?;
            if !matches!(r.status, DepositRefundStatus::Requested | DepositRefundStatus::Processing) {
                return Ok(r);
            }
            let (to, note) = if succeeded {
                (DepositRefundStatus::Succeeded, None)
            } else {
                (DepositRefundStatus::Failed, Some("WeChat Pay closed the refund or reported it abnormal".to_string()))
            };
            let wx = wx_refund_id.map(str::to_string);
            let next = conclude_deposit_refund(&mut *tx, r, to, wx, note, &Actor::WechatPay, at).await?;
            tx.commit().await?;
            Ok(next)
        })
        .await
    }

    /// The platform paid a [`DepositRefundStatus::Manual`] refund outside WeChat Pay refunds (a bank
    /// transfer, a merchant transfer): it succeeds, its amount moves payable → clearing, and the last
    /// one closes the deposit. `reference` (the transfer's id) is kept in its note. Repeats change
    /// nothing.
    pub async fn deposit_refund_paid_manually(&self, refund_id: &str, reference: &str) -> Result<DepositRefund> {
        if reference.is_empty() || reference.len() > 128 {
            return Err(MarketError::invalid("a manual payout needs its reference (1..=128 characters)"));
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let r = tx
                .deposit_refund(refund_id)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "deposit refund", id: refund_id.into() })?;
            match (r.status, r.payment_id.is_none()) {
                (DepositRefundStatus::Manual, _) => {}
                (DepositRefundStatus::Succeeded, true) => return Ok(r),
                (other, _) => {
                    return Err(MarketError::illegal("deposit refund", other, DepositRefundStatus::Succeeded));
                }
            }
            let note = Some(format!("paid manually: {reference}"));
            let next =
                conclude_deposit_refund(&mut *tx, r, DepositRefundStatus::Succeeded, None, note, &Actor::Platform, at)
                    .await?;
            tx.commit().await?;
            Ok(next)
        })
        .await
    }
}

impl Market {
    /// The WeChat Pay call of a deposit refund (after commit; retried by the timers).
    pub(super) async fn call_deposit_refund(&self, id: &str) -> Result<()> {
        let Some(r) = self.read().await?.deposit_refund(id).await? else { return Ok(()) };
        let Some(payment_id) = r.payment_id.clone().filter(|_| r.status == DepositRefundStatus::Requested) else {
            return Ok(());
        };
        let req = RefundRequest {
            out_refund_no: r.id.clone(),
            out_trade_no: payment_id,
            transaction_id: r.transaction_id.clone(),
            sub_mchid: None,
            refund: r.amount,
            total: r.total,
            reason: "保证金退还".into(),
        };
        let ticket = self.inner.pay.refund(&req).await.map_err(MarketError::from)?;
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let Some(cur) = tx.deposit_refund(id).await? else { return Ok(()) };
            if cur.status != DepositRefundStatus::Requested {
                return Ok(()); // its notification got here first
            }
            let to = if ticket.succeeded { DepositRefundStatus::Succeeded } else { DepositRefundStatus::Processing };
            let wx = Some(ticket.refund_id.clone());
            conclude_deposit_refund(&mut *tx, cur, to, wx, None, &Actor::WechatPay, at).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Reconciles deposit payments and refunds whose notifications were lost (see
    /// [`Payments::reconcile_pending_payments`](crate::market::handles::Payments::reconcile_pending_payments)).
    pub(in crate::market::service) async fn reconcile_deposits(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        report: &mut crate::market::service::ReconcileReport,
    ) -> crate::market::error::Result<()> {
        let settled = now - Duration::minutes(1);
        let window = crate::market::service::chrono_dur(self.config().pay_window);
        let pending = self.read().await?.pending_deposit_payments(settled, limit).await?;
        for p in pending {
            report.checked += 1;
            let req = QueryRequest {
                mode: PayMode::Jsapi,
                out_trade_no: p.id.clone(),
                sub_mchid: None,
                sub_orders: Vec::new(),
            };
            match self.inner.pay.query(&req).await {
                Ok(PaymentQuery::Paid(n)) => match self.payments().handle_payment_notice(&n).await {
                    Ok(crate::market::NoticeOutcome::Paid) => report.applied += 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(payment = %p.id, error = %e, "reconciled deposit payment not applied");
                        report.failed += 1;
                    }
                },
                Ok(PaymentQuery::Unpaid) if now >= p.created_at + window => {
                    // Expired unpaid: close it at WeChat Pay (so it can never be paid), then here.
                    let closed = match self.inner.pay.close(&req).await {
                        Ok(()) => self.close_deposit_payment(&p.id).await,
                        Err(e) => Err(MarketError::from(e)),
                    };
                    if let Err(e) = closed {
                        tracing::warn!(payment = %p.id, error = %e, "expired deposit payment not closed; will retry");
                        report.failed += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(payment = %p.id, error = %e, "deposit payment query failed; will retry");
                    report.failed += 1;
                }
            }
        }
        let processing = self.read().await?.deposit_refunds_in(DepositRefundStatus::Processing, settled, limit).await?;
        for r in processing {
            report.checked += 1;
            let req = RefundQueryRequest { out_refund_no: r.id.clone(), sub_mchid: None };
            let outcome = match self.inner.pay.query_refund(&req).await {
                Ok(RefundQuery::Succeeded { refund_id }) => Some((true, refund_id)),
                Ok(RefundQuery::Failed { refund_id, .. }) => Some((false, refund_id)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(refund = %r.id, error = %e, "deposit refund query failed; will retry");
                    report.failed += 1;
                    None
                }
            };
            if let Some((ok, wx)) = outcome {
                match self.governance().deposits().deposit_refund_settled(&r.id, ok, Some(&wx)).await {
                    Ok(_) => report.applied += 1,
                    Err(e) => {
                        tracing::warn!(refund = %r.id, error = %e, "reconciled deposit refund not applied");
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Marks a pending deposit payment closed (unpaid), once.
    async fn close_deposit_payment(&self, id: &str) -> Result<()> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let Some(p) = tx.deposit_payment(id).await? else { return Ok(()) };
            if p.is_paid() || p.is_closed() {
                return Ok(());
            }
            let mut closed = p.clone();
            closed.closed_at = Some(crate::market::clock::trunc_ms(at));
            if !tx.close_deposit_payment(&closed).await? {
                return Ok(()); // paid (or closed) meanwhile
            }
            crate::market::service::Agg::new("deposit", &deposit_key(&p.merchant_id), Some(&p.merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &Actor::WechatPay,
                    crate::market::service::Change::new("payment_closed").event(
                        "deposit.payment_closed",
                        json!({ "merchant_id": p.merchant_id, "out_trade_no": p.id, "amount": p.amount }),
                    ),
                )
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The grace timer of a deposit.
    pub(super) async fn deposit_deadline(
        &self,
        tx: &mut dyn StoreTx,
        merchant_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let cfg = config(tx).await?;
        let Some(mut v) = tx.deposit(merchant_id).await? else { return Ok(()) };
        let bal = deposit_balance(tx, merchant_id).await?;
        if let Some(tr) = v.value.grace_expired(bal, at) {
            won(tx.update_deposit(&v.value, v.version).await?, "deposit")?;
            record_deposit(tx, merchant_id, &Actor::Timer, &tr).await?;
            sync_merchant_status(tx, merchant_id, &cfg, at).await?;
        }
        Ok(())
    }
}

/// Writes refund rows for whatever the deposit refund payable holds beyond the open refunds (the
/// whole of it after the exit, the failed parts on a retry), and schedules their WeChat Pay calls.
async fn plan_refunds(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    at: DateTime<Utc>,
) -> Result<Vec<crate::market::events::Timer>> {
    let refunds = tx.deposit_refunds_of(merchant_id).await?;
    let payable = balance(tx, &Account::DepositRefundPayable(merchant_id.into())).await?;
    let open: i64 = refunds.iter().filter(|r| r.is_open()).map(|r| r.amount.as_fen()).sum();
    let to_plan = Money::fen(payable.as_fen() - open);
    if !to_plan.is_positive() {
        return Ok(Vec::new());
    }
    let payments = tx.deposit_payments_of(merchant_id).await?;
    let split = split_refund(to_plan, &payments, &refunds, at);
    let retry_of = |payment: Option<&str>| {
        refunds
            .iter()
            .rev()
            .find(|r| r.status == DepositRefundStatus::Failed && r.payment_id.as_deref() == payment)
            .map(|r| r.id.clone())
    };
    let at = crate::market::clock::trunc_ms(at);
    let mut timers = Vec::new();
    for (payment_id, amount) in &split.parts {
        let p = payments
            .iter()
            .find(|p| &p.id == payment_id)
            .ok_or_else(|| MarketError::NotFound { entity: "deposit payment", id: payment_id.clone() })?;
        let r = DepositRefund {
            id: new_deposit_refund_no(),
            merchant_id: merchant_id.into(),
            payment_id: Some(p.id.clone()),
            transaction_id: p.transaction_id.clone(),
            total: p.amount,
            amount: *amount,
            status: DepositRefundStatus::Requested,
            wx_refund_id: None,
            note: None,
            retry_of: retry_of(Some(&p.id)),
            created_at: at,
            updated_at: at,
        };
        won(tx.insert_deposit_refund(&r).await?, "deposit refund")?;
        record_refund(tx, &r, None, &Actor::Platform, at).await?;
        timers.push(schedule_call(tx, "deposit_refund", &r.id, merchant_id, at).await?);
    }
    if split.manual.is_positive() {
        let r = DepositRefund {
            id: new_deposit_refund_no(),
            merchant_id: merchant_id.into(),
            payment_id: None,
            transaction_id: None,
            total: split.manual,
            amount: split.manual,
            status: DepositRefundStatus::Manual,
            wx_refund_id: None,
            note: Some(
                "no deposit payment WeChat Pay still refunds (within a year) can carry it: pay it manually".into(),
            ),
            retry_of: retry_of(None),
            created_at: at,
            updated_at: at,
        };
        won(tx.insert_deposit_refund(&r).await?, "deposit refund")?;
        record_refund(tx, &r, None, &Actor::Platform, at).await?;
    }
    Ok(timers)
}

/// Moves a deposit refund to `to` in `tx`: a success posts payable → clearing and closes the deposit
/// after the last one.
async fn conclude_deposit_refund(
    tx: &mut dyn StoreTx,
    cur: DepositRefund,
    to: DepositRefundStatus,
    wx_refund_id: Option<String>,
    note: Option<String>,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<DepositRefund> {
    let mut next = cur.clone();
    next.status = to;
    next.wx_refund_id = wx_refund_id.or(cur.wx_refund_id.clone());
    if note.is_some() {
        next.note = note;
    }
    next.updated_at = crate::market::clock::trunc_ms(at);
    won(tx.update_deposit_refund(&next, cur.status).await?, "deposit refund")?;
    record_refund(tx, &next, Some(cur.status), actor, at).await?;
    if to == DepositRefundStatus::Succeeded {
        let cfg = config(tx).await?;
        let t = refund_paid_txn(&cur.merchant_id, cur.amount).build(format!("deposit_refund_paid:{}", cur.id), at)?;
        post(tx, &t, &cfg).await?;
        close_if_refunded(tx, &cur.merchant_id, actor, at).await?;
    }
    Ok(next)
}

/// Refunding → Closed once nothing is owed, held or on its way.
async fn close_if_refunded(tx: &mut dyn StoreTx, merchant_id: &str, actor: &Actor, at: DateTime<Utc>) -> Result<()> {
    let Some(mut v) = tx.deposit(merchant_id).await? else { return Ok(()) };
    if v.value.status != DepositStatus::Refunding {
        return Ok(());
    }
    let payable = balance(tx, &Account::DepositRefundPayable(merchant_id.into())).await?;
    let held = deposit_balance(tx, merchant_id).await?;
    let open = tx.deposit_refunds_of(merchant_id).await?.iter().any(|r| r.is_open());
    if payable != Money::ZERO || held != Money::ZERO || open {
        return Ok(());
    }
    let tr = v.value.refunds_done(at)?;
    won(tx.update_deposit(&v.value, v.version).await?, "deposit")?;
    v.version += 1;
    record_deposit(tx, merchant_id, actor, &tr).await
}

/// A deposit refund call gave up (a final WeChat Pay refusal, or too many attempts): the refund fails
/// and its amount waits for a retry.
pub(super) async fn deposit_refund_call_failed(
    tx: &mut dyn StoreTx,
    id: &str,
    error: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let Some(r) = tx.deposit_refund(id).await? else { return Ok(()) };
    if r.status != DepositRefundStatus::Requested {
        return Ok(());
    }
    let note: String = format!("the WeChat Pay refund call failed: {error}").chars().take(500).collect();
    conclude_deposit_refund(tx, r, DepositRefundStatus::Failed, None, Some(note), &Actor::Timer, at).await?;
    Ok(())
}

async fn record_refund(
    tx: &mut dyn StoreTx,
    r: &DepositRefund,
    from: Option<DepositRefundStatus>,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<()> {
    let change = crate::market::service::Change::new(r.status.as_str()).reason(r.note.as_deref());
    let change = match from {
        Some(f) => change.states(f, r.status),
        None => change.to(r.status),
    };
    let event = format!("deposit_refund.{}", r.status);
    crate::market::service::Agg::new("deposit_refund", &r.id, Some(&r.merchant_id))
        .record(
            tx,
            at,
            actor,
            change.event(
                &event,
                json!({ "merchant_id": r.merchant_id, "refund_id": r.id, "payment_id": r.payment_id,
                        "amount": r.amount, "status": r.status, "wx_refund_id": r.wx_refund_id }),
            ),
        )
        .await?;
    Ok(())
}

fn check_pay_in(transaction_id: &str, amount: Money) -> Result<()> {
    if !amount.is_positive() || transaction_id.is_empty() || transaction_id.len() > 64 {
        return Err(MarketError::invalid("a pay-in needs a positive amount and a transaction id (1..=64)"));
    }
    Ok(())
}

/// Applies a confirmed pay-in inside `tx` (idempotent by `transaction_id`: the ledger id is derived from it).
async fn pay_in(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    transaction_id: &str,
    amount: Money,
    at: DateTime<Utc>,
) -> Result<DepositView> {
    let cfg = config(tx).await?;
    let v = ensure_deposit(tx, merchant_id, &cfg, at).await?;
    let t = pay_in_txn(merchant_id, amount, format!("deposit:{merchant_id}"))
        .build(format!("payin:{transaction_id}"), at)?;
    post(tx, &t, &cfg).await?;
    after_balance_change(tx, v, &cfg, &Actor::Merchant(merchant_id.into()), at).await?;
    crate::market::service::Agg::new("deposit", &deposit_key(merchant_id), Some(merchant_id))
        .record(
            tx,
            at,
            &Actor::WechatPay,
            crate::market::service::Change::new("paid_in").event(
                "deposit.paid_in",
                json!({ "merchant_id": merchant_id, "transaction_id": transaction_id, "amount": amount }),
            ),
        )
        .await?;
    let v = tx
        .deposit(merchant_id)
        .await?
        .ok_or_else(|| MarketError::NotFound { entity: "deposit", id: merchant_id.into() })?;
    Ok(DepositView { balance: deposit_balance(tx, merchant_id).await?, account: v.value })
}

/// Applies a deposit payment notification inside the notice's transaction: marks the pending payment
/// paid and credits the deposit, once. `Ok(false)`: it was already paid. A wrong amount is
/// [`MarketError::PaymentMismatch`] (the caller rolls back).
pub(in crate::market::service) async fn apply_deposit_notice(
    tx: &mut dyn StoreTx,
    n: &crate::market::payment::PaymentNotice,
    at: DateTime<Utc>,
) -> Result<bool> {
    let p = tx
        .deposit_payment(&n.out_trade_no)
        .await?
        .ok_or_else(|| MarketError::NotFound { entity: "deposit payment", id: n.out_trade_no.clone() })?;
    if p.is_paid() {
        return Ok(false);
    }
    if n.amount != p.amount {
        return Err(MarketError::PaymentMismatch {
            out_trade_no: n.out_trade_no.clone(),
            reason: format!("paid {} fen, expected {} fen", n.amount.as_fen(), p.amount.as_fen()),
        });
    }
    check_pay_in(&n.transaction_id, n.amount)?;
    let mut paid = p.clone();
    paid.transaction_id = Some(n.transaction_id.clone());
    paid.paid_at = Some(crate::market::clock::trunc_ms(n.paid_at));
    won(tx.mark_deposit_payment_paid(&paid).await?, "deposit payment")?;
    pay_in(tx, &p.merchant_id, &n.transaction_id, p.amount, at).await?;
    Ok(true)
}

/// The deposit's aggregate id in audit rows and timers (not the merchant id: the merchant's own
/// audit trail stays the merchant's).
pub(super) fn deposit_key(merchant_id: &str) -> String {
    format!("deposit:{merchant_id}")
}

pub(super) async fn deposit_balance(tx: &mut dyn StoreTx, merchant_id: &str) -> Result<Money> {
    balance(tx, &Account::MerchantDeposit(merchant_id.into())).await
}

async fn requirement(tx: &mut dyn StoreTx, merchant_id: &str, cfg: &GovernanceConfig) -> Result<Money> {
    let cats = tx.merchant_categories(merchant_id).await?;
    let rules = tx.current_rules(&cats).await?;
    let deposits: Vec<Money> = rules.iter().map(|r| r.spec.deposit_required).collect();
    Ok(required_amount(&deposits, &cfg.deposit))
}

/// The merchant's deposit account, opened with its requirement if missing.
pub(super) async fn ensure_deposit(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<Versioned<DepositAccount>> {
    if let Some(v) = tx.deposit(merchant_id).await? {
        return Ok(v);
    }
    if tx.merchant(merchant_id).await?.is_none() {
        return Err(MarketError::NotFound { entity: "merchant", id: merchant_id.into() });
    }
    let required = requirement(tx, merchant_id, cfg).await?;
    let mut acct = DepositAccount::new(merchant_id, required, at);
    let bal = deposit_balance(tx, merchant_id).await?;
    acct.reevaluate(bal, at, &cfg.deposit);
    won(tx.insert_deposit(&acct).await?, "deposit")?;
    let tr = Transition {
        from: None,
        to: acct.status.to_string(),
        actor: crate::market::governance::Actor::Platform,
        at,
        note: "opened".into(),
    };
    record_deposit(tx, merchant_id, &Actor::Platform, &tr).await?;
    Ok(Versioned { value: acct, version: 1 })
}

/// Re-derives the deposit status after its balance moved; schedules the grace timer and updates the
/// merchant's restrictions when the status changed.
pub(super) async fn after_balance_change(
    tx: &mut dyn StoreTx,
    mut v: Versioned<DepositAccount>,
    cfg: &GovernanceConfig,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<()> {
    let bal = deposit_balance(tx, &v.value.merchant_id).await?;
    let tr = v.value.reevaluate(bal, at, &cfg.deposit);
    write_deposit(tx, &v, cfg, tr, actor, at).await?;
    v.version += 1;
    Ok(())
}

async fn write_deposit(
    tx: &mut dyn StoreTx,
    v: &Versioned<DepositAccount>,
    cfg: &GovernanceConfig,
    tr: Option<Transition>,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<()> {
    let m = v.value.merchant_id.clone();
    won(tx.update_deposit(&v.value, v.version).await?, "deposit")?;
    if let Some(tr) = tr {
        record_deposit(tx, &m, actor, &tr).await?;
        if v.value.status == DepositStatus::Insufficient
            && let Some(until) = v.value.grace_until
        {
            schedule(tx, "deposit", &deposit_key(&m), &m, until, at, true).await?;
        }
        sync_merchant_status(tx, &m, cfg, at).await?;
    }
    Ok(())
}

async fn record_deposit(tx: &mut dyn StoreTx, merchant_id: &str, actor: &Actor, tr: &Transition) -> Result<()> {
    record(
        tx,
        "deposit",
        &deposit_key(merchant_id),
        merchant_id,
        actor,
        tr,
        &format!("deposit.{}", tr.to),
        json!({ "merchant_id": merchant_id, "from": tr.from, "to": tr.to, "why": tr.note }),
    )
    .await
}

async fn exit_check(tx: &mut dyn StoreTx, merchant_id: &str, cfg: &GovernanceConfig) -> Result<ExitCheck> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let open_orders = tx.count_open_orders(merchant_id).await?.max(0) as u64;
    let cases = tx.cases_of_merchant(merchant_id, epoch, i64::MAX).await?;
    let open_cases = cases.iter().filter(|c| c.state.is_open()).count() as u64;
    let disputes = tx.disputes_of_merchant(merchant_id, epoch, i64::MAX).await?;
    let open_disputes = disputes.iter().filter(|d| d.decision.is_none()).count() as u64;
    let settlements = tx.settlements_of(merchant_id, i64::MAX).await?;
    use crate::market::governance::settlement::SettlementState;
    let open_settlements =
        settlements.iter().filter(|s| matches!(s.state, SettlementState::Frozen | SettlementState::Releasable)).count()
            as u64;
    // The dispute window follows the after-sale window; a rejection late in it may still escalate.
    let last_window = settlements.iter().filter_map(|s| s.window_closes_at).max();
    let last_case = cases.iter().map(|c| c.updated_at).max();
    let windows_close_at = [
        last_window.map(|w| w + Duration::days(cfg.after_sale.escalation_days)),
        last_case.map(|c| c + Duration::days(cfg.after_sale.escalation_days)),
    ]
    .into_iter()
    .flatten()
    .max();
    Ok(ExitCheck { open_orders, open_cases, open_disputes, open_settlements, windows_close_at })
}
