//! Deposits (保证金): requirement from the merchant's categories, pay-in, grace, restriction, exit.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::penalties::sync_merchant_status;
use super::{balance, config, post, record, schedule, won};
use crate::market::error::MarketError;
use crate::market::events::Actor;
use crate::market::gateway::PrepayRequest;
use crate::market::governance::deposit::{
    DepositAccount, DepositPayment, DepositStatus, ExitCheck, new_deposit_trade_no, pay_in_txn, required_amount,
};
use crate::market::governance::ledger::Account;
use crate::market::governance::{GovError, GovResult, GovernanceConfig, Transition};
use crate::market::money::Money;
use crate::market::payment::PayMode;
use crate::market::service::Market;
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

/// A deposit account with its balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositView {
    /// The account (status, requirement, grace).
    pub account: DepositAccount,
    /// The balance (the ledger's deposit account).
    pub balance: Money,
}

impl Market {
    /// A merchant's deposit (opened, with its requirement, on first use).
    pub async fn deposit(&self, merchant_id: &str) -> GovResult<DepositView> {
        self.gov(|| async {
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
    pub async fn refresh_deposit_requirement(&self, merchant_id: &str) -> GovResult<DepositView> {
        self.gov(|| async {
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
    pub async fn deposit_paid_in(
        &self,
        merchant_id: &str,
        transaction_id: &str,
        amount: Money,
    ) -> GovResult<DepositView> {
        check_pay_in(transaction_id, amount)?;
        self.gov(|| async {
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
    /// payment notification applies it (see [`Market::handle_payment_notice`]).
    ///
    /// Idempotent by `(merchant, idempotency_key)`: the same request returns the same payment (and asks
    /// WeChat Pay again, which returns the same prepay order); another amount or payer under the same key
    /// is [`GovError::Invalid`].
    pub async fn deposit_prepay(
        &self,
        merchant_id: &str,
        amount: Money,
        payer_openid: &str,
        idempotency_key: &str,
    ) -> GovResult<DepositPrepay> {
        if !amount.is_positive() || payer_openid.is_empty() || idempotency_key.is_empty() || idempotency_key.len() > 64
        {
            return Err(GovError::invalid("a deposit prepay needs a positive amount, a payer and a key (1..=64)"));
        }
        let payment = self
            .gov(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                if let Some(p) = tx.deposit_payment_by_key(merchant_id, idempotency_key).await? {
                    if p.amount != amount || p.payer_openid != payer_openid {
                        return Err(GovError::invalid("this idempotency key was used for another deposit payment"));
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
                };
                if !tx.insert_deposit_payment(&p).await? {
                    // A concurrent prepay with this key committed first: retry and find it.
                    return Err(MarketError::Conflict("deposit idempotency key".into()).into());
                }
                tx.commit().await?;
                Ok(p)
            })
            .await?;
        if payment.is_paid() {
            return Err(GovError::AlreadyDone("deposit payment"));
        }
        let req = PrepayRequest {
            mode: PayMode::Jsapi,
            out_trade_no: payment.id.clone(),
            description: format!("保证金 {merchant_id}"),
            payer_openid: payment.payer_openid.clone(),
            total: payment.amount,
            time_expire: self.now() + crate::market::service::chrono_dur(self.config().pay_window),
            sub_mchid: None,
            sub_orders: Vec::new(),
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
    pub async fn request_deposit_exit(&self, merchant_id: &str) -> GovResult<DepositView> {
        self.gov(|| async {
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

    /// Refunds a leaving merchant's deposit, once the after-sale and dispute windows have closed and no
    /// order, case, dispute or settlement is open.
    pub async fn refund_deposit(&self, merchant_id: &str) -> GovResult<DepositView> {
        self.gov(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let mut v = ensure_deposit(&mut *tx, merchant_id, &cfg, at).await?;
            let check = exit_check(&mut *tx, merchant_id, &cfg).await?;
            let bal = deposit_balance(&mut *tx, merchant_id).await?;
            let (txn, tr) = v.value.exit_refund(bal, &check, at)?;
            if let Some(t) = txn {
                post(&mut *tx, &t.build(format!("deposit_refund:{merchant_id}"), at)?, &cfg).await?;
            }
            won(tx.update_deposit(&v.value, v.version).await?, "deposit")?;
            record_deposit(&mut *tx, merchant_id, &Actor::Platform, &tr).await?;
            let view = DepositView { balance: deposit_balance(&mut *tx, merchant_id).await?, account: v.value };
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// The grace timer of a deposit.
    pub(super) async fn deposit_deadline(
        &self,
        tx: &mut dyn StoreTx,
        merchant_id: &str,
        at: DateTime<Utc>,
    ) -> GovResult<()> {
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

fn check_pay_in(transaction_id: &str, amount: Money) -> GovResult<()> {
    if !amount.is_positive() || transaction_id.is_empty() || transaction_id.len() > 64 {
        return Err(GovError::invalid("a pay-in needs a positive amount and a transaction id (1..=64)"));
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
) -> GovResult<DepositView> {
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
        .ok_or_else(|| GovError::NotFound { entity: "deposit", id: merchant_id.into() })?;
    Ok(DepositView { balance: deposit_balance(tx, merchant_id).await?, account: v.value })
}

/// Applies a deposit payment notification inside the notice's transaction: marks the pending payment
/// paid and credits the deposit, once. `Ok(false)`: it was already paid. A wrong amount is
/// [`MarketError::PaymentMismatch`] (the caller rolls back).
pub(in crate::market::service) async fn apply_deposit_notice(
    tx: &mut dyn StoreTx,
    n: &crate::market::payment::PaymentNotice,
    at: DateTime<Utc>,
) -> GovResult<bool> {
    let p = tx
        .deposit_payment(&n.out_trade_no)
        .await?
        .ok_or_else(|| GovError::NotFound { entity: "deposit payment", id: n.out_trade_no.clone() })?;
    if p.is_paid() {
        return Ok(false);
    }
    if n.amount != p.amount {
        return Err(MarketError::PaymentMismatch {
            out_trade_no: n.out_trade_no.clone(),
            reason: format!("paid {} fen, expected {} fen", n.amount.as_fen(), p.amount.as_fen()),
        }
        .into());
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

pub(super) async fn deposit_balance(tx: &mut dyn StoreTx, merchant_id: &str) -> GovResult<Money> {
    balance(tx, &Account::MerchantDeposit(merchant_id.into())).await
}

async fn requirement(tx: &mut dyn StoreTx, merchant_id: &str, cfg: &GovernanceConfig) -> GovResult<Money> {
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
) -> GovResult<Versioned<DepositAccount>> {
    if let Some(v) = tx.deposit(merchant_id).await? {
        return Ok(v);
    }
    if tx.merchant(merchant_id).await?.is_none() {
        return Err(GovError::NotFound { entity: "merchant", id: merchant_id.into() });
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
) -> GovResult<()> {
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
) -> GovResult<()> {
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

async fn record_deposit(tx: &mut dyn StoreTx, merchant_id: &str, actor: &Actor, tr: &Transition) -> GovResult<()> {
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

async fn exit_check(tx: &mut dyn StoreTx, merchant_id: &str, cfg: &GovernanceConfig) -> GovResult<ExitCheck> {
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
