//! Commission rules: global, category, merchant or product; basis points or a fixed amount per unit;
//! a minimum; the most specific rule wins; the winner is snapshotted on the order line.
//!
//! Specificity: product > merchant > category > global. Among rules of the same scope the higher
//! `priority` wins, then the oldest, then the smallest id, so resolution is deterministic. A line keeps
//! its [`CommissionSnapshot`]; later rule changes never touch it. A refund takes back commission in
//! proportion to the amount refunded.
//!
//! ```
//! use wxshop::market::Money;
//! use wxshop::market::governance::commission::{CommissionRule, LineRef, Rate, Scope, resolve};
//! let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let rules = vec![
//!     CommissionRule::new("g", Scope::Global, Rate::Bps(500), Money::ZERO, t0),
//!     CommissionRule::new("c", Scope::Category("food".into()), Rate::Bps(300), Money::fen(100), t0),
//! ];
//! let line = LineRef { product_id: "p1", merchant_id: "m1", category_id: "food" };
//! let snap = resolve(&rules, &line).unwrap();
//! assert_eq!(snap.rule_id, "c");
//! assert_eq!(snap.commission(Money::fen(10_000), 1).unwrap(), Money::fen(300));
//! assert_eq!(snap.commission(Money::fen(1_000), 1).unwrap(), Money::fen(100)); // the minimum
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::div_round;
use crate::market::Money;
use crate::market::error::{MarketError, Result};

/// WeChat profit sharing lets receivers other than the merchant take at most 30 % of an order.
pub const MAX_COMMISSION_BPS: i64 = 3_000;

/// Which lines a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Scope {
    /// Every line.
    Global,
    /// Lines of a category.
    Category(String),
    /// Lines of a merchant.
    Merchant(String),
    /// Lines of a product.
    Product(String),
}

impl Scope {
    /// Higher is more specific.
    pub fn specificity(&self) -> u8 {
        match self {
            Scope::Global => 0,
            Scope::Category(_) => 1,
            Scope::Merchant(_) => 2,
            Scope::Product(_) => 3,
        }
    }

    fn matches(&self, line: &LineRef<'_>) -> bool {
        match self {
            Scope::Global => true,
            Scope::Category(c) => c == line.category_id,
            Scope::Merchant(m) => m == line.merchant_id,
            Scope::Product(p) => p == line.product_id,
        }
    }
}

/// How much a rule takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Rate {
    /// Basis points of the line amount (0–3 000).
    Bps(i64),
    /// A fixed amount per unit.
    Fixed(Money),
}

/// A commission rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionRule {
    /// Id.
    pub id: String,
    /// Scope.
    pub scope: Scope,
    /// Rate.
    pub rate: Rate,
    /// The least commission per line.
    pub min: Money,
    /// Among rules of one scope, higher wins.
    pub priority: i64,
    /// Version (bumped on every change; the snapshot keeps it).
    pub version: i64,
    /// Disabled rules are ignored.
    pub enabled: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl CommissionRule {
    /// An enabled rule, version 1, priority 0.
    pub fn new(id: impl Into<String>, scope: Scope, rate: Rate, min: Money, created_at: DateTime<Utc>) -> Self {
        CommissionRule { id: id.into(), scope, rate, min, priority: 0, version: 1, enabled: true, created_at }
    }

    /// Checks the values (input from the platform's configuration route).
    pub fn validate(&self) -> Result<()> {
        match self.rate {
            Rate::Bps(b) if !(0..=MAX_COMMISSION_BPS).contains(&b) => {
                return Err(MarketError::invalid(format!("commission bps {b} outside 0..={MAX_COMMISSION_BPS}")));
            }
            Rate::Fixed(m) if m.is_negative() => return Err(MarketError::invalid("a fixed commission must be ≥ 0")),
            _ => {}
        }
        if self.min.is_negative() {
            return Err(MarketError::invalid("a minimum commission must be ≥ 0"));
        }
        if self.id.is_empty() {
            return Err(MarketError::invalid("a commission rule needs an id"));
        }
        Ok(())
    }
}

/// What resolution needs to know about a line.
#[derive(Debug, Clone, Copy)]
pub struct LineRef<'a> {
    /// Product.
    pub product_id: &'a str,
    /// Merchant.
    pub merchant_id: &'a str,
    /// Category.
    pub category_id: &'a str,
}

/// The rule a line was sold under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionSnapshot {
    /// The rule.
    pub rule_id: String,
    /// Its version.
    pub version: i64,
    /// Its scope.
    pub scope: Scope,
    /// Its rate.
    pub rate: Rate,
    /// Its minimum.
    pub min: Money,
}

impl CommissionSnapshot {
    /// No commission (no rule matched).
    pub fn none() -> Self {
        CommissionSnapshot {
            rule_id: String::new(),
            version: 0,
            scope: Scope::Global,
            rate: Rate::Bps(0),
            min: Money::ZERO,
        }
    }

    /// The commission on a line of `amount` for `quantity` units: the rate, at least the minimum, at most
    /// the amount.
    pub fn commission(&self, amount: Money, quantity: i64) -> Result<Money> {
        if !amount.is_positive() {
            return Ok(Money::ZERO);
        }
        let raw = match self.rate {
            Rate::Bps(b) => amount.bps(b)?,
            Rate::Fixed(m) => m.checked_mul(quantity.max(0))?,
        };
        Ok(raw.max(self.min).min(amount))
    }

