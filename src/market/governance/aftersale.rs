//! After-sale cases (售后) and platform disputes (纠纷单, 保障单), with WeChat's timers as rules.
//!
//! ```text
//! open ─▶ MerchantReview ─approve / 48 h timeout─▶ RefundOnly: Refunding ─gateway─▶ Refunded
//!                         │                       Return/Exchange: AwaitingReturn ─waybill─▶ ReturnInTransit
//!                         │                                  └─7 d timeout─▶ Closed            │
//!                         │     ReturnInTransit ─confirm / 10 d timeout─▶ Refunding | Reshipping ─ship─▶ Exchanged
//!                         └─reject─▶ Rejected ─escalate within 7 d─▶ Escalated ─decision─▶ Refunding | Closed
//!                                             └─7 d timeout─▶ Closed
//! ```
//!
//! Every deadline is a [`CaseTimer`]; a timer firing is an ordinary transition by [`Actor::Timer`],
//! recorded like any other. A firing that is early or stale (the case moved on) changes nothing, so the
//! store's timers can be at-least-once. The defaults are WeChat's (merchant answers in 48 h, buyer ships
//! the return in 7 days, merchant confirms the returned goods in 10 days, escalation within 7 days of a
//! rejection, at most 1 open and 5 total cases per line) and are all configurable.
//!
//! ```
//! use chrono::Duration;
//! use wxshop::market::Money;
//! use wxshop::market::governance::aftersale::{AfterSaleRules, Case, CaseKind, CaseLine, CaseState, CaseTimer};
//! let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let line = CaseLine {
//!     line_id: "l1".into(), order_id: "o1".into(), merchant_id: "m1".into(), buyer_id: "b1".into(),
//!     paid: Money::fen(5_000), refunded: Money::ZERO, received_at: Some(t0), after_sale_closes_at: Some(t0 + Duration::days(7)),
//! };
//! let rules = AfterSaleRules::default();
//! let (mut case, _) = Case::open("c1", &line, &[], CaseKind::RefundOnly, Money::fen(5_000), "破损", vec![], t0, &rules).unwrap();
//! // Nobody answered for 48 hours: approved by the timer, refund requested.
//! let step = case.fire(CaseTimer::MerchantResponse, t0 + Duration::hours(48), &rules).unwrap().unwrap();
//! assert_eq!(case.state, CaseState::Refunding);
//! assert_eq!(step.transition.note, "merchant_response_overdue");
//! ```

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::deposit::{BasisKind, DeductionBasis};
use super::{Actor, Transition};
use crate::market::Money;
use crate::market::error::{MarketError, Result};

/// The after-sale timers and limits (WeChat's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterSaleRules {
    /// Hours the merchant has to answer a request before it is approved (48).
    pub merchant_response_hours: i64,
    /// Days the buyer has to upload the return waybill before the case closes (7).
    pub buyer_return_days: i64,
    /// Days the merchant has to confirm the returned goods before they are accepted (10).
    pub merchant_receive_days: i64,
    /// Days after a rejection within which the buyer may escalate to a platform dispute (7).
    pub escalation_days: i64,
    /// Open cases per order line at a time (1).
    pub max_open_per_line: usize,
    /// Cases per order line in total (5).
    pub max_cases_per_line: usize,
}

impl Default for AfterSaleRules {
    fn default() -> Self {
        AfterSaleRules {
            merchant_response_hours: 48,
            buyer_return_days: 7,
            merchant_receive_days: 10,
            escalation_days: 7,
            max_open_per_line: 1,
            max_cases_per_line: 5,
        }
    }
}

str_enum! {
    /// The after-sale types of 微信小店.
    pub enum CaseKind {
        /// 仅退款.
        RefundOnly => "refund_only",
        /// 退货退款.
        ReturnRefund => "return_refund",
        /// 换货.
        Exchange => "exchange",
    }
}

str_enum! {
    /// Where a case stands.
    pub enum CaseState {
        /// Waiting for the merchant (48 h).
        MerchantReview => "merchant_review",
        /// Approved; waiting for the buyer's return waybill (7 d).
        AwaitingReturn => "awaiting_return",
        /// The goods are on their way back; waiting for the merchant (10 d).
        ReturnInTransit => "return_in_transit",
        /// The refund was requested from the payer.
        Refunding => "refunding",
        /// Refunded. Terminal.
        Refunded => "refunded",
        /// Exchange: the returned goods arrived; the merchant ships the replacement.
        Reshipping => "reshipping",
        /// Exchange done. Terminal.
        Exchanged => "exchanged",
        /// The merchant rejected; the buyer may escalate (7 d).
        Rejected => "rejected",
        /// A platform dispute is open.
        Escalated => "escalated",
        /// Closed without refund. Terminal.
        Closed => "closed",
    }
}

impl CaseState {
    /// Whether the case is still open (counts against the one-open-case limit).
    pub fn is_open(self) -> bool {
        !matches!(self, CaseState::Refunded | CaseState::Exchanged | CaseState::Closed)
    }
}

