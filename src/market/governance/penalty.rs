//! Penalty rules (处罚规则): declarative rules, points per period, thresholds, appeals.
//!
//! A [`PenaltyRule`] says how a violation is detected, how many points it costs, how much of the
//! 100-point score it takes (WeChat's `minusScore`) and which [`Action`]s follow. Points add up per
//! [`Period`]; crossing a [`Threshold`] triggers its actions too. Applying a penalty records every
//! [`Effect`] it had (the deduction transaction, the exact products delisted, the restriction ids), so an
//! upheld appeal reverses precisely those and nothing else; a rejected appeal is final.
//!
//! ```text
//! detected (objective rule) ─▶ Confirmed ─appeal─▶ Appealing ─▶ AppealUpheld (every effect reversed)
//! manual ─▶ PendingReview ─confirm─▶ Confirmed            └──▶ AppealRejected (final)
//!                         └─dismiss─▶ Dismissed
//! ```
//!
//! ```
//! use chrono::Duration;
//! use wxshop::market::Money;
//! use wxshop::market::governance::penalty::{PenaltyPolicy, ShipmentFacts, detect_late_shipment};
//! let paid = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let facts = ShipmentFacts {
//!     order_id: "o1".into(), merchant_id: "m1".into(), buyer_id: "b1".into(), amount: Money::fen(10_000),
//!     paid_at: paid, deadline: paid + Duration::hours(48), shipped_at: Some(paid + Duration::hours(49)),
//!     first_carrier_event_at: None, product_ids: vec!["p1".into()],
//! };
//! let v = detect_late_shipment(&facts, paid + Duration::hours(49)).unwrap();
//! assert_eq!(v.key, "late_shipment:o1");
//! assert_eq!(PenaltyPolicy::default().rule("late_shipment").unwrap().points, 2);
//! ```

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::deposit::{BasisKind, DeductionBasis, DepositPolicy, plan_deduction};
use super::ledger::{Account, TxnBuilder, TxnKind};
use super::{Actor, Transition};
use crate::market::Money;
use crate::market::error::{MarketError, Result};

/// How a rule's violations are found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detection {
    /// Not shipped by the shipping deadline (paid + the category's SLA, 48 h by default).
    LateShipment,
    /// Marked shipped, but no carrier update within `hours`.
    FakeShipment {
        /// Hours after "shipped" by which the carrier must have scanned the parcel.
        hours: i64,
    },
    /// The merchant let an after-sale deadline pass.
    AfterSaleTimeout,
    /// A dispute was decided against the merchant.
    DisputeLost,
    /// Filed by platform staff; needs confirmation.
    Manual,
}

impl Detection {
    /// Objective detections are confirmed when detected; manual ones wait for review.
    pub fn is_objective(&self) -> bool {
        !matches!(self, Detection::Manual)
    }
}

/// What a penalty or threshold does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Deduct a fixed amount from the deposit (to the platform).
    DepositDeduction {
        /// Amount.
        amount: Money,
    },
    /// Compensate the buyer of the order from the deposit: `bps` of the order amount, within
    /// `min..=max` (the common late-shipment compensation is 5 %, ¥3 to ¥100).
    BuyerCompensation {
        /// Basis points of the order amount.
        bps: i64,
        /// At least.
        min: Money,
        /// At most.
        max: Money,
    },
    /// Delist the products involved in the violation.
    Delist,
    /// Delist every listed product of the merchant.
    DelistAll,
    /// Restrict the merchant (no new listings, no payouts) for `days`.
    Restrict {
        /// Days.
        days: i64,
    },
    /// Suspend the merchant (no selling) until lifted.
    Suspend,
}

/// A declarative rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyRule {
    /// Stable code (`"late_shipment"`).
    pub code: String,
    /// The wording shown in the penalty log.
    pub name: String,
    /// How violations are found.
    pub detection: Detection,
    /// Points added per violation.
    pub points: i64,
    /// Points taken off the 100-point score.
    pub minus_score: i64,
    /// What follows each violation.
    pub actions: Vec<Action>,
}

/// Actions triggered when a period's points reach `points`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    /// The points that trigger it.
    pub points: i64,
    /// What follows.
    pub actions: Vec<Action>,
}

/// The period points accumulate over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "days", rename_all = "snake_case")]
pub enum Period {
    /// Points reset every 1 January (UTC).
    CalendarYear,
    /// The last N days.
    RollingDays(i64),
}

impl Period {
    /// The start of the period containing `now` (inclusive).
    pub fn start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Period::CalendarYear => Utc.with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0).single().unwrap_or(now),
            Period::RollingDays(d) => now - Duration::days(*d),
        }
    }
}

/// The platform's penalty policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyPolicy {
    /// The rules, by code.
    pub rules: Vec<PenaltyRule>,
    /// Thresholds, ascending.
    pub thresholds: Vec<Threshold>,
    /// The points period.
    pub period: Period,
    /// Days after confirmation within which the merchant may appeal.
    pub appeal_days: i64,
}

