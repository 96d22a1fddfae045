//! Payments and refunds of checkout groups.
//!
//! One payment per checkout group: JSAPI when one direct merchant is paid, partner-mode JSAPI when one
//! sub-merchant is paid, combined payment (合单支付) when several merchants are paid at once. The
//! payment notification is deduplicated by its notification id and applied by a conditional
//! transition, so five redeliveries make one Paid transition. A payment that arrives after its group
//! expired is refunded automatically (a shortfall) instead of overselling.
//!
//! ```
//! use wxshop::market::{PayMode, PaymentStatus};
//! assert_eq!(PayMode::for_merchants(&[None]), PayMode::Jsapi);
//! assert_eq!(PayMode::for_merchants(&[Some("1900000109".into())]), PayMode::Partner);
//! assert_eq!(PayMode::for_merchants(&[None, None]), PayMode::Combine);
//! assert_eq!("Paid".parse::<PaymentStatus>().unwrap(), PaymentStatus::Paid);
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::money::Money;

str_enum! {
    /// How a checkout group is paid.
    pub enum PayMode {
        /// JSAPI (mini-program) payment to the platform's own merchant id.
        Jsapi,
        /// Partner-mode JSAPI payment to one sub-merchant (服务商模式).
        Partner,
        /// Combined payment (合单支付) over several merchants' sub-orders.
        Combine,
    }
}

impl PayMode {
    /// The mode for the merchants of a group, given each one's `sub_mchid`.
    pub fn for_merchants(sub_mchids: &[Option<String>]) -> PayMode {
        match sub_mchids {
            [None] => PayMode::Jsapi,
            [Some(_)] => PayMode::Partner,
            _ => PayMode::Combine,
        }
    }
}

str_enum! {
    /// What a payment pays for: the market tells a sale from a deposit by the row it stored for it
    /// (a checkout's payment, a deposit pay-in), never by the shape of its `out_trade_no`.
    #[derive(Default)]
    pub enum PaymentPurpose {
        /// A checkout's goods (shared out at settlement).
        #[default]
        Sale,
        /// A merchant's deposit (保证金) pay-in.
        Deposit,
    }
}

str_enum! {
    /// Where a payment is.
    pub enum PaymentStatus {
        /// Created, waiting for the buyer.
        Initiated,
        /// Paid.
        Paid,
        /// Closed unpaid.
        Closed,
        /// Paid, then part refunded.
        PartiallyRefunded,
        /// Paid, then fully refunded.
        Refunded,
    }
}

/// The payment of a checkout group; its `out_trade_no` is the group id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Group id = `out_trade_no` / `combine_out_trade_no`.
    pub group_id: String,
    /// Payer.
    pub buyer_openid: String,
    /// Mode.
    pub mode: PayMode,
    /// Amount.
    pub amount: Money,
    /// Status.
    pub status: PaymentStatus,
    /// The prepay id once WeChat Pay accepted the order.
    pub prepay_id: Option<String>,
    /// The parameters for `wx.requestPayment`.
    pub pay_params: Option<serde_json::Value>,
    /// WeChat Pay transaction id (of the whole payment; sub-orders carry theirs on the orders).
    pub transaction_id: Option<String>,
    /// Paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// Refunded so far.
    pub refunded: Money,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A verified, decrypted payment notification (what `pay::notify` hands over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentNotice {
    /// The notification id; redeliveries repeat it.
    pub notify_id: String,
    /// `out_trade_no` (JSAPI) or `combine_out_trade_no`: the group id.
    pub out_trade_no: String,
    /// WeChat Pay transaction id (JSAPI; for a combined payment, the first sub-order's).
    pub transaction_id: String,
    /// Amount paid.
    pub amount: Money,
    /// When WeChat Pay says it was paid.
    pub paid_at: DateTime<Utc>,
    /// Sub-orders of a combined payment (empty for JSAPI).
    #[serde(default)]
    pub sub_orders: Vec<SubOrderPaid>,
}

impl PaymentNotice {
    /// The notice of a verified WeChat Pay notification: `TRANSACTION.SUCCESS` of a JSAPI, partner or
    /// combined payment. `None` for anything else (refunds, unpaid states, other events).
    pub fn from_notification(n: &crate::pay::Notification) -> Option<PaymentNotice> {
        use crate::pay::NotificationResource as R;
        match &n.resource {
            R::Transaction(t) => PaymentNotice::from_transaction(&n.id, t),
            R::CombineTransaction(c) => PaymentNotice::from_combine(&n.id, c),
            _ => None,
        }
    }

    /// The notice of a paid JSAPI or partner transaction (a notification's resource or a query's
    /// answer), under `notify_id`. `None` unless it is `SUCCESS` with a transaction id and a total.
    pub fn from_transaction(notify_id: &str, t: &crate::pay::transactions::Transaction) -> Option<PaymentNotice> {
        if !t.is_paid() {
            return None;
        }
        Some(PaymentNotice {
            notify_id: notify_id.into(),
            out_trade_no: t.out_trade_no.clone(),
            transaction_id: t.transaction_id.clone()?,
            amount: Money::fen(t.total()?),
            paid_at: paid_time(t.success_time.as_deref()),
            sub_orders: Vec::new(),
        })
    }

    /// The notice of a combined payment whose sub-orders are all `SUCCESS`, under `notify_id`.
    pub fn from_combine(notify_id: &str, c: &crate::pay::combine::CombineTransaction) -> Option<PaymentNotice> {
        use crate::pay::transactions::TradeState;
        let paid: Vec<_> = c.sub_orders.iter().filter(|s| s.trade_state == TradeState::Success).collect();
        if paid.is_empty() || paid.len() != c.sub_orders.len() {
            return None;
        }
        let sub_orders: Vec<SubOrderPaid> = paid
            .iter()
            .map(|s| {
                Some(SubOrderPaid {
                    out_trade_no: s.out_trade_no.clone(),
                    transaction_id: s.transaction_id.clone()?,
                    amount: Money::fen(s.amount.total_amount),
                })
            })
            .collect::<Option<_>>()?;
        Some(PaymentNotice {
            notify_id: notify_id.into(),
            out_trade_no: c.combine_out_trade_no.clone(),
            transaction_id: sub_orders[0].transaction_id.clone(),
            amount: Money::sum(sub_orders.iter().map(|s| s.amount)).ok()?,
            paid_at: paid_time(paid[0].success_time.as_deref()),
            sub_orders,
        })
    }
}

fn paid_time(s: Option<&str>) -> DateTime<Utc> {
    s.and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)).unwrap_or_else(Utc::now)
}

