//! Money: integer fen (分) in CNY, never a float.
//!
//! Arithmetic is checked (overflow is an error, not a wrap) and splitting uses the largest-remainder
//! method, so the parts always add up to the whole: a discount spread over lines, one payment spread
//! over merchants.
//!
//! ```
//! use wxshop::market::Money;
//! let total = Money::fen(1000);
//! let parts = total.split(&[1, 1, 1]).unwrap();
//! assert_eq!(parts, vec![Money::fen(334), Money::fen(333), Money::fen(333)]);
//! assert_eq!(Money::sum(parts).unwrap(), total);
//! assert_eq!(Money::fen(12345).to_string(), "¥123.45");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{MarketError, Result};

/// The currency: WeChat Pay settles mini-program payments in CNY only.
pub const CURRENCY: &str = "CNY";

/// An amount of CNY in fen (1/100 yuan).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// An amount in fen.
    pub const fn fen(fen: i64) -> Money {
        Money(fen)
    }

    /// Whole yuan, checked.
    pub fn yuan(yuan: i64) -> Result<Money> {
        yuan.checked_mul(100).map(Money).ok_or_else(|| overflow("yuan"))
    }

    /// The amount in fen.
    pub const fn as_fen(self) -> i64 {
        self.0
    }

    /// Strictly above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self + rhs`, or an error on overflow.
    pub fn checked_add(self, rhs: Money) -> Result<Money> {
        self.0.checked_add(rhs.0).map(Money).ok_or_else(|| overflow("add"))
    }

    /// `self - rhs`, or an error on overflow.
    pub fn checked_sub(self, rhs: Money) -> Result<Money> {
        self.0.checked_sub(rhs.0).map(Money).ok_or_else(|| overflow("sub"))
    }

    /// `self × n`, or an error on overflow.
    pub fn checked_mul(self, n: i64) -> Result<Money> {
        self.0.checked_mul(n).map(Money).ok_or_else(|| overflow("mul"))
    }

    /// The sum of amounts, or an error on overflow.
    pub fn sum(items: impl IntoIterator<Item = Money>) -> Result<Money> {
        items.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }

    /// `self × bps / 10 000`, rounded half up (commission on a non-negative amount).
    pub fn bps(self, bps: i64) -> Result<Money> {
        if self.0 < 0 || !(0..=10_000).contains(&bps) {
            return Err(MarketError::Money(format!("bps {bps} of {self}")));
        }
        let v = (self.0 as i128 * bps as i128 + 5_000) / 10_000;
        Ok(Money(v as i64))
    }

    /// Splits a non-negative amount in proportion to non-negative weights with the largest-remainder
    /// method: every part is `floor(total·w/W)`, and the fen left over go one each to the parts with
    /// the largest remainders (ties to the earlier part). The parts sum to `self` exactly.
    pub fn split(self, weights: &[i64]) -> Result<Vec<Money>> {
        if self.0 < 0 {
            return Err(MarketError::Money(format!("cannot split a negative amount {self}")));
        }
        if weights.iter().any(|w| *w < 0) {
            return Err(MarketError::Money("negative split weight".into()));
        }
        let total_w: i128 = weights.iter().map(|w| *w as i128).sum();
        if total_w == 0 {
            if self.0 == 0 {
                return Ok(vec![Money::ZERO; weights.len()]);
            }
            return Err(MarketError::Money("split weights sum to zero".into()));
        }
        let amount = self.0 as i128;
        let mut parts = Vec::with_capacity(weights.len());
        let mut rems = Vec::with_capacity(weights.len());
        let mut given: i128 = 0;
        for (i, w) in weights.iter().enumerate() {
            let num = amount * *w as i128;
            let q = num / total_w;
            parts.push(q);
            rems.push((num % total_w, i));
            given += q;
        }
        let mut left = amount - given;
        rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in rems {
            if left == 0 {
                break;
            }
            parts[i] += 1;
            left -= 1;
        }
        Ok(parts.into_iter().map(|p| Money(p as i64)).collect())
    }
}

fn overflow(op: &str) -> MarketError {
    MarketError::Money(format!("overflow in {op}"))
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}¥{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} fen)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_gives_leftover_fen_to_largest_remainders() {
        // 100 over 3:3:4 → 30, 30, 40 exactly; 10 over 1:1:1 → 4,3,3.
        assert_eq!(Money::fen(100).split(&[3, 3, 4]).unwrap(), vec![Money(30), Money(30), Money(40)]);
        assert_eq!(Money::fen(10).split(&[1, 1, 1]).unwrap(), vec![Money(4), Money(3), Money(3)]);
        // 5 over 1:2 → 1.67, 3.33 → 2, 3 (the larger remainder is the first).
        assert_eq!(Money::fen(5).split(&[1, 2]).unwrap(), vec![Money(2), Money(3)]);
        assert_eq!(Money::fen(0).split(&[0, 0]).unwrap(), vec![Money(0), Money(0)]);
        assert!(Money::fen(1).split(&[0, 0]).is_err());
        assert!(Money::fen(-1).split(&[1]).is_err());
    }

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert!(Money::fen(i64::MAX).checked_add(Money::fen(1)).is_err());
        assert!(Money::fen(i64::MIN).checked_sub(Money::fen(1)).is_err());
        assert!(Money::fen(i64::MAX / 2 + 1).checked_mul(2).is_err());
        assert_eq!(Money::yuan(3).unwrap(), Money::fen(300));
    }

    #[test]
    fn commission_rounds_half_up() {
        assert_eq!(Money::fen(1999).bps(500).unwrap(), Money::fen(100)); // 99.95 → 100
        assert_eq!(Money::fen(1989).bps(500).unwrap(), Money::fen(99)); // 99.45 → 99
        assert!(Money::fen(100).bps(10_001).is_err());
    }

    #[test]
    fn display_is_yuan_with_two_decimals() {
        assert_eq!(Money::fen(5).to_string(), "¥0.05");
        assert_eq!(Money::fen(-250).to_string(), "-¥2.50");
        assert_eq!(format!("{:?}", Money::fen(7)), "Money(7 fen)");
    }

    proptest! {
        #[test]
        fn split_parts_sum_to_total_and_stay_within_one_fen(total in 0i64..10_000_000, weights in prop::collection::vec(0i64..100_000, 1..12)) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let parts = Money::fen(total).split(&weights).unwrap();
            prop_assert_eq!(Money::sum(parts.iter().copied()).unwrap(), Money::fen(total));
            let w: i128 = weights.iter().map(|w| *w as i128).sum();
            for (p, wi) in parts.iter().zip(&weights) {
                let exact_floor = (total as i128 * *wi as i128) / w;
                prop_assert!(p.0 as i128 == exact_floor || p.0 as i128 == exact_floor + 1);
            }
        }
    }
}