impl Default for PenaltyPolicy {
    /// Illustrative defaults: WeChat publishes the shipping SLA and the record shape, not the points;
    /// the 12/24/36 thresholds follow the common Chinese platform practice. Configure your own.
    fn default() -> Self {
        let compensation = Action::BuyerCompensation { bps: 500, min: Money::fen(300), max: Money::fen(10_000) };
        PenaltyPolicy {
            rules: vec![
                PenaltyRule {
                    code: "late_shipment".into(),
                    name: "未在承诺时间内发货".into(),
                    detection: Detection::LateShipment,
                    points: 2,
                    minus_score: 1,
                    actions: vec![compensation.clone()],
                },
                PenaltyRule {
                    code: "fake_shipment".into(),
                    name: "虚假发货".into(),
                    detection: Detection::FakeShipment { hours: 48 },
                    points: 6,
                    minus_score: 3,
                    actions: vec![compensation, Action::DepositDeduction { amount: Money::fen(5_000) }],
                },
                PenaltyRule {
                    code: "after_sale_timeout".into(),
                    name: "售后处理超时".into(),
                    detection: Detection::AfterSaleTimeout,
                    points: 1,
                    minus_score: 1,
                    actions: vec![],
                },
                PenaltyRule {
                    code: "dispute_lost".into(),
                    name: "纠纷判定商家责任".into(),
                    detection: Detection::DisputeLost,
                    points: 2,
                    minus_score: 2,
                    actions: vec![],
                },
                PenaltyRule {
                    code: "manual".into(),
                    name: "平台判定违规".into(),
                    detection: Detection::Manual,
                    points: 4,
                    minus_score: 2,
                    actions: vec![Action::Delist],
                },
            ],
            thresholds: vec![
                Threshold { points: 12, actions: vec![Action::Restrict { days: 7 }] },
                Threshold { points: 24, actions: vec![Action::Restrict { days: 14 }, Action::DelistAll] },
                Threshold { points: 36, actions: vec![Action::Suspend] },
            ],
            period: Period::CalendarYear,
            appeal_days: 7,
        }
    }
}

impl PenaltyPolicy {
    /// The rule with `code`.
    pub fn rule(&self, code: &str) -> Option<&PenaltyRule> {
        self.rules.iter().find(|r| r.code == code)
    }

    /// The first rule detected as `detection` (ignoring its parameters).
    pub fn rule_for(&self, detection: &Detection) -> Option<&PenaltyRule> {
        self.rules.iter().find(|r| std::mem::discriminant(&r.detection) == std::mem::discriminant(detection))
    }

    /// Checks the policy (input from the platform's configuration route).
    pub fn validate(&self) -> Result<()> {
        let mut codes = BTreeSet::new();
        for r in &self.rules {
            if r.code.is_empty() || !codes.insert(r.code.as_str()) {
                return Err(MarketError::invalid(format!("empty or duplicate rule code {:?}", r.code)));
            }
            if r.points < 0 || r.minus_score < 0 {
                return Err(MarketError::invalid(format!("rule {}: points and minus_score must be ≥ 0", r.code)));
            }
            check_actions(&r.actions)?;
        }
        let mut last = 0;
        for t in &self.thresholds {
            if t.points <= last {
                return Err(MarketError::invalid("thresholds must be positive and strictly ascending"));
            }
            last = t.points;
            check_actions(&t.actions)?;
        }
        if matches!(self.period, Period::RollingDays(d) if d <= 0) || self.appeal_days < 0 {
            return Err(MarketError::invalid("the period and the appeal window must be positive"));
        }
        Ok(())
    }
}

fn check_actions(actions: &[Action]) -> Result<()> {
    for a in actions {
        let ok = match a {
            Action::DepositDeduction { amount } => amount.is_positive(),
            Action::BuyerCompensation { bps, min, max } => {
                (0..=10_000).contains(bps) && !min.is_negative() && min <= max
            }
            Action::Restrict { days } => *days > 0,
            Action::Delist | Action::DelistAll | Action::Suspend => true,
        };
        if !ok {
            return Err(MarketError::invalid(format!("bad action {a:?}")));
        }
    }
    Ok(())
}

/// What the detectors read about one merchant order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentFacts {
    /// The merchant order.
    pub order_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The buyer.
    pub buyer_id: String,
    /// The amount paid.
    pub amount: Money,
    /// Paid.
    pub paid_at: DateTime<Utc>,
    /// Must ship by.
    pub deadline: DateTime<Utc>,
    /// Marked shipped.
    pub shipped_at: Option<DateTime<Utc>>,
    /// The carrier's first scan.
    pub first_carrier_event_at: Option<DateTime<Utc>>,
    /// The products of the order.
    pub product_ids: Vec<String>,
}

