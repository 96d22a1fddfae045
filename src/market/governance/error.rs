//! Governance failures are [`MarketError`]s: one error for the whole market, whose
//! [`kind`](MarketError::kind) and variants a caller matches without parsing strings. The old
//! names stay as aliases for one release, so a migration is a rename.

use crate::market::MarketError;

/// Use [`MarketError`]: the governance variants (`CaseLimit`, `Window`, `RefundExceeds`…) are its own.
#[deprecated(since = "0.2.0", note = "use wxshop::market::MarketError; the governance variants are its own")]
pub type GovError = MarketError;

/// Use [`crate::market::Result`].
#[deprecated(since = "0.2.0", note = "use wxshop::market::Result")]
pub type GovResult<T> = crate::market::Result<T>;
