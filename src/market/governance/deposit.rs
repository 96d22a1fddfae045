//! Merchant deposits (保证金).
//!
//! The required amount comes from the merchant's categories (WeChat sets a deposit per category; by
//! default the merchant holds the maximum over its categories). The balance is the ledger's
//! [`Account::MerchantDeposit`]; this module keeps the status:
//!
//! ```text
//! Unfunded ──pay-in ≥ required──▶ Funded ──deduction / higher requirement──▶ Insufficient
//!                                   ▲                                          │ grace period ends
//!                                   └────────────top-up ≥ required─────────────┤ (timer)
//!                                   └────────────top-up ≥ required──── Restricted ◀┘
//! any but Closed ──exit──▶ Exiting ──windows closed, nothing open, refund──▶ Refunding ──all refunds paid──▶ Closed
//!                               └──────────────────(nothing to refund)───────────────────────────────▶ Closed
//! ```
//!
//! The exit refund goes back through WeChat Pay refunds of the deposit's own pay-ins
//! ([`DepositPayment`]s): [`split_refund`] spreads the balance over them **newest first** (WeChat Pay
//! refunds a payment only within [`REFUND_WINDOW_DAYS`] of it, so the newest are the most likely
//! still refundable), each giving at most what is left of it after earlier refunds. What no payment
//! can carry (payments older than a year, pay-ins booked with `deposit_paid_in` that have no
//! [`DepositPayment`]) becomes a [`DepositRefundStatus::Manual`] row: the platform pays it outside
//! WeChat Pay refunds and confirms it. The deposit stays Refunding until every row has succeeded.
//!
//! A deduction needs a [`DeductionBasis`], which only a confirmed penalty, a dispute decided against the
//! merchant or a decided guarantee claim can produce, and may pay compensation to a buyer.
//!
//! ```
//! use wxshop::market::Money;
//! use wxshop::market::governance::deposit::{DepositAccount, DepositPolicy, DepositStatus, required_amount};
//! let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let policy = DepositPolicy::default();
//! let required = required_amount(&[Money::fen(200_000), Money::fen(500_000)], &policy);
//! assert_eq!(required, Money::fen(500_000));
//! let mut acct = DepositAccount::new("m1", required, t0);
//! assert_eq!(acct.status, DepositStatus::Unfunded);
//! acct.reevaluate(Money::fen(500_000), t0, &policy);
//! assert_eq!(acct.status, DepositStatus::Funded);
//! ```

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{Account, TxnBuilder, TxnKind};
use super::{Actor, Transition};
use crate::market::Money;
use crate::market::error::{MarketError, Result};

str_enum! {
    /// The state of a merchant's deposit.
    pub enum DepositStatus {
        /// Never reached the required amount.
        Unfunded => "unfunded",
        /// At or above the required amount.
        Funded => "funded",
        /// Below the required amount, inside the grace period.
        Insufficient => "insufficient",
        /// Below the required amount after the grace period: the merchant is restricted.
        Restricted => "restricted",
        /// The merchant is leaving; the deposit waits for the windows to close.
        Exiting => "exiting",
        /// The exit refund is asked of WeChat Pay (or awaits a manual payout); a failed part waits for
        /// the platform to retry it.
        Refunding => "refunding",
        /// Refunded and closed.
        Closed => "closed",
    }
}

/// How the required deposit follows from the merchant's categories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "fen", rename_all = "snake_case")]
pub enum Requirement {
    /// The largest category deposit (WeChat's rule for several categories).
    MaxOverCategories,
    /// The sum over categories.
    SumOverCategories,
    /// A fixed amount, whatever the categories.
    Fixed(Money),
}

/// The platform's deposit policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositPolicy {
    /// How the requirement is computed.
    pub requirement: Requirement,
    /// Hours a merchant has to top up after falling below the requirement.
    pub grace_hours: i64,
    /// Whether a deduction may take the deposit below zero (the merchant then owes the platform).
    pub allow_debt: bool,
}

impl Default for DepositPolicy {
    fn default() -> Self {
        DepositPolicy { requirement: Requirement::MaxOverCategories, grace_hours: 7 * 24, allow_debt: false }
    }
}