/// A detected violation, before it becomes a penalty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The rule.
    pub rule_code: String,
    /// The merchant.
    pub merchant_id: String,
    /// Dedupe key: one penalty per key (`"late_shipment:o1"`).
    pub key: String,
    /// The order, if any.
    pub order_id: Option<String>,
    /// The buyer to compensate, if any.
    pub buyer_id: Option<String>,
    /// The order amount (the compensation base).
    pub order_amount: Money,
    /// Products involved (the ones a Delist action takes down).
    pub product_ids: Vec<String>,
    /// What happened, for the log.
    pub detail: String,
    /// When it was detected.
    pub detected_at: DateTime<Utc>,
}

fn violation(code: &str, f: &ShipmentFacts, detail: String, now: DateTime<Utc>) -> Violation {
    Violation {
        rule_code: code.into(),
        merchant_id: f.merchant_id.clone(),
        key: format!("{code}:{}", f.order_id),
        order_id: Some(f.order_id.clone()),
        buyer_id: Some(f.buyer_id.clone()),
        order_amount: f.amount,
        product_ids: f.product_ids.clone(),
        detail,
        detected_at: now,
    }
}

/// Late shipment: shipped after the deadline, or not shipped and the deadline has passed.
pub fn detect_late_shipment(f: &ShipmentFacts, now: DateTime<Utc>) -> Option<Violation> {
    let late_by = match f.shipped_at {
        Some(s) if s > f.deadline => s - f.deadline,
        Some(_) => return None,
        None if now > f.deadline => now - f.deadline,
        None => return None,
    };
    Some(violation("late_shipment", f, format!("shipped {} min after the deadline", late_by.num_minutes()), now))
}

/// Fake shipment: marked shipped, and the carrier had not scanned the parcel `hours` later.
pub fn detect_fake_shipment(f: &ShipmentFacts, hours: i64, now: DateTime<Utc>) -> Option<Violation> {
    let shipped = f.shipped_at?;
    let limit = shipped + Duration::hours(hours);
    if now < limit || f.first_carrier_event_at.is_some_and(|t| t <= limit) {
        return None;
    }
    Some(violation("fake_shipment", f, format!("no carrier update within {hours} h of shipping"), now))
}

str_enum! {
    /// Where a penalty stands (WeChat's penalty-log states, plus review and dismissal).
    pub enum PenaltyStatus {
        /// A manual violation waiting for review.
        PendingReview => "pending_review",
        /// Confirmed; effects applied (WeChat status 2).
        Confirmed => "confirmed",
        /// Appealed, waiting (WeChat status 4). Still counts.
        Appealing => "appealing",
        /// Appeal rejected; final (WeChat status 5).
        AppealRejected => "appeal_rejected",
        /// Appeal upheld; every effect reversed (WeChat status 6).
        AppealUpheld => "appeal_upheld",
        /// Dismissed in review; never applied.
        Dismissed => "dismissed",
    }
}

impl PenaltyStatus {
    /// WeChat's numeric status in the penalty list, where it has one.
    pub fn wx_code(self) -> Option<i32> {
        match self {
            PenaltyStatus::Confirmed => Some(2),
            PenaltyStatus::Appealing => Some(4),
            PenaltyStatus::AppealRejected => Some(5),
            PenaltyStatus::AppealUpheld => Some(6),
            _ => None,
        }
    }

    /// Whether its points and score deduction count.
    pub fn counts(self) -> bool {
        matches!(self, PenaltyStatus::Confirmed | PenaltyStatus::Appealing | PenaltyStatus::AppealRejected)
    }
}

str_enum! {
    /// What a restriction blocks.
    pub enum RestrictionKind {
        /// No new listings, no payouts.
        Restricted => "restricted",
        /// No selling at all.
        Suspended => "suspended",
    }
}

/// One restriction of a merchant, with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    /// Id.
    pub id: String,
    /// The merchant.
    pub merchant_id: String,
    /// What it blocks.
    pub kind: RestrictionKind,
    /// What caused it (`"penalty:…"`, `"deposit"`).
    pub source: String,
    /// From.
    pub from: DateTime<Utc>,
    /// Until (`None`: until lifted).
    pub until: Option<DateTime<Utc>>,
}

impl Restriction {
    /// In force at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        now >= self.from && self.until.is_none_or(|u| now < u)
    }
}

/// One applied effect, recorded so that it can be reversed exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// The deposit was deducted by ledger transaction `txn_id`.
    DepositDeducted {
        /// The ledger transaction.
        txn_id: String,
        /// Taken from the deposit.
        amount: Money,
        /// Of which to the buyer.
        compensation: Money,
        /// The buyer compensated.
        buyer_id: Option<String>,
        /// Asked but not available.
        shortfall: Money,
    },
    /// These products were listed and are now delisted.
    Delisted {
        /// Exactly the products this penalty took down.
        product_ids: Vec<String>,
    },
    /// A restriction or suspension.
    Restricted {
        /// The restriction.
        restriction: Restriction,
    },
}