/// One paid sub-order of a combined payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOrderPaid {
    /// The merchant order id.
    pub out_trade_no: String,
    /// Its transaction id.
    pub transaction_id: String,
    /// Its amount.
    pub amount: Money,
}

/// What a payment notification did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeOutcome {
    /// The group and its orders moved to Paid.
    Paid,
    /// This notification id was seen before; nothing changed.
    Duplicate,
    /// The group was already Paid (another notification or a query got there first); nothing changed.
    AlreadyPaid,
    /// The group had expired or been cancelled: the payment is being refunded.
    LateRefunded {
        /// The refunds requested (`out_refund_no`).
        refund_ids: Vec<String>,
    },
    /// The amount (or the sub-orders) did not match what was asked: recorded as
    /// [`AmountMismatch`](crate::market::anomaly::AnomalyKind::AmountMismatch) anomalies held for the
    /// platform's review; the checkout stays unpaid. Empty on a repeat of the same transaction.
    Held {
        /// The anomalies recorded.
        anomaly_ids: Vec<String>,
    },
    /// A second transaction for a checkout already paid: recorded as
    /// [`DuplicatePayment`](crate::market::anomaly::AnomalyKind::DuplicatePayment) anomalies whose
    /// refunds are under way. Empty on a repeat of the same transaction.
    DuplicateRefunded {
        /// The anomalies recorded.
        anomaly_ids: Vec<String>,
    },
}

str_enum! {
    /// Where a refund is.
    pub enum RefundStatus {
        /// Recorded; the request to WeChat Pay is pending.
        Requested,
        /// WeChat Pay accepted it and is processing.
        Processing,
        /// Money returned.
        Succeeded,
        /// WeChat Pay refused it for good (needs a person).
        Failed,
    }
}

/// A refund of (part of) a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// Id = `out_refund_no`.
    pub id: String,
    /// The group paid.
    pub group_id: String,
    /// The merchant order refunded, for a sub-order refund.
    pub order_id: Option<String>,
    /// Its merchant.
    pub merchant_id: Option<String>,
    /// The `out_trade_no` refunded (group id for JSAPI, order id for a combined sub-order).
    pub out_trade_no: String,
    /// Its transaction id.
    pub transaction_id: Option<String>,
    /// The sub-merchant, in partner or combined mode.
    pub sub_mchid: Option<String>,
    /// Amount refunded.
    pub amount: Money,
    /// Amount of the original transaction.
    pub total: Money,
    /// Why.
    pub reason: String,
    /// Status.
    pub status: RefundStatus,
    /// WeChat Pay's refund id, once known.
    pub wx_refund_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}
