//! The governance error: one variant per rule, so a handler can tell "deadline passed" from "too many
//! cases" from "over the profit-sharing cap" without parsing messages.
//!
//! ```
//! use wxshop::market::governance::GovError;
//! let e = GovError::CaseLimit { line_id: "l1".into(), open: 1, total: 2 };
//! assert_eq!(e.code(), "case_limit");
//! ```

use chrono::{DateTime, Utc};

use crate::market::MarketError;

/// `Result` with [`GovError`].
pub type GovResult<T> = std::result::Result<T, GovError>;

/// A governance failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovError {
    /// A marketplace failure underneath (money overflow, store, gateway…).
    #[error(transparent)]
    Market(#[from] MarketError),
    /// No such entity.
    #[error("{entity} {id} not found")]
    NotFound {
        /// What was looked up.
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// Bad input.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The caller does not own the entity or may not act on it.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A transition the state machine does not allow.
    #[error("illegal {entity} transition {from} -> {to}")]
    IllegalTransition {
        /// The aggregate (`"case"`, `"penalty"`…).
        entity: &'static str,
        /// Its state.
        from: String,
        /// The state or action asked for.
        to: String,
    },
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
}

impl GovError {
    /// A stable machine-readable code (used by HTTP handlers).
    pub fn code(&self) -> &'static str {
        match self {
            GovError::Market(e) => e.code(),
            GovError::NotFound { .. } => "not_found",
            GovError::Invalid(_) => "invalid",
            GovError::Forbidden(_) => "forbidden",
            GovError::IllegalTransition { .. } => "illegal_transition",
            GovError::DeadlinePassed { .. } => "deadline_passed",
            GovError::Window { .. } => "window",
            GovError::CaseLimit { .. } => "case_limit",
            GovError::RefundExceeds { .. } => "refund_exceeds",
            GovError::AlreadyDone(_) => "already_done",
            GovError::NotEligible(_) => "not_eligible",
            GovError::Unbalanced { .. } => "unbalanced",
            GovError::NegativeBalance { .. } => "negative_balance",
            GovError::ShareCap { .. } => "share_cap",
            GovError::OpenItems(_) => "open_items",
        }
    }

    /// Worth retrying as a whole (a lost race, a busy database).
    pub fn is_retryable(&self) -> bool {
        matches!(self, GovError::Market(e) if e.is_retryable())
    }

    pub(crate) fn illegal(entity: &'static str, from: impl std::fmt::Debug, to: impl std::fmt::Debug) -> Self {
        GovError::IllegalTransition { entity, from: format!("{from:?}"), to: format!("{to:?}") }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        GovError::Invalid(msg.into())
    }
}

impl From<GovError> for crate::Error {
    fn from(e: GovError) -> Self {
        match e {
            GovError::Market(m) => m.into(),
            other => crate::Error::Market { code: other.code(), message: other.to_string() },
        }
    }
}

impl From<GovError> for MarketError {
    fn from(e: GovError) -> Self {
        match e {
            GovError::Market(m) => m,
            GovError::NotFound { entity, id } => MarketError::NotFound { entity, id },
            GovError::IllegalTransition { entity, from, to } => MarketError::IllegalTransition { entity, from, to },
            other => MarketError::Invalid(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_error_keeps_the_governance_code() {
        let e = GovError::RefundExceeds { requested: 500, refundable: 300 };
        let message = e.to_string();
        match crate::Error::from(e) {
            crate::Error::Market { code, message: m } => {
                assert_eq!(code, "refund_exceeds");
                assert_eq!(m, message);
            }
            other => panic!("expected Error::Market, got {other:?}"),
        }
    }
}
