//! Inventory: stock levels, the movement ledger, and reservations.
//!
//! Each SKU has `on_hand` (units in the warehouse) and `reserved` (units promised to unpaid orders);
//! `available = on_hand − reserved`, and `0 ≤ reserved ≤ on_hand` holds in code and as a CHECK
//! constraint. Every change is a [`Movement`], so `on_hand` and `reserved` are each the sum of their
//! movements. A checkout reserves with ONE conditional statement over its demand aggregated per SKU
//! ([`aggregate_demand`]): two lines of the same SKU are counted once, and there is no
//! read-then-write to race.
//!
//! ```
//! use wxshop::market::{aggregate_demand, Demand};
//! let d = aggregate_demand([("m1", "s1", 2), ("m1", "s2", 1), ("m1", "s1", 3)]).unwrap();
//! assert_eq!(d, vec![
//!     Demand { merchant_id: "m1".into(), sku_id: "s1".into(), qty: 5 },
//!     Demand { merchant_id: "m1".into(), sku_id: "s2".into(), qty: 1 },
//! ]);
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{MarketError, Result};

/// The stock of one SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Units in the warehouse (not yet shipped to a buyer).
    pub on_hand: i64,
    /// Units promised to unpaid orders.
    pub reserved: i64,
}

impl StockLevel {
    /// Units a new order may take.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

str_enum! {
    /// Why stock moved.
    pub enum MovementKind {
        /// Stock received or set by the merchant (`on_hand` up or down).
        Adjust,
        /// Units reserved for an unpaid order (`reserved` up).
        Reserve,
        /// A reservation cancelled before payment (`reserved` down).
        Release,
        /// A reservation that ran out of time (`reserved` down).
        Expire,
        /// A paid order took its units (`on_hand` and `reserved` down).
        Commit,
        /// Units of a cancelled paid order put back (`on_hand` up).
        Restock,
    }
}

/// One entry of the stock ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Id.
    pub id: String,
    /// Owner.
    pub merchant_id: String,
    /// SKU.
    pub sku_id: String,
    /// Why.
    pub kind: MovementKind,
    /// Change of `on_hand`.
    pub on_hand_delta: i64,
    /// Change of `reserved`.
    pub reserved_delta: i64,
    /// The order or reservation behind it.
    pub ref_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

str_enum! {
    /// Where a reservation is.
    pub enum ReservationStatus {
        /// Holding units.
        Active,
        /// Paid: the units were sold.
        Committed,
        /// Cancelled before payment.
        Released,
        /// The payment window closed.
        Expired,
    }
}

/// Units of one SKU held for one merchant order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Id.
    pub id: String,
    /// Owner of the SKU.
    pub merchant_id: String,
    /// The checkout group.
    pub group_id: String,
    /// The merchant order that owns it (at most one reservation per order and SKU).
    pub order_id: String,
    /// The SKU.
    pub sku_id: String,
    /// Units.
    pub qty: i64,
    /// Status.
    pub status: ReservationStatus,
    /// When the payment window closes.
    pub expires_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Demand for one SKU, summed over every line that names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Demand {
    /// Owner of the SKU.
    pub merchant_id: String,
    /// SKU.
    pub sku_id: String,
    /// Units.
    pub qty: i64,
}

/// Sums `(merchant, sku, qty)` lines per SKU, sorted by (merchant, SKU) so that every transaction
/// touches rows in the same order. Quantities must be positive.
pub fn aggregate_demand<'a>(lines: impl IntoIterator<Item = (&'a str, &'a str, i64)>) -> Result<Vec<Demand>> {
    let mut sums: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (m, s, q) in lines {
        if q <= 0 {
            return Err(MarketError::invalid(format!("quantity of {s} must be > 0")));
        }
        let e = sums.entry((m, s)).or_default();
        *e = e.checked_add(q).ok_or_else(|| MarketError::invalid("quantity overflow"))?;
    }
    Ok(sums.into_iter().map(|((m, s), q)| Demand { merchant_id: m.into(), sku_id: s.into(), qty: q }).collect())
}