/// The required deposit for categories whose own deposits are `category_deposits`.
pub fn required_amount(category_deposits: &[Money], policy: &DepositPolicy) -> Money {
    match &policy.requirement {
        Requirement::MaxOverCategories => category_deposits.iter().copied().max().unwrap_or(Money::ZERO),
        Requirement::SumOverCategories => {
            Money::fen(category_deposits.iter().map(|m| m.as_fen()).fold(0i64, |a, b| a.saturating_add(b)))
        }
        Requirement::Fixed(m) => *m,
    }
}

/// A merchant's deposit account (its balance lives in the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositAccount {
    /// The merchant.
    pub merchant_id: String,
    /// The amount it must hold.
    pub required: Money,
    /// The status.
    pub status: DepositStatus,
    /// While Insufficient: when the grace period ends.
    pub grace_until: Option<DateTime<Utc>>,
    /// When the exit was requested.
    pub exit_requested_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

str_enum! {
    /// What a deposit deduction is based on.
    pub enum BasisKind {
        /// A confirmed penalty.
        Penalty => "penalty",
        /// A dispute decided against the merchant.
        Dispute => "dispute",
        /// A decided guarantee claim (保障单).
        GuaranteeClaim => "guarantee_claim",
    }
}

/// Proof that a deduction is allowed: only [`Penalty`](super::penalty::Penalty) and
/// [`Dispute`](super::aftersale::Dispute) can make one, and only once confirmed or decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeductionBasis {
    kind: BasisKind,
    id: String,
}

impl DeductionBasis {
    pub(crate) fn new(kind: BasisKind, id: impl Into<String>) -> Self {
        DeductionBasis { kind, id: id.into() }
    }

    /// The kind.
    pub fn kind(&self) -> BasisKind {
        self.kind
    }

    /// The penalty, dispute or claim id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The ledger reference (`"penalty:…"`).
    pub fn reference(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

/// A planned deduction: post `txn`, then re-evaluate the account.
#[derive(Debug, Clone)]
pub struct DeductionPlan {
    /// The ledger transaction (deposit → buyer refund payable and/or platform penalty).
    pub txn: TxnBuilder,
    /// Taken from the deposit.
    pub deducted: Money,
    /// Of which paid to the buyer as compensation.
    pub compensation: Money,
    /// Asked but not taken (the deposit ran out and debt is not allowed).
    pub shortfall: Money,
}

/// Plans a deduction of `amount` from a deposit holding `balance`, of which `compensation` (at most
/// `amount`) goes to `buyer`. Without debt, at most the balance is taken and the compensation is paid
/// first.
pub fn plan_deduction(
    merchant_id: &str,
    balance: Money,
    amount: Money,
    basis: &DeductionBasis,
    compensation: Option<(&str, Money)>,
    policy: &DepositPolicy,
) -> Result<DeductionPlan> {
    if !amount.is_positive() {
        return Err(MarketError::invalid("a deduction must be positive"));
    }
    let (buyer, comp_asked) = match compensation {
        Some((_, c)) if c.is_negative() || c > amount => {
            return Err(MarketError::invalid(format!("compensation {c} outside 0..={amount}")));
        }
        Some((b, c)) => (Some(b), c),
        None => (None, Money::ZERO),
    };
    let deducted = if policy.allow_debt { amount } else { amount.min(balance.max(Money::ZERO)) };
    let comp = comp_asked.min(deducted);
    let to_platform = deducted.checked_sub(comp)?;
    let deposit = Account::MerchantDeposit(merchant_id.to_string());
    let mut txn = TxnBuilder::new(TxnKind::DepositDeduction, basis.reference());
    if let Some(b) = buyer {
        txn = txn.transfer(deposit.clone(), Account::BuyerRefundPayable(b.to_string()), comp);
    }
    txn = txn.transfer(deposit, Account::PlatformPenalty, to_platform);
    Ok(DeductionPlan { txn, deducted, compensation: comp, shortfall: amount.checked_sub(deducted)? })
}

/// The pay-in (or top-up) transaction, once WeChat Pay confirmed the payment.
pub fn pay_in_txn(merchant_id: &str, amount: Money, reference: impl Into<String>) -> TxnBuilder {
    TxnBuilder::new(TxnKind::DepositPayIn, reference).transfer(
        Account::Clearing,
        Account::MerchantDeposit(merchant_id.to_string()),
        amount,
    )
}

/// What still holds a leaving merchant's deposit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCheck {
    /// Orders not yet completed or cancelled.
    pub open_orders: u64,
    /// After-sale cases not closed.
    pub open_cases: u64,
    /// Disputes and guarantee claims not decided.
    pub open_disputes: u64,
    /// Settlements not yet released.
    pub open_settlements: u64,
    /// When the last after-sale and dispute window closes (`None` if there never was an order).
    pub windows_close_at: Option<DateTime<Utc>>,
}

impl DepositAccount {
    /// A new account; call [`reevaluate`](Self::reevaluate) with the balance to set its status.
    pub fn new(merchant_id: impl Into<String>, required: Money, now: DateTime<Utc>) -> Self {
        DepositAccount {
            merchant_id: merchant_id.into(),
            required,
            status: DepositStatus::Unfunded,
            grace_until: None,
            exit_requested_at: None,
            updated_at: now,
        }
    }