    /// The commission left after `refunded` of `amount` went back to the buyer: the full commission in
    /// proportion to what remains, rounded half up (nothing once fully refunded).
    pub fn commission_after_refunds(&self, amount: Money, quantity: i64, refunded: Money) -> Result<Money> {
        let full = self.commission(amount, quantity)?;
        let remaining = amount.as_fen() - refunded.as_fen().clamp(0, amount.as_fen().max(0));
        if remaining <= 0 {
            return Ok(Money::ZERO);
        }
        if remaining == amount.as_fen() {
            return Ok(full);
        }
        Ok(Money::fen(div_round(full.as_fen() as i128 * remaining as i128, amount.as_fen() as i128) as i64))
    }
}

/// The winning rule for `line`, snapshotted (`None` if no enabled rule matches).
pub fn resolve(rules: &[CommissionRule], line: &LineRef<'_>) -> Option<CommissionSnapshot> {
    rules
        .iter()
        .filter(|r| r.enabled && r.scope.matches(line))
        .max_by(|a, b| {
            a.scope
                .specificity()
                .cmp(&b.scope.specificity())
                .then(a.priority.cmp(&b.priority))
                .then(b.created_at.cmp(&a.created_at))
                .then(b.id.cmp(&a.id))
        })
        .map(|r| CommissionSnapshot {
            rule_id: r.id.clone(),
            version: r.version,
            scope: r.scope.clone(),
            rate: r.rate,
            min: r.min,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn rules() -> Vec<CommissionRule> {
        vec![
            CommissionRule::new("global", Scope::Global, Rate::Bps(600), Money::ZERO, t0()),
            CommissionRule::new("cat", Scope::Category("c1".into()), Rate::Bps(500), Money::ZERO, t0()),
            CommissionRule::new("merchant", Scope::Merchant("m1".into()), Rate::Bps(400), Money::ZERO, t0()),
            CommissionRule::new(
                "product",
                Scope::Product("p1".into()),
                Rate::Fixed(Money::fen(150)),
                Money::ZERO,
                t0(),
            ),
        ]
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let r = rules();
        let pick = |p, m, c| resolve(&r, &LineRef { product_id: p, merchant_id: m, category_id: c }).unwrap().rule_id;
        assert_eq!(pick("p1", "m1", "c1"), "product");
        assert_eq!(pick("p2", "m1", "c1"), "merchant");
        assert_eq!(pick("p2", "m2", "c1"), "cat");
        assert_eq!(pick("p2", "m2", "c2"), "global");
        let mut none = rules();
        none.retain(|r| r.id != "global");
        assert_eq!(resolve(&none, &LineRef { product_id: "x", merchant_id: "y", category_id: "z" }), None);
    }

    #[test]
    fn ties_go_to_priority_then_the_oldest() {
        let mut a = CommissionRule::new(
            "a",
            Scope::Category("c".into()),
            Rate::Bps(100),
            Money::ZERO,
            t0() + Duration::days(1),
        );
        let b = CommissionRule::new("b", Scope::Category("c".into()), Rate::Bps(200), Money::ZERO, t0());
        let line = LineRef { product_id: "p", merchant_id: "m", category_id: "c" };
        assert_eq!(resolve(&[a.clone(), b.clone()], &line).unwrap().rule_id, "b");
        a.priority = 1;
        assert_eq!(resolve(&[a.clone(), b.clone()], &line).unwrap().rule_id, "a");
        a.enabled = false;
        assert_eq!(resolve(&[a, b], &line).unwrap().rule_id, "b");
    }

    #[test]
    fn commission_amounts_with_minimum_fixed_and_refunds() {
        let bps = CommissionSnapshot { rate: Rate::Bps(500), min: Money::fen(200), ..CommissionSnapshot::none() };
        assert_eq!(bps.commission(Money::fen(10_000), 2).unwrap(), Money::fen(500));
        assert_eq!(bps.commission(Money::fen(1_000), 2).unwrap(), Money::fen(200));
        assert_eq!(bps.commission(Money::fen(150), 1).unwrap(), Money::fen(150)); // never above the amount
        let fixed = CommissionSnapshot { rate: Rate::Fixed(Money::fen(150)), ..CommissionSnapshot::none() };
        assert_eq!(fixed.commission(Money::fen(10_000), 3).unwrap(), Money::fen(450));
        // 500 × 7 000 / 10 000 = 350; 500 × 3 333 / 10 000 = 166.65 → 167.
        assert_eq!(bps.commission_after_refunds(Money::fen(10_000), 2, Money::fen(3_000)).unwrap(), Money::fen(350));
        assert_eq!(bps.commission_after_refunds(Money::fen(10_000), 2, Money::fen(6_667)).unwrap(), Money::fen(167));
        assert_eq!(bps.commission_after_refunds(Money::fen(10_000), 2, Money::fen(10_000)).unwrap(), Money::ZERO);
        assert_eq!(bps.commission_after_refunds(Money::fen(10_000), 2, Money::ZERO).unwrap(), Money::fen(500));
    }

    #[test]
    fn validation_caps_bps_at_thirty_percent() {
        let mut r = CommissionRule::new("r", Scope::Global, Rate::Bps(3_000), Money::ZERO, t0());
        assert!(r.validate().is_ok());
        r.rate = Rate::Bps(3_001);
        assert!(r.validate().is_err());
        r.rate = Rate::Fixed(Money::fen(-1));
        assert!(r.validate().is_err());
    }
}
