//! Penalties: detection from marketplace facts, confirmation with every effect, appeals that reverse
//! them exactly, restrictions and the merchant status they imply.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::deposits::{after_balance_change, deposit_balance, ensure_deposit};
use super::status::sync_merchant_status;
use super::{config, post, record, schedule, schedule_call, won};
use crate::market::catalog::ProductStatus;
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::{Actor, Timer};
use crate::market::governance::aftersale::Payer;
use crate::market::governance::penalty::{
    Detection, Effect, Penalty, PenaltyContext, PenaltyLogEntry, ShipmentFacts, Violation, detect_fake_shipment,
    detect_late_shipment, points_in_period,
};
use crate::market::governance::settlement::{Compensation, PayoutStatus};
use crate::market::governance::{self as gov, GovernanceConfig, Transition};
use crate::market::money::Money;
use crate::market::order::OrderStatus;
use crate::market::service::handles::Penalties;
use crate::market::service::{Agg, Change, Market};
use crate::market::store::StoreTx;
use crate::market::store::governance::Versioned;

/// A merchant's penalty log, shaped like WeChat's (`currentScore` plus records with `minusScore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyLog {
    /// The merchant score now, hundredths of a point out of 100.
    #[serde(rename = "currentScore")]
    pub current_score: i64,
    /// Points counting in the current period.
    pub points: i64,
    /// Records, newest first.
    pub records: Vec<PenaltyLogEntry>,
}

