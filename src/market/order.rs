//! Merchant orders and their state machine.
//!
//! `PendingPayment → Paid → PartiallyShipped → Shipped → Received → Completed`, and `Cancelled` from
//! PendingPayment (unpaid: closed or cancelled) or Paid (refunded before shipping). Moving to the state
//! an order is already in is a no-op (a webhook and an API call racing each other must not fail);
//! any other move off the graph is [`MarketError::IllegalTransition`].
//!
//! ```
//! use wxshop::market::{OrderStatus, Step};
//! assert_eq!(OrderStatus::PendingPayment.step(OrderStatus::Paid).unwrap(), Step::Move);
//! assert_eq!(OrderStatus::Paid.step(OrderStatus::Paid).unwrap(), Step::Noop);
//! assert!(OrderStatus::Shipped.step(OrderStatus::Paid).is_err());
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{MarketError, Result};
use super::money::Money;

str_enum! {
    /// Where a merchant order is (WeChat's codes: 10, 20, 21, 30, 100, 250).
    pub enum OrderStatus {
        /// 待付款.
        PendingPayment,
        /// 待发货.
        Paid,
        /// 部分发货.
        PartiallyShipped,
        /// 待收货.
        Shipped,
        /// Received by the buyer or by the auto-confirm timer; the after-sale window runs.
        Received,
        /// The after-sale window closed (ready for settlement).
        Completed,
        /// 已取消.
        Cancelled,
    }
}

/// What a requested transition amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Already there: do nothing, succeed.
    Noop,
    /// A legal move.
    Move,
}

impl OrderStatus {
    /// Whether `self → to` is an edge (PartiallyShipped → PartiallyShipped is one: another parcel).
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (PendingPayment, Paid)
                | (PendingPayment, Cancelled)
                | (Paid, PartiallyShipped)
                | (Paid, Shipped)
                | (Paid, Cancelled)
                | (PartiallyShipped, PartiallyShipped)
                | (PartiallyShipped, Shipped)
                | (Shipped, Received)
                | (Received, Completed)
        )
    }

    /// Classifies a requested move: [`Step::Noop`] when already in `to`, [`Step::Move`] along an edge,
    /// [`MarketError::IllegalTransition`] otherwise.
    pub fn step(self, to: OrderStatus) -> Result<Step> {
        if self == to && to != OrderStatus::PartiallyShipped {
            Ok(Step::Noop)
        } else if self.can_become(to) {
            Ok(Step::Move)
        } else {
            Err(MarketError::illegal("order", self, to))
        }
    }

    /// WeChat's numeric order status.
    pub fn wechat_code(self) -> i64 {
        match self {
            OrderStatus::PendingPayment => 10,
            OrderStatus::Paid => 20,
            OrderStatus::PartiallyShipped => 21,
            OrderStatus::Shipped => 30,
            OrderStatus::Received | OrderStatus::Completed => 100,
            OrderStatus::Cancelled => 250,
        }
    }

    /// Still needs something to happen (not Completed or Cancelled).
    pub fn is_open(self) -> bool {
        !matches!(self, OrderStatus::Completed | OrderStatus::Cancelled)
    }
}

/// One merchant's part of a checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantOrder {
    /// Id; the sub-order `out_trade_no` of a combined payment.
    pub id: String,
    /// The checkout group (one payment).
    pub group_id: String,
    /// Merchant.
    pub merchant_id: String,
    /// Buyer.
    pub buyer_openid: String,
    /// Status.
    pub status: OrderStatus,
    /// Sum of line totals.
    pub subtotal: Money,
    /// Platform discount share.
    pub discount: Money,
    /// What the buyer pays for this order.
    pub total: Money,
    /// Platform commission (sum of lines).
    pub commission: Money,
    /// Shipping SLA from the rules sold under.
    pub ship_sla_hours: i64,
    /// Auto-confirm days from the rules sold under.
    pub auto_confirm_days: i64,
    /// After-sale days from the rules sold under.
    pub after_sale_days: i64,
    /// WeChat Pay transaction id (of the sub-order for a combined payment).
    pub transaction_id: Option<String>,
    /// Paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// Must ship by (paid + SLA).
    pub ship_deadline: Option<DateTime<Utc>>,
    /// Fully shipped.
    pub shipped_at: Option<DateTime<Utc>>,
    /// Received.
    pub received_at: Option<DateTime<Utc>>,
    /// Who confirmed receipt: `buyer` or `timer`.
    pub received_by: Option<String>,
    /// Completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A line of a merchant order, with the snapshots it was sold under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Order.
    pub order_id: String,
    /// Merchant.
    pub merchant_id: String,
    /// 1-based position.
    pub line_no: i64,
    /// SKU.
    pub sku_id: String,
    /// Product.
    pub product_id: String,
    /// Title at sale.
    pub title: String,
    /// SKU attributes at sale.
    pub attrs: BTreeMap<String, String>,
    /// Category at sale.
    pub category_id: String,
    /// Category rule version sold under.
    pub rule_version: i64,
    /// Unit price at sale.
    pub unit_price: Money,
    /// Units.
    pub qty: i64,
    /// `unit_price × qty`.
    pub line_total: Money,
    /// Discount share.
    pub discount: Money,
    /// Commission rate at sale.
    pub commission_bps: i64,
    /// Commission.
    pub commission: Money,
    /// Units shipped so far.
    pub shipped_qty: i64,
}

/// Units of one line in a parcel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipItem {
    /// Line number.
    pub line_no: i64,
    /// Units.
    pub qty: i64,
}