/// A penalty record (the merchant's penalty log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Penalty {
    /// Id (the log's complaint/record id).
    pub id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The rule.
    pub rule_code: String,
    /// The wording (the rule's name).
    pub reason: String,
    /// The violation.
    pub violation: Violation,
    /// Points added.
    pub points: i64,
    /// Score points taken (`minusScore`).
    pub minus_score: i64,
    /// State.
    pub status: PenaltyStatus,
    /// The thresholds this penalty crossed.
    pub thresholds_crossed: Vec<i64>,
    /// Every applied effect.
    pub effects: Vec<Effect>,
    /// The merchant's appeal.
    pub appeal_reason: Option<String>,
    /// The platform's note on the decision.
    pub decision_note: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Confirmed (effects applied).
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Appealed.
    pub appealed_at: Option<DateTime<Utc>>,
    /// Appeal or review decided.
    pub decided_at: Option<DateTime<Utc>>,
}

/// What confirming a penalty reads about the merchant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PenaltyContext {
    /// Points already counting in the period (without this penalty).
    pub points_before: i64,
    /// The deposit balance.
    pub deposit_balance: Money,
    /// The merchant's listed products.
    pub listed_products: Vec<String>,
}

/// What the store must apply when a penalty is confirmed or reversed.
#[derive(Debug, Clone, Default)]
pub struct PenaltyPlan {
    /// Ledger transactions (with ids already assigned by the caller's id function).
    pub txns: Vec<super::ledger::Txn>,
    /// Products to delist (confirm) or relist (reverse).
    pub products: Vec<String>,
    /// Restrictions to add (confirm).
    pub add_restrictions: Vec<Restriction>,
    /// Restriction ids to lift (reverse).
    pub lift_restrictions: Vec<String>,
}

/// The points that count in the period containing `now`.
pub fn points_in_period(penalties: &[Penalty], period: Period, now: DateTime<Utc>) -> i64 {
    let from = period.start(now);
    penalties
        .iter()
        .filter(|p| p.status.counts() && p.confirmed_at.is_some_and(|t| t >= from && t <= now))
        .map(|p| p.points)
        .sum()
}

impl Penalty {
    /// A penalty for `violation` under `rule`: PendingReview for manual rules, otherwise waiting for
    /// [`confirm`](Self::confirm) in the same transaction.
    pub fn new(id: impl Into<String>, violation: Violation, rule: &PenaltyRule, now: DateTime<Utc>) -> Result<Penalty> {
        if violation.rule_code != rule.code {
            return Err(MarketError::invalid(format!("violation of {} under rule {}", violation.rule_code, rule.code)));
        }
        Ok(Penalty {
            id: id.into(),
            merchant_id: violation.merchant_id.clone(),
            rule_code: rule.code.clone(),
            reason: rule.name.clone(),
            violation,
            points: rule.points,
            minus_score: rule.minus_score,
            status: PenaltyStatus::PendingReview,
            thresholds_crossed: vec![],
            effects: vec![],
            appeal_reason: None,
            decision_note: None,
            created_at: now,
            confirmed_at: None,
            appealed_at: None,
            decided_at: None,
        })
    }

    fn go(&mut self, to: PenaltyStatus, actor: Actor, now: DateTime<Utc>, note: &str) -> Transition {
        let from = self.status;
        self.status = to;
        Transition { from: Some(from.to_string()), to: to.to_string(), actor, at: now, note: note.into() }
    }

    /// The basis for a deposit deduction: only a confirmed (or appealing, or finally rejected) penalty.
    pub fn deduction_basis(&self) -> Result<DeductionBasis> {
        if !self.status.counts() {
            return Err(MarketError::NotEligible(format!("penalty {} is {}", self.id, self.status)));
        }
        Ok(DeductionBasis::new(BasisKind::Penalty, &self.id))
    }

