//! Merchants (店铺) and their lifecycle.
//!
//! `Applying → Active ⇄ Restricted → Suspended → Closing → Closed`. A restriction names exactly what it
//! blocks — listing, selling (checkout), payout — and nothing else; Suspended blocks everything but the
//! orders already placed; Closing takes no new orders; Closed needs every order finished first.
//!
//! ```
//! use wxshop::market::{MerchantStatus, Restrictions};
//! assert!(MerchantStatus::Active.can_become(MerchantStatus::Restricted));
//! assert!(!MerchantStatus::Closed.can_become(MerchantStatus::Active));
//! let r = Restrictions::LISTING | Restrictions::PAYOUT;
//! assert!(r.contains(Restrictions::LISTING) && !r.contains(Restrictions::CHECKOUT));
//! ```

use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{MarketError, Result};

/// Where a merchant is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MerchantStatus {
    /// Applied, not yet approved: nothing is allowed.
    Applying,
    /// Trading normally.
    Active,
    /// Trading under rectification: the [`Restrictions`] say what is blocked.
    Restricted,
    /// Blocked from listing, selling and payout (orders already placed still ship).
    Suspended,
    /// Leaving: no new listings or orders; waits for open orders to finish.
    Closing,
    /// Gone.
    Closed,
}

impl MerchantStatus {
    /// Every status.
    pub const ALL: [MerchantStatus; 6] = [
        MerchantStatus::Applying,
        MerchantStatus::Active,
        MerchantStatus::Restricted,
        MerchantStatus::Suspended,
        MerchantStatus::Closing,
        MerchantStatus::Closed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Applying => "Applying",
            MerchantStatus::Active => "Active",
            MerchantStatus::Restricted => "Restricted",
            MerchantStatus::Suspended => "Suspended",
            MerchantStatus::Closing => "Closing",
            MerchantStatus::Closed => "Closed",
        }
    }

    /// Whether the lifecycle graph has the edge `self → to` (a same-state move is not an edge).
    pub fn can_become(self, to: MerchantStatus) -> bool {
        use MerchantStatus::*;
        matches!(
            (self, to),
            (Applying, Active)
                | (Applying, Closed)
                | (Active, Restricted)
                | (Active, Suspended)
                | (Active, Closing)
                | (Restricted, Active)
                | (Restricted, Suspended)
                | (Restricted, Closing)
                | (Suspended, Active)
                | (Suspended, Closing)
                | (Closing, Closed)
        )
    }
}

impl fmt::Display for MerchantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MerchantStatus {
    type Err = MarketError;
    fn from_str(s: &str) -> Result<Self> {
        MerchantStatus::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| MarketError::invalid(format!("unknown merchant status {s}")))
    }
}

/// What a restricted merchant may not do (a bit set).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Restrictions(u32);

impl Restrictions {
    /// Nothing blocked.
    pub const NONE: Restrictions = Restrictions(0);
    /// No new listings.
    pub const LISTING: Restrictions = Restrictions(1);
    /// No new orders.
    pub const CHECKOUT: Restrictions = Restrictions(2);
    /// No payouts.
    pub const PAYOUT: Restrictions = Restrictions(4);
    const KNOWN: u32 = 7;

    /// From stored bits; unknown bits are refused.
    pub fn from_bits(bits: u32) -> Result<Self> {
        if bits & !Self::KNOWN != 0 {
            return Err(MarketError::invalid(format!("unknown restriction bits {bits:#x}")));
        }
        Ok(Restrictions(bits))
    }

    /// The bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Restrictions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Nothing set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `self` without the bits of `other`.
    pub fn without(self, other: Restrictions) -> Restrictions {
        Restrictions(self.0 & !other.0)
    }
}

impl BitOr for Restrictions {
    type Output = Restrictions;
    fn bitor(self, rhs: Restrictions) -> Restrictions {
        Restrictions(self.0 | rhs.0)
    }
}