impl Penalties<'_> {
    /// Files a manual violation (PendingReview until [`confirm_penalty`](crate::market::handles::Penalties::confirm_penalty)).
    pub async fn file_violation(
        &self,
        merchant_id: &str,
        rule_code: &str,
        detail: &str,
        order_id: Option<&str>,
        product_ids: Vec<String>,
    ) -> Result<Penalty> {
        if detail.trim().is_empty() || detail.chars().count() > 1000 || product_ids.len() > 100 {
            return Err(MarketError::invalid("a violation needs a detail of 1..=1000 characters and ≤ 100 products"));
        }
        let id = new_id();
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let rule = cfg
                .penalty
                .rule(rule_code)
                .ok_or_else(|| MarketError::NotFound { entity: "penalty rule", id: rule_code.into() })?;
            if rule.detection != Detection::Manual {
                return Err(MarketError::invalid(format!("rule {rule_code} is detected automatically")));
            }
            if tx.merchant(merchant_id).await?.is_none() {
                return Err(MarketError::NotFound { entity: "merchant", id: merchant_id.into() });
            }
            let v = Violation {
                rule_code: rule_code.into(),
                merchant_id: merchant_id.into(),
                key: format!("manual:{id}"),
                order_id: order_id.map(str::to_string),
                buyer_id: None,
                order_amount: Money::ZERO,
                product_ids: product_ids.clone(),
                detail: detail.into(),
                detected_at: at,
            };
            let (p, timers) = apply_violation(&mut *tx, v, &cfg, gov::Actor::Platform, at, Some(&id)).await?;
            let p = p.ok_or_else(|| MarketError::AlreadyDone("violation"))?;
            tx.commit().await?;
            debug_assert!(timers.is_empty());
            Ok(p)
        })
        .await
    }

    /// The platform confirms a manual violation: its effects apply.
    pub async fn confirm_penalty(&self, penalty_id: &str) -> Result<Penalty> {
        let (p, timers) = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let v = load(&mut *tx, penalty_id).await?;
                let out = confirm_in(&mut *tx, v, &cfg, gov::Actor::Platform, at).await?;
                tx.commit().await?;
                Ok(out)
            })
            .await?;
        self.fire_now(timers).await;
        Ok(p)
    }

    /// The platform dismisses a manual violation in review.
    pub async fn dismiss_penalty(&self, penalty_id: &str, note: &str) -> Result<Penalty> {
        self.penalty_step(penalty_id, |p, _, at| p.dismiss(note, at), &Actor::Platform, "penalty.dismissed").await
    }

    /// The merchant appeals a confirmed penalty (within the appeal window).
    pub async fn appeal_penalty(&self, merchant_id: &str, penalty_id: &str, reason: &str) -> Result<Penalty> {
        let actor = Actor::Merchant(merchant_id.into());
        self.penalty_step(
            penalty_id,
            |p, cfg, at| {
                if p.merchant_id != merchant_id {
                    return Err(MarketError::NotFound { entity: "penalty", id: penalty_id.into() });
                }
                p.appeal(reason, at, &cfg.penalty)
            },
            &actor,
            "penalty.appealed",
        )
        .await
    }

    /// The platform decides an appeal: upheld reverses every effect of the penalty exactly (deposit,
    /// delistings, restrictions; its points and score deduction stop counting); rejected is final.
    pub async fn decide_penalty_appeal(&self, penalty_id: &str, upheld: bool, note: &str) -> Result<Penalty> {
        if !upheld {
            return self
                .penalty_step(
                    penalty_id,
                    |p, _, at| p.reject_appeal(note, at),
                    &Actor::Platform,
                    "penalty.appeal_rejected",
                )
                .await;
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let mut v = load(&mut *tx, penalty_id).await?;
            let m = v.value.merchant_id.clone();
            let orig = match v.value.deduction_txn_id() {
                Some(id) => tx.ledger_txn(id).await?,
                None => None,
            };
            // Compensation promised to a buyer stays theirs: the platform refills the deposit instead.
            let committed = v
                .value
                .effects
                .iter()
                .any(|e| matches!(e, Effect::DepositDeducted { compensation, .. } if compensation.is_positive()));
            let (plan, tr) = v.value.uphold_appeal(note, committed, orig.as_ref(), at, &mut new_id)?;
            for t in &plan.txns {
                post(&mut *tx, t, &cfg).await?;
            }
            tx.delete_delistings(penalty_id).await?;
            for pid in &plan.products {
                relist(&mut *tx, &m, pid, penalty_id, at).await?;
            }
            for r in &plan.lift_restrictions {
                tx.lift_restriction(r, at).await?;
                tx.cancel_timers(r, crate::market::events::TimerAction::Governance, at).await?;
            }
            won(tx.update_penalty(&v.value, v.version).await?, "penalty")?;
            if !plan.txns.is_empty() {
                let d = ensure_deposit(&mut *tx, &m, &cfg, at).await?;
                after_balance_change(&mut *tx, d, &cfg, &Actor::Platform, at).await?;
            }
            sync_merchant_status(&mut *tx, &m, &cfg, at).await?;
            record_penalty(&mut *tx, &v.value, &Actor::Platform, &tr, "penalty.appeal_upheld").await?;
            tx.commit().await?;
            Ok(v.value)
        })
        .await
    }

    /// A penalty.
    pub async fn penalty(&self, penalty_id: &str) -> Result<Penalty> {
        Ok(load(&mut *self.read().await?, penalty_id).await?.value)
    }

    /// A merchant's penalty log with its current score and points.
    pub async fn penalty_log(&self, merchant_id: &str) -> Result<PenaltyLog> {
        let cfg = self.governance().governance_config().await?;
        let now = self.now();
        let list = self.read().await?.penalties_of_merchant(merchant_id, DateTime::<Utc>::UNIX_EPOCH, 1000).await?;
        let score = self.governance().reviews().merchant_score(merchant_id).await?;
        Ok(PenaltyLog {
            current_score: score.score,
            points: points_in_period(&list, cfg.penalty.period, now),
            records: list.iter().map(PenaltyLogEntry::from).collect(),
        })
    }

    /// A merchant's restrictions in force.
    pub async fn merchant_restrictions(&self, merchant_id: &str) -> Result<Vec<gov::penalty::Restriction>> {
        let now = self.now();
        Ok(self.read().await?.restrictions_of(merchant_id).await?.into_iter().filter(|r| r.active(now)).collect())
    }

    /// The carrier's first scan of an order (from logistics tracking); a shipment without one becomes a
    /// fake-shipment penalty when the rule's hours pass.
    pub async fn record_carrier_event(&self, order_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.retry(|| async {
            let mut tx = self.begin().await?;
            let o = tx
                .order(order_id)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "order", id: order_id.into() })?;
            tx.put_carrier_event(&o.merchant_id, order_id, at).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

impl Market {
    async fn penalty_step(
        &self,
        penalty_id: &str,
        step: impl Fn(&mut Penalty, &GovernanceConfig, DateTime<Utc>) -> Result<Transition>,
        actor: &Actor,
        event: &str,
    ) -> Result<Penalty> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let mut v = load(&mut *tx, penalty_id).await?;
            let tr = step(&mut v.value, &cfg, at)?;
            won(tx.update_penalty(&v.value, v.version).await?, "penalty")?;
            record_penalty(&mut *tx, &v.value, actor, &tr, event).await?;
            tx.commit().await?;
            Ok(v.value)
        })
        .await
    }

    /// `order.shipped` / `order.partially_shipped`: a late parcel is a late shipment; a full shipment
    /// starts the fake-shipment check.
    pub(super) async fn on_shipped(&self, order_id: &str, late: bool, fully: bool) -> Result<()> {
        let timers = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let Some(facts) = shipment_facts(&mut *tx, order_id).await? else { return Ok(Vec::new()) };
                let mut timers = Vec::new();
                if late {
                    let mut f = facts.clone();
                    f.shipped_at = Some(f.shipped_at.unwrap_or(at).max(f.deadline + Duration::milliseconds(1)));
                    if let Some(v) = detect_late_shipment(&f, at) {
                        timers = apply_violation(&mut *tx, v, &cfg, gov::Actor::Timer, at, None).await?.1;
                    }
                }
                if fully
                    && cfg.carrier_tracking
                    && let Some(rule) =
                        cfg.penalty.rules.iter().find(|r| matches!(r.detection, Detection::FakeShipment { .. }))
                    && let Detection::FakeShipment { hours } = rule.detection
                {
                    let shipped = facts.shipped_at.unwrap_or(at);
                    schedule(
                        &mut *tx,
                        "fake_shipment",
                        &format!("fake_shipment:{order_id}"),
                        &facts.merchant_id,
                        shipped + Duration::hours(hours),
                        at,
                        true,
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(timers)
            })
            .await?;
        self.fire_now(timers).await;
        Ok(())
    }

    /// `order.ship_overdue`: still unshipped at the deadline.
    pub(super) async fn on_ship_overdue(&self, order_id: &str) -> Result<()> {
        let timers = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                let Some(facts) = shipment_facts(&mut *tx, order_id).await? else { return Ok(Vec::new()) };
                let o = tx
                    .order(order_id)
                    .await?
                    .ok_or_else(|| MarketError::NotFound { entity: "order", id: order_id.into() })?;
                if !matches!(o.status, OrderStatus::Paid | OrderStatus::PartiallyShipped) {
                    return Ok(Vec::new());
                }
                // The market's timer fired at (or after) the deadline with the order unshipped.
                let when = at.max(facts.deadline + Duration::milliseconds(1));
                let mut timers = Vec::new();
                if let Some(v) = detect_late_shipment(&facts, when) {
                    timers = apply_violation(&mut *tx, v, &cfg, gov::Actor::Timer, at, None).await?.1;
                }
                tx.commit().await?;
                Ok(timers)
            })
            .await?;
        self.fire_now(timers).await;
        Ok(())
    }

    pub(super) async fn fake_shipment_deadline(
        &self,
        tx: &mut dyn StoreTx,
        order_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let cfg = config(tx).await?;
        if !cfg.carrier_tracking {
            return Ok(());
        }
        let Some(mut facts) = shipment_facts(tx, order_id).await? else { return Ok(()) };
        let Some(Detection::FakeShipment { hours }) =
            cfg.penalty.rules.iter().map(|r| r.detection.clone()).find(|d| matches!(d, Detection::FakeShipment { .. }))
        else {
            return Ok(());
        };
        facts.first_carrier_event_at = tx.carrier_event(order_id).await?;
        if let Some(v) = detect_fake_shipment(&facts, hours, at) {
            // Compensation calls are left to the timer runner (the next batch fires them).
            apply_violation(tx, v, &cfg, gov::Actor::Timer, at, None).await?;
        }
        Ok(())
    }

    pub(super) async fn restriction_deadline(
        &self,
        tx: &mut dyn StoreTx,
        merchant_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let cfg = config(tx).await?;
        for r in tx.restrictions_of(merchant_id).await? {
            if r.until.is_some_and(|u| u <= at) {
                tx.lift_restriction(&r.id, at).await?;
            }
        }
        sync_merchant_status(tx, merchant_id, &cfg, at).await
    }
}

