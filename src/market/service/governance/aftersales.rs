//! After-sale cases and platform disputes: the buyer's and merchant's moves, the timers, and the
//! refunds they end in (WeChat Pay refunds of the payment, or compensation from the deposit or the
//! platform).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::deposits::{after_balance_change, deposit_balance, ensure_deposit};
use super::penalties::apply_violation;
use super::settlements::{on_case_closed, refund_from_settlement};
use super::{config, line_key, post, record, schedule, schedule_call, won};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::{Actor, Timer, TimerAction};
use crate::market::governance::GovernanceConfig;
use crate::market::governance::aftersale::{
    Case, CaseEffect, CaseKind, CaseLine, CaseState, Decision, Dispute, DisputeKind, Payer, Step, Waybill,
};
use crate::market::governance::deposit::{DeductionBasis, plan_deduction};
use crate::market::governance::ledger::{Account, TxnBuilder, TxnKind};
use crate::market::governance::penalty::Violation;
use crate::market::governance::settlement::{Compensation, PayoutStatus};
use crate::market::money::Money;
use crate::market::order::OrderStatus;
use crate::market::payment::PayMode;
use crate::market::service::Market;
use crate::market::service::handles::AfterSales;
use crate::market::service::orders::request_refund;
use crate::market::store::StoreTx;
use crate::market::store::governance::Versioned;