    /// The merchant is restricted because of its deposit.
    pub fn restricts_merchant(&self) -> bool {
        self.status == DepositStatus::Restricted
    }

    fn go(&mut self, to: DepositStatus, actor: Actor, now: DateTime<Utc>, note: &str) -> Transition {
        let from = self.status;
        self.status = to;
        self.updated_at = now;
        Transition { from: Some(from.to_string()), to: to.to_string(), actor, at: now, note: note.into() }
    }

    /// Re-derives the status after the balance changed (pay-in, deduction, reversal). Entering
    /// Insufficient sets `grace_until`: schedule the grace timer at that instant.
    pub fn reevaluate(&mut self, balance: Money, now: DateTime<Utc>, policy: &DepositPolicy) -> Option<Transition> {
        use DepositStatus::*;
        match self.status {
            Exiting | Refunding | Closed => None,
            _ if balance >= self.required => {
                if self.status == Funded {
                    return None;
                }
                self.grace_until = None;
                Some(self.go(Funded, Actor::Platform, now, "deposit_funded"))
            }
            Funded => {
                self.grace_until = Some(now + Duration::hours(policy.grace_hours));
                Some(self.go(Insufficient, Actor::Platform, now, "deposit_below_required"))
            }
            Unfunded | Insufficient | Restricted => None,
        }
    }

    /// A new requirement (categories changed, or the category rule did).
    pub fn set_required(
        &mut self,
        required: Money,
        balance: Money,
        now: DateTime<Utc>,
        policy: &DepositPolicy,
    ) -> Option<Transition> {
        self.required = required;
        self.updated_at = now;
        self.reevaluate(balance, now, policy)
    }

    /// The grace timer fired: a still-insufficient deposit restricts the merchant. Early or stale
    /// firings do nothing.
    pub fn grace_expired(&mut self, balance: Money, now: DateTime<Utc>) -> Option<Transition> {
        match (self.status, self.grace_until) {
            (DepositStatus::Insufficient, Some(until)) if now >= until && balance < self.required => {
                self.grace_until = None;
                Some(self.go(DepositStatus::Restricted, Actor::Timer, now, "deposit_grace_expired"))
            }
            _ => None,
        }
    }

    /// The merchant asks to leave: no new orders; the deposit waits for the windows.
    pub fn request_exit(&mut self, now: DateTime<Utc>) -> Result<Transition> {
        if matches!(self.status, DepositStatus::Exiting | DepositStatus::Refunding | DepositStatus::Closed) {
            return Err(MarketError::illegal("deposit", self.status, DepositStatus::Exiting));
        }
        self.exit_requested_at = Some(now);
        self.grace_until = None;
        Ok(self.go(DepositStatus::Exiting, Actor::Merchant, now, "exit_requested"))
    }

    /// The exit refund: only while Exiting, once every window has closed and nothing is open. Returns the
    /// ledger transaction moving the whole balance to [`Account::DepositRefundPayable`] (none if zero)
    /// and the transition: to Refunding, or straight to Closed when there is nothing to refund.
    pub fn exit_refund(
        &mut self,
        balance: Money,
        check: &ExitCheck,
        now: DateTime<Utc>,
    ) -> Result<(Option<TxnBuilder>, Transition)> {
        if self.status != DepositStatus::Exiting {
            return Err(MarketError::illegal("deposit", self.status, DepositStatus::Refunding));
        }
        let open = [
            ("orders", check.open_orders),
            ("cases", check.open_cases),
            ("disputes", check.open_disputes),
            ("settlements", check.open_settlements),
        ];
        let open: Vec<String> = open.iter().filter(|(_, n)| *n > 0).map(|(w, n)| format!("{n} {w}")).collect();
        if !open.is_empty() {
            return Err(MarketError::OpenItems(open.join(", ")));
        }
        // Open items first (they say what to do), then the windows that follow them.
        if let Some(at) = check.windows_close_at
            && now < at
        {
            return Err(MarketError::Window { what: "after-sale and dispute", at });
        }
        if balance.is_negative() {
            return Err(MarketError::OpenItems(format!("the merchant owes {}", Money::fen(-balance.as_fen()))));
        }
        if !balance.is_positive() {
            return Ok((None, self.go(DepositStatus::Closed, Actor::Platform, now, "deposit_refunded")));
        }
        let txn = refund_payable_txn(&self.merchant_id, balance);
        Ok((Some(txn), self.go(DepositStatus::Refunding, Actor::Platform, now, "deposit_refunding")))
    }

