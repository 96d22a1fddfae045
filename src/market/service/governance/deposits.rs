//! Deposits (保证金): requirement from the merchant's categories, pay-in, grace, restriction, exit.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::penalties::sync_merchant_status;
use super::{balance, config, post, record, schedule, won};
use crate::market::events::Actor;
use crate::market::governance::deposit::{DepositAccount, DepositStatus, ExitCheck, pay_in_txn, required_amount};
use crate::market::governance::ledger::Account;
use crate::market::governance::{GovError, GovResult, GovernanceConfig, Transition};
use crate::market::money::Money;
use crate::market::service::Market;
use crate::market::store::StoreTx;
use crate::market::store::governance::Versioned;

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
        if !amount.is_positive() || transaction_id.is_empty() || transaction_id.len() > 64 {
            return Err(GovError::invalid("a pay-in needs a positive amount and a transaction id (1..=64)"));
        }
        self.gov(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let v = ensure_deposit(&mut *tx, merchant_id, &cfg, at).await?;
            let t = pay_in_txn(merchant_id, amount, format!("deposit:{merchant_id}"))
                .build(format!("payin:{transaction_id}"), at)?;
            post(&mut *tx, &t, &cfg).await?;
            after_balance_change(&mut *tx, v, &cfg, &Actor::Merchant(merchant_id.into()), at).await?;
            crate::market::service::Agg::new("deposit", &deposit_key(merchant_id), Some(merchant_id))
                .record(
                    &mut *tx,
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
            let view = DepositView { balance: deposit_balance(&mut *tx, merchant_id).await?, account: v.value };
            tx.commit().await?;
            Ok(view)
        })
        .await
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
