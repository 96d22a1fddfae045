//! Checkout: one request, one payment, one [`CheckoutGroup`] holding one merchant order per merchant.
//!
//! A checkout is idempotent by key: the same key with the same request returns the same group, the same
//! key with a different request is [`MarketError::IdempotencyConflict`]. Planning ([`plan`]) is pure:
//! it prices the lines, checks purchase limits and who may sell, splits a platform discount across
//! merchants and lines with the largest-remainder method, and snapshots each line's category rule.
//!
//! ```
//! use wxshop::market::{CheckoutLine, CheckoutRequest};
//! let a = CheckoutRequest::new("openid-1", "key-1", vec![CheckoutLine::new("s2", 1), CheckoutLine::new("s1", 2)]);
//! let b = CheckoutRequest::new("openid-1", "key-1", vec![CheckoutLine::new("s1", 1), CheckoutLine::new("s2", 1), CheckoutLine::new("s1", 1)]);
//! assert_eq!(a.request_hash(), b.request_hash()); // same demand, same request
//! ```

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::catalog::{Sku, SkuOffer};
use super::category::CategoryRule;
use super::error::{MarketError, Result};
use super::merchant::Merchant;
use super::money::Money;

/// One line of a checkout request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutLine {
    /// SKU.
    pub sku_id: String,
    /// Units (> 0).
    pub qty: i64,
}

impl CheckoutLine {
    /// A line.
    pub fn new(sku_id: impl Into<String>, qty: i64) -> Self {
        CheckoutLine { sku_id: sku_id.into(), qty }
    }
}

/// A checkout request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    /// The paying buyer.
    pub buyer_openid: String,
    /// The client's idempotency key (1..=64 characters), unique per buyer.
    pub idempotency_key: String,
    /// Lines; several lines of one SKU are one demand.
    pub lines: Vec<CheckoutLine>,
    /// The total the buyer confirmed; checkout fails with [`MarketError::PriceChanged`] if it moved.
    #[serde(default)]
    pub expected_total: Option<Money>,
    /// A platform-funded discount, split across merchants and lines.
    #[serde(default)]
    pub discount: Money,
}

/// Most distinct lines per checkout.
pub const MAX_LINES: usize = 100;
/// Most units per SKU per checkout.
pub const MAX_QTY: i64 = 10_000;

impl CheckoutRequest {
    /// A request without discount or expected total.
    pub fn new(buyer: impl Into<String>, key: impl Into<String>, lines: Vec<CheckoutLine>) -> Self {
        CheckoutRequest {
            buyer_openid: buyer.into(),
            idempotency_key: key.into(),
            lines,
            expected_total: None,
            discount: Money::ZERO,
        }
    }

    /// Checks the shape of the request.
    pub fn validate(&self) -> Result<()> {
        if self.buyer_openid.is_empty() || self.buyer_openid.len() > 128 {
            return Err(MarketError::invalid("buyer_openid must be 1..=128 characters"));
        }
        if self.idempotency_key.is_empty() || self.idempotency_key.len() > 64 {
            return Err(MarketError::invalid("idempotency_key must be 1..=64 characters"));
        }
        if self.lines.is_empty() {
            return Err(MarketError::invalid("a checkout needs at least one line"));
        }
        if self.discount.is_negative() {
            return Err(MarketError::invalid("discount must not be negative"));
        }
        let agg = self.aggregated()?;
        if agg.len() > MAX_LINES {
            return Err(MarketError::invalid(format!("at most {MAX_LINES} distinct skus per checkout")));
        }
        if let Some((sku, _)) = agg.iter().find(|(_, q)| **q > MAX_QTY) {
            return Err(MarketError::invalid(format!("at most {MAX_QTY} units of {sku}")));
        }
        Ok(())
    }