    /// Every exit refund succeeded: Refunding → Closed.
    pub fn refunds_done(&mut self, now: DateTime<Utc>) -> Result<Transition> {
        if self.status != DepositStatus::Refunding {
            return Err(MarketError::illegal("deposit", self.status, DepositStatus::Closed));
        }
        Ok(self.go(DepositStatus::Closed, Actor::Gateway, now, "deposit_refunded"))
    }
}

/// Moves `amount` of a leaving merchant's deposit to [`Account::DepositRefundPayable`] (the refund is
/// asked for; the money is owed to the merchant until WeChat Pay confirms it).
pub fn refund_payable_txn(merchant_id: &str, amount: Money) -> TxnBuilder {
    TxnBuilder::new(TxnKind::DepositRefund, format!("deposit:{merchant_id}")).transfer(
        Account::MerchantDeposit(merchant_id.to_string()),
        Account::DepositRefundPayable(merchant_id.to_string()),
        amount,
    )
}

/// A deposit refund arrived (WeChat Pay confirmed it, or the platform paid it manually):
/// [`Account::DepositRefundPayable`] → [`Account::Clearing`].
pub fn refund_paid_txn(merchant_id: &str, amount: Money) -> TxnBuilder {
    TxnBuilder::new(TxnKind::DepositRefundPaid, format!("deposit:{merchant_id}")).transfer(
        Account::DepositRefundPayable(merchant_id.to_string()),
        Account::Clearing,
        amount,
    )
}

#[cfg(test)]
mod tests {
    use super::super::ledger::{Ledger, NegativePolicy};
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn basis() -> DeductionBasis {
        DeductionBasis::new(BasisKind::Penalty, "p1")
    }

    #[test]
    fn requirement_is_the_maximum_over_categories_by_default() {
        let cats = [Money::fen(100_000), Money::fen(300_000), Money::fen(200_000)];
        assert_eq!(required_amount(&cats, &DepositPolicy::default()), Money::fen(300_000));
        let sum = DepositPolicy { requirement: Requirement::SumOverCategories, ..DepositPolicy::default() };
        assert_eq!(required_amount(&cats, &sum), Money::fen(600_000));
        let fixed = DepositPolicy { requirement: Requirement::Fixed(Money::fen(5)), ..DepositPolicy::default() };
        assert_eq!(required_amount(&cats, &fixed), Money::fen(5));
        assert_eq!(required_amount(&[], &DepositPolicy::default()), Money::ZERO);
    }

    #[test]
    fn funded_then_insufficient_then_restricted_at_the_grace_boundary_then_funded() {
        let p = DepositPolicy::default();
        let mut a = DepositAccount::new("m1", Money::fen(10_000), t0());
        assert_eq!(a.reevaluate(Money::fen(9_999), t0(), &p), None);
        assert_eq!(a.status, DepositStatus::Unfunded);
        assert_eq!(a.reevaluate(Money::fen(10_000), t0(), &p).unwrap().to, "funded");
        let t1 = t0() + Duration::hours(1);
        let tr = a.reevaluate(Money::fen(7_000), t1, &p).unwrap();
        assert_eq!((tr.from.as_deref(), tr.to.as_str()), (Some("funded"), "insufficient"));
        assert_eq!(a.grace_until, Some(t1 + Duration::hours(168)));
        // 1 minute before the grace period ends: nothing; 1 minute after: restricted.
        assert_eq!(a.grace_expired(Money::fen(7_000), t1 + Duration::hours(168) - Duration::minutes(1)), None);
        assert_eq!(a.status, DepositStatus::Insufficient);
        let tr = a.grace_expired(Money::fen(7_000), t1 + Duration::hours(168) + Duration::minutes(1)).unwrap();
        assert_eq!((tr.to.as_str(), tr.actor), ("restricted", Actor::Timer));
        assert!(a.restricts_merchant());
        assert_eq!(a.reevaluate(Money::fen(10_000), t1 + Duration::days(8), &p).unwrap().to, "funded");
        assert!(!a.restricts_merchant());
    }

