//! The [`Market`] facade's handles: one per family of operations, each a borrowed view of the
//! market (`market.orders().checkout(…)`, `market.governance().deposits().deposit_prepay(…)`), so a
//! reader finds an operation where its aggregate lives and the facade does not grow one flat list.
//!
//! A handle is `Copy` and costs nothing to make: it is a reference to the market. It dereferences
//! to the [`Market`], so the market's own accessors (`store()`, `config()`, `now()`) stay at hand.
//!
//! ```
//! # async fn f(market: &wxshop::market::Market) -> wxshop::market::Result<()> {
//! let deposits = market.governance().deposits(); // a handle can be kept and reused
//! for m in market.merchants().merchants(100).await? {
//!     let deposit = deposits.deposit(&m.id).await?;
//!     println!("{}: {} of {}", m.id, deposit.balance, deposit.account.required);
//! }
//! # Ok(()) }
//! ```

use super::Market;

macro_rules! handles {
    ($( $(#[$doc:meta])* $name:ident; )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'m> {
            market: &'m Market,
        }

        impl std::ops::Deref for $name<'_> {
            type Target = Market;
            fn deref(&self) -> &Market {
                self.market
            }
        }

        impl std::fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(self.market).finish()
            }
        }
    )*};
}

handles! {
    /// Merchants: onboarding, status (approve, restrict, suspend, close), categories granted.
    Merchants;
    /// Categories and their versioned rules.
    Categories;
    /// The catalogue: products, SKUs, prices, listing and browsing.
    Catalog;
    /// Stock: levels, absolute and relative sets, movements, reconciliation.
    Inventory;
    /// Buyers' carts, merged at login and checked out.
    Carts;
    /// Checkout, orders, shipping, receipt, refunds asked by the market.
    Orders;
    /// WeChat Pay's side: notifications, payment anomalies, trade-bill reconciliation.
    Payments;
    /// API keys of merchant staff and platform operators.
    Access;
    /// Recommendation (千人千面): events, refits, the home feed, related products, ranking.
    Recommend;
    /// Background work and records: timers, the outbox, pruning, the audit trail, durable claims.
    Ops;
    /// Platform governance: its settings, the ledger, and the handles of its parts.
    Governance;
    /// Merchant deposits (保证金).
    Deposits;
    /// After-sale cases and disputes.
    AfterSales;
    /// Reviews and merchant scores (商户评分).
    Reviews;
    /// Violations and penalties (处罚规则).
    Penalties;
    /// Commission rules, settlements, payouts and promoters.
    Settlements;
    /// Compensation transfers to buyers.
    Transfers;
}

macro_rules! accessors {
    ($parent:ty { $($accessor:ident -> $name:ident),* $(,)? }) => {
        impl $parent {
            $(
                #[doc = concat!("The [`", stringify!($name), "`] handle.")]
                pub fn $accessor(&self) -> $name<'_> {
                    $name { market: self }
                }
            )*
        }
    };
}

accessors!(Market {
    merchants -> Merchants,
    categories -> Categories,
    catalog -> Catalog,
    inventory -> Inventory,
    carts -> Carts,
    orders -> Orders,
    payments -> Payments,
    access -> Access,
    ops -> Ops,
    recommend -> Recommend,
    governance -> Governance,
});

impl<'m> Governance<'m> {
    /// The [`Deposits`] handle.
    pub fn deposits(&self) -> Deposits<'m> {
        Deposits { market: self.market }
    }
    /// The [`AfterSales`] handle.
    pub fn aftersales(&self) -> AfterSales<'m> {
        AfterSales { market: self.market }
    }
    /// The [`Reviews`] handle.
    pub fn reviews(&self) -> Reviews<'m> {
        Reviews { market: self.market }
    }
    /// The [`Penalties`] handle.
    pub fn penalties(&self) -> Penalties<'m> {
        Penalties { market: self.market }
    }
    /// The [`Settlements`] handle.
    pub fn settlements(&self) -> Settlements<'m> {
        Settlements { market: self.market }
    }
    /// The [`Transfers`] handle.
    pub fn transfers(&self) -> Transfers<'m> {
        Transfers { market: self.market }
    }
}
