//! The marketplace's typed error.
//!
//! Every rule the marketplace enforces has its own variant, so a caller (or an HTTP handler) can
//! tell "out of stock" from "illegal transition" from "try again" without parsing messages.
//!
//! ```
//! use wxshop::market::{MarketError, Shortage};
//! let e = MarketError::OutOfStock { shortages: vec![Shortage { sku_id: "s1".into(), requested: 3, available: 1 }] };
//! assert_eq!(e.code(), "out_of_stock");
//! assert!(!e.is_retryable());
//! assert_eq!(e.kind(), wxshop::market::ErrorKind::Refused);
//! // Through the crate-wide error, the code survives.
//! let msg = e.to_string();
//! assert!(matches!(wxshop::Error::from(e), wxshop::Error::Market { code: "out_of_stock", message } if message == msg));
//! ```

use std::fmt;

use chrono::{DateTime, Utc};

/// `Result` with [`MarketError`].
pub type Result<T, E = MarketError> = std::result::Result<T, E>;

/// One SKU that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shortage {
    /// The SKU.
    pub sku_id: String,
    /// Units asked for (all lines of the SKU together).
    pub requested: i64,
    /// Units available when the reservation failed.
    pub available: i64,
}

/// The class of a [`MarketError`]: what a caller does about it, whatever the rule was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such entity, or not the caller's (HTTP 404).
    NotFound,
    /// The request itself is wrong: fix it before sending it again (HTTP 400).
    Invalid,
    /// No valid credential (HTTP 401).
    Unauthorized,
    /// The caller may not do this (HTTP 403).
    Forbidden,
    /// Over a per-order or per-buyer limit (HTTP 422).
    Limit,
    /// A conditional write read a version that is no longer current (HTTP 412).
    Stale,
    /// A rule or the current state refuses it now: out of stock, an illegal transition, a closed
    /// window… (HTTP 409).
    Refused,
    /// A lost race or a busy database: the same request may succeed later (HTTP 503).
    Busy,
    /// WeChat (or another gateway) failed (HTTP 502).
    Upstream,
    /// The store failed in a way a retry will not mend (HTTP 500).
    Internal,
}