    #[test]
    fn topping_up_within_grace_makes_the_timer_a_no_op() {
        let p = DepositPolicy::default();
        let mut a = DepositAccount::new("m1", Money::fen(100), t0());
        a.reevaluate(Money::fen(100), t0(), &p);
        a.reevaluate(Money::fen(50), t0(), &p);
        a.reevaluate(Money::fen(100), t0() + Duration::hours(2), &p);
        assert_eq!(a.grace_expired(Money::fen(100), t0() + Duration::days(30)), None);
        assert_eq!(a.status, DepositStatus::Funded);
    }

    #[test]
    fn a_higher_requirement_opens_the_grace_period() {
        let p = DepositPolicy::default();
        let mut a = DepositAccount::new("m1", Money::fen(100), t0());
        a.reevaluate(Money::fen(100), t0(), &p);
        assert_eq!(a.set_required(Money::fen(150), Money::fen(100), t0(), &p).unwrap().to, "insufficient");
    }

    #[test]
    fn deduction_without_debt_takes_at_most_the_balance_and_pays_the_buyer_first() {
        let p = DepositPolicy::default();
        let plan =
            plan_deduction("m1", Money::fen(400), Money::fen(1_000), &basis(), Some(("b1", Money::fen(300))), &p)
                .unwrap();
        assert_eq!(
            (plan.deducted, plan.compensation, plan.shortfall),
            (Money::fen(400), Money::fen(300), Money::fen(600))
        );
        let txn = plan.txn.build("t", t0()).unwrap();
        let d = txn.deltas();
        assert_eq!(d[&Account::MerchantDeposit("m1".into())], -400);
        assert_eq!(d[&Account::BuyerRefundPayable("b1".into())], 300);
        assert_eq!(d[&Account::PlatformPenalty], 100);
        let debt = DepositPolicy { allow_debt: true, ..p.clone() };
        let plan = plan_deduction("m1", Money::fen(400), Money::fen(1_000), &basis(), None, &debt).unwrap();
        assert_eq!((plan.deducted, plan.shortfall), (Money::fen(1_000), Money::ZERO));
        assert!(
            plan_deduction("m1", Money::fen(400), Money::fen(10), &basis(), Some(("b", Money::fen(11))), &p).is_err()
        );
        assert!(plan_deduction("m1", Money::fen(400), Money::ZERO, &basis(), None, &p).is_err());
        assert_eq!(basis().reference(), "penalty:p1");
    }

    #[test]
    fn exit_refund_waits_for_windows_and_open_items() {
        let p = DepositPolicy::default();
        let mut a = DepositAccount::new("m1", Money::fen(100), t0());
        a.reevaluate(Money::fen(100), t0(), &p);
        assert!(a.exit_refund(Money::fen(100), &ExitCheck::default(), t0()).is_err());
        a.request_exit(t0()).unwrap();
        let close = t0() + Duration::days(17);
        let check = ExitCheck { windows_close_at: Some(close), ..ExitCheck::default() };
        let e = a.exit_refund(Money::fen(100), &check, close - Duration::minutes(1)).unwrap_err();
        assert!(matches!(e, MarketError::Window { .. }));
        let busy = ExitCheck { open_cases: 1, open_disputes: 2, ..check.clone() };
        let e = a.exit_refund(Money::fen(100), &busy, close).unwrap_err();
        assert_eq!(e.to_string(), "blocked by open items: 1 cases, 2 disputes");
        let (txn, tr) = a.exit_refund(Money::fen(100), &check, close).unwrap();
        let txn = txn.unwrap().build("t", close).unwrap();
        assert_eq!(txn.deltas()[&Account::DepositRefundPayable("m1".into())], 100);
        assert_eq!(txn.deltas()[&Account::MerchantDeposit("m1".into())], -100);
        assert_eq!(tr.to, "refunding");
        assert_eq!(a.reevaluate(Money::fen(0), close, &p), None);
        assert!(a.request_exit(close).is_err());
        assert_eq!(a.refunds_done(close).unwrap().to, "closed");
        // Nothing to refund: straight to Closed.
        let mut b = DepositAccount::new("m2", Money::fen(100), t0());
        b.request_exit(t0()).unwrap();
        let (txn, tr) = b.exit_refund(Money::ZERO, &ExitCheck::default(), t0()).unwrap();
        assert!(txn.is_none());
        assert_eq!(tr.to, "closed");
    }