async fn load(tx: &mut dyn StoreTx, id: &str) -> Result<Versioned<Penalty>> {
    tx.penalty(id).await?.ok_or_else(|| MarketError::NotFound { entity: "penalty", id: id.into() })
}

async fn shipment_facts(tx: &mut dyn StoreTx, order_id: &str) -> Result<Option<ShipmentFacts>> {
    let Some(o) = tx.order(order_id).await? else { return Ok(None) };
    let (Some(paid_at), Some(deadline)) = (o.paid_at, o.ship_deadline) else { return Ok(None) };
    let lines = tx.order_lines(&o.merchant_id, order_id).await?;
    let mut product_ids: Vec<String> = lines.iter().map(|l| l.product_id.clone()).collect();
    product_ids.dedup();
    Ok(Some(ShipmentFacts {
        order_id: o.id.clone(),
        merchant_id: o.merchant_id.clone(),
        buyer_id: o.buyer_openid.clone(),
        amount: o.total,
        paid_at,
        deadline,
        shipped_at: o.shipped_at,
        first_carrier_event_at: None,
        product_ids,
    }))
}

/// Turns a violation into a penalty (once per violation key): objective rules are confirmed at once.
/// Returns the penalty (None if the key already had one) and the gateway calls to fire after commit.
pub(super) async fn apply_violation(
    tx: &mut dyn StoreTx,
    v: Violation,
    cfg: &GovernanceConfig,
    actor: gov::Actor,
    at: DateTime<Utc>,
    id: Option<&str>,
) -> Result<(Option<Penalty>, Vec<Timer>)> {
    let Some(rule) = cfg.penalty.rule(&v.rule_code).cloned() else {
        tracing::warn!(rule = %v.rule_code, "no penalty rule configured; violation ignored");
        return Ok((None, Vec::new()));
    };
    let p = Penalty::new(id.map(str::to_string).unwrap_or_else(new_id), v, &rule, at)?;
    if !tx.insert_penalty(&p).await? {
        return Ok((None, Vec::new()));
    }
    let created = Transition { from: None, to: p.status.to_string(), actor, at, note: "detected".into() };
    let who = super::actor_of(actor, "", &p.merchant_id);
    record_penalty(tx, &p, &who, &created, "penalty.detected").await?;
    if !rule.detection.is_objective() {
        return Ok((Some(p), Vec::new()));
    }
    let (p, timers) = confirm_in(tx, Versioned { value: p, version: 1 }, cfg, actor, at).await?;
    Ok((Some(p), timers))
}

