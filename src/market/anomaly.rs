//! Money events the market did not ask for, recorded instead of dropped.
//!
//! A signed WeChat Pay notification is always answered 2xx once it is durably recorded, whatever its
//! business outcome; what does not fit the market's books becomes a [`PaymentAnomaly`] with a state
//! machine of its own:
//!
//! | kind | what happened | what the market does |
//! |---|---|---|
//! | [`AmountMismatch`](AnomalyKind::AmountMismatch) | paid a different amount (or different sub-orders) than asked | holds it for review: the order stays unpaid; the platform refunds or dismisses it |
//! | [`DuplicatePayment`](AnomalyKind::DuplicatePayment) | a second transaction for a group already paid | refunds the second transaction automatically |
//! | [`ExternalRefund`](AnomalyKind::ExternalRefund) | a refund made outside the market (the merchant platform, a support desk) | applies it like any refund: payment, order, ledger, settlement |
//!
//! ```text
//! AmountMismatch:   Held ──refund──▶ Refunding ──▶ Refunded | RefundFailed ──retry──▶ Refunding
//!                   Held ──dismiss─▶ Dismissed
//! DuplicatePayment: Refunding ──▶ Refunded | RefundFailed ──retry──▶ Refunding
//! ExternalRefund:   Applied, or Held (it cannot be matched to what was paid) ──dismiss─▶ Dismissed
//! ```
//!
//! ```
//! use wxshop::market::anomaly::{AnomalyKind, AnomalyStatus};
//! assert!(AnomalyStatus::Held.can_become(AnomalyStatus::Refunding));
//! assert!(!AnomalyStatus::Refunded.can_become(AnomalyStatus::Refunding));
//! assert_eq!("DuplicatePayment".parse::<AnomalyKind>().unwrap(), AnomalyKind::DuplicatePayment);
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::money::Money;

str_enum! {
    /// What kind of unexpected money event.
    pub enum AnomalyKind {
        /// The amount (or the sub-orders) paid differ from what was asked.
        AmountMismatch,
        /// A second transaction for a checkout that was already paid.
        DuplicatePayment,
        /// A refund the market did not request.
        ExternalRefund,
    }
}

str_enum! {
    /// Where an anomaly is.
    pub enum AnomalyStatus {
        /// Waiting for the platform's review.
        Held,
        /// The money is being sent back.
        Refunding,
        /// Sent back.
        Refunded,
        /// The refund failed; the platform may retry it.
        RefundFailed,
        /// Applied to the books (an external refund).
        Applied,
        /// Reviewed and accepted as it is, with a note.
        Dismissed,
    }
}

impl AnomalyStatus {
    /// Whether `self → to` is an edge of the state machine.
    pub fn can_become(self, to: AnomalyStatus) -> bool {
        use AnomalyStatus::*;
        matches!(
            (self, to),
            (Held, Refunding)
                | (Held, Dismissed)
                | (Refunding, Refunded)
                | (Refunding, RefundFailed)
                | (RefundFailed, Refunding)
                | (RefundFailed, Dismissed)
        )
    }

    /// No further change is expected.
    pub fn is_final(self) -> bool {
        matches!(self, AnomalyStatus::Refunded | AnomalyStatus::Applied | AnomalyStatus::Dismissed)
    }
}

/// One recorded money anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAnomaly {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: AnomalyKind,
    /// Status.
    pub status: AnomalyStatus,
    /// The checkout group it concerns.
    pub group_id: String,
    /// The merchant order, when it concerns one.
    pub order_id: Option<String>,
    /// The `out_trade_no` paid or refunded.
    pub out_trade_no: String,
    /// WeChat Pay's transaction id.
    pub transaction_id: String,
    /// The event, whatever revealed it (a notification, a query, a bill): `txn:<transaction_id>` or
    /// `refund:<out_refund_no>`, unique per kind, so it is recorded once.
    pub event_key: String,
    /// The amount the event moved.
    pub amount: Money,
    /// What the market expected, when it expected something.
    pub expected: Option<Money>,
    /// The refund that sends the money back, or the external refund applied (`out_refund_no`).
    pub refund_id: Option<String>,
    /// What was found.
    pub detail: String,
    /// The platform's note when it resolved it.
    pub note: Option<String>,
    /// Version, for conditional updates.
    pub version: i64,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A refund WeChat Pay reports that the market may not have requested (a `REFUND.*` notification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNotice {
    /// The notification id.
    pub notify_id: String,
    /// `out_refund_no`.
    pub out_refund_no: String,
    /// The `out_trade_no` refunded.
    pub out_trade_no: String,
    /// The transaction refunded.
    pub transaction_id: String,
    /// WeChat Pay's refund id.
    pub refund_id: String,
    /// Whether it succeeded (`SUCCESS`); otherwise it closed or failed.
    pub succeeded: bool,
    /// Amount refunded.
    pub amount: Money,
}

impl RefundNotice {
    /// The notice of a verified `REFUND.*` notification; `None` for anything else.
    pub fn from_notification(n: &crate::pay::Notification) -> Option<RefundNotice> {
        let crate::pay::NotificationResource::Refund(r) = &n.resource else { return None };
        Some(RefundNotice {
            notify_id: n.id.clone(),
            out_refund_no: r.out_refund_no.clone(),
            out_trade_no: r.out_trade_no.clone(),
            transaction_id: r.transaction_id.clone(),
            refund_id: r.refund_id.clone(),
            succeeded: r.refund_status.as_str() == "SUCCESS",
            amount: Money::fen(r.amount.refund),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AnomalyStatus::*;

    #[test]
    fn only_the_drawn_edges_are_legal() {
        let legal = [
            (Held, Refunding),
            (Held, Dismissed),
            (Refunding, Refunded),
            (Refunding, RefundFailed),
            (RefundFailed, Refunding),
            (RefundFailed, Dismissed),
        ];
        for from in super::AnomalyStatus::ALL {
            for to in super::AnomalyStatus::ALL {
                assert_eq!(from.can_become(*to), legal.contains(&(*from, *to)), "{from} → {to}");
            }
        }
        assert_eq!(
            super::AnomalyStatus::ALL.iter().filter(|s| s.is_final()).copied().collect::<Vec<_>>(),
            vec![Refunded, Applied, Dismissed]
        );
    }
}