/// A buyer's after-sale request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRequest {
    /// The merchant order.
    pub order_id: String,
    /// The line (1-based).
    pub line_no: i64,
    /// Type.
    pub kind: CaseKind,
    /// Refund asked (zero for an exchange).
    pub amount: Money,
    /// Why.
    pub reason: String,
    /// Evidence (image references).
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// Who acts on a case.
enum Who<'a> {
    Buyer(&'a str),
    Merchant(&'a str),
}

impl AfterSales<'_> {
    /// The buyer opens an after-sale case on a line of a paid order.
    pub async fn open_case(&self, buyer_openid: &str, req: &CaseRequest) -> Result<Case> {
        let (case, timers) = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let line = case_line(&mut *tx, &req.order_id, req.line_no, Some(buyer_openid)).await?;
                let existing: Vec<CaseState> =
                    tx.cases_of_line(&req.order_id, req.line_no).await?.iter().map(|c| c.state).collect();
                let (case, step) = Case::open(
                    new_id(),
                    &line,
                    &existing,
                    req.kind,
                    req.amount,
                    req.reason.clone(),
                    req.evidence.clone(),
                    at,
                    &cfg.after_sale,
                )?;
                // The partial unique index is the backstop against a concurrent second open case.
                won(tx.insert_case(&case, req.line_no, None).await?, "case")?;
                let mut v = Versioned { value: case, version: 1 };
                let timers = apply_step(&mut *tx, &mut v, req.line_no, step, &cfg, None, at).await?;
                tx.commit().await?;
                Ok((v.value, timers))
            })
            .await?;
        self.fire_now(timers).await;
        Ok(case)
    }

    /// The merchant approves (a refund-only case refunds at once; a return waits for the parcel).
    pub async fn approve_case(&self, merchant_id: &str, case_id: &str) -> Result<Case> {
        self.case_op(case_id, Who::Merchant(merchant_id), |c, cfg, at| c.approve(at, &cfg.after_sale)).await
    }

    /// The merchant rejects; the buyer may escalate within the escalation window.
    pub async fn reject_case(&self, merchant_id: &str, case_id: &str, reason: &str) -> Result<Case> {
        self.case_op(case_id, Who::Merchant(merchant_id), |c, cfg, at| c.reject(reason, at, &cfg.after_sale)).await
    }

    /// The buyer uploads the return waybill.
    pub async fn upload_return(&self, buyer_openid: &str, case_id: &str, waybill: Waybill) -> Result<Case> {
        self.case_op(case_id, Who::Buyer(buyer_openid), |c, cfg, at| {
            c.upload_return(waybill.clone(), at, &cfg.after_sale)
        })
        .await
    }

    /// The merchant confirms the returned goods (a return refunds; an exchange reships).
    pub async fn confirm_return_received(&self, merchant_id: &str, case_id: &str) -> Result<Case> {
        self.case_op(case_id, Who::Merchant(merchant_id), |c, _, at| c.confirm_received(at)).await
    }

    /// The merchant refuses the returned goods; the buyer may escalate.
    pub async fn refuse_returned_goods(&self, merchant_id: &str, case_id: &str, reason: &str) -> Result<Case> {
        self.case_op(case_id, Who::Merchant(merchant_id), |c, cfg, at| {
            c.refuse_returned_goods(reason, at, &cfg.after_sale)
        })
        .await
    }

    /// The merchant ships the replacement of an exchange.
    pub async fn ship_replacement(&self, merchant_id: &str, case_id: &str, waybill: Waybill) -> Result<Case> {
        self.case_op(case_id, Who::Merchant(merchant_id), |c, _, at| c.ship_replacement(waybill.clone(), at)).await
    }

    /// The buyer withdraws the case.
    pub async fn cancel_case(&self, buyer_openid: &str, case_id: &str) -> Result<Case> {
        self.case_op(case_id, Who::Buyer(buyer_openid), |c, _, at| c.cancel(at)).await
    }

    /// The buyer escalates a rejection to a platform dispute.
    pub async fn escalate_case(&self, buyer_openid: &str, case_id: &str) -> Result<Case> {
        self.case_op(case_id, Who::Buyer(buyer_openid), |c, _, at| c.escalate(at)).await
    }

    /// The buyer files a guarantee claim (保障单) for counterfeit or damaged goods, outside the
    /// after-sale window.
    pub async fn open_guarantee_claim(
        &self,
        buyer_openid: &str,
        order_id: &str,
        line_no: i64,
        kind: DisputeKind,
        claim: Money,
        reason: &str,
    ) -> Result<Dispute> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let line = case_line(&mut *tx, order_id, line_no, Some(buyer_openid)).await?;
            let d = Dispute::guarantee_claim(new_id(), kind, &line, claim, reason, at)?;
            won(tx.insert_dispute(&d, line_no).await?, "dispute")?;
            record_dispute(&mut *tx, &d, &Actor::Buyer(buyer_openid.into()), None).await?;
            tx.commit().await?;
            Ok(d)
        })
        .await
    }

    /// The platform decides a dispute or guarantee claim. A decision for the buyer pays them (a refund of
    /// the payment, or compensation from the deposit or the platform) and, when the merchant is at fault,
    /// becomes a `dispute_lost` penalty.
    pub async fn decide_dispute(&self, dispute_id: &str, decision: Decision, note: &str) -> Result<Dispute> {
        let (d, timers) = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let mut dv = tx
                    .dispute(dispute_id)
                    .await?
                    .ok_or_else(|| MarketError::NotFound { entity: "dispute", id: dispute_id.into() })?;
                let line_no = line_no_of(&dv.value.line_id)?;
                let line = case_line(&mut *tx, &dv.value.order_id, line_no, None).await?;
                // The disputed case's own amount is not yet refunded: it is what is being decided.
                let tr = dv.value.decide(decision.clone(), line.refundable(), note, at)?;
                won(tx.update_dispute(&dv.value, dv.version).await?, "dispute")?;
                record_dispute(&mut *tx, &dv.value, &Actor::Platform, Some(&tr.note)).await?;
                let d = dv.value.clone();
                let basis = d.deduction_basis().ok();
                let mut timers = Vec::new();
                match &d.case_id {
                    Some(case_id) => {
                        let mut cv = tx
                            .case(case_id)
                            .await?
                            .ok_or_else(|| MarketError::NotFound { entity: "case", id: case_id.clone() })?;
                        let step = cv.value.apply_dispute(&d, at)?;
                        timers = apply_step(&mut *tx, &mut cv, line_no, step, &cfg, basis.as_ref(), at).await?;
                    }
                    None => {
                        if let Some(Decision::BuyerWins { refund, payer }) = &d.decision {
                            let (_, t) = pay_buyer(
                                &mut *tx,
                                &d.order_id,
                                line_no,
                                &d.buyer_id,
                                *refund,
                                *payer,
                                &format!("dispute:{}", d.id),
                                basis.as_ref(),
                                &cfg,
                                at,
                            )
                            .await?;
                            timers.extend(t);
                        }
                    }
                }
                if d.merchant_lost() {
                    let v = Violation {
                        rule_code: "dispute_lost".into(),
                        merchant_id: d.merchant_id.clone(),
                        key: format!("dispute_lost:{}", d.id),
                        order_id: Some(d.order_id.clone()),
                        buyer_id: Some(d.buyer_id.clone()),
                        order_amount: line.paid,
                        product_ids: vec![],
                        detail: format!("{} decided for the buyer", d.kind),
                        detected_at: at,
                    };
                    timers.extend(
                        apply_violation(&mut *tx, v, &cfg, crate::market::governance::Actor::Platform, at, None)
                            .await?
                            .1,
                    );
                }
                tx.commit().await?;
                Ok((d, timers))
            })
            .await?;
        self.fire_now(timers).await;
        Ok(d)
    }

    /// A case.
    pub async fn case(&self, case_id: &str) -> Result<Case> {
        let v = self.read().await?.case(case_id).await?;
        Ok(v.ok_or_else(|| MarketError::NotFound { entity: "case", id: case_id.into() })?.value)
    }

    /// The cases of an order, oldest first.
    pub async fn cases_of_order(&self, order_id: &str) -> Result<Vec<Case>> {
        self.read().await?.cases_of_order(order_id).await
    }

    /// A merchant's cases, newest first.
    pub async fn merchant_cases(&self, merchant_id: &str, limit: i64) -> Result<Vec<Case>> {
        self.read().await?.cases_of_merchant(merchant_id, DateTime::<Utc>::UNIX_EPOCH, limit.clamp(1, 500)).await
    }

    /// A dispute or guarantee claim.
    pub async fn dispute(&self, dispute_id: &str) -> Result<Dispute> {
        let v = self.read().await?.dispute(dispute_id).await?;
        Ok(v.ok_or_else(|| MarketError::NotFound { entity: "dispute", id: dispute_id.into() })?.value)
    }

    /// The open disputes of a merchant (or of everyone, for the platform's queue).
    pub async fn merchant_disputes(&self, merchant_id: &str, limit: i64) -> Result<Vec<Dispute>> {
        self.read().await?.disputes_of_merchant(merchant_id, DateTime::<Utc>::UNIX_EPOCH, limit.clamp(1, 500)).await
    }
}