str_enum! {
    /// The durable timers of a case (the store's timer kinds).
    pub enum CaseTimer {
        /// The merchant did not answer: approved.
        MerchantResponse => "aftersale.merchant_response",
        /// The buyer did not ship the return: closed.
        BuyerReturn => "aftersale.buyer_return",
        /// The merchant did not confirm the returned goods: accepted.
        MerchantReceive => "aftersale.merchant_receive",
        /// The buyer did not escalate the rejection: closed.
        Escalation => "aftersale.escalation",
    }
}

str_enum! {
    /// Why a case closed without refund.
    pub enum CloseReason {
        /// The buyer withdrew it.
        Cancelled => "cancelled",
        /// The buyer did not upload the return waybill in time.
        ReturnNotShipped => "return_not_shipped",
        /// The buyer did not escalate the rejection in time.
        NotEscalated => "not_escalated",
        /// The platform decided for the merchant.
        DisputeDenied => "dispute_denied",
    }
}

str_enum! {
    /// Who pays a refund or compensation.
    pub enum Payer {
        /// The merchant's unsettled (or settled) funds: a WeChat Pay refund of the original payment.
        Merchant => "merchant",
        /// The merchant's deposit: a WeChat Pay deposit compensation.
        Deposit => "deposit",
        /// The platform advances it.
        Platform => "platform",
    }
}

/// A carrier and tracking number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waybill {
    /// Carrier code (WeChat's `delivery_id`, e.g. `SF`).
    pub company: String,
    /// Tracking number.
    pub number: String,
}

impl Waybill {
    /// Checks the fields (input from the network).
    pub fn validate(&self) -> Result<()> {
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if ok(&self.company) && ok(&self.number) {
            Ok(())
        } else {
            Err(MarketError::invalid(
                "a waybill needs a carrier code and a tracking number (1–64 of A–Z, 0–9, - and _)",
            ))
        }
    }
}

/// What a case needs to know about its order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseLine {
    /// The line.
    pub line_id: String,
    /// Its order.
    pub order_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The buyer.
    pub buyer_id: String,
    /// Paid for the line.
    pub paid: Money,
    /// Already refunded or compensated for the line, including refunds in flight.
    pub refunded: Money,
    /// When it was received (`None`: not yet).
    pub received_at: Option<DateTime<Utc>>,
    /// When its after-sale window closes (received + the category's after-sale days).
    pub after_sale_closes_at: Option<DateTime<Utc>>,
}

impl CaseLine {
    /// Paid − refunded.
    pub fn refundable(&self) -> Money {
        Money::fen(self.paid.as_fen().saturating_sub(self.refunded.as_fen()).max(0))
    }
}

/// The deadline the case is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// Which timer.
    pub timer: CaseTimer,
    /// When it fires.
    pub at: DateTime<Utc>,
}

/// Something the store must do after a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CaseEffect {
    /// Schedule the durable timer.
    Schedule {
        /// Which.
        timer: CaseTimer,
        /// When.
        at: DateTime<Utc>,
    },
    /// Pay the buyer.
    Refund {
        /// How much.
        amount: Money,
        /// From whom.
        payer: Payer,
    },
    /// The merchant let a deadline pass (feeds the after-sale-timeout penalty rule).
    MerchantOverdue {
        /// Which deadline.
        timer: CaseTimer,
    },
    /// Open a platform dispute for the case.
    OpenDispute,
}

/// The result of one operation: the recorded transition and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What changed.
    pub transition: Transition,
    /// What the store must do in the same transaction.
    pub effects: Vec<CaseEffect>,
}

/// An after-sale case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Id.
    pub id: String,
    /// The order.
    pub order_id: String,
    /// The line.
    pub line_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The buyer.
    pub buyer_id: String,
    /// Type.
    pub kind: CaseKind,
    /// State.
    pub state: CaseState,
    /// The refund asked (zero for an exchange).
    pub amount: Money,
    /// The buyer's reason.
    pub reason: String,
    /// Evidence (image references).
    pub evidence: Vec<String>,
    /// Why it closed.
    pub close_reason: Option<CloseReason>,
    /// The deadline being waited on.
    pub due: Option<Deadline>,
    /// The buyer's return shipment.
    pub return_waybill: Option<Waybill>,
    /// The merchant's replacement shipment.
    pub reship_waybill: Option<Waybill>,
    /// The merchant's reason to reject.
    pub reject_reason: Option<String>,
    /// When the merchant first answered.
    pub merchant_responded_at: Option<DateTime<Utc>>,
    /// Who pays the refund, once requested.
    pub payer: Option<Payer>,
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Every transition, oldest first.
    pub history: Vec<Transition>,
}