    /// Quantities per SKU, sorted by SKU.
    pub fn aggregated(&self) -> Result<BTreeMap<String, i64>> {
        let mut m = BTreeMap::new();
        for l in &self.lines {
            if l.qty <= 0 {
                return Err(MarketError::invalid(format!("quantity of {} must be > 0", l.sku_id)));
            }
            if l.sku_id.is_empty() || l.sku_id.len() > 64 {
                return Err(MarketError::invalid("sku_id must be 1..=64 characters"));
            }
            let e: &mut i64 = m.entry(l.sku_id.clone()).or_default();
            *e = e.saturating_add(l.qty);
        }
        Ok(m)
    }

    /// SHA-256 (hex) of the canonical request: buyer, aggregated sorted demand, expected total and
    /// discount. Line order and line splitting do not change it.
    pub fn request_hash(&self) -> String {
        let agg = self.aggregated().unwrap_or_default();
        let mut canonical = self.buyer_openid.clone();
        for (sku, q) in agg {
            canonical.push_str(&format!("\n{sku}\t{q}"));
        }
        canonical.push_str(&format!(
            "\nexpected={:?}\ndiscount={}",
            self.expected_total.map(Money::as_fen),
            self.discount.as_fen()
        ));
        crate::crypto::sig::sha256_hex(&[canonical.as_bytes()])
    }
}

str_enum! {
    /// Where a checkout group (one payment) is.
    pub enum GroupStatus {
        /// Waiting for the buyer to pay.
        AwaitingPayment,
        /// Paid; its orders go on separately.
        Paid,
        /// The payment window closed; stock released.
        Expired,
        /// The buyer cancelled before paying; stock released.
        Cancelled,
    }
}

/// One checkout: one payment over one or more merchant orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutGroup {
    /// Id; also the WeChat Pay `out_trade_no` (or `combine_out_trade_no`).
    pub id: String,
    /// Buyer.
    pub buyer_openid: String,
    /// Status.
    pub status: GroupStatus,
    /// Sum of line totals.
    pub subtotal: Money,
    /// Platform discount.
    pub discount: Money,
    /// What the buyer pays: `subtotal − discount`, and the sum of the orders' totals.
    pub total: Money,
    /// Number of merchant orders.
    pub merchant_count: i64,
    /// When unpaid orders close.
    pub pay_deadline: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A planned order line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLine {
    /// The SKU sold.
    pub sku: Sku,
    /// Product title at sale.
    pub title: String,
    /// Category at sale.
    pub category_id: String,
    /// The rule version sold under.
    pub rule: CategoryRule,
    /// Units.
    pub qty: i64,
    /// `price × qty`.
    pub line_total: Money,
    /// This line's share of the discount.
    pub discount: Money,
    /// Platform commission on `line_total`.
    pub commission: Money,
}

/// A planned merchant order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOrder {
    /// The merchant.
    pub merchant: Merchant,
    /// Lines, by SKU.
    pub lines: Vec<PlannedLine>,
    /// Sum of line totals.
    pub subtotal: Money,
    /// Sum of line discounts.
    pub discount: Money,
    /// `subtotal − discount`.
    pub total: Money,
    /// Sum of line commissions.
    pub commission: Money,
    /// Strictest SLA of its lines.
    pub ship_sla_hours: i64,
    /// Auto-confirm days (longest of its lines).
    pub auto_confirm_days: i64,
    /// After-sale days (longest of its lines).
    pub after_sale_days: i64,
}

/// A planned checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One order per merchant, by merchant id.
    pub orders: Vec<PlannedOrder>,
    /// Sum of order subtotals.
    pub subtotal: Money,
    /// The discount.
    pub discount: Money,
    /// What the buyer pays.
    pub total: Money,
}

