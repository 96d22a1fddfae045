//! The marketplace.
//!
//! NOTE (gov branch): `money`, `clock` and `error` are copies of the market branch's files, taken so that
//! governance compiles before the marketplace core lands; the market branch's versions win on merge.
//!
//! ```
//! use wxshop::market::Money;
//! assert_eq!(Money::fen(150).to_string(), "¥1.50");
//! ```

pub mod clock;
pub mod error;
pub mod governance;
pub mod money;

pub use clock::{Clock, ManualClock, SystemClock, new_id};
pub use error::{MarketError, Result, Shortage};
pub use money::Money;