impl fmt::Debug for Restrictions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        for (bit, name) in [(Self::LISTING, "LISTING"), (Self::CHECKOUT, "CHECKOUT"), (Self::PAYOUT, "PAYOUT")] {
            if self.contains(bit) {
                names.push(name);
            }
        }
        write!(f, "Restrictions({})", if names.is_empty() { "NONE".into() } else { names.join("|") })
    }
}

/// A merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    /// Id (UUIDv7 hex).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The WeChat Pay sub-merchant id (二级商户 / 特约商户) when paid in partner mode.
    pub sub_mchid: Option<String>,
    /// Lifecycle status.
    pub status: MerchantStatus,
    /// What is blocked while Restricted (empty otherwise).
    pub restrictions: Restrictions,
    /// The part of `restrictions` the platform set by hand ([`Merchants::restrict_merchant`](crate::market::handles::Merchants::restrict_merchant)): governance
    /// keeps it when it recomputes the status (a deposit re-funded, a penalty restriction expired) until
    /// the platform lifts it ([`Merchants::lift_restrictions`](crate::market::handles::Merchants::lift_restrictions), [`Merchants::reinstate_merchant`](crate::market::handles::Merchants::reinstate_merchant)).
    ///
    /// [`Merchants::restrict_merchant`](crate::market::handles::Merchants::restrict_merchant): crate::market::Market::restrict_merchant
    /// [`Merchants::lift_restrictions`](crate::market::handles::Merchants::lift_restrictions): crate::market::Market::lift_restrictions
    /// [`Merchants::reinstate_merchant`](crate::market::handles::Merchants::reinstate_merchant): crate::market::Market::reinstate_merchant
    #[serde(default)]
    pub manual_restrictions: Restrictions,
    /// Suspended by the platform by hand ([`Merchants::suspend_merchant`](crate::market::handles::Merchants::suspend_merchant)): governance never lifts it;
    /// only [`Merchants::reinstate_merchant`](crate::market::handles::Merchants::reinstate_merchant) does.
    ///
    /// [`Merchants::suspend_merchant`](crate::market::handles::Merchants::suspend_merchant): crate::market::Market::suspend_merchant
    /// [`Merchants::reinstate_merchant`](crate::market::handles::Merchants::reinstate_merchant): crate::market::Market::reinstate_merchant
    #[serde(default)]
    pub manual_suspension: bool,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Merchant {
    /// May create or re-list products.
    pub fn can_list(&self) -> bool {
        match self.status {
            MerchantStatus::Active => true,
            MerchantStatus::Restricted => !self.restrictions.contains(Restrictions::LISTING),
            _ => false,
        }
    }

    /// May take new orders.
    pub fn can_sell(&self) -> bool {
        match self.status {
            MerchantStatus::Active => true,
            MerchantStatus::Restricted => !self.restrictions.contains(Restrictions::CHECKOUT),
            _ => false,
        }
    }

    /// May receive payouts (a closing merchant still gets what it is owed).
    pub fn can_payout(&self) -> bool {
        match self.status {
            MerchantStatus::Active | MerchantStatus::Closing => true,
            MerchantStatus::Restricted => !self.restrictions.contains(Restrictions::PAYOUT),
            _ => false,
        }
    }

    /// Fails with [`MarketError::MerchantBlocked`] unless the merchant may do `action`.
    pub fn require(&self, action: &'static str) -> Result<()> {
        let ok = match action {
            "list" => self.can_list(),
            "sell" => self.can_sell(),
            "payout" => self.can_payout(),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(MarketError::MerchantBlocked {
                merchant_id: self.id.clone(),
                status: format!("{}{}", self.status, restriction_suffix(self.restrictions)),
                action,
            })
        }
    }

    /// The merchant after moving to `to` with `restrictions` (which only a Restricted merchant may
    /// carry). `Ok(None)` when nothing changes (a repeated call is a no-op).
    pub fn moved(&self, to: MerchantStatus, restrictions: Restrictions, at: DateTime<Utc>) -> Result<Option<Merchant>> {
        let restrictions = if to == MerchantStatus::Restricted { restrictions } else { Restrictions::NONE };
        if to == MerchantStatus::Restricted && restrictions.is_empty() {
            return Err(MarketError::invalid("a restricted merchant needs at least one restriction"));
        }
        if to == self.status {
            if restrictions == self.restrictions {
                return Ok(None);
            }
        } else if !self.status.can_become(to) {
            return Err(MarketError::illegal("merchant", self.status, to));
        }
        let mut next = self.clone();
        next.status = to;
        next.restrictions = restrictions;
        next.updated_at = at;
        Ok(Some(next))
    }
}