/// A parcel handed to a carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipRequest {
    /// Waybill number.
    pub tracking_no: String,
    /// Carrier code (WeChat's `express_company`, e.g. `SF`, `YTO`).
    pub express_company: String,
    /// What is in it; `None` ships everything not yet shipped.
    #[serde(default)]
    pub items: Option<Vec<ShipItem>>,
    /// The receiver's phone, passed to WeChat masked (SF Express requires a contact); not stored.
    #[serde(default)]
    pub receiver_phone: Option<String>,
}

/// A correction of a shipped order's waybill (WeChat allows one per payment, while the order is
/// shipped and unconfirmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipCorrection {
    /// The waybill corrected; `None` when the order went out in one parcel.
    #[serde(default)]
    pub replaces: Option<String>,
    /// The right waybill number.
    pub tracking_no: String,
    /// The right carrier code.
    pub express_company: String,
    /// The receiver's phone, passed to WeChat masked (SF Express requires a contact); not stored.
    #[serde(default)]
    pub receiver_phone: Option<String>,
}

/// A recorded parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// Id.
    pub id: String,
    /// Merchant.
    pub merchant_id: String,
    /// Order.
    pub order_id: String,
    /// Waybill.
    pub tracking_no: String,
    /// Carrier.
    pub express_company: String,
    /// Contents.
    pub items: Vec<ShipItem>,
    /// When.
    pub shipped_at: DateTime<Utc>,
}

/// An order with its lines and parcels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetail {
    /// The order.
    pub order: MerchantOrder,
    /// Its lines.
    pub lines: Vec<OrderLine>,
    /// Its parcels.
    pub shipments: Vec<Shipment>,
}

/// Resolves which units a parcel carries and whether the order is then fully shipped. Fails when a line
/// does not exist, a quantity is not positive, more units would ship than were bought, or nothing is
/// left to ship.
pub fn parcel_contents(lines: &[OrderLine], items: Option<&[ShipItem]>) -> Result<(Vec<ShipItem>, bool)> {
    let mut shipped: BTreeMap<i64, (i64, i64)> = lines.iter().map(|l| (l.line_no, (l.shipped_qty, l.qty))).collect();
    let items: Vec<ShipItem> = match items {
        None => lines
            .iter()
            .filter(|l| l.shipped_qty < l.qty)
            .map(|l| ShipItem { line_no: l.line_no, qty: l.qty - l.shipped_qty })
            .collect(),
        Some(i) => i.to_vec(),
    };
    if items.is_empty() {
        return Err(MarketError::invalid("nothing left to ship"));
    }
    for it in &items {
        let (done, bought) =
            shipped.get_mut(&it.line_no).ok_or_else(|| MarketError::not_found("order line", it.line_no))?;
        if it.qty <= 0 || *done + it.qty > *bought {
            return Err(MarketError::invalid(format!("line {} cannot ship {} more", it.line_no, it.qty)));
        }
        *done += it.qty;
    }
    let all = shipped.values().all(|(d, b)| d == b);
    Ok((items, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_is_noop_move_or_illegal() {
        use OrderStatus::*;
        let mut moves = Vec::new();
        for &a in OrderStatus::ALL {
            for &b in OrderStatus::ALL {
                match a.step(b) {
                    Ok(Step::Noop) => assert_eq!(a, b),
                    Ok(Step::Move) => moves.push(format!("{a}->{b}")),
                    Err(MarketError::IllegalTransition { entity: "order", .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert_eq!(
            moves,
            [
                "PendingPayment->Paid",
                "PendingPayment->Cancelled",
                "Paid->PartiallyShipped",
                "Paid->Shipped",
                "Paid->Cancelled",
                "PartiallyShipped->PartiallyShipped",
                "PartiallyShipped->Shipped",
                "Shipped->Received",
                "Received->Completed"
            ]
        );
        assert_eq!(Completed.step(Completed).unwrap(), Step::Noop);
        assert_eq!(Shipped.wechat_code(), 30);
    }

    fn line(no: i64, qty: i64, shipped: i64) -> OrderLine {
        OrderLine {
            order_id: "o".into(),
            merchant_id: "m".into(),
            line_no: no,
            sku_id: format!("s{no}"),
            product_id: "p".into(),
            title: "t".into(),
            attrs: Default::default(),
            category_id: "c".into(),
            rule_version: 1,
            unit_price: Money::fen(100),
            qty,
            line_total: Money::fen(100 * qty),
            discount: Money::ZERO,
            commission_bps: 0,
            commission: Money::ZERO,
            shipped_qty: shipped,
        }
    }

    #[test]
    fn parcels_cannot_ship_more_than_bought() {
        let lines = [line(1, 2, 0), line(2, 1, 0)];
        let (items, all) = parcel_contents(&lines, Some(&[ShipItem { line_no: 1, qty: 1 }])).unwrap();
        assert_eq!((items.len(), all), (1, false));
        let (items, all) = parcel_contents(&lines, None).unwrap();
        assert_eq!(items, vec![ShipItem { line_no: 1, qty: 2 }, ShipItem { line_no: 2, qty: 1 }]);
        assert!(all);
        assert!(parcel_contents(&lines, Some(&[ShipItem { line_no: 1, qty: 3 }])).is_err());
        assert!(parcel_contents(&lines, Some(&[ShipItem { line_no: 9, qty: 1 }])).is_err());
        assert!(parcel_contents(&[line(1, 2, 2)], None).is_err());
    }
}