impl Market {
    async fn case_op(
        &self,
        case_id: &str,
        who: Who<'_>,
        op: impl Fn(&mut Case, &GovernanceConfig, DateTime<Utc>) -> Result<Step>,
    ) -> Result<Case> {
        let (case, timers) = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let mut v = tx
                    .case(case_id)
                    .await?
                    .ok_or_else(|| MarketError::NotFound { entity: "case", id: case_id.into() })?;
                let owns = match who {
                    Who::Buyer(b) => v.value.buyer_id == b,
                    Who::Merchant(m) => v.value.merchant_id == m,
                };
                if !owns {
                    return Err(MarketError::NotFound { entity: "case", id: case_id.into() });
                }
                let step = op(&mut v.value, &cfg, at)?;
                let line_no = line_no_of(&v.value.line_id)?;
                let timers = apply_step(&mut *tx, &mut v, line_no, step, &cfg, None, at).await?;
                tx.commit().await?;
                Ok((v.value, timers))
            })
            .await?;
        self.fire_now(timers).await;
        Ok(case)
    }

    /// A case deadline fired.
    pub(super) async fn case_deadline(&self, tx: &mut dyn StoreTx, case_id: &str, at: DateTime<Utc>) -> Result<()> {
        let cfg = config(tx).await?;
        let Some(mut v) = tx.case(case_id).await? else { return Ok(()) };
        let Some(due) = v.value.due else { return Ok(()) };
        if let Some(step) = v.value.fire(due.timer, at, &cfg.after_sale)? {
            let line_no = line_no_of(&v.value.line_id)?;
            // Gateway calls scheduled here are due now: the timer runner's next batch makes them.
            apply_step(tx, &mut v, line_no, step, &cfg, None, at).await?;
        }
        Ok(())
    }
}

/// A refund of `amount` made outside the market on `order_id` answers the open refund case it covers (the
/// oldest a refund that large settles): it concludes Refunded without a refund of its own, and its timers
/// stop. The refund itself is booked like any order refund. `None` when no case was waiting for it.
pub(in crate::market::service) async fn settle_case_refunded_outside(
    tx: &mut dyn StoreTx,
    order_id: &str,
    amount: Money,
    at: DateTime<Utc>,
) -> Result<Option<String>> {
    let cfg = config(tx).await?;
    for c in tx.cases_of_order(order_id).await? {
        if c.amount > amount || c.kind == CaseKind::Exchange || !c.state.is_open() {
            continue;
        }
        let Some(mut v) = tx.case(&c.id).await? else { continue };
        let Ok(step) = v.value.refunded_outside(at) else { continue };
        let line_no = line_no_of(&v.value.line_id)?;
        apply_step(tx, &mut v, line_no, step, &cfg, None, at).await?;
        return Ok(Some(c.id));
    }
    Ok(None)
}

