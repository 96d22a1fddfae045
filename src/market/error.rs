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
//! // Through the crate-wide error, the code survives.
//! let msg = e.to_string();
//! assert!(matches!(wxshop::Error::from(e), wxshop::Error::Market { code: "out_of_stock", message } if message == msg));
//! ```

use std::fmt;

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

/// A marketplace failure.
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
            MarketError::Money(_) => "money",
            MarketError::Conflict(_) => "conflict",
            MarketError::Store { .. } => "store",
            MarketError::Gateway(_) => "gateway",
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