    /// Confirms the penalty and plans its effects: the rule's actions, then the actions of every
    /// threshold its points cross. `next_id` names the ledger transactions and restrictions.
    #[allow(clippy::too_many_arguments)]
    pub fn confirm(
        &mut self,
        rule: &PenaltyRule,
        policy: &PenaltyPolicy,
        ctx: &PenaltyContext,
        deposit_policy: &DepositPolicy,
        actor: Actor,
        now: DateTime<Utc>,
        next_id: &mut dyn FnMut() -> String,
    ) -> Result<(PenaltyPlan, Transition)> {
        if self.status != PenaltyStatus::PendingReview {
            return Err(MarketError::illegal("penalty", self.status, PenaltyStatus::Confirmed));
        }
        let tr = self.go(PenaltyStatus::Confirmed, actor, now, "confirmed");
        self.confirmed_at = Some(now);
        let after = ctx.points_before + self.points;
        let crossed: Vec<&Threshold> =
            policy.thresholds.iter().filter(|t| ctx.points_before < t.points && t.points <= after).collect();
        self.thresholds_crossed = crossed.iter().map(|t| t.points).collect();
        let actions: Vec<&Action> = rule.actions.iter().chain(crossed.iter().flat_map(|t| t.actions.iter())).collect();

        let mut plan = PenaltyPlan::default();
        // One deposit deduction for all money actions.
        let mut fixed = Money::ZERO;
        let mut comp = Money::ZERO;
        for a in &actions {
            match a {
                Action::DepositDeduction { amount } => fixed = fixed.checked_add(*amount)?,
                Action::BuyerCompensation { bps, min, max } if self.violation.buyer_id.is_some() => {
                    let c = self.violation.order_amount.bps(*bps)?.max(*min).min(*max);
                    comp = comp.checked_add(c)?;
                }
                _ => {}
            }
        }
        let total = fixed.checked_add(comp)?;
        if total.is_positive() {
            let basis = self.deduction_basis()?;
            let buyer = self.violation.buyer_id.as_deref().filter(|_| comp.is_positive());
            let d = plan_deduction(
                &self.merchant_id,
                ctx.deposit_balance,
                total,
                &basis,
                buyer.map(|b| (b, comp)),
                deposit_policy,
            )?;
            if d.deducted.is_positive() {
                let txn_id = next_id();
                plan.txns.push(d.txn.build(txn_id.clone(), now)?);
                self.effects.push(Effect::DepositDeducted {
                    txn_id,
                    amount: d.deducted,
                    compensation: d.compensation,
                    buyer_id: buyer.map(str::to_string),
                    shortfall: d.shortfall,
                });
            } else {
                self.effects.push(Effect::DepositDeducted {
                    txn_id: String::new(),
                    amount: Money::ZERO,
                    compensation: Money::ZERO,
                    buyer_id: None,
                    shortfall: d.shortfall,
                });
            }
        }
        // Delisting: exactly the listed products this penalty takes down.
        let listed: BTreeSet<&String> = ctx.listed_products.iter().collect();
        let mut delist: BTreeSet<String> = BTreeSet::new();
        for a in &actions {
            match a {
                Action::Delist => {
                    delist.extend(self.violation.product_ids.iter().filter(|p| listed.contains(p)).cloned())
                }
                Action::DelistAll => delist.extend(listed.iter().map(|p| (*p).clone())),
                _ => {}
            }
        }
        if !delist.is_empty() {
            let ids: Vec<String> = delist.into_iter().collect();
            plan.products = ids.clone();
            self.effects.push(Effect::Delisted { product_ids: ids });
        }
        for a in &actions {
            let (kind, until) = match a {
                Action::Restrict { days } => (RestrictionKind::Restricted, Some(now + Duration::days(*days))),
                Action::Suspend => (RestrictionKind::Suspended, None),
                _ => continue,
            };
            let r = Restriction {
                id: next_id(),
                merchant_id: self.merchant_id.clone(),
                kind,
                source: format!("penalty:{}", self.id),
                from: now,
                until,
            };
            plan.add_restrictions.push(r.clone());
            self.effects.push(Effect::Restricted { restriction: r });
        }
        Ok((plan, tr))
    }

    /// Dismisses a manual violation in review.
    pub fn dismiss(&mut self, note: impl Into<String>, now: DateTime<Utc>) -> Result<Transition> {
        if self.status != PenaltyStatus::PendingReview {
            return Err(MarketError::illegal("penalty", self.status, PenaltyStatus::Dismissed));
        }
        self.decision_note = Some(note.into());
        self.decided_at = Some(now);
        Ok(self.go(PenaltyStatus::Dismissed, Actor::Platform, now, "dismissed"))
    }

    /// The merchant appeals, within the appeal window, once.
    pub fn appeal(
        &mut self,
        reason: impl Into<String>,
        now: DateTime<Utc>,
        policy: &PenaltyPolicy,
    ) -> Result<Transition> {
        if self.status != PenaltyStatus::Confirmed {
            return Err(MarketError::illegal("penalty", self.status, PenaltyStatus::Appealing));
        }
        let closes = self.confirmed_at.unwrap_or(self.created_at) + Duration::days(policy.appeal_days);
        if now >= closes {
            return Err(MarketError::Window { what: "appeal", at: closes });
        }
        let reason = reason.into();
        if reason.trim().is_empty() || reason.chars().count() > 1000 {
            return Err(MarketError::invalid("an appeal needs a reason of 1 to 1000 characters"));
        }
        self.appeal_reason = Some(reason);
        self.appealed_at = Some(now);
        Ok(self.go(PenaltyStatus::Appealing, Actor::Merchant, now, "appealed"))
    }

    /// The platform rejects the appeal; final.
    pub fn reject_appeal(&mut self, note: impl Into<String>, now: DateTime<Utc>) -> Result<Transition> {
        if self.status != PenaltyStatus::Appealing {
            return Err(MarketError::illegal("penalty", self.status, PenaltyStatus::AppealRejected));
        }
        self.decision_note = Some(note.into());
        self.decided_at = Some(now);
        Ok(self.go(PenaltyStatus::AppealRejected, Actor::Platform, now, "appeal_rejected"))
    }