fn line_no_of(line_id: &str) -> Result<i64> {
    line_id
        .rsplit_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| MarketError::invalid(format!("bad line id {line_id}")))
}

/// What a case needs to know about an order line, checked against the buyer when given.
pub(super) async fn case_line(
    tx: &mut dyn StoreTx,
    order_id: &str,
    line_no: i64,
    buyer: Option<&str>,
) -> Result<CaseLine> {
    let o = tx.order(order_id).await?.filter(|o| buyer.is_none_or(|b| o.buyer_openid == b));
    let o = o.ok_or_else(|| MarketError::NotFound { entity: "order", id: order_id.into() })?;
    if matches!(o.status, OrderStatus::PendingPayment | OrderStatus::Cancelled) {
        return Err(MarketError::NotEligible(format!("order {order_id} is {}", o.status)));
    }
    let lines = tx.order_lines(&o.merchant_id, order_id).await?;
    let l = lines
        .iter()
        .find(|l| l.line_no == line_no)
        .ok_or_else(|| MarketError::NotFound { entity: "order line", id: line_key(order_id, line_no) })?;
    let paid = l.line_total.checked_sub(l.discount)?;
    let (refunded, compensated) = match tx.settlement(order_id).await? {
        Some(s) => s
            .value
            .lines
            .iter()
            .find(|x| x.line_id == line_key(order_id, line_no))
            .map(|x| (x.refunded, x.compensated))
            .unwrap_or((Money::ZERO, Money::ZERO)),
        None => (Money::ZERO, Money::ZERO),
    };
    Ok(CaseLine {
        line_id: line_key(order_id, line_no),
        order_id: order_id.into(),
        merchant_id: o.merchant_id.clone(),
        buyer_id: o.buyer_openid.clone(),
        paid,
        refunded: refunded.checked_add(compensated)?,
        received_at: o.received_at,
        after_sale_closes_at: o.received_at.map(|r| r + Duration::days(o.after_sale_days)),
    })
}

/// Applies a case step in `tx`: timers, refunds, penalties, disputes; writes the case and its record.
#[allow(clippy::too_many_arguments)]
async fn apply_step(
    tx: &mut dyn StoreTx,
    v: &mut Versioned<Case>,
    line_no: i64,
    step: Step,
    cfg: &GovernanceConfig,
    basis: Option<&DeductionBasis>,
    at: DateTime<Utc>,
) -> Result<Vec<Timer>> {
    let case = v.value.clone();
    let mut timers = Vec::new();
    let mut refund_id = None;
    if case.due.is_none() {
        tx.cancel_timers(&case.id, TimerAction::Governance, at).await?;
    }
    for e in &step.effects {
        match e {
            CaseEffect::Schedule { at: due, .. } => {
                schedule(tx, "case", &case.id, &case.merchant_id, *due, at, true).await?;
            }
            CaseEffect::Refund { amount, payer } => {
                let (rid, t) = pay_buyer(
                    tx,
                    &case.order_id,
                    line_no,
                    &case.buyer_id,
                    *amount,
                    *payer,
                    &format!("case:{}", case.id),
                    basis,
                    cfg,
                    at,
                )
                .await?;
                refund_id = rid;
                timers.extend(t);
            }
            CaseEffect::MerchantOverdue { timer } => {
                let v = Violation {
                    rule_code: "after_sale_timeout".into(),
                    merchant_id: case.merchant_id.clone(),
                    key: format!("after_sale_timeout:{}:{}", case.id, timer),
                    order_id: Some(case.order_id.clone()),
                    buyer_id: Some(case.buyer_id.clone()),
                    order_amount: case.amount,
                    product_ids: vec![],
                    detail: format!("{timer} passed on case {}", case.id),
                    detected_at: at,
                };
                timers.extend(apply_violation(tx, v, cfg, crate::market::governance::Actor::Timer, at, None).await?.1);
            }
            CaseEffect::OpenDispute => {
                let d = Dispute::from_case(new_id(), &case, at)?;
                if tx.insert_dispute(&d, line_no).await? {
                    record_dispute(tx, &d, &Actor::Buyer(case.buyer_id.clone()), None).await?;
                }
            }
        }
    }
    // Compensation (deposit, platform) concludes the case when it is paid; note its payout id.
    won(tx.update_case(&case, refund_id.as_deref(), v.version).await?, "case")?;
    v.version += 1;
    let who = super::actor_of(step.transition.actor, &case.buyer_id, &case.merchant_id);
    record(
        tx,
        "case",
        &case.id,
        &case.merchant_id,
        &who,
        &step.transition,
        &format!("aftersale.{}", case.state),
        json!({ "case_id": case.id, "order_id": case.order_id, "line_id": case.line_id, "kind": case.kind,
                "state": case.state, "amount": case.amount, "why": step.transition.note }),
    )
    .await?;
    if !case.state.is_open() {
        timers.extend(on_case_closed(tx, &case.order_id, cfg, at).await?);
    }
    Ok(timers)
}

