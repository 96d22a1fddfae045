//! Carts: a guest cart by anonymous token, a buyer cart by openid, merged at login.
//!
//! A cart line keeps the price the buyer saw; viewing the cart re-prices it against the catalog and
//! reports every change (price, availability, capped quantity) once. Merging sums quantities, capped by
//! stock and purchase limits, and keeps the latest price snapshot.
//!
//! ```
//! use wxshop::market::{CartOwner, CartLine, Money, merge_lines};
//! let at = chrono::Utc::now();
//! let line = |sku: &str, qty, fen| CartLine { sku_id: sku.into(), merchant_id: "m".into(), qty, unit_price: Money::fen(fen), added_at: at, updated_at: at };
//! let (merged, changes) = merge_lines(&[line("a", 2, 100)], &[line("a", 3, 90), line("b", 1, 50)], |_| 4);
//! assert_eq!(merged.iter().map(|l| (l.sku_id.as_str(), l.qty)).collect::<Vec<_>>(), [("a", 4), ("b", 1)]);
//! assert_eq!(changes.len(), 1); // "a" was capped from 5 to 4
//! assert_eq!(CartOwner::guest("tok").key(), "guest:tok");
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{MarketError, Result};
use super::money::Money;

/// Whose cart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CartOwner {
    /// A visitor who has not logged in, by an anonymous token the client keeps.
    Guest(String),
    /// A logged-in buyer, by openid.
    Buyer(String),
}

impl CartOwner {
    /// A guest cart.
    pub fn guest(token: impl Into<String>) -> Self {
        CartOwner::Guest(token.into())
    }
    /// A buyer cart.
    pub fn buyer(openid: impl Into<String>) -> Self {
        CartOwner::Buyer(openid.into())
    }
    /// The stored key.
    pub fn key(&self) -> String {
        match self {
            CartOwner::Guest(t) => format!("guest:{t}"),
            CartOwner::Buyer(o) => format!("buyer:{o}"),
        }
    }
    /// Checks the token or openid (1..=128 printable ASCII characters).
    pub fn validate(&self) -> Result<()> {
        let v = match self {
            CartOwner::Guest(t) | CartOwner::Buyer(t) => t,
        };
        if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MarketError::invalid("cart owner must be 1..=128 printable ASCII characters"));
        }
        Ok(())
    }
}

/// A stored cart line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    /// SKU.
    pub sku_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// Units.
    pub qty: i64,
    /// The unit price the buyer last saw.
    pub unit_price: Money,
    /// First added.
    pub added_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Something that changed since the buyer last saw the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CartChange {
    /// The unit price changed.
    PriceChanged {
        /// SKU.
        sku_id: String,
        /// The price the buyer saw.
        old: Money,
        /// The price now.
        new: Money,
    },
    /// The quantity was lowered to what stock or the purchase limit allows.
    QuantityCapped {
        /// SKU.
        sku_id: String,
        /// What was asked.
        requested: i64,
        /// What is kept.
        capped_to: i64,
    },
    /// The SKU is no longer for sale (delisted, merchant not selling, sold out); the line stays but
    /// cannot be checked out.
    Unavailable {
        /// SKU.
        sku_id: String,
    },
}

/// A cart line as shown to the buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartItem {
    /// SKU.
    pub sku_id: String,
    /// Product.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// SKU attributes.
    pub attrs: BTreeMap<String, String>,
    /// Current unit price.
    pub unit_price: Money,
    /// Units.
    pub qty: i64,
    /// `unit_price × qty`.
    pub line_total: Money,
    /// Can be checked out now.
    pub available: bool,
}

/// The lines of one merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantCart {
    /// Merchant.
    pub merchant_id: String,
    /// Merchant name.
    pub merchant_name: String,
    /// Lines.
    pub items: Vec<CartItem>,
    /// Sum of the available lines.
    pub subtotal: Money,
}

/// A re-priced cart, grouped by merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartView {
    /// Groups, by merchant id.
    pub merchants: Vec<MerchantCart>,
    /// Sum of the available lines.
    pub total: Money,
    /// What changed since the buyer last looked.
    pub changes: Vec<CartChange>,
}

/// Merges a guest cart into a buyer cart: quantities of the same SKU are summed and capped by
/// `cap(sku)` (the smaller of available stock and purchase limit); the newer price snapshot wins.
/// Lines capped to zero are dropped. Returns the merged lines (sorted by SKU) and the caps applied.
pub fn merge_lines(
    buyer: &[CartLine],
    guest: &[CartLine],
    cap: impl Fn(&str) -> i64,
) -> (Vec<CartLine>, Vec<CartChange>) {
    let mut by_sku: BTreeMap<String, CartLine> = BTreeMap::new();
    for l in buyer.iter().chain(guest) {
        match by_sku.get_mut(&l.sku_id) {
            Some(e) => {
                e.qty = e.qty.saturating_add(l.qty);
                if l.updated_at >= e.updated_at {
                    e.unit_price = l.unit_price;
                    e.updated_at = l.updated_at;
                }
                e.added_at = e.added_at.min(l.added_at);
            }
            None => {
                by_sku.insert(l.sku_id.clone(), l.clone());
            }
        }
    }
    let mut changes = Vec::new();
    let mut out = Vec::new();
    for (sku, mut l) in by_sku {
        let c = cap(&sku).max(0);
        if l.qty > c {
            changes.push(CartChange::QuantityCapped { sku_id: sku.clone(), requested: l.qty, capped_to: c });
            l.qty = c;
        }
        if l.qty > 0 {
            out.push(l);
        }
    }
    (out, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, qty: i64, fen: i64, secs: i64) -> CartLine {
        let at = DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap();
        CartLine {
            sku_id: sku.into(),
            merchant_id: "m".into(),
            qty,
            unit_price: Money::fen(fen),
            added_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn merge_sums_caps_and_prefers_the_newer_price() {
        let buyer = [line("a", 1, 100, 0), line("c", 5, 10, 0)];
        let guest = [line("a", 2, 120, 10), line("b", 9, 50, 10)];
        let (m, ch) = merge_lines(&buyer, &guest, |s| match s {
            "a" => 10,
            "b" => 3,
            _ => 0,
        });
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].sku_id.as_str(), m[0].qty, m[0].unit_price), ("a", 3, Money::fen(120)));
        assert_eq!((m[1].sku_id.as_str(), m[1].qty), ("b", 3));
        assert_eq!(
            ch,
            vec![
                CartChange::QuantityCapped { sku_id: "b".into(), requested: 9, capped_to: 3 },
                CartChange::QuantityCapped { sku_id: "c".into(), requested: 5, capped_to: 0 },
            ]
        );
    }
}