    /// The platform upholds the appeal and plans the exact reversal of every effect: the deduction is
    /// reversed (or, when the buyer's compensation was already paid out, the platform refills the
    /// deposit by the same amount), the delisted products are relisted, the restrictions lifted.
    /// `compensation_paid` says whether the buyer's compensation already left the platform.
    pub fn uphold_appeal(
        &mut self,
        note: impl Into<String>,
        compensation_paid: bool,
        ledger_txn: Option<&super::ledger::Txn>,
        now: DateTime<Utc>,
        next_id: &mut dyn FnMut() -> String,
    ) -> Result<(PenaltyPlan, Transition)> {
        if self.status != PenaltyStatus::Appealing {
            return Err(MarketError::illegal("penalty", self.status, PenaltyStatus::AppealUpheld));
        }
        let mut plan = PenaltyPlan::default();
        for e in &self.effects {
            match e {
                Effect::DepositDeducted { txn_id, amount, compensation, .. } if amount.is_positive() => {
                    if compensation.is_positive() && compensation_paid {
                        let t = TxnBuilder::new(TxnKind::Reimbursement, format!("penalty:{}", self.id))
                            .transfer(
                                Account::PlatformPenalty,
                                Account::MerchantDeposit(self.merchant_id.clone()),
                                *amount,
                            )
                            .build(next_id(), now)?;
                        plan.txns.push(t);
                    } else {
                        let orig = ledger_txn.filter(|t| &t.id == txn_id).ok_or_else(|| MarketError::NotFound {
                            entity: "ledger transaction",
                            id: txn_id.clone(),
                        })?;
                        plan.txns.push(orig.reversal(next_id(), now));
                    }
                }
                Effect::DepositDeducted { .. } => {}
                Effect::Delisted { product_ids } => plan.products.extend(product_ids.iter().cloned()),
                Effect::Restricted { restriction } => plan.lift_restrictions.push(restriction.id.clone()),
            }
        }
        self.decision_note = Some(note.into());
        self.decided_at = Some(now);
        Ok((plan, self.go(PenaltyStatus::AppealUpheld, Actor::Platform, now, "appeal_upheld")))
    }

    /// The ledger transaction of this penalty's deduction, if any.
    pub fn deduction_txn_id(&self) -> Option<&str> {
        self.effects.iter().find_map(|e| match e {
            Effect::DepositDeducted { txn_id, amount, .. } if amount.is_positive() => Some(txn_id.as_str()),
            _ => None,
        })
    }
}

/// One row of the penalty log, shaped like WeChat's penalty list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyLogEntry {
    /// Record id.
    pub id: String,
    /// The violation wording.
    pub reason: String,
    /// The rule code.
    pub rule_code: String,
    /// The order, if any.
    pub order_id: Option<String>,
    /// Score points taken (`minusScore`).
    #[serde(rename = "minusScore")]
    pub minus_score: i64,
    /// Points added.
    pub points: i64,
    /// WeChat's status code (2, 4, 5, 6), if it has one.
    pub status: Option<i32>,
    /// Our status.
    pub state: PenaltyStatus,
    /// Confirmed.
    pub created_at: DateTime<Utc>,
}