    #[derive(Debug, Clone)]
    enum Op {
        PayIn(i64),
        Deduct(i64, i64),
        Require(i64),
        Wait(i64),
    }

    proptest! {
        #[test]
        fn deposit_never_negative_unless_policy_allows(
            ops in prop::collection::vec(prop_oneof![
                (1i64..50_000).prop_map(Op::PayIn),
                (1i64..80_000, 0i64..100).prop_map(|(a, c)| Op::Deduct(a, c)),
                (0i64..60_000).prop_map(Op::Require),
                (0i64..400).prop_map(Op::Wait),
            ], 1..60),
            allow_debt in any::<bool>(),
        ) {
            let policy = DepositPolicy { allow_debt, ..DepositPolicy::default() };
            let mut ledger = Ledger::new(NegativePolicy { deposit_debt: allow_debt, available_debt: false });
            let acct_id = Account::MerchantDeposit("m1".into());
            let mut now = t0();
            let mut a = DepositAccount::new("m1", Money::fen(20_000), now);
            for (i, op) in ops.into_iter().enumerate() {
                let bal = ledger.balance(&acct_id);
                match op {
                    Op::PayIn(f) => {
                        ledger.post(pay_in_txn("m1", Money::fen(f), "d").build(format!("t{i}"), now).unwrap()).unwrap();
                    }
                    Op::Deduct(f, pct) => {
                        let comp = Money::fen(f * pct / 100);
                        let plan = plan_deduction("m1", bal, Money::fen(f), &basis(), Some(("b1", comp)), &policy).unwrap();
                        prop_assert_eq!(plan.deducted.checked_add(plan.shortfall).unwrap(), Money::fen(f));
                        if !plan.txn.is_empty() {
                            ledger.post(plan.txn.build(format!("t{i}"), now).unwrap()).unwrap();
                        }
                    }
                    Op::Require(f) => { a.set_required(Money::fen(f), bal, now, &policy); }
                    Op::Wait(h) => {
                        now += Duration::hours(h);
                        a.grace_expired(ledger.balance(&acct_id), now);
                    }
                }
                let bal = ledger.balance(&acct_id);
                a.reevaluate(bal, now, &policy);
                if !allow_debt { prop_assert!(!bal.is_negative()); }
                prop_assert_eq!(ledger.total(), Money::ZERO);
                // The status always agrees with the balance.
                match a.status {
                    DepositStatus::Funded => prop_assert!(bal >= a.required),
                    DepositStatus::Insufficient | DepositStatus::Restricted | DepositStatus::Unfunded => prop_assert!(bal < a.required),
                    _ => {}
                }
            }
        }
    }
}

/// The `out_trade_no` prefix of deposit payments: payment notifications carrying it are deposits, not
/// checkouts (checkout ids are 32 hex digits, so they never start with `dep`).
pub const DEPOSIT_TRADE_PREFIX: &str = "dep";

/// A deposit pay-in (or top-up) asked of WeChat Pay: pending until its payment notification arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositPayment {
    /// The `out_trade_no`: [`DEPOSIT_TRADE_PREFIX`] and 29 hex digits (32 characters, WeChat's limit).
    pub id: String,
    /// The merchant paying.
    pub merchant_id: String,
    /// The merchant's idempotency key (one payment per key).
    pub idempotency_key: String,
    /// Amount asked.
    pub amount: Money,
    /// The payer (JSAPI needs an openid).
    pub payer_openid: String,
    /// WeChat Pay's transaction id, once paid.
    pub transaction_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Paid (from the notification).
    pub paid_at: Option<DateTime<Utc>>,
    /// Closed unpaid: WeChat Pay still reported it unpaid once its prepay order had expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

impl DepositPayment {
    /// Whether the notification arrived.
    pub fn is_paid(&self) -> bool {
        self.transaction_id.is_some()
    }

    /// Whether it was closed unpaid.
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some() && !self.is_paid()
    }