/// Pays a buyer `amount` for a line: a WeChat Pay refund of the payment (merchant pays), or
/// compensation out of the deposit (a deduction based on a decided dispute) or advanced by the
/// platform. Returns the market refund id (merchant refunds) and the gateway calls to fire.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pay_buyer(
    tx: &mut dyn StoreTx,
    order_id: &str,
    line_no: i64,
    buyer: &str,
    amount: Money,
    payer: Payer,
    reference: &str,
    basis: Option<&DeductionBasis>,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<(Option<String>, Vec<Timer>)> {
    let o = tx.order(order_id).await?.ok_or_else(|| MarketError::NotFound { entity: "order", id: order_id.into() })?;
    let m = o.merchant_id.clone();
    match payer {
        Payer::Merchant => {
            let group = tx
                .group(&o.group_id)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "checkout", id: o.group_id.clone() })?;
            let pay = tx
                .payment(&o.group_id)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "payment", id: o.group_id.clone() })?;
            let out_trade_no = if pay.mode == PayMode::Combine { o.id.clone() } else { group.id.clone() };
            let (timer, rid) = request_refund(
                tx,
                at,
                &group,
                Some(&o),
                out_trade_no,
                o.transaction_id.clone(),
                amount,
                reference,
                pay.mode,
            )
            .await?;
            refund_from_settlement(tx, order_id, &line_key(order_id, line_no), amount, &rid, cfg, at).await?;
            Ok((Some(rid), vec![timer]))
        }
        Payer::Deposit | Payer::Platform => {
            let buyer_acct = Account::BuyerRefundPayable(buyer.into());
            let mut from_platform = amount;
            if payer == Payer::Deposit {
                let basis = basis.ok_or_else(|| {
                    MarketError::NotEligible("a deposit pays only on a decided dispute or claim".into())
                })?;
                let d = ensure_deposit(tx, &m, cfg, at).await?;
                let bal = deposit_balance(tx, &m).await?;
                let plan = plan_deduction(&m, bal, amount, basis, Some((buyer, amount)), &cfg.deposit)?;
                if !plan.txn.is_empty() {
                    post(tx, &plan.txn.build(new_id(), at)?, cfg).await?;
                }
                from_platform = amount.checked_sub(plan.compensation)?;
                after_balance_change(tx, d, cfg, &Actor::Platform, at).await?;
            }
            if from_platform.is_positive() {
                // The platform advances what the deposit could not cover.
                let t = TxnBuilder::new(TxnKind::Refund, reference)
                    .transfer(Account::PlatformPenalty, buyer_acct, from_platform)
                    .build(new_id(), at)?;
                post(tx, &t, cfg).await?;
            }
            if let Some(mut s) = tx.settlement(order_id).await? {
                let key = line_key(order_id, line_no);
                if let Some(l) = s.value.lines.iter_mut().find(|l| l.line_id == key) {
                    l.compensated = l.compensated.checked_add(amount)?;
                }
                won(tx.update_settlement(&s.value, s.version).await?, "settlement")?;
            }
            let c = Compensation {
                id: new_id(),
                merchant_id: m.clone(),
                buyer_id: buyer.into(),
                amount,
                source: payer,
                reference: reference.into(),
                status: PayoutStatus::Requested,
                created_at: at,
                updated_at: at,
            };
            tx.insert_compensation(&c).await?;
            let t = schedule_call(tx, "compensation", &c.id, &m, at).await?;
            Ok((Some(c.id), vec![t]))
        }
    }
}