impl From<&Penalty> for PenaltyLogEntry {
    fn from(p: &Penalty) -> Self {
        PenaltyLogEntry {
            id: p.id.clone(),
            reason: p.reason.clone(),
            rule_code: p.rule_code.clone(),
            order_id: p.violation.order_id.clone(),
            minus_score: p.minus_score,
            points: p.points,
            status: p.status.wx_code(),
            state: p.status,
            created_at: p.confirmed_at.unwrap_or(p.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn facts(shipped_after_min: Option<i64>) -> ShipmentFacts {
        ShipmentFacts {
            order_id: "o1".into(),
            merchant_id: "m1".into(),
            buyer_id: "b1".into(),
            amount: Money::fen(20_000),
            paid_at: t0(),
            deadline: t0() + Duration::hours(48),
            shipped_at: shipped_after_min.map(|m| t0() + Duration::minutes(m)),
            first_carrier_event_at: None,
            product_ids: vec!["p1".into(), "p2".into()],
        }
    }

    #[test]
    fn late_shipment_at_the_48h_boundary() {
        let h48 = 48 * 60;
        assert_eq!(detect_late_shipment(&facts(Some(h48 - 1)), t0() + Duration::days(3)), None);
        assert_eq!(detect_late_shipment(&facts(Some(h48)), t0() + Duration::days(3)), None);
        let v = detect_late_shipment(&facts(Some(h48 + 1)), t0() + Duration::days(3)).unwrap();
        assert_eq!((v.key.as_str(), v.detail.as_str()), ("late_shipment:o1", "shipped 1 min after the deadline"));
        // Not shipped: nothing at 47 h 59 m, a violation at 48 h 01 m.
        assert_eq!(detect_late_shipment(&facts(None), t0() + Duration::minutes(h48 - 1)), None);
        assert!(detect_late_shipment(&facts(None), t0() + Duration::minutes(h48 + 1)).is_some());
    }

    #[test]
    fn fake_shipment_is_no_carrier_update_within_x_hours() {
        let mut f = facts(Some(60));
        let shipped = t0() + Duration::minutes(60);
        assert_eq!(detect_fake_shipment(&f, 48, shipped + Duration::hours(48) - Duration::minutes(1)), None);
        assert!(detect_fake_shipment(&f, 48, shipped + Duration::hours(48)).is_some());
        f.first_carrier_event_at = Some(shipped + Duration::hours(47));
        assert_eq!(detect_fake_shipment(&f, 48, shipped + Duration::hours(100)), None);
        f.first_carrier_event_at = Some(shipped + Duration::hours(49));
        assert!(detect_fake_shipment(&f, 48, shipped + Duration::hours(100)).is_some());
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("id{n}")
        }
    }

    #[test]
    fn late_shipment_compensates_the_buyer_from_the_deposit() {
        let policy = PenaltyPolicy::default();
        let rule = policy.rule("late_shipment").unwrap();
        let v = detect_late_shipment(&facts(Some(49 * 60)), t0() + Duration::days(3)).unwrap();
        let mut p = Penalty::new("pen1", v, rule, t0()).unwrap();
        assert!(p.deduction_basis().is_err());
        let ctx = PenaltyContext {
            points_before: 0,
            deposit_balance: Money::fen(100_000),
            listed_products: vec!["p1".into()],
        };
        let (plan, tr) =
            p.confirm(rule, &policy, &ctx, &DepositPolicy::default(), Actor::Timer, t0(), &mut ids()).unwrap();
        assert_eq!(tr.to, "confirmed");
        // 5 % of ¥200 = ¥10 (within ¥3..¥100).
        assert_eq!(plan.txns.len(), 1);
        assert_eq!(plan.txns[0].deltas()[&Account::BuyerRefundPayable("b1".into())], 1_000);
        assert_eq!(plan.txns[0].deltas()[&Account::MerchantDeposit("m1".into())], -1_000);
        assert_eq!(
            p.effects,
            vec![Effect::DepositDeducted {
                txn_id: "id1".into(),
                amount: Money::fen(1_000),
                compensation: Money::fen(1_000),
                buyer_id: Some("b1".into()),
                shortfall: Money::ZERO
            }]
        );
        assert!(plan.products.is_empty() && plan.add_restrictions.is_empty());
        assert_eq!(PenaltyLogEntry::from(&p).status, Some(2));
        let json = serde_json::to_value(PenaltyLogEntry::from(&p)).unwrap();
        assert_eq!(json["minusScore"], 1);
    }

    #[test]
    fn compensation_is_clamped_to_min_and_max() {
        let policy = PenaltyPolicy::default();
        let rule = policy.rule("late_shipment").unwrap();
        for (amount, expect) in [(1_000, 300), (20_000, 1_000), (1_000_000, 10_000)] {
            let mut f = facts(Some(49 * 60));
            f.amount = Money::fen(amount);
            let v = detect_late_shipment(&f, t0()).unwrap();
            let mut p = Penalty::new("p", v, rule, t0()).unwrap();
            let ctx = PenaltyContext { deposit_balance: Money::fen(1_000_000), ..PenaltyContext::default() };
            let (plan, _) =
                p.confirm(rule, &policy, &ctx, &DepositPolicy::default(), Actor::Timer, t0(), &mut ids()).unwrap();
            assert_eq!(plan.txns[0].deltas()[&Account::BuyerRefundPayable("b1".into())], expect, "order {amount}");
        }
    }

    #[test]
    fn thresholds_trigger_when_points_cross_them() {
        let policy = PenaltyPolicy::default();
        let rule = policy.rule("fake_shipment").unwrap();
        let v = detect_fake_shipment(&facts(Some(0)), 48, t0() + Duration::days(3)).unwrap();
        let mut p = Penalty::new("pen", v, rule, t0()).unwrap();
        // 20 + 6 = 26: crosses 24 (restrict 14 d and delist all), not 36.
        let ctx = PenaltyContext {
            points_before: 20,
            deposit_balance: Money::fen(50_000),
            listed_products: vec!["p1".into(), "p9".into()],
        };
        let (plan, _) =
            p.confirm(rule, &policy, &ctx, &DepositPolicy::default(), Actor::Timer, t0(), &mut ids()).unwrap();
        assert_eq!(p.thresholds_crossed, vec![24]);
        assert_eq!(plan.products, vec!["p1".to_string(), "p9".to_string()]);
        assert_eq!(plan.add_restrictions.len(), 1);
        assert_eq!(plan.add_restrictions[0].until, Some(t0() + Duration::days(14)));
        assert_eq!(plan.add_restrictions[0].source, "penalty:pen");
        // 5 % of ¥200 = ¥10 compensation + ¥50 fixed.
        let d = plan.txns[0].deltas();
        assert_eq!(d[&Account::MerchantDeposit("m1".into())], -6_000);
        assert_eq!(d[&Account::PlatformPenalty], 5_000);
        // Exactly at a threshold counts as crossing it; starting at it does not.
        let mut p2 = Penalty::new("pen2", p.violation.clone(), rule, t0()).unwrap();
        let ctx = PenaltyContext { points_before: 30, ..PenaltyContext::default() };
        p2.confirm(rule, &policy, &ctx, &DepositPolicy::default(), Actor::Timer, t0(), &mut ids()).unwrap();
        assert_eq!(p2.thresholds_crossed, vec![36]);
        let mut p3 = Penalty::new("pen3", p.violation.clone(), rule, t0()).unwrap();
        let ctx = PenaltyContext { points_before: 36, ..PenaltyContext::default() };
        p3.confirm(rule, &policy, &ctx, &DepositPolicy::default(), Actor::Timer, t0(), &mut ids()).unwrap();
        assert!(p3.thresholds_crossed.is_empty());
    }

    #[test]
    fn appeal_window_and_final_rejection() {
        let policy = PenaltyPolicy::default();
        let rule = policy.rule("after_sale_timeout").unwrap();
        let v = Violation {
            rule_code: "after_sale_timeout".into(),
            merchant_id: "m1".into(),
            key: "k".into(),
            order_id: None,
            buyer_id: None,
            order_amount: Money::ZERO,
            product_ids: vec![],
            detail: String::new(),
            detected_at: t0(),
        };
        let mut p = Penalty::new("p", v, rule, t0()).unwrap();
        p.confirm(rule, &policy, &PenaltyContext::default(), &DepositPolicy::default(), Actor::Timer, t0(), &mut ids())
            .unwrap();
        assert!(p.effects.is_empty());
        assert!(matches!(p.appeal("x", t0() + Duration::days(7), &policy), Err(MarketError::Window { .. })));
        p.appeal("客户未联系", t0() + Duration::days(7) - Duration::minutes(1), &policy).unwrap();
        assert_eq!(p.status.wx_code(), Some(4));
        p.reject_appeal("证据不足", t0() + Duration::days(8)).unwrap();
        assert_eq!(p.status.wx_code(), Some(5));
        assert!(p.appeal("again", t0() + Duration::days(8), &policy).is_err());
        assert!(p.uphold_appeal("", false, None, t0(), &mut ids()).is_err());
        assert!(p.status.counts());
    }

    #[test]
    fn manual_violations_wait_for_review() {
        let policy = PenaltyPolicy::default();
        let rule = policy.rule("manual").unwrap();
        let v = Violation {
            rule_code: "manual".into(),
            merchant_id: "m1".into(),
            key: "manual:1".into(),
            order_id: None,
            buyer_id: None,
            order_amount: Money::ZERO,
            product_ids: vec!["p1".into(), "gone".into()],
            detail: "misleading listing".into(),
            detected_at: t0(),
        };
        let mut p = Penalty::new("p", v.clone(), rule, t0()).unwrap();
        p.dismiss("not a violation", t0()).unwrap();
        assert!(!p.status.counts());
        let mut p = Penalty::new("p", v, rule, t0()).unwrap();
        let ctx = PenaltyContext { listed_products: vec!["p1".into(), "p2".into()], ..PenaltyContext::default() };
        let (plan, _) =
            p.confirm(rule, &policy, &ctx, &DepositPolicy::default(), Actor::Platform, t0(), &mut ids()).unwrap();
        // Only the listed product involved is delisted.
        assert_eq!(plan.products, vec!["p1".to_string()]);
    }

    #[test]
    fn points_count_per_period() {
        let policy = PenaltyPolicy::default();
        let rule = policy.rule("late_shipment").unwrap();
        let mk = |id: &str, at: DateTime<Utc>, status| {
            let v = detect_late_shipment(&facts(Some(49 * 60)), at).unwrap();
            let mut p = Penalty::new(id, v, rule, at).unwrap();
            p.status = status;
            p.confirmed_at = Some(at);
            p
        };
        let jan = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let list = vec![
            mk("a", jan - Duration::seconds(1), PenaltyStatus::Confirmed),
            mk("b", jan, PenaltyStatus::Confirmed),
            mk("c", jan + Duration::days(3), PenaltyStatus::AppealUpheld),
            mk("d", jan + Duration::days(4), PenaltyStatus::Appealing),
        ];
        assert_eq!(points_in_period(&list, Period::CalendarYear, jan + Duration::days(10)), 4);
        assert_eq!(points_in_period(&list, Period::RollingDays(365), jan + Duration::days(10)), 6);
    }

    #[test]
    fn policy_validation() {
        assert!(PenaltyPolicy::default().validate().is_ok());
        let mut p = PenaltyPolicy::default();
        p.thresholds.reverse();
        assert!(p.validate().is_err());
        let mut p = PenaltyPolicy::default();
        p.rules[1].code = "late_shipment".into();
        assert!(p.validate().is_err());
        let mut p = PenaltyPolicy::default();
        p.rules[0].actions.push(Action::Restrict { days: 0 });
        assert!(p.validate().is_err());
    }
}