    /// Whether WeChat Pay still refunds it at `now` (within [`REFUND_WINDOW_DAYS`] of payment).
    pub fn refundable_at(&self, now: DateTime<Utc>) -> bool {
        self.paid_at.is_some_and(|p| now < p + Duration::days(REFUND_WINDOW_DAYS))
    }
}

/// A fresh deposit `out_trade_no` (32 characters of `[0-9a-z]`, time-ordered).
pub fn new_deposit_trade_no() -> String {
    let u = crate::market::clock::new_id();
    // Drop the UUID's constant version digit to stay within 32 characters.
    format!("{DEPOSIT_TRADE_PREFIX}{}{}", &u[..12], &u[13..30])
}

/// The `out_refund_no` prefix of deposit exit refunds: refund notifications carrying it are deposits'
/// (market refund ids are 32 hex digits, so they never start with `dpr`).
pub const DEPOSIT_REFUND_PREFIX: &str = "dpr";

/// WeChat Pay refunds a payment only within this many days of it (交易时间超过一年的订单无法退款).
pub const REFUND_WINDOW_DAYS: i64 = 365;

/// A fresh deposit refund id, the `out_refund_no` (32 characters of `[0-9a-z]`, time-ordered).
pub fn new_deposit_refund_no() -> String {
    let u = crate::market::clock::new_id();
    format!("{DEPOSIT_REFUND_PREFIX}{}{}", &u[..12], &u[13..30])
}

str_enum! {
    /// The state of one deposit refund.
    pub enum DepositRefundStatus {
        /// Recorded; the WeChat Pay refund call is scheduled (or being retried).
        Requested => "requested",
        /// WeChat Pay accepted it; its notification (or a query) concludes it.
        Processing => "processing",
        /// The money reached the merchant.
        Succeeded => "succeeded",
        /// WeChat Pay refused or closed it: the amount waits for the platform to retry (a new refund).
        Failed => "failed",
        /// No WeChat Pay payment can carry it (older than a year, or paid in outside WeChat Pay): the
        /// platform pays it by other means and confirms it.
        Manual => "manual",
    }
}

/// One part of a leaving merchant's deposit refund: a WeChat Pay refund of one deposit payment, or a
/// manual payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRefund {
    /// The `out_refund_no` ([`DEPOSIT_REFUND_PREFIX`] and 29 digits).
    pub id: String,
    /// The leaving merchant.
    pub merchant_id: String,
    /// The deposit payment refunded (its `out_trade_no`); `None` for a manual payout.
    pub payment_id: Option<String>,
    /// Its WeChat Pay transaction id.
    pub transaction_id: Option<String>,
    /// The payment's amount (WeChat Pay's `amount.total`); the amount itself for a manual payout.
    pub total: Money,
    /// Refunded by this row.
    pub amount: Money,
    /// Status.
    pub status: DepositRefundStatus,
    /// WeChat Pay's refund id, once known.
    pub wx_refund_id: Option<String>,
    /// Why it is manual, or why it failed.
    pub note: Option<String>,
    /// The failed refund this one retries.
    pub retry_of: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl DepositRefund {
    /// Whether it still counts against its payment (everything but a failure does).
    pub fn holds_payment(&self) -> bool {
        self.status != DepositRefundStatus::Failed
    }

    /// Whether the money is still on its way (requested, processing or awaiting a manual payout).
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            DepositRefundStatus::Requested | DepositRefundStatus::Processing | DepositRefundStatus::Manual
        )
    }
}

/// How an exit refund is spread: `(deposit payment id, amount)` per WeChat Pay refund, newest payment
/// first, and what no payment can carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundSplit {
    /// WeChat Pay refunds, newest payment first.
    pub parts: Vec<(String, Money)>,
    /// The rest: a manual payout.
    pub manual: Money,
}