impl Case {
    /// Opens a case on `line`, whose existing cases are in `existing` states.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        id: impl Into<String>,
        line: &CaseLine,
        existing: &[CaseState],
        kind: CaseKind,
        amount: Money,
        reason: impl Into<String>,
        evidence: Vec<String>,
        now: DateTime<Utc>,
        rules: &AfterSaleRules,
    ) -> Result<(Case, Step)> {
        let open = existing.iter().filter(|s| s.is_open()).count();
        if open >= rules.max_open_per_line || existing.len() >= rules.max_cases_per_line {
            return Err(MarketError::CaseLimit { line_id: line.line_id.clone(), open, total: existing.len() });
        }
        match (line.received_at, line.after_sale_closes_at) {
            (Some(_), Some(closes)) if now >= closes => {
                return Err(MarketError::Window { what: "after-sale", at: closes });
            }
            (None, _) if kind != CaseKind::RefundOnly => {
                return Err(MarketError::NotEligible(format!("{kind} needs the goods received first")));
            }
            _ => {}
        }
        if kind == CaseKind::Exchange {
            if amount != Money::ZERO {
                return Err(MarketError::invalid("an exchange refunds nothing; amount must be 0"));
            }
        } else {
            if !amount.is_positive() {
                return Err(MarketError::invalid("a refund amount must be positive"));
            }
            let refundable = line.refundable();
            if amount > refundable {
                return Err(MarketError::RefundExceeds { requested: amount.as_fen(), refundable: refundable.as_fen() });
            }
        }
        let reason = reason.into();
        if reason.chars().count() > 500 || evidence.len() > 9 {
            return Err(MarketError::invalid("a reason has at most 500 characters and at most 9 pieces of evidence"));
        }
        let at = now + Duration::hours(rules.merchant_response_hours);
        let transition = Transition {
            from: None,
            to: CaseState::MerchantReview.to_string(),
            actor: Actor::Buyer,
            at: now,
            note: "opened".into(),
        };
        let case = Case {
            id: id.into(),
            order_id: line.order_id.clone(),
            line_id: line.line_id.clone(),
            merchant_id: line.merchant_id.clone(),
            buyer_id: line.buyer_id.clone(),
            kind,
            state: CaseState::MerchantReview,
            amount,
            reason,
            evidence,
            close_reason: None,
            due: Some(Deadline { timer: CaseTimer::MerchantResponse, at }),
            return_waybill: None,
            reship_waybill: None,
            reject_reason: None,
            merchant_responded_at: None,
            payer: None,
            opened_at: now,
            updated_at: now,
            history: vec![transition.clone()],
        };
        Ok((case, Step { transition, effects: vec![CaseEffect::Schedule { timer: CaseTimer::MerchantResponse, at }] }))
    }

    fn expect(&self, state: CaseState, action: &str) -> Result<()> {
        if self.state != state {
            return Err(MarketError::illegal("case", self.state, action));
        }
        Ok(())
    }

    /// An actor's move must come before the deadline it answers; after it, the timer decides.
    fn before_deadline(&self, timer: CaseTimer, now: DateTime<Utc>) -> Result<()> {
        match self.due {
            Some(d) if d.timer == timer && now >= d.at => {
                Err(MarketError::DeadlinePassed { what: timer.as_str().trim_start_matches("aftersale."), due: d.at })
            }
            _ => Ok(()),
        }
    }

    fn go(
        &mut self,
        to: CaseState,
        actor: Actor,
        now: DateTime<Utc>,
        note: &str,
        due: Option<(CaseTimer, Duration)>,
        mut effects: Vec<CaseEffect>,
    ) -> Step {
        let transition =
            Transition { from: Some(self.state.to_string()), to: to.to_string(), actor, at: now, note: note.into() };
        self.state = to;
        self.updated_at = now;
        self.due = due.map(|(timer, d)| Deadline { timer, at: now + d });
        if let Some(d) = self.due {
            effects.insert(0, CaseEffect::Schedule { timer: d.timer, at: d.at });
        }
        self.history.push(transition.clone());
        Step { transition, effects }
    }

    fn approved(
        &mut self,
        actor: Actor,
        now: DateTime<Utc>,
        note: &str,
        rules: &AfterSaleRules,
        mut effects: Vec<CaseEffect>,
    ) -> Step {
        match self.kind {
            CaseKind::RefundOnly => {
                self.payer = Some(Payer::Merchant);
                effects.push(CaseEffect::Refund { amount: self.amount, payer: Payer::Merchant });
                self.go(CaseState::Refunding, actor, now, note, None, effects)
            }
            CaseKind::ReturnRefund | CaseKind::Exchange => self.go(
                CaseState::AwaitingReturn,
                actor,
                now,
                note,
                Some((CaseTimer::BuyerReturn, Duration::days(rules.buyer_return_days))),
                effects,
            ),
        }
    }

    fn goods_accepted(&mut self, actor: Actor, now: DateTime<Utc>, note: &str, mut effects: Vec<CaseEffect>) -> Step {
        if self.kind == CaseKind::Exchange {
            self.go(CaseState::Reshipping, actor, now, note, None, effects)
        } else {
            self.payer = Some(Payer::Merchant);
            effects.push(CaseEffect::Refund { amount: self.amount, payer: Payer::Merchant });
            self.go(CaseState::Refunding, actor, now, note, None, effects)
        }
    }

    /// The merchant approves the request (before the 48 h deadline).
    pub fn approve(&mut self, now: DateTime<Utc>, rules: &AfterSaleRules) -> Result<Step> {
        self.expect(CaseState::MerchantReview, "approve")?;
        self.before_deadline(CaseTimer::MerchantResponse, now)?;
        self.merchant_responded_at = Some(now);
        Ok(self.approved(Actor::Merchant, now, "merchant_approved", rules, vec![]))
    }

    /// The merchant rejects the request (before the 48 h deadline); the buyer may escalate.
    pub fn reject(&mut self, reason: impl Into<String>, now: DateTime<Utc>, rules: &AfterSaleRules) -> Result<Step> {
        self.expect(CaseState::MerchantReview, "reject")?;
        self.before_deadline(CaseTimer::MerchantResponse, now)?;
        let reason = reason.into();
        if reason.trim().is_empty() {
            return Err(MarketError::invalid("a rejection needs a reason"));
        }
        self.merchant_responded_at = Some(now);
        self.reject_reason = Some(reason);
        let due = Some((CaseTimer::Escalation, Duration::days(rules.escalation_days)));
        Ok(self.go(CaseState::Rejected, Actor::Merchant, now, "merchant_rejected", due, vec![]))
    }

    /// The buyer uploads the return waybill (before the 7-day deadline).
    pub fn upload_return(&mut self, waybill: Waybill, now: DateTime<Utc>, rules: &AfterSaleRules) -> Result<Step> {
        self.expect(CaseState::AwaitingReturn, "upload_return")?;
        self.before_deadline(CaseTimer::BuyerReturn, now)?;
        waybill.validate()?;
        self.return_waybill = Some(waybill);
        let due = Some((CaseTimer::MerchantReceive, Duration::days(rules.merchant_receive_days)));
        Ok(self.go(CaseState::ReturnInTransit, Actor::Buyer, now, "return_shipped", due, vec![]))
    }

    /// The merchant confirms the returned goods (before the 10-day deadline).
    pub fn confirm_received(&mut self, now: DateTime<Utc>) -> Result<Step> {
        self.expect(CaseState::ReturnInTransit, "confirm_received")?;
        self.before_deadline(CaseTimer::MerchantReceive, now)?;
        Ok(self.goods_accepted(Actor::Merchant, now, "merchant_received", vec![]))
    }

    /// The merchant refuses the returned goods (before the 10-day deadline); the buyer may escalate.
    pub fn refuse_returned_goods(
        &mut self,
        reason: impl Into<String>,
        now: DateTime<Utc>,
        rules: &AfterSaleRules,
    ) -> Result<Step> {
        self.expect(CaseState::ReturnInTransit, "refuse_returned_goods")?;
        self.before_deadline(CaseTimer::MerchantReceive, now)?;
        self.reject_reason = Some(reason.into());
        let due = Some((CaseTimer::Escalation, Duration::days(rules.escalation_days)));
        Ok(self.go(CaseState::Rejected, Actor::Merchant, now, "returned_goods_refused", due, vec![]))
    }

    /// The merchant ships the replacement of an exchange.
    pub fn ship_replacement(&mut self, waybill: Waybill, now: DateTime<Utc>) -> Result<Step> {
        self.expect(CaseState::Reshipping, "ship_replacement")?;
        waybill.validate()?;
        self.reship_waybill = Some(waybill);
        Ok(self.go(CaseState::Exchanged, Actor::Merchant, now, "replacement_shipped", None, vec![]))
    }

    /// The payer confirmed the refund.
    pub fn refund_succeeded(&mut self, now: DateTime<Utc>) -> Result<Step> {
        self.expect(CaseState::Refunding, "refund_succeeded")?;
        Ok(self.go(CaseState::Refunded, Actor::Gateway, now, "refund_succeeded", None, vec![]))
    }

    /// The merchant refunded the case outside the market (WeChat Pay's merchant platform): a case still
    /// waiting for the merchant, for the return, or rejected concludes Refunded, with no refund of its own.
    pub fn refunded_outside(&mut self, now: DateTime<Utc>) -> Result<Step> {
        if self.kind == CaseKind::Exchange
            || !matches!(
                self.state,
                CaseState::MerchantReview
                    | CaseState::AwaitingReturn
                    | CaseState::ReturnInTransit
                    | CaseState::Rejected
            )
        {
            return Err(MarketError::illegal("case", self.state, "refunded_outside"));
        }
        Ok(self.go(CaseState::Refunded, Actor::Gateway, now, "refunded_outside", None, vec![]))
    }

    /// The buyer escalates a rejection to a platform dispute (within 7 days).
    pub fn escalate(&mut self, now: DateTime<Utc>) -> Result<Step> {
        self.expect(CaseState::Rejected, "escalate")?;
        self.before_deadline(CaseTimer::Escalation, now)?;
        Ok(self.go(CaseState::Escalated, Actor::Buyer, now, "escalated", None, vec![CaseEffect::OpenDispute]))
    }

    /// The buyer withdraws the case (not once a refund is under way or a dispute is open).
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<Step> {
        if !matches!(self.state, CaseState::MerchantReview | CaseState::AwaitingReturn | CaseState::Rejected) {
            return Err(MarketError::illegal("case", self.state, "cancel"));
        }
        self.close_reason = Some(CloseReason::Cancelled);
        Ok(self.go(CaseState::Closed, Actor::Buyer, now, "cancelled", None, vec![]))
    }

    /// Applies a decided dispute: the buyer is paid by the payer, or the case closes.
    pub fn apply_dispute(&mut self, dispute: &Dispute, now: DateTime<Utc>) -> Result<Step> {
        self.expect(CaseState::Escalated, "apply_dispute")?;
        if dispute.case_id.as_deref() != Some(self.id.as_str()) {
            return Err(MarketError::invalid("the dispute is about another case"));
        }
        match &dispute.decision {
            Some(Decision::BuyerWins { refund, payer }) => {
                self.amount = *refund;
                self.payer = Some(*payer);
                let effects = vec![CaseEffect::Refund { amount: *refund, payer: *payer }];
                Ok(self.go(CaseState::Refunding, Actor::Platform, now, "dispute_buyer_wins", None, effects))
            }
            Some(Decision::MerchantWins) => {
                self.close_reason = Some(CloseReason::DisputeDenied);
                Ok(self.go(CaseState::Closed, Actor::Platform, now, "dispute_merchant_wins", None, vec![]))
            }
            None => Err(MarketError::illegal("dispute", dispute.state, "apply")),
        }
    }

    /// A durable timer fired. Early or stale firings (the case moved on, or a different deadline is
    /// pending) return `Ok(None)` and change nothing. `rules` sets the next deadline after an
    /// auto-approval.
    pub fn fire(&mut self, timer: CaseTimer, now: DateTime<Utc>, rules: &AfterSaleRules) -> Result<Option<Step>> {
        let Some(due) = self.due else { return Ok(None) };
        if due.timer != timer || now < due.at {
            return Ok(None);
        }
        let overdue = vec![CaseEffect::MerchantOverdue { timer }];
        let step = match (timer, self.state) {
            (CaseTimer::MerchantResponse, CaseState::MerchantReview) => {
                self.approved(Actor::Timer, now, "merchant_response_overdue", rules, overdue)
            }
            (CaseTimer::BuyerReturn, CaseState::AwaitingReturn) => {
                self.close_reason = Some(CloseReason::ReturnNotShipped);
                self.go(CaseState::Closed, Actor::Timer, now, "buyer_return_overdue", None, vec![])
            }
            (CaseTimer::MerchantReceive, CaseState::ReturnInTransit) => {
                self.goods_accepted(Actor::Timer, now, "merchant_receive_overdue", overdue)
            }
            (CaseTimer::Escalation, CaseState::Rejected) => {
                self.close_reason = Some(CloseReason::NotEscalated);
                self.go(CaseState::Closed, Actor::Timer, now, "escalation_window_closed", None, vec![])
            }
            _ => return Ok(None),
        };
        Ok(Some(step))
    }
}