/// Confirms a penalty in `tx` and applies every effect.
async fn confirm_in(
    tx: &mut dyn StoreTx,
    mut v: Versioned<Penalty>,
    cfg: &GovernanceConfig,
    actor: gov::Actor,
    at: DateTime<Utc>,
) -> Result<(Penalty, Vec<Timer>)> {
    let m = v.value.merchant_id.clone();
    let rule = cfg
        .penalty
        .rule(&v.value.rule_code)
        .cloned()
        .ok_or_else(|| MarketError::NotFound { entity: "penalty rule", id: v.value.rule_code.clone() })?;
    let deposit = ensure_deposit(tx, &m, cfg, at).await?;
    let others = tx.penalties_of_merchant(&m, cfg.penalty.period.start(at) - Duration::days(1), i64::MAX).await?;
    let ctx = PenaltyContext {
        points_before: points_in_period(&others, cfg.penalty.period, at),
        deposit_balance: deposit_balance(tx, &m).await?,
        listed_products: tx.listed_products(&m).await?,
    };
    let (plan, tr) = v.value.confirm(&rule, &cfg.penalty, &ctx, &cfg.deposit, actor, at, &mut new_id)?;
    for t in &plan.txns {
        post(tx, t, cfg).await?;
    }
    for pid in &plan.products {
        force_delist(tx, &m, pid, &v.value.id, at).await?;
    }
    for r in &plan.add_restrictions {
        tx.insert_restriction(r).await?;
        if let Some(until) = r.until {
            schedule(tx, "restriction", &r.id, &m, until, at, false).await?;
        }
    }
    let mut timers = Vec::new();
    for e in &v.value.effects {
        if let Effect::DepositDeducted { compensation, buyer_id: Some(b), .. } = e
            && compensation.is_positive()
        {
            let c = Compensation {
                id: new_id(),
                merchant_id: m.clone(),
                buyer_id: b.clone(),
                amount: *compensation,
                source: Payer::Deposit,
                reference: format!("penalty:{}", v.value.id),
                status: PayoutStatus::Requested,
                created_at: at,
                updated_at: at,
            };
            tx.insert_compensation(&c).await?;
            timers.push(schedule_call(tx, "compensation", &c.id, &m, at).await?);
        }
    }
    won(tx.update_penalty(&v.value, v.version).await?, "penalty")?;
    v.version += 1;
    if !plan.txns.is_empty() {
        after_balance_change(tx, deposit, cfg, &Actor::Platform, at).await?;
    }
    sync_merchant_status(tx, &m, cfg, at).await?;
    let who = super::actor_of(actor, "", &m);
    record_penalty(tx, &v.value, &who, &tr, "penalty.confirmed").await?;
    Ok((v.value, timers))
}

