//! Platform governance: the rules that make a marketplace trustworthy for buyers and fair for merchants.
//!
//! Everything here is plain domain logic that knows no database: each aggregate is a struct with a state
//! machine, every operation takes `now` (from the injectable [`Clock`](crate::market::Clock)) and returns
//! the new state plus what must happen with it (ledger transactions, timers, refunds). The store persists
//! the same aggregates, one transaction per change.
//!
//! | module | what |
//! |---|---|
//! | [`ledger`] | double-entry ledger: immutable entries, reversals, balances as projections |
//! | [`deposit`] | merchant deposits (保证金): requirement, grace period, restriction, deductions, exit refund |
//! | [`review`] | buyer reviews: one per line after receipt, one follow-up, one reply, moderation and appeal |
//! | [`score`] | the merchant score (商户评分): a deterministic, smoothed, windowed projection with components |
//! | [`aftersale`] | after-sale cases (售后) with WeChat's 48 h / 7 d / 10 d / 7 d timers, and disputes |
//! | [`penalty`] | declarative penalty rules (处罚规则), points, thresholds, appeals that reverse exactly |
//! | [`commission`] | commission rules, most specific wins, snapshotted on the line |
//! | [`settlement`] | settlement per merchant order, profit sharing (分账) within WeChat's limits, promoters |
//!
//! ```
//! use wxshop::market::Money;
//! use wxshop::market::governance::ledger::{Account, Ledger, TxnBuilder, TxnKind};
//! let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let mut ledger = Ledger::default();
//! let sale = TxnBuilder::new(TxnKind::Sale, "order:o1")
//!     .transfer(Account::Clearing, Account::MerchantPending("m1".into()), Money::fen(10_000))
//!     .build("t1", t0)
//!     .unwrap();
//! ledger.post(sale).unwrap();
//! assert_eq!(ledger.balance(&Account::MerchantPending("m1".into())), Money::fen(10_000));
//! assert_eq!(ledger.total(), Money::ZERO);
//! ```

pub mod aftersale;
pub mod commission;
pub mod deposit;
pub mod error;
pub mod ledger;
pub mod penalty;
pub mod review;
pub mod score;
pub mod settlement;

#[allow(deprecated)]
pub use error::{GovError, GovResult};

use chrono::{DateTime, Utc};

use crate::market::error::{MarketError, Result};
use serde::{Deserialize, Serialize};

/// Every governance policy of a platform, stored as one document and changed by the platform's
/// configuration route. The defaults are WeChat's published rules where WeChat publishes one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GovernanceConfig {
    /// Deposits.
    pub deposit: deposit::DepositPolicy,
    /// Which ledger accounts may run into debt.
    pub ledger: ledger::NegativePolicy,
    /// Reviews.
    pub review: review::ReviewPolicy,
    /// The merchant score.
    pub score: score::ScorePolicy,
    /// After-sale timers and limits.
    pub after_sale: aftersale::AfterSaleRules,
    /// Penalty rules and thresholds.
    pub penalty: penalty::PenaltyPolicy,
    /// Settlement and profit sharing.
    pub settlement: settlement::SettlementPolicy,
    /// Promoter commission.
    pub promoter: settlement::PromoterPolicy,
    /// Whether carrier scans are recorded ([`market.governance().penalties().record_carrier_event`](crate::market::Market)), so
    /// that a shipment without one can be judged a fake shipment (the `fake_shipment` rule: no carrier
    /// scan within its window, 48 h by default, after "shipped").
    ///
    /// **Off by default, on purpose.** WeChat publishes the 48 h shipping SLA but no fake-shipment
    /// window (platform rules, penalty rules: "no carrier scan within X h"), and the check is only as
    /// good as the carrier feed behind it: a platform that does not forward its carriers' first scans
    /// would see every honest parcel judged fake 48 h after shipping, with a deposit deduction and a
    /// buyer compensation each. Turn it on together with a feed (the storefront example does: its
    /// `POST /admin/governance/orders/{id}/carrier-scan` route takes the tracking provider's first scan).
    /// Only shipments governance takes in (from the outbox) while it is on are judged.
    pub carrier_tracking: bool,
}

impl GovernanceConfig {
    /// Checks every policy (input from the network).
    pub fn validate(&self) -> Result<()> {
        self.penalty.validate()?;
        let d = &self.deposit;
        if d.grace_hours < 0 {
            return Err(MarketError::invalid("deposit grace_hours must be ≥ 0"));
        }
        if let deposit::Requirement::Fixed(m) = d.requirement
            && m.is_negative()
        {
            return Err(MarketError::invalid("a fixed deposit must be ≥ 0"));
        }
        let a = &self.after_sale;
        if a.merchant_response_hours <= 0
            || a.buyer_return_days <= 0
            || a.merchant_receive_days <= 0
            || a.escalation_days <= 0
            || a.max_open_per_line == 0
            || a.max_cases_per_line < a.max_open_per_line
        {
            return Err(MarketError::invalid("after-sale timers must be positive and limits at least 1"));
        }
        let r = &self.review;
        if r.window_days <= 0 || r.follow_up_days <= 0 {
            return Err(MarketError::invalid("review windows must be positive"));
        }
        let s = &self.score;
        if s.window_days <= 0
            || s.prior_weight < 0
            || s.dimension_bps.iter().any(|w| *w < 0)
            || s.component_bps.iter().any(|w| *w < 0)
            || s.dimension_bps.iter().sum::<i64>() == 0
            || s.component_bps.iter().sum::<i64>() == 0
            || s.response_limit_minutes <= s.response_target_minutes
        {
            return Err(MarketError::invalid("score window, weights and response limits are out of range"));
        }
        let st = &self.settlement;
        if !(0..=commission::MAX_COMMISSION_BPS).contains(&st.share_cap_bps)
            || !(1..=180).contains(&st.backstop_days)
            || st.backstop_margin_hours < 0
        {
            return Err(MarketError::invalid("share cap within 0..=3000 bps, backstop within 1..=180 days"));
        }
        let p = &self.promoter;
        if !(0..=commission::MAX_COMMISSION_BPS).contains(&p.bps) || p.window_days <= 0 {
            return Err(MarketError::invalid("promoter bps within 0..=3000 and a positive window"));
        }
        Ok(())
    }
}

/// `n / d` rounded half up, for non-negative `n` and positive `d` (scores, ratios; never floats).
pub(crate) fn div_round(n: i128, d: i128) -> i128 {
    debug_assert!(d > 0);
    if n >= 0 { (n + d / 2) / d } else { -((-n + d / 2) / d) }
}

/// Who did something: recorded on every transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The buyer.
    Buyer,
    /// The merchant.
    Merchant,
    /// Platform staff.
    Platform,
    /// A durable timer (a deadline passed).
    Timer,
    /// The payment gateway (a refund or transfer result).
    Gateway,
}

/// One recorded state change of an aggregate (what the audit log keeps).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    /// The state before (`None` at creation).
    pub from: Option<String>,
    /// The state after.
    pub to: String,
    /// Who caused it.
    pub actor: Actor,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, in a few words (`"merchant_response_overdue"`).
    pub note: String,
}

#[cfg(test)]
mod tests;