str_enum! {
    /// What a platform dispute is about.
    pub enum DisputeKind {
        /// A rejected after-sale case (纠纷单).
        AfterSale => "after_sale",
        /// A guarantee claim for counterfeit goods (保障单), no case needed.
        Counterfeit => "counterfeit",
        /// A guarantee claim for damaged goods (保障单), no case needed.
        Damaged => "damaged",
    }
}

str_enum! {
    /// Where a dispute stands.
    pub enum DisputeState {
        /// Waiting for the platform.
        Open => "open",
        /// Decided; final.
        Decided => "decided",
    }
}

/// The platform's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// The buyer is paid `refund` by `payer`.
    BuyerWins {
        /// Amount.
        refund: Money,
        /// Who pays.
        payer: Payer,
    },
    /// The merchant wins; nothing is paid.
    MerchantWins,
}

/// A platform dispute or guarantee claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: DisputeKind,
    /// The escalated case (after-sale disputes).
    pub case_id: Option<String>,
    /// The order.
    pub order_id: String,
    /// The line.
    pub line_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The buyer.
    pub buyer_id: String,
    /// What the buyer claims.
    pub claim: Money,
    /// The buyer's reason.
    pub reason: String,
    /// State.
    pub state: DisputeState,
    /// The decision.
    pub decision: Option<Decision>,
    /// The platform's note.
    pub note: Option<String>,
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// Decided.
    pub decided_at: Option<DateTime<Utc>>,
}