fn restriction_suffix(r: Restrictions) -> String {
    if r.is_empty() { String::new() } else { format!(" {r:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant(status: MerchantStatus, r: Restrictions) -> Merchant {
        Merchant {
            id: "m".into(),
            name: "m".into(),
            sub_mchid: None,
            status,
            restrictions: r,
            manual_restrictions: Restrictions::NONE,
            manual_suspension: false,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn each_restriction_blocks_only_what_it_names() {
        let m = merchant(MerchantStatus::Restricted, Restrictions::LISTING);
        assert!(!m.can_list() && m.can_sell() && m.can_payout());
        let m = merchant(MerchantStatus::Restricted, Restrictions::CHECKOUT);
        assert!(m.can_list() && !m.can_sell() && m.can_payout());
        let m = merchant(MerchantStatus::Restricted, Restrictions::PAYOUT);
        assert!(m.can_list() && m.can_sell() && !m.can_payout());
        let m = merchant(MerchantStatus::Suspended, Restrictions::NONE);
        assert!(!m.can_list() && !m.can_sell() && !m.can_payout());
        let m = merchant(MerchantStatus::Closing, Restrictions::NONE);
        assert!(!m.can_list() && !m.can_sell() && m.can_payout());
        let m = merchant(MerchantStatus::Applying, Restrictions::NONE);
        assert!(!m.can_list() && !m.can_sell() && !m.can_payout());
    }

    #[test]
    fn lifecycle_edges_are_exactly_the_documented_ones() {
        use MerchantStatus::*;
        let mut edges = Vec::new();
        for a in MerchantStatus::ALL {
            for b in MerchantStatus::ALL {
                if a.can_become(b) {
                    edges.push(format!("{a}->{b}"));
                }
            }
        }
        assert_eq!(
            edges,
            [
                "Applying->Active",
                "Applying->Closed",
                "Active->Restricted",
                "Active->Suspended",
                "Active->Closing",
                "Restricted->Active",
                "Restricted->Suspended",
                "Restricted->Closing",
                "Suspended->Active",
                "Suspended->Closing",
                "Closing->Closed"
            ]
        );
        let m = merchant(Closed, Restrictions::NONE);
        assert!(matches!(m.moved(Active, Restrictions::NONE, Utc::now()), Err(MarketError::IllegalTransition { .. })));
        let m = merchant(Active, Restrictions::NONE);
        assert_eq!(m.moved(Active, Restrictions::NONE, Utc::now()).unwrap(), None);
        assert!(m.moved(Restricted, Restrictions::NONE, Utc::now()).is_err());
        let r = m.moved(Restricted, Restrictions::PAYOUT, Utc::now()).unwrap().unwrap();
        assert_eq!(r.restrictions, Restrictions::PAYOUT);
        let back = r.moved(Active, Restrictions::PAYOUT, Utc::now()).unwrap().unwrap();
        assert_eq!(back.restrictions, Restrictions::NONE);
    }

    #[test]
    fn unknown_restriction_bits_are_refused() {
        assert!(Restrictions::from_bits(8).is_err());
        assert_eq!(Restrictions::from_bits(5).unwrap(), Restrictions::LISTING | Restrictions::PAYOUT);
    }
}