/// Spreads `amount` over a merchant's paid deposit `payments`, newest first: each gives at most its
/// amount less what its earlier refunds (all but failed ones) hold; payments WeChat Pay no longer
/// refunds at `now` give nothing. The rest is [`RefundSplit::manual`].
///
/// ```
/// use wxshop::market::Money;
/// use wxshop::market::governance::deposit::{DepositPayment, split_refund};
/// let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
/// let paid = |id: &str, fen: i64, days: i64| DepositPayment {
///     id: id.into(), merchant_id: "m1".into(), idempotency_key: id.into(), amount: Money::fen(fen),
///     payer_openid: "o".into(), transaction_id: Some(format!("wx{id}")),
///     created_at: t0, paid_at: Some(t0 + chrono::Duration::days(days)), closed_at: None,
/// };
/// let split = split_refund(Money::fen(25_000), &[paid("a", 20_000, 0), paid("b", 10_000, 3)], &[], t0);
/// assert_eq!(split.parts, vec![("b".to_string(), Money::fen(10_000)), ("a".to_string(), Money::fen(15_000))]);
/// assert_eq!(split.manual, Money::ZERO);
/// ```
pub fn split_refund(
    amount: Money,
    payments: &[DepositPayment],
    refunds: &[DepositRefund],
    now: DateTime<Utc>,
) -> RefundSplit {
    let mut paid: Vec<&DepositPayment> = payments.iter().filter(|p| p.is_paid()).collect();
    paid.sort_by(|a, b| (b.paid_at, &b.id).cmp(&(a.paid_at, &a.id)));
    let mut left = amount.as_fen().max(0);
    let mut parts = Vec::new();
    for p in paid {
        if left == 0 {
            break;
        }
        if !p.refundable_at(now) {
            continue;
        }
        let held: i64 = refunds
            .iter()
            .filter(|r| r.payment_id.as_deref() == Some(p.id.as_str()) && r.holds_payment())
            .map(|r| r.amount.as_fen())
            .sum();
        let take = (p.amount.as_fen() - held).max(0).min(left);
        if take > 0 {
            parts.push((p.id.clone(), Money::fen(take)));
            left -= take;
        }
    }
    RefundSplit { parts, manual: Money::fen(left) }
}

#[cfg(test)]
mod refund_tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn paid(id: &str, fen: i64, at: DateTime<Utc>) -> DepositPayment {
        DepositPayment {
            id: id.into(),
            merchant_id: "m1".into(),
            idempotency_key: id.into(),
            amount: Money::fen(fen),
            payer_openid: "o".into(),
            transaction_id: Some(format!("wx{id}")),
            created_at: at,
            paid_at: Some(at),
            closed_at: None,
        }
    }

    fn refund(id: &str, payment: &str, fen: i64, status: DepositRefundStatus) -> DepositRefund {
        DepositRefund {
            id: id.into(),
            merchant_id: "m1".into(),
            payment_id: Some(payment.into()),
            transaction_id: None,
            total: Money::fen(fen),
            amount: Money::fen(fen),
            status,
            wx_refund_id: None,
            note: None,
            retry_of: None,
            created_at: t0(),
            updated_at: t0(),
        }
    }

    #[test]
    fn the_split_takes_the_newest_payment_first_and_only_its_remainder() {
        let ps = [paid("old", 30_000, t0()), paid("new", 12_345, t0() + Duration::days(10))];
        let now = t0() + Duration::days(20);
        let s = split_refund(Money::fen(40_000), &ps, &[], now);
        assert_eq!(s.parts, vec![("new".into(), Money::fen(12_345)), ("old".into(), Money::fen(27_655))]);
        assert_eq!(s.manual, Money::ZERO);
        // 2 345 of "new" already refunded (succeeded), 100 of "old" failed (so it counts again).
        let rs = [
            refund("r1", "new", 2_345, DepositRefundStatus::Succeeded),
            refund("r2", "old", 100, DepositRefundStatus::Failed),
        ];
        let s = split_refund(Money::fen(40_001), &ps, &rs, now);
        assert_eq!(s.parts, vec![("new".into(), Money::fen(10_000)), ("old".into(), Money::fen(30_000))]);
        assert_eq!(s.manual, Money::fen(1));
    }

    #[test]
    fn a_payment_older_than_a_year_is_left_to_a_manual_payout() {
        let ps = [paid("old", 30_000, t0()), paid("new", 5_000, t0() + Duration::days(100))];
        let edge = t0() + Duration::days(REFUND_WINDOW_DAYS);
        let s = split_refund(Money::fen(35_000), &ps, &[], edge - Duration::seconds(1));
        assert_eq!((s.parts.len(), s.manual), (2, Money::ZERO));
        let s = split_refund(Money::fen(35_000), &ps, &[], edge);
        assert_eq!(s.parts, vec![("new".into(), Money::fen(5_000))]);
        assert_eq!(s.manual, Money::fen(30_000));
        let unpaid = DepositPayment { transaction_id: None, paid_at: None, ..paid("x", 9, t0()) };
        assert_eq!(split_refund(Money::fen(9), &[unpaid], &[], t0()).manual, Money::fen(9));
    }
}