/// Prices and splits a request. `offers` and `rules` are what the store returned for the request's
/// SKUs and their categories (the current rule version).
pub fn plan(req: &CheckoutRequest, offers: &[SkuOffer], rules: &HashMap<String, CategoryRule>) -> Result<Plan> {
    let demand = req.aggregated()?;
    let by_id: HashMap<&str, &SkuOffer> = offers.iter().map(|o| (o.sku.id.as_str(), o)).collect();
    let mut per_merchant: BTreeMap<String, Vec<PlannedLine>> = BTreeMap::new();
    let mut merchants: HashMap<String, Merchant> = HashMap::new();
    for (sku_id, qty) in &demand {
        let offer = by_id.get(sku_id.as_str()).ok_or_else(|| MarketError::not_found("sku", sku_id))?;
        offer.merchant.require("sell")?;
        if !offer.is_buyable() {
            return Err(MarketError::Unavailable { sku_id: sku_id.clone() });
        }
        if let Some(limit) = offer.sku.purchase_limit
            && *qty > limit
        {
            return Err(MarketError::PurchaseLimit { sku_id: sku_id.clone(), limit, requested: *qty });
        }
        let rule =
            rules.get(&offer.category_id).ok_or_else(|| MarketError::not_found("category rule", &offer.category_id))?;
        let line_total = offer.sku.price.checked_mul(*qty)?;
        let commission = line_total.bps(rule.spec.commission_bps)?;
        merchants.entry(offer.merchant.id.clone()).or_insert_with(|| offer.merchant.clone());
        per_merchant.entry(offer.merchant.id.clone()).or_default().push(PlannedLine {
            sku: offer.sku.clone(),
            title: offer.title.clone(),
            category_id: offer.category_id.clone(),
            rule: rule.clone(),
            qty: *qty,
            line_total,
            discount: Money::ZERO,
            commission,
        });
    }
    let subtotals: Vec<Money> =
        per_merchant.values().map(|ls| Money::sum(ls.iter().map(|l| l.line_total))).collect::<Result<_>>()?;
    let subtotal = Money::sum(subtotals.iter().copied())?;
    if let Some(expected) = req.expected_total {
        let actual = subtotal.checked_sub(req.discount)?;
        if expected != actual {
            return Err(MarketError::PriceChanged { expected: expected.as_fen(), actual: actual.as_fen() });
        }
    }
    if req.discount >= subtotal {
        return Err(MarketError::invalid("the discount must leave at least one fen to pay"));
    }
    let weights: Vec<i64> = subtotals.iter().map(|m| m.as_fen()).collect();
    let shares = req.discount.split(&weights)?;
    let mut orders = Vec::new();
    for ((merchant_id, mut lines), (sub, share)) in per_merchant.into_iter().zip(subtotals.into_iter().zip(shares)) {
        let lw: Vec<i64> = lines.iter().map(|l| l.line_total.as_fen()).collect();
        for (l, d) in lines.iter_mut().zip(share.split(&lw)?) {
            l.discount = d;
        }
        let total = sub.checked_sub(share)?;
        if !total.is_positive() {
            return Err(MarketError::invalid("every merchant order must cost at least one fen"));
        }
        let commission = Money::sum(lines.iter().map(|l| l.commission))?;
        let ship_sla_hours = lines.iter().map(|l| l.rule.spec.ship_sla_hours).min().unwrap_or(48);
        let auto_confirm_days = lines.iter().map(|l| l.rule.spec.auto_confirm_days).max().unwrap_or(10);
        let after_sale_days = lines.iter().map(|l| l.rule.spec.after_sale_days).max().unwrap_or(7);
        let merchant =
            merchants.remove(&merchant_id).ok_or_else(|| MarketError::not_found("merchant", &merchant_id))?;
        orders.push(PlannedOrder {
            merchant,
            lines,
            subtotal: sub,
            discount: share,
            total,
            commission,
            ship_sla_hours,
            auto_confirm_days,
            after_sale_days,
        });
    }
    let total = subtotal.checked_sub(req.discount)?;
    Ok(Plan { orders, subtotal, discount: req.discount, total })
}