/// A marketplace failure: the one error of every [`Market`](super::Market) operation, governance
/// included.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarketError {
    /// No such entity (or not owned by the caller).
    #[error("{entity} {id} not found")]
    NotFound {
        /// What was looked up (`"order"`, `"sku"`…).
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// Not enough stock for one or more SKUs; nothing was reserved.
    #[error("out of stock: {}", fmt_shortages(shortages))]
    OutOfStock {
        /// Every SKU that fell short.
        shortages: Vec<Shortage>,
    },
    /// A state transition the state machine does not allow.
    #[error("illegal {entity} transition {from} -> {to}")]
    IllegalTransition {
        /// The kind of aggregate (`"order"`, `"merchant"`…).
        entity: &'static str,
        /// Its current state.
        from: String,
        /// The state asked for.
        to: String,
    },
    /// The idempotency key was already used with a different request.
    #[error("idempotency key {key} was already used with a different request")]
    IdempotencyConflict {
        /// The key.
        key: String,
    },
    /// The merchant's status or restrictions forbid the action.
    #[error("merchant {merchant_id} ({status}) may not {action}")]
    MerchantBlocked {
        /// The merchant.
        merchant_id: String,
        /// Its status.
        status: String,
        /// What was refused: `"list"`, `"sell"`, `"payout"`.
        action: &'static str,
    },
    /// The merchant is not allowed to sell in the category.
    #[error("merchant {merchant_id} may not sell in category {category_id}")]
    CategoryNotAllowed {
        /// The merchant.
        merchant_id: String,
        /// The category.
        category_id: String,
    },
    /// The SKU exists but is not for sale (product not listed, merchant not selling).
    #[error("sku {sku_id} is not for sale")]
    Unavailable {
        /// The SKU.
        sku_id: String,
    },
    /// More units than the SKU's purchase limit.
    #[error("sku {sku_id}: {requested} exceeds the purchase limit of {limit}")]
    PurchaseLimit {
        /// The SKU.
        sku_id: String,
        /// The limit per order.
        limit: i64,
        /// Units asked for.
        requested: i64,
    },
    /// The total the buyer confirmed is no longer the price.
    #[error("price changed: expected {expected} fen, now {actual} fen")]
    PriceChanged {
        /// The total the buyer saw.
        expected: i64,
        /// The total now.
        actual: i64,
    },
    /// A payment notification does not match the payment it names.
    #[error("payment {out_trade_no}: {reason}")]
    PaymentMismatch {
        /// The payment.
        out_trade_no: String,
        /// What did not match.
        reason: String,
    },
    /// WeChat allows no (more) correction of this order's shipping info: it was corrected once
    /// already, or it is not shipped and unconfirmed.
    #[error("the shipping info of order {order_id} cannot be corrected: {reason}")]
    CorrectionRefused {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// Bad input (empty key, zero quantity, bad cursor…).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A conditional write whose precondition no longer holds (an HTTP `If-Match` that is stale):
    /// read again and decide again. Not retried by the market.
    #[error("{entity} changed: expected {expected}, now {actual}")]
    VersionMismatch {
        /// What was written.
        entity: &'static str,
        /// The version the caller read.
        expected: String,
        /// The version now.
        actual: String,
    },
    /// A credential that is malformed, unknown, revoked or expired.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The caller does not own the entity or may not act on it.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The actor's deadline has passed; the timer decides now.
    #[error("the {what} deadline passed at {due}")]
    DeadlinePassed {
        /// Which deadline.
        what: &'static str,
        /// When it passed.
        due: DateTime<Utc>,
    },
    /// A window (after-sale, review, exit) is closed, or not yet closed for an exit refund.
    #[error("the {what} window closes at {at}")]
    Window {
        /// Which window.
        what: &'static str,
        /// When it closes (or closed).
        at: DateTime<Utc>,
    },
    /// At most one open and five total after-sale cases per order line.
    #[error("order line {line_id} already has {open} open and {total} total after-sale cases")]
    CaseLimit {
        /// The line.
        line_id: String,
        /// Open cases.
        open: usize,
        /// All cases.
        total: usize,
    },
    /// A refund above what was paid and not yet refunded.
    #[error("refund of {requested} fen exceeds the refundable {refundable} fen")]
    RefundExceeds {
        /// Asked.
        requested: i64,
        /// Paid − refunded − refunding.
        refundable: i64,
    },
    /// Something allowed once was already done (one review, one follow-up, one reply, one appeal).
    #[error("{0} was already done")]
    AlreadyDone(&'static str),
    /// Not (yet) eligible: a review before receipt, a settlement before its window closed…
    #[error("not eligible: {0}")]
    NotEligible(String),
    /// A ledger transaction whose entries do not sum to zero.
    #[error("ledger transaction {txn} does not balance: entries sum to {sum} fen")]
    Unbalanced {
        /// The transaction.
        txn: String,
        /// The sum of its entries.
        sum: i64,
    },
    /// A posting would take an account below zero and its policy forbids debt.
    #[error("account {account} would fall to {balance} fen")]
    NegativeBalance {
        /// The account.
        account: String,
        /// The balance it would reach.
        balance: i64,
    },
    /// Profit sharing over WeChat's cap (30 % of the order by default) or over the funds left.
    #[error("profit sharing of {requested} fen exceeds the limit of {limit} fen ({why})")]
    ShareCap {
        /// Asked, cumulative.
        requested: i64,
        /// The limit.
        limit: i64,
        /// Which limit.
        why: &'static str,
    },
    /// Items still open block the action (exit refund with open orders, cases or disputes).
    #[error("blocked by open items: {0}")]
    OpenItems(String),
    /// Money arithmetic overflowed or went negative.
    #[error("money arithmetic: {0}")]
    Money(String),
    /// A concurrent change won; the operation is safe to retry (the service retries it, bounded).
    #[error("concurrent modification of {0}")]
    Conflict(String),
    /// The database failed.
    #[error("store error: {message}")]
    Store {
        /// What failed.
        message: String,
        /// A serialization failure, deadlock or busy database: safe to retry.
        retryable: bool,
    },
    /// The payment or shipping gateway failed.
    #[error("gateway error: {0}")]
    Gateway(#[source] Box<crate::Error>),
}

fn fmt_shortages(s: &[Shortage]) -> String {
    s.iter().map(|s| format!("{} wants {} has {}", s.sku_id, s.requested, s.available)).collect::<Vec<_>>().join(", ")
}

impl MarketError {
    /// A stable machine-readable code (used by HTTP handlers).
    pub fn code(&self) -> &'static str {
        match self {
            MarketError::NotFound { .. } => "not_found",
            MarketError::OutOfStock { .. } => "out_of_stock",
            MarketError::IllegalTransition { .. } => "illegal_transition",
            MarketError::IdempotencyConflict { .. } => "idempotency_conflict",
            MarketError::MerchantBlocked { .. } => "merchant_blocked",
            MarketError::CategoryNotAllowed { .. } => "category_not_allowed",
            MarketError::Unavailable { .. } => "unavailable",
            MarketError::PurchaseLimit { .. } => "purchase_limit",
            MarketError::PriceChanged { .. } => "price_changed",
            MarketError::PaymentMismatch { .. } => "payment_mismatch",
            MarketError::CorrectionRefused { .. } => "correction_refused",
            MarketError::Invalid(_) => "invalid",
            MarketError::Unauthorized(_) => "unauthorized",
            MarketError::VersionMismatch { .. } => "version_mismatch",
            MarketError::Forbidden(_) => "forbidden",
            MarketError::DeadlinePassed { .. } => "deadline_passed",
            MarketError::Window { .. } => "window",
            MarketError::CaseLimit { .. } => "case_limit",
            MarketError::RefundExceeds { .. } => "refund_exceeds",
            MarketError::AlreadyDone(_) => "already_done",
            MarketError::NotEligible(_) => "not_eligible",
            MarketError::Unbalanced { .. } => "unbalanced",
            MarketError::NegativeBalance { .. } => "negative_balance",
            MarketError::ShareCap { .. } => "share_cap",
            MarketError::OpenItems(_) => "open_items",
            MarketError::Money(_) => "money",
            MarketError::Conflict(_) => "conflict",
            MarketError::Store { .. } => "store",
            MarketError::Gateway(_) => "gateway",
        }
    }

    /// The class of the failure, for callers that answer by class (an HTTP status, a retry, a
    /// message to the buyer) rather than by rule.
    pub fn kind(&self) -> ErrorKind {
        use MarketError as E;
        match self {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::Invalid(_) | E::Money(_) | E::PaymentMismatch { .. } => ErrorKind::Invalid,
            E::Unauthorized(_) => ErrorKind::Unauthorized,
            E::Forbidden(_) | E::MerchantBlocked { .. } | E::CategoryNotAllowed { .. } => ErrorKind::Forbidden,
            E::PurchaseLimit { .. } => ErrorKind::Limit,
            E::VersionMismatch { .. } => ErrorKind::Stale,
            E::Conflict(_) | E::Store { retryable: true, .. } => ErrorKind::Busy,
            E::Store { .. } => ErrorKind::Internal,
            E::Gateway(_) => ErrorKind::Upstream,
            E::OutOfStock { .. }
            | E::IllegalTransition { .. }
            | E::IdempotencyConflict { .. }
            | E::Unavailable { .. }
            | E::PriceChanged { .. }
            | E::CorrectionRefused { .. }
            | E::DeadlinePassed { .. }
            | E::Window { .. }
            | E::CaseLimit { .. }
            | E::RefundExceeds { .. }
            | E::AlreadyDone(_)
            | E::NotEligible(_)
            | E::Unbalanced { .. }
            | E::NegativeBalance { .. }
            | E::ShareCap { .. }
            | E::OpenItems(_) => ErrorKind::Refused,
        }
    }

    /// Worth retrying as a whole: a lost race, a serialization failure, a deadlock, a busy database.
    pub fn is_retryable(&self) -> bool {
        match self {
            MarketError::Conflict(_) => true,
            MarketError::Store { retryable, .. } => *retryable,
            _ => false,
        }
    }

    pub(crate) fn not_found(entity: &'static str, id: impl fmt::Display) -> Self {
        MarketError::NotFound { entity, id: id.to_string() }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        MarketError::Invalid(msg.into())
    }

    pub(crate) fn illegal(entity: &'static str, from: impl fmt::Debug, to: impl fmt::Debug) -> Self {
        MarketError::IllegalTransition { entity, from: format!("{from:?}"), to: format!("{to:?}") }
    }
}

impl From<crate::Error> for MarketError {
    fn from(e: crate::Error) -> Self {
        MarketError::Gateway(Box::new(e))
    }
}

impl From<MarketError> for crate::Error {
    fn from(e: MarketError) -> Self {
        match e {
            MarketError::Gateway(inner) => *inner,
            MarketError::Store { message, .. } => crate::Error::Store(message),
            other => crate::Error::Market { code: other.code(), message: other.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_error_keeps_the_governance_code() {
        let e = MarketError::RefundExceeds { requested: 500, refundable: 300 };
        let message = e.to_string();
        assert_eq!(message, "refund of 500 fen exceeds the refundable 300 fen");
        match crate::Error::from(e) {
            crate::Error::Market { code, message: m } => {
                assert_eq!(code, "refund_exceeds");
                assert_eq!(m, message);
            }
            other => panic!("expected Error::Market, got {other:?}"),
        }
    }

    #[test]
    fn every_rule_has_its_class() {
        let cases = [
            (MarketError::not_found("order", "o1"), ErrorKind::NotFound, "not_found"),
            (MarketError::invalid("zero quantity"), ErrorKind::Invalid, "invalid"),
            (MarketError::Forbidden("not yours".into()), ErrorKind::Forbidden, "forbidden"),
            (
                MarketError::PurchaseLimit { sku_id: "s".into(), limit: 2, requested: 3 },
                ErrorKind::Limit,
                "purchase_limit",
            ),
            (MarketError::CaseLimit { line_id: "l".into(), open: 1, total: 1 }, ErrorKind::Refused, "case_limit"),
            (MarketError::AlreadyDone("review"), ErrorKind::Refused, "already_done"),
            (
                MarketError::VersionMismatch { entity: "stock", expected: "3".into(), actual: "4".into() },
                ErrorKind::Stale,
                "version_mismatch",
            ),
            (MarketError::Conflict("order o1".into()), ErrorKind::Busy, "conflict"),
            (MarketError::Store { message: "busy".into(), retryable: true }, ErrorKind::Busy, "store"),
            (MarketError::Store { message: "disk".into(), retryable: false }, ErrorKind::Internal, "store"),
            (MarketError::Unauthorized("revoked".into()), ErrorKind::Unauthorized, "unauthorized"),
        ];
        for (e, kind, code) in cases {
            assert_eq!((e.kind(), e.code()), (kind, code), "{e}");
        }
        assert!(MarketError::Conflict("x".into()).is_retryable());
        assert!(!MarketError::AlreadyDone("x").is_retryable());
    }
}