async fn record_penalty(tx: &mut dyn StoreTx, p: &Penalty, actor: &Actor, tr: &Transition, event: &str) -> Result<()> {
    record(
        tx,
        "penalty",
        &p.id,
        &p.merchant_id,
        actor,
        tr,
        event,
        json!({ "penalty": PenaltyLogEntry::from(p), "merchant_id": p.merchant_id, "effects": p.effects }),
    )
    .await
}

async fn force_delist(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    product_id: &str,
    penalty_id: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let Some(p) = tx.product(product_id).await? else { return Ok(()) };
    tx.insert_delisting(merchant_id, product_id, penalty_id, at).await?;
    if !p.status.can_become(ProductStatus::ForceDelisted) {
        return Ok(());
    }
    let mut next = p.clone();
    next.status = ProductStatus::ForceDelisted;
    next.version = p.version + 1;
    next.updated_at = at;
    won(tx.update_product(&next, p.version).await?, "product")?;
    Agg::new("product", product_id, Some(merchant_id))
        .record(
            tx,
            at,
            &Actor::Platform,
            Change::new("force_delisted").states(p.status, next.status).reason(Some(penalty_id)).event(
                "product.force_delisted",
                json!({ "product_id": product_id, "merchant_id": merchant_id, "penalty_id": penalty_id }),
            ),
        )
        .await?;
    Ok(())
}

/// Puts a product a reversed penalty had taken down back on sale, unless another penalty still holds it.
async fn relist(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    product_id: &str,
    penalty_id: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    if tx.delisting_holds(merchant_id, product_id).await? > 0 {
        return Ok(());
    }
    let Some(p) = tx.product(product_id).await? else { return Ok(()) };
    if p.status != ProductStatus::ForceDelisted {
        return Ok(());
    }
    // ForceDelisted → Delisted → Listed: the reversal of a platform action the appeal annulled.
    let mut next = p.clone();
    next.status = ProductStatus::Listed;
    next.version = p.version + 1;
    next.updated_at = at;
    won(tx.update_product(&next, p.version).await?, "product")?;
    Agg::new("product", product_id, Some(merchant_id))
        .record(
            tx,
            at,
            &Actor::Platform,
            Change::new("relisted").states(p.status, next.status).reason(Some(penalty_id)).event(
                "product.listed",
                json!({ "product_id": product_id, "merchant_id": merchant_id, "penalty_id": penalty_id, "appeal_upheld": true }),
            ),
        )
        .await?;
    Ok(())
}