async fn record_dispute(tx: &mut dyn StoreTx, d: &Dispute, actor: &Actor, note: Option<&str>) -> Result<()> {
    let tr = crate::market::governance::Transition {
        from: None,
        to: d.state.to_string(),
        actor: crate::market::governance::Actor::Platform,
        at: d.decided_at.unwrap_or(d.opened_at),
        note: note.unwrap_or("opened").into(),
    };
    record(
        tx,
        "dispute",
        &d.id,
        &d.merchant_id,
        actor,
        &tr,
        &format!("dispute.{}", d.state),
        json!({ "dispute_id": d.id, "case_id": d.case_id, "kind": d.kind, "claim": d.claim, "decision": d.decision }),
    )
    .await
}

impl Market {
    /// A market refund was requested, succeeded or failed: a case's refund concludes the case; any
    /// other refund of a settled order (a cancellation) is booked against its settlement.
    pub(super) async fn on_refund(&self, refund_id: &str, event_type: &str) -> Result<()> {
        let timers = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let Some(r) = tx.refund(refund_id).await? else { return Ok(Vec::new()) };
                let Some(order_id) = r.order_id.clone() else { return Ok(Vec::new()) };
                let case = tx.case_of_refund(refund_id).await?;
                let buyer = tx.order(&order_id).await?.map(|o| o.buyer_openid).unwrap_or_default();
                let mut timers = Vec::new();
                match event_type {
                    "refund.requested" if case.is_none() => {
                        super::settlements::book_order_refund(&mut *tx, &order_id, r.amount, refund_id, &cfg, at)
                            .await?;
                    }
                    "refund.succeeded" => {
                        if tx.settlement(&order_id).await?.is_some() {
                            let t = TxnBuilder::new(TxnKind::RefundPaid, format!("order:{order_id}"))
                                .transfer(Account::BuyerRefundPayable(buyer), Account::Clearing, r.amount)
                                .build(format!("refund_paid:{refund_id}"), at)?;
                            post(&mut *tx, &t, &cfg).await?;
                        }
                        if let Some(mut v) = case
                            && v.value.state == CaseState::Refunding
                        {
                            let step = v.value.refund_succeeded(at)?;
                            let line_no = line_no_of(&v.value.line_id)?;
                            timers = apply_step(&mut *tx, &mut v, line_no, step, &cfg, None, at).await?;
                        }
                    }
                    _ => {}
                }
                tx.commit().await?;
                Ok(timers)
            })
            .await?;
        self.fire_now(timers).await;
        Ok(())
    }

    /// Concludes a compensation payout WeChat Pay confirmed (and the case it pays, if any).
    pub(super) async fn compensation_paid(&self, id: &str) -> Result<()> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            if compensation_paid_in(&mut *tx, id, &cfg, at).await? {
                tx.commit().await?;
            }
            Ok(())
        })
        .await
    }
}

/// Concludes a compensation payout in `tx`: Succeeded, its payable cleared, its case concluded. `false`
/// (nothing written) unless it was Requested.
pub(super) async fn compensation_paid_in(
    tx: &mut dyn StoreTx,
    id: &str,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<bool> {
    let Some(c) = tx.compensation(id).await? else { return Ok(false) };
    if c.status != PayoutStatus::Requested {
        return Ok(false);
    }
    let mut next = c.clone();
    next.status = PayoutStatus::Succeeded;
    next.updated_at = at;
    won(tx.update_compensation(&next, c.status).await?, "compensation")?;
    let t = TxnBuilder::new(TxnKind::RefundPaid, c.reference.clone())
        .transfer(Account::BuyerRefundPayable(c.buyer_id.clone()), Account::Clearing, c.amount)
        .build(format!("compensation_paid:{id}"), at)?;
    post(tx, &t, cfg).await?;
    if let Some(case_id) = c.reference.strip_prefix("case:")
        && let Some(mut v) = tx.case(case_id).await?
        && v.value.state == CaseState::Refunding
    {
        let step = v.value.refund_succeeded(at)?;
        let line_no = line_no_of(&v.value.line_id)?;
        apply_step(tx, &mut v, line_no, step, cfg, None, at).await?;
    }
    crate::market::service::Agg::new("compensation", id, Some(&c.merchant_id))
        .record(
            tx,
            at,
            &Actor::WechatPay,
            crate::market::service::Change::new("paid").states(c.status, next.status).event(
                "compensation.paid",
                json!({ "id": id, "buyer": c.buyer_id, "amount": c.amount, "source": c.source, "reference": c.reference }),
            ),
        )
        .await?;
    Ok(true)
}