impl Dispute {
    /// The dispute of an escalated case.
    pub fn from_case(id: impl Into<String>, case: &Case, now: DateTime<Utc>) -> Result<Dispute> {
        if case.state != CaseState::Escalated {
            return Err(MarketError::illegal("case", case.state, "dispute"));
        }
        Ok(Dispute {
            id: id.into(),
            kind: DisputeKind::AfterSale,
            case_id: Some(case.id.clone()),
            order_id: case.order_id.clone(),
            line_id: case.line_id.clone(),
            merchant_id: case.merchant_id.clone(),
            buyer_id: case.buyer_id.clone(),
            claim: case.amount,
            reason: case.reject_reason.clone().unwrap_or_default(),
            state: DisputeState::Open,
            decision: None,
            note: None,
            opened_at: now,
            decided_at: None,
        })
    }

    /// A guarantee claim (保障单): counterfeit or damaged goods, outside the after-sale window.
    pub fn guarantee_claim(
        id: impl Into<String>,
        kind: DisputeKind,
        line: &CaseLine,
        claim: Money,
        reason: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Result<Dispute> {
        if kind == DisputeKind::AfterSale {
            return Err(MarketError::invalid("a guarantee claim is counterfeit or damaged"));
        }
        if !claim.is_positive() || claim > line.refundable() {
            return Err(MarketError::RefundExceeds {
                requested: claim.as_fen(),
                refundable: line.refundable().as_fen(),
            });
        }
        Ok(Dispute {
            id: id.into(),
            kind,
            case_id: None,
            order_id: line.order_id.clone(),
            line_id: line.line_id.clone(),
            merchant_id: line.merchant_id.clone(),
            buyer_id: line.buyer_id.clone(),
            claim,
            reason: reason.into(),
            state: DisputeState::Open,
            decision: None,
            note: None,
            opened_at: now,
            decided_at: None,
        })
    }

    /// The platform decides; a refund is at most what is still refundable on the line.
    pub fn decide(
        &mut self,
        decision: Decision,
        refundable: Money,
        note: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Result<Transition> {
        if self.state != DisputeState::Open {
            return Err(MarketError::illegal("dispute", self.state, DisputeState::Decided));
        }
        if let Decision::BuyerWins { refund, .. } = &decision
            && (!refund.is_positive() || *refund > refundable)
        {
            return Err(MarketError::RefundExceeds { requested: refund.as_fen(), refundable: refundable.as_fen() });
        }
        self.decision = Some(decision);
        self.state = DisputeState::Decided;
        self.note = Some(note.into());
        self.decided_at = Some(now);
        Ok(Transition {
            from: Some(DisputeState::Open.to_string()),
            to: DisputeState::Decided.to_string(),
            actor: Actor::Platform,
            at: now,
            note: if self.merchant_lost() { "buyer_wins".into() } else { "merchant_wins".into() },
        })
    }

    /// Decided against the merchant.
    pub fn merchant_lost(&self) -> bool {
        matches!(self.decision, Some(Decision::BuyerWins { .. }))
    }

    /// The basis for a deposit deduction: only a dispute decided for the buyer and paid from the deposit.
    pub fn deduction_basis(&self) -> Result<DeductionBasis> {
        match &self.decision {
            Some(Decision::BuyerWins { payer: Payer::Deposit, .. }) => {
                let kind =
                    if self.kind == DisputeKind::AfterSale { BasisKind::Dispute } else { BasisKind::GuaranteeClaim };
                Ok(DeductionBasis::new(kind, &self.id))
            }
            _ => Err(MarketError::NotEligible("only a dispute decided for the buyer and paid from the deposit".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn line() -> CaseLine {
        CaseLine {
            line_id: "l1".into(),
            order_id: "o1".into(),
            merchant_id: "m1".into(),
            buyer_id: "b1".into(),
            paid: Money::fen(10_000),
            refunded: Money::fen(2_000),
            received_at: Some(t0()),
            after_sale_closes_at: Some(t0() + Duration::days(7)),
        }
    }

    fn open(kind: CaseKind, amount: i64) -> Case {
        Case::open("c1", &line(), &[], kind, Money::fen(amount), "坏了", vec![], t0(), &AfterSaleRules::default())
            .unwrap()
            .0
    }

    fn mins(m: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(m)
    }

    const H48: i64 = 48 * 60;

    #[test]
    fn merchant_answers_at_47h59m_but_the_timer_decides_at_48h01m() {
        let rules = AfterSaleRules::default();
        // 47 h 59 m: the timer is early (no-op) and the merchant may still reject.
        let mut c = open(CaseKind::RefundOnly, 5_000);
        assert_eq!(c.fire(CaseTimer::MerchantResponse, mins(H48 - 1), &rules).unwrap(), None);
        assert_eq!(c.state, CaseState::MerchantReview);
        c.reject("已发货", mins(H48 - 1), &rules).unwrap();
        assert_eq!(c.state, CaseState::Rejected);
        // The stale timer firing later changes nothing.
        assert_eq!(c.fire(CaseTimer::MerchantResponse, mins(H48 + 1), &rules).unwrap(), None);
        // 48 h 01 m: the merchant is too late; the timer approves and requests the refund.
        let mut c = open(CaseKind::RefundOnly, 5_000);
        let e = c.approve(mins(H48 + 1), &rules).unwrap_err();
        assert!(matches!(e, MarketError::DeadlinePassed { what: "merchant_response", due } if due == mins(H48)));
        let step = c.fire(CaseTimer::MerchantResponse, mins(H48 + 1), &rules).unwrap().unwrap();
        assert_eq!(c.state, CaseState::Refunding);
        assert_eq!(step.transition.actor, Actor::Timer);
        assert_eq!(
            step.effects,
            vec![
                CaseEffect::MerchantOverdue { timer: CaseTimer::MerchantResponse },
                CaseEffect::Refund { amount: Money::fen(5_000), payer: Payer::Merchant }
            ]
        );
        assert_eq!(c.history.len(), 2);
        assert_eq!(c.history[1].note, "merchant_response_overdue");
        // Firing twice is harmless.
        assert_eq!(c.fire(CaseTimer::MerchantResponse, mins(H48 + 2), &rules).unwrap(), None);
    }

    #[test]
    fn buyer_uploads_the_return_waybill_within_7_days_or_the_case_closes() {
        let rules = AfterSaleRules::default();
        let wb = Waybill { company: "SF".into(), number: "SF1234567890".into() };
        let approved_at = mins(60);
        let d7 = 7 * 24 * 60;
        let mut c = open(CaseKind::ReturnRefund, 8_000);
        let step = c.approve(approved_at, &rules).unwrap();
        assert_eq!(step.effects, vec![CaseEffect::Schedule { timer: CaseTimer::BuyerReturn, at: mins(60 + d7) }]);
        assert_eq!(c.fire(CaseTimer::BuyerReturn, mins(60 + d7 - 1), &rules).unwrap(), None);
        c.upload_return(wb.clone(), mins(60 + d7 - 1), &rules).unwrap();
        assert_eq!(c.state, CaseState::ReturnInTransit);

        let mut c = open(CaseKind::ReturnRefund, 8_000);
        c.approve(approved_at, &rules).unwrap();
        assert!(matches!(c.upload_return(wb, mins(60 + d7 + 1), &rules), Err(MarketError::DeadlinePassed { .. })));
        let step = c.fire(CaseTimer::BuyerReturn, mins(60 + d7 + 1), &rules).unwrap().unwrap();
        assert_eq!((c.state, c.close_reason), (CaseState::Closed, Some(CloseReason::ReturnNotShipped)));
        assert_eq!(step.transition.note, "buyer_return_overdue");
        assert!(step.effects.is_empty());
    }

    #[test]
    fn merchant_confirms_returned_goods_within_10_days_or_they_are_accepted() {
        let rules = AfterSaleRules::default();
        let wb = Waybill { company: "YTO".into(), number: "YT9".into() };
        let d10 = 10 * 24 * 60;
        let mut c = open(CaseKind::ReturnRefund, 8_000);
        c.approve(mins(0), &rules).unwrap();
        c.upload_return(wb.clone(), mins(100), &rules).unwrap();
        assert_eq!(c.fire(CaseTimer::MerchantReceive, mins(100 + d10 - 1), &rules).unwrap(), None);
        let step = c.confirm_received(mins(100 + d10 - 1)).unwrap();
        assert_eq!(step.effects, vec![CaseEffect::Refund { amount: Money::fen(8_000), payer: Payer::Merchant }]);
        assert_eq!(step.transition.actor, Actor::Merchant);

        let mut c = open(CaseKind::ReturnRefund, 8_000);
        c.approve(mins(0), &rules).unwrap();
        c.upload_return(wb, mins(100), &rules).unwrap();
        assert!(c.confirm_received(mins(100 + d10 + 1)).is_err());
        let step = c.fire(CaseTimer::MerchantReceive, mins(100 + d10 + 1), &rules).unwrap().unwrap();
        assert_eq!(c.state, CaseState::Refunding);
        assert_eq!(step.transition.note, "merchant_receive_overdue");
        assert!(step.effects.contains(&CaseEffect::MerchantOverdue { timer: CaseTimer::MerchantReceive }));
        c.refund_succeeded(mins(100 + d10 + 5)).unwrap();
        assert_eq!(c.state, CaseState::Refunded);
        assert!(!c.state.is_open());
    }

    #[test]
    fn escalation_within_7_days_of_a_rejection() {
        let rules = AfterSaleRules::default();
        let d7 = 7 * 24 * 60;
        let mut c = open(CaseKind::RefundOnly, 3_000);
        c.reject("no", mins(10), &rules).unwrap();
        assert_eq!(c.fire(CaseTimer::Escalation, mins(10 + d7 - 1), &rules).unwrap(), None);
        let step = c.escalate(mins(10 + d7 - 1)).unwrap();
        assert_eq!(step.effects, vec![CaseEffect::OpenDispute]);
        let mut d = Dispute::from_case("d1", &c, mins(10 + d7)).unwrap();
        assert_eq!(d.claim, Money::fen(3_000));
        // The platform cannot award more than is refundable.
        assert!(
            d.decide(
                Decision::BuyerWins { refund: Money::fen(8_001), payer: Payer::Merchant },
                line().refundable(),
                "",
                mins(d7 * 2)
            )
            .is_err()
        );
        d.decide(
            Decision::BuyerWins { refund: Money::fen(3_000), payer: Payer::Deposit },
            line().refundable(),
            "ok",
            mins(d7 * 2),
        )
        .unwrap();
        assert!(d.merchant_lost());
        assert_eq!(d.deduction_basis().unwrap().reference(), "dispute:d1");
        let step = c.apply_dispute(&d, mins(d7 * 2)).unwrap();
        assert_eq!(step.effects, vec![CaseEffect::Refund { amount: Money::fen(3_000), payer: Payer::Deposit }]);

        let mut c = open(CaseKind::RefundOnly, 3_000);
        c.reject("no", mins(10), &rules).unwrap();
        assert!(matches!(c.escalate(mins(10 + d7 + 1)), Err(MarketError::DeadlinePassed { what: "escalation", .. })));
        c.fire(CaseTimer::Escalation, mins(10 + d7 + 1), &rules).unwrap().unwrap();
        assert_eq!(c.close_reason, Some(CloseReason::NotEscalated));
    }

    #[test]
    fn merchant_win_closes_the_case_and_gives_no_deduction_basis() {
        let rules = AfterSaleRules::default();
        let mut c = open(CaseKind::RefundOnly, 3_000);
        c.reject("no", mins(10), &rules).unwrap();
        c.escalate(mins(20)).unwrap();
        let mut d = Dispute::from_case("d1", &c, mins(30)).unwrap();
        d.decide(Decision::MerchantWins, line().refundable(), "fine", mins(40)).unwrap();
        assert!(d.deduction_basis().is_err());
        assert!(d.decide(Decision::MerchantWins, line().refundable(), "again", mins(41)).is_err());
        c.apply_dispute(&d, mins(40)).unwrap();
        assert_eq!((c.state, c.close_reason), (CaseState::Closed, Some(CloseReason::DisputeDenied)));
    }

    #[test]
    fn at_most_one_open_and_five_total_cases_per_line() {
        let rules = AfterSaleRules::default();
        let l = line();
        let open_one = |existing: &[CaseState]| {
            Case::open("c", &l, existing, CaseKind::RefundOnly, Money::fen(100), "", vec![], t0(), &rules)
        };
        assert!(matches!(open_one(&[CaseState::Rejected]), Err(MarketError::CaseLimit { open: 1, total: 1, .. })));
        assert!(open_one(&[CaseState::Closed; 4]).is_ok());
        assert!(matches!(open_one(&[CaseState::Closed; 5]), Err(MarketError::CaseLimit { open: 0, total: 5, .. })));
    }

    #[test]
    fn refund_at_most_paid_minus_refunded_and_only_inside_the_window() {
        let rules = AfterSaleRules::default();
        let l = line();
        let try_open = |kind, fen, now| Case::open("c", &l, &[], kind, Money::fen(fen), "", vec![], now, &rules);
        assert!(try_open(CaseKind::RefundOnly, 8_000, t0()).is_ok());
        assert!(matches!(
            try_open(CaseKind::RefundOnly, 8_001, t0()),
            Err(MarketError::RefundExceeds { requested: 8_001, refundable: 8_000 })
        ));
        assert!(try_open(CaseKind::RefundOnly, 0, t0()).is_err());
        assert!(try_open(CaseKind::Exchange, 1, t0()).is_err());
        assert!(try_open(CaseKind::Exchange, 0, t0()).is_ok());
        let close = t0() + Duration::days(7);
        assert!(try_open(CaseKind::ReturnRefund, 100, close - Duration::minutes(1)).is_ok());
        assert!(matches!(
            try_open(CaseKind::ReturnRefund, 100, close),
            Err(MarketError::Window { what: "after-sale", .. })
        ));
        let unreceived = CaseLine { received_at: None, after_sale_closes_at: None, ..line() };
        assert!(
            Case::open("c", &unreceived, &[], CaseKind::RefundOnly, Money::fen(1), "", vec![], close, &rules).is_ok()
        );
        assert!(
            Case::open("c", &unreceived, &[], CaseKind::ReturnRefund, Money::fen(1), "", vec![], t0(), &rules).is_err()
        );
    }

    #[test]
    fn exchange_goes_through_reshipping() {
        let rules = AfterSaleRules::default();
        let mut c = open(CaseKind::Exchange, 0);
        c.approve(mins(1), &rules).unwrap();
        c.upload_return(Waybill { company: "SF".into(), number: "1".into() }, mins(2), &rules).unwrap();
        let step = c.confirm_received(mins(3)).unwrap();
        assert!(step.effects.is_empty());
        assert_eq!(c.state, CaseState::Reshipping);
        assert!(c.ship_replacement(Waybill { company: "".into(), number: "1".into() }, mins(4)).is_err());
        c.ship_replacement(Waybill { company: "SF".into(), number: "2".into() }, mins(4)).unwrap();
        assert_eq!(c.state, CaseState::Exchanged);
        assert_eq!(
            c.history.iter().map(|t| t.to.as_str()).collect::<Vec<_>>(),
            ["merchant_review", "awaiting_return", "return_in_transit", "reshipping", "exchanged"]
        );
    }

    #[test]
    fn configured_rules_move_the_deadlines() {
        let rules = AfterSaleRules { merchant_response_hours: 24, buyer_return_days: 3, ..AfterSaleRules::default() };
        let (mut c, step) =
            Case::open("c", &line(), &[], CaseKind::ReturnRefund, Money::fen(1), "", vec![], t0(), &rules).unwrap();
        assert_eq!(step.effects, vec![CaseEffect::Schedule { timer: CaseTimer::MerchantResponse, at: mins(24 * 60) }]);
        let step = c.fire(CaseTimer::MerchantResponse, mins(24 * 60), &rules).unwrap().unwrap();
        assert_eq!(
            step.effects[0],
            CaseEffect::Schedule { timer: CaseTimer::BuyerReturn, at: mins(24 * 60 + 3 * 24 * 60) }
        );
    }

    #[test]
    fn guarantee_claims_skip_the_case() {
        let mut d =
            Dispute::guarantee_claim("g1", DisputeKind::Counterfeit, &line(), Money::fen(8_000), "假货", t0()).unwrap();
        assert!(Dispute::guarantee_claim("g2", DisputeKind::AfterSale, &line(), Money::fen(1), "", t0()).is_err());
        assert!(Dispute::guarantee_claim("g2", DisputeKind::Damaged, &line(), Money::fen(8_001), "", t0()).is_err());
        d.decide(Decision::BuyerWins { refund: Money::fen(8_000), payer: Payer::Deposit }, Money::fen(8_000), "", t0())
            .unwrap();
        assert_eq!(d.deduction_basis().unwrap().reference(), "guarantee_claim:g1");
    }
}
