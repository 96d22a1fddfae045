//! Categories and their versioned rules.
//!
//! A category's rules (deposit, shipping SLA, auto-confirm, after-sale window, seven-day return,
//! commission) change over time; each change is a new version, and an order line keeps the version it
//! was sold under, so a rule change never touches existing orders.
//!
//! ```
//! use wxshop::market::{RuleSpec, SevenDayReturn};
//! let spec = RuleSpec::default();
//! assert_eq!((spec.ship_sla_hours, spec.auto_confirm_days, spec.after_sale_days), (48, 10, 7));
//! assert_eq!(spec.seven_day_return, SevenDayReturn::Required);
//! assert!(spec.validate().is_ok());
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{MarketError, Result};
use super::money::Money;

str_enum! {
    /// The seven-day no-reason return policy of a category (七天无理由).
    pub enum SevenDayReturn {
        /// Required by the platform.
        Required,
        /// The merchant may offer it.
        Optional,
        /// Allowed unless the goods were used (virtual categories only).
        UsedExcluded,
        /// Not available (custom-made, perishable…).
        NotSupported,
    }
}

/// A category of the platform tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Id.
    pub id: String,
    /// Parent category, if any.
    pub parent_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// The rule values of a category, without identity (what a publisher writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Deposit (保证金) a merchant must hold to sell in the category.
    pub deposit_required: Money,
    /// Hours after payment within which the merchant must ship (WeChat: 48 h).
    pub ship_sla_hours: i64,
    /// Days after shipping after which receipt is confirmed automatically (WeChat: 10 for express).
    pub auto_confirm_days: i64,
    /// Days after receipt during which after-sales can be opened (WeChat: at least 7).
    pub after_sale_days: i64,
    /// The seven-day return policy.
    pub seven_day_return: SevenDayReturn,
    /// Platform commission in basis points of the line total.
    pub commission_bps: i64,
}

impl Default for RuleSpec {
    fn default() -> Self {
        RuleSpec {
            deposit_required: Money::ZERO,
            ship_sla_hours: 48,
            auto_confirm_days: 10,
            after_sale_days: 7,
            seven_day_return: SevenDayReturn::Required,
            commission_bps: 0,
        }
    }
}

/// The most a commission may take: WeChat profit sharing lets receivers other than the merchant take
/// at most 30 % of an order.
pub const MAX_COMMISSION_BPS: i64 = 3_000;

impl RuleSpec {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.deposit_required.is_negative() {
            return Err(MarketError::invalid("deposit_required must not be negative"));
        }
        if self.ship_sla_hours <= 0 || self.auto_confirm_days <= 0 || self.after_sale_days < 0 {
            return Err(MarketError::invalid("ship_sla_hours and auto_confirm_days must be > 0, after_sale_days >= 0"));
        }
        if !(0..=MAX_COMMISSION_BPS).contains(&self.commission_bps) {
            return Err(MarketError::invalid(format!("commission_bps must be within 0..={MAX_COMMISSION_BPS}")));
        }
        Ok(())
    }
}

/// One published version of a category's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRule {
    /// The category.
    pub category_id: String,
    /// Version, from 1.
    pub version: i64,
    /// The values.
    pub spec: RuleSpec,
    /// When this version took effect.
    pub effective_from: DateTime<Utc>,
}
