//! The double-entry ledger every governed amount goes through.
//!
//! Accounts hold value (a positive balance is value held for the owner); [`Account::Clearing`] is the
//! mirror of money held at WeChat Pay, so it runs negative while the platform holds funds. A transaction
//! is a list of signed entries that sums to zero; entries are never changed, a mistake is corrected by a
//! [reversal](Txn::reversal) that negates every entry. A balance is the sum of its account's entries
//! ([`Ledger::projected`] recomputes it from scratch).
//!
//! ```
//! use wxshop::market::Money;
//! use wxshop::market::governance::ledger::{Account, Ledger, TxnBuilder, TxnKind};
//! let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let mut l = Ledger::default();
//! let pay_in = TxnBuilder::new(TxnKind::DepositPayIn, "deposit:m1")
//!     .transfer(Account::Clearing, Account::MerchantDeposit("m1".into()), Money::fen(50_000))
//!     .build("t1", t0).unwrap();
//! l.post(pay_in).unwrap();
//! let undo = l.reverse("t1", "t2", t0).unwrap();
//! assert_eq!(undo.reverses.as_deref(), Some("t1"));
//! assert_eq!(l.balance(&Account::MerchantDeposit("m1".into())), Money::ZERO);
//! assert_eq!(l.projected(), l.balances().clone());
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::market::Money;
use crate::market::error::{MarketError, Result};

/// A ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// Sale proceeds not yet settled (WeChat holds them frozen until receipt and the after-sale window).
    MerchantPending(String),
    /// Settled, withdrawable.
    MerchantAvailable(String),
    /// Held by the platform (an open dispute on settled money, a restriction).
    MerchantFrozen(String),
    /// The merchant's deposit (保证金).
    MerchantDeposit(String),
    /// A leaving merchant's deposit on its way back: owed to the merchant until WeChat Pay confirms
    /// the refund (or the platform pays it manually).
    DepositRefundPayable(String),
    /// The platform's commission income.
    PlatformCommission,
    /// The platform's penalty income; also funds reimbursements when an upheld appeal must restore a
    /// deposit whose compensation already reached the buyer.
    PlatformPenalty,
    /// Refunds and compensation owed to a buyer, until WeChat Pay confirms they arrived.
    BuyerRefundPayable(String),
    /// Commission owed to a promoter (分销).
    PromoterCommission(String),
    /// Money held at WeChat Pay: the counterpart of every pay-in and payout.
    Clearing,
}

impl Account {
    /// The merchant this account belongs to, if any.
    pub fn merchant(&self) -> Option<&str> {
        match self {
            Account::MerchantPending(m)
            | Account::MerchantAvailable(m)
            | Account::MerchantFrozen(m)
            | Account::MerchantDeposit(m)
            | Account::DepositRefundPayable(m) => Some(m),
            _ => None,
        }
    }

    /// Whether a posting may take this account below zero under `policy`.
    pub fn may_go_negative(&self, policy: &NegativePolicy) -> bool {
        match self {
            Account::Clearing | Account::PlatformCommission | Account::PlatformPenalty => true,
            Account::MerchantDeposit(_) => policy.deposit_debt,
            Account::MerchantAvailable(_) => policy.available_debt,
            Account::MerchantPending(_)
            | Account::MerchantFrozen(_)
            | Account::BuyerRefundPayable(_)
            | Account::DepositRefundPayable(_)
            | Account::PromoterCommission(_) => false,
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::MerchantPending(m) => write!(f, "merchant:{m}:pending"),
            Account::MerchantAvailable(m) => write!(f, "merchant:{m}:available"),
            Account::MerchantFrozen(m) => write!(f, "merchant:{m}:frozen"),
            Account::MerchantDeposit(m) => write!(f, "merchant:{m}:deposit"),
            Account::DepositRefundPayable(m) => write!(f, "merchant:{m}:deposit_refund_payable"),
            Account::PlatformCommission => f.write_str("platform:commission"),
            Account::PlatformPenalty => f.write_str("platform:penalty"),
            Account::BuyerRefundPayable(b) => write!(f, "buyer:{b}:refund_payable"),
            Account::PromoterCommission(p) => write!(f, "promoter:{p}:commission"),
            Account::Clearing => f.write_str("clearing"),
        }
    }
}

impl FromStr for Account {
    type Err = MarketError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || MarketError::invalid(format!("bad account {s:?}"));
        match s {
            "platform:commission" => return Ok(Account::PlatformCommission),
            "platform:penalty" => return Ok(Account::PlatformPenalty),
            "clearing" => return Ok(Account::Clearing),
            _ => {}
        }
        let (owner, rest) = s.split_once(':').ok_or_else(bad)?;
        let (id, kind) = rest.rsplit_once(':').ok_or_else(bad)?;
        if id.is_empty() {
            return Err(bad());
        }
        let id = id.to_string();
        Ok(match (owner, kind) {
            ("merchant", "pending") => Account::MerchantPending(id),
            ("merchant", "available") => Account::MerchantAvailable(id),
            ("merchant", "frozen") => Account::MerchantFrozen(id),
            ("merchant", "deposit") => Account::MerchantDeposit(id),
            ("merchant", "deposit_refund_payable") => Account::DepositRefundPayable(id),
            ("buyer", "refund_payable") => Account::BuyerRefundPayable(id),
            ("promoter", "commission") => Account::PromoterCommission(id),
            _ => return Err(bad()),
        })
    }
}

impl Serialize for Account {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Account {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which accounts may run into debt (the platform's own accounts and clearing always may).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NegativePolicy {
    /// A deduction may take the deposit below zero (the merchant owes the rest).
    pub deposit_debt: bool,
    /// A refund after settlement may take the available balance below zero.
    pub available_debt: bool,
}

str_enum! {
    /// What a transaction records.
    pub enum TxnKind {
        /// A paid merchant order: clearing → pending.
        Sale => "sale",
        /// A refund owed to the buyer: pending (or available, frozen, deposit) → buyer refund payable.
        Refund => "refund",
        /// WeChat Pay confirmed a refund or compensation: buyer refund payable → clearing.
        RefundPaid => "refund_paid",
        /// Settlement released: pending → commission, promoter and available.
        Release => "release",
        /// The merchant withdrew: available → clearing.
        Payout => "payout",
        /// Deposit paid in or topped up: clearing → deposit.
        DepositPayIn => "deposit_pay_in",
        /// Deposit deducted for a confirmed penalty, dispute or guarantee claim.
        DepositDeduction => "deposit_deduction",
        /// Deposit returned on exit, once the refund is asked for: deposit → deposit refund payable.
        DepositRefund => "deposit_refund",
        /// WeChat Pay confirmed a deposit refund (or the platform paid it manually): deposit refund
        /// payable → clearing.
        DepositRefundPaid => "deposit_refund_paid",
        /// Promoter commission paid out: promoter → clearing.
        PromoterPayout => "promoter_payout",
        /// Funds held: available → frozen.
        Hold => "hold",
        /// Funds released from a hold: frozen → available (or on to the buyer).
        Unhold => "unhold",
        /// The platform restores a deposit whose compensation already reached the buyer.
        Reimbursement => "reimbursement",
        /// A correction: every entry of the original, negated.
        Reversal => "reversal",
    }
}

/// One signed amount on one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The account.
    pub account: Account,
    /// Positive credits the account, negative debits it.
    pub amount: Money,
}

/// An immutable, balanced ledger transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Id (also its idempotency key: posting the same transaction twice is a no-op).
    pub id: String,
    /// What it records.
    pub kind: TxnKind,
    /// What it is about (`"order:…"`, `"penalty:…"`, `"case:…"`).
    pub reference: String,
    /// When it was posted.
    pub at: DateTime<Utc>,
    /// The transaction this one reverses.
    pub reverses: Option<String>,
    /// The entries (at least two, none zero, summing to zero).
    pub entries: Vec<Entry>,
}

impl Txn {
    /// The sum of the entries (zero for a valid transaction).
    pub fn sum(&self) -> i128 {
        self.entries.iter().map(|e| e.amount.as_fen() as i128).sum()
    }

    /// Checks the shape: at least two entries, no zero entry, sums to zero.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(MarketError::invalid("ledger transaction without id"));
        }
        if self.entries.len() < 2 {
            return Err(MarketError::invalid(format!("ledger transaction {} has fewer than two entries", self.id)));
        }
        if self.entries.iter().any(|e| e.amount == Money::ZERO) {
            return Err(MarketError::invalid(format!("ledger transaction {} has a zero entry", self.id)));
        }
        let sum = self.sum();
        if sum != 0 {
            return Err(MarketError::Unbalanced {
                txn: self.id.clone(),
                sum: sum.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            });
        }
        Ok(())
    }

    /// The correcting transaction: every entry negated, referencing this one.
    pub fn reversal(&self, id: impl Into<String>, at: DateTime<Utc>) -> Txn {
        Txn {
            id: id.into(),
            kind: TxnKind::Reversal,
            reference: self.reference.clone(),
            at,
            reverses: Some(self.id.clone()),
            entries: self
                .entries
                .iter()
                .map(|e| Entry { account: e.account.clone(), amount: Money::fen(-e.amount.as_fen()) })
                .collect(),
        }
    }

    /// The net change this transaction makes to each account it touches.
    pub fn deltas(&self) -> BTreeMap<Account, i128> {
        let mut m = BTreeMap::new();
        for e in &self.entries {
            *m.entry(e.account.clone()).or_insert(0i128) += e.amount.as_fen() as i128;
        }
        m
    }
}

/// Builds a transaction out of transfers.
#[derive(Debug, Clone)]
pub struct TxnBuilder {
    kind: TxnKind,
    reference: String,
    entries: Vec<Entry>,
    error: Option<String>,
}

impl TxnBuilder {
    /// A new, empty transaction.
    pub fn new(kind: TxnKind, reference: impl Into<String>) -> Self {
        TxnBuilder { kind, reference: reference.into(), entries: Vec::new(), error: None }
    }

    /// Moves a non-negative `amount` from one account to another (nothing if zero).
    pub fn transfer(mut self, from: Account, to: Account, amount: Money) -> Self {
        if amount.is_negative() {
            self.error.get_or_insert(format!("negative transfer {amount} from {from} to {to}"));
        } else if amount.is_positive() {
            self.entries.push(Entry { account: from, amount: Money::fen(-amount.as_fen()) });
            self.entries.push(Entry { account: to, amount });
        }
        self
    }

    /// Whether no transfer was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The transaction, validated.
    pub fn build(self, id: impl Into<String>, at: DateTime<Utc>) -> Result<Txn> {
        if let Some(e) = self.error {
            return Err(MarketError::Invalid(e));
        }
        let txn = Txn {
            id: id.into(),
            kind: self.kind,
            reference: self.reference,
            at,
            reverses: None,
            entries: self.entries,
        };
        txn.validate()?;
        Ok(txn)
    }
}

/// Checks that posting `txn` keeps every account it lowers within `policy`, given current balances.
pub fn check_balances(txn: &Txn, current: impl Fn(&Account) -> Money, policy: &NegativePolicy) -> Result<()> {
    for (account, delta) in txn.deltas() {
        let after = current(&account).as_fen() as i128 + delta;
        if delta < 0 && after < 0 && !account.may_go_negative(policy) {
            return Err(MarketError::NegativeBalance { account: account.to_string(), balance: after as i64 });
        }
        if after > i64::MAX as i128 || after < i64::MIN as i128 {
            return Err(MarketError::invalid(format!("account {account} would overflow")));
        }
    }
    Ok(())
}

/// An in-memory ledger (the reference the store's SQL ledger is tested against).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    txns: Vec<Txn>,
    index: HashMap<String, usize>,
    reversed: HashSet<String>,
    balances: BTreeMap<Account, Money>,
    policy: NegativePolicy,
}

impl Ledger {
    /// An empty ledger with `policy`.
    pub fn new(policy: NegativePolicy) -> Self {
        Ledger { policy, ..Ledger::default() }
    }

    /// Posts `txn`: validated, balance-checked, all or nothing. Posting a transaction whose id is already
    /// posted is a no-op when identical and an error otherwise.
    pub fn post(&mut self, txn: Txn) -> Result<()> {
        if let Some(&i) = self.index.get(&txn.id) {
            return if self.txns[i] == txn {
                Ok(())
            } else {
                Err(MarketError::invalid(format!("ledger transaction id {} reused for a different posting", txn.id)))
            };
        }
        txn.validate()?;
        if let Some(orig) = &txn.reverses {
            if !self.index.contains_key(orig) {
                return Err(MarketError::NotFound { entity: "ledger transaction", id: orig.clone() });
            }
            if self.reversed.contains(orig) {
                return Err(MarketError::AlreadyDone("reversal"));
            }
        }
        check_balances(&txn, |a| self.balance(a), &self.policy)?;
        for (account, delta) in txn.deltas() {
            let b = self.balances.entry(account).or_insert(Money::ZERO);
            *b = Money::fen((b.as_fen() as i128 + delta) as i64);
        }
        if let Some(orig) = &txn.reverses {
            self.reversed.insert(orig.clone());
        }
        self.index.insert(txn.id.clone(), self.txns.len());
        self.txns.push(txn);
        Ok(())
    }

    /// Posts the reversal of transaction `original` under the new id `id`.
    pub fn reverse(&mut self, original: &str, id: impl Into<String>, at: DateTime<Utc>) -> Result<Txn> {
        let i = *self
            .index
            .get(original)
            .ok_or_else(|| MarketError::NotFound { entity: "ledger transaction", id: original.into() })?;
        if self.txns[i].kind == TxnKind::Reversal {
            return Err(MarketError::invalid("a reversal is corrected by a new posting, not reversed"));
        }
        let rev = self.txns[i].reversal(id, at);
        self.post(rev.clone())?;
        Ok(rev)
    }

    /// The balance of `account` (zero if it never moved).
    pub fn balance(&self, account: &Account) -> Money {
        self.balances.get(account).copied().unwrap_or(Money::ZERO)
    }

    /// Every balance that ever moved.
    pub fn balances(&self) -> &BTreeMap<Account, Money> {
        &self.balances
    }

    /// The balances recomputed from the entries alone.
    pub fn projected(&self) -> BTreeMap<Account, Money> {
        let mut m: BTreeMap<Account, i128> = BTreeMap::new();
        for t in &self.txns {
            for e in &t.entries {
                *m.entry(e.account.clone()).or_insert(0) += e.amount.as_fen() as i128;
            }
        }
        m.into_iter().map(|(a, v)| (a, Money::fen(v as i64))).collect()
    }

    /// The sum of every balance: always zero.
    pub fn total(&self) -> Money {
        Money::fen(self.balances.values().map(|m| m.as_fen() as i128).sum::<i128>() as i64)
    }

    /// Every posted transaction, in order.
    pub fn txns(&self) -> &[Txn] {
        &self.txns
    }

    /// A posted transaction.
    pub fn txn(&self, id: &str) -> Option<&Txn> {
        self.index.get(id).map(|&i| &self.txns[i])
    }

    /// Whether `id` has been reversed.
    pub fn is_reversed(&self, id: &str) -> bool {
        self.reversed.contains(id)
    }

    /// The policy.
    pub fn policy(&self) -> &NegativePolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn m(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn account_strings_round_trip() {
        let all = [
            Account::MerchantPending(m("m1")),
            Account::MerchantAvailable(m("m:1")),
            Account::MerchantFrozen(m("m1")),
            Account::MerchantDeposit(m("m1")),
            Account::PlatformCommission,
            Account::PlatformPenalty,
            Account::BuyerRefundPayable(m("b1")),
            Account::PromoterCommission(m("p1")),
            Account::Clearing,
        ];
        for a in all {
            assert_eq!(a.to_string().parse::<Account>().unwrap(), a);
        }
        assert_eq!(Account::MerchantAvailable(m("m:1")).to_string(), "merchant:m:1:available");
        assert!("merchant::pending".parse::<Account>().is_err());
        assert!("merchant:m1:other".parse::<Account>().is_err());
        assert!("".parse::<Account>().is_err());
    }

    #[test]
    fn unbalanced_and_empty_transactions_are_refused() {
        let t = Txn {
            id: "t".into(),
            kind: TxnKind::Sale,
            reference: "x".into(),
            at: t0(),
            reverses: None,
            entries: vec![
                Entry { account: Account::Clearing, amount: Money::fen(-100) },
                Entry { account: Account::MerchantPending(m("m1")), amount: Money::fen(99) },
            ],
        };
        assert!(matches!(t.validate(), Err(MarketError::Unbalanced { sum: -1, .. })));
        assert!(TxnBuilder::new(TxnKind::Sale, "x").build("t", t0()).is_err());
        assert!(
            TxnBuilder::new(TxnKind::Sale, "x")
                .transfer(Account::Clearing, Account::PlatformPenalty, Money::fen(-1))
                .build("t", t0())
                .is_err()
        );
    }

    #[test]
    fn a_posting_that_overdraws_a_merchant_account_changes_nothing() {
        let mut l = Ledger::default();
        l.post(
            TxnBuilder::new(TxnKind::Sale, "o1")
                .transfer(Account::Clearing, Account::MerchantPending(m("m1")), Money::fen(500))
                .build("t1", t0())
                .unwrap(),
        )
        .unwrap();
        let over = TxnBuilder::new(TxnKind::Refund, "o1")
            .transfer(Account::MerchantPending(m("m1")), Account::BuyerRefundPayable(m("b1")), Money::fen(501))
            .build("t2", t0())
            .unwrap();
        let e = l.post(over).unwrap_err();
        assert!(
            matches!(e, MarketError::NegativeBalance { ref account, balance: -1 } if account == "merchant:m1:pending")
        );
        assert_eq!(l.balance(&Account::MerchantPending(m("m1"))), Money::fen(500));
        assert_eq!(l.txns().len(), 1);
    }

    #[test]
    fn deposit_debt_is_a_policy() {
        let deduct = TxnBuilder::new(TxnKind::DepositDeduction, "p1")
            .transfer(Account::MerchantDeposit(m("m1")), Account::PlatformPenalty, Money::fen(300))
            .build("t1", t0())
            .unwrap();
        assert!(Ledger::default().post(deduct.clone()).is_err());
        let mut l = Ledger::new(NegativePolicy { deposit_debt: true, available_debt: false });
        l.post(deduct).unwrap();
        assert_eq!(l.balance(&Account::MerchantDeposit(m("m1"))), Money::fen(-300));
    }

    #[test]
    fn same_id_is_idempotent_and_a_reversal_happens_once() {
        let mut l = Ledger::default();
        let t = TxnBuilder::new(TxnKind::DepositPayIn, "d")
            .transfer(Account::Clearing, Account::MerchantDeposit(m("m1")), Money::fen(700))
            .build("t1", t0())
            .unwrap();
        l.post(t.clone()).unwrap();
        l.post(t).unwrap();
        assert_eq!(l.txns().len(), 1);
        let other = TxnBuilder::new(TxnKind::DepositPayIn, "d")
            .transfer(Account::Clearing, Account::MerchantDeposit(m("m1")), Money::fen(1))
            .build("t1", t0())
            .unwrap();
        assert!(l.post(other).is_err());
        l.reverse("t1", "r1", t0()).unwrap();
        assert!(matches!(l.reverse("t1", "r2", t0()), Err(MarketError::AlreadyDone(_))));
        assert!(l.reverse("r1", "r3", t0()).is_err());
        assert_eq!(l.balance(&Account::MerchantDeposit(m("m1"))), Money::ZERO);
        assert_eq!(l.balance(&Account::Clearing), Money::ZERO);
        assert!(l.is_reversed("t1"));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Transfer { from: usize, to: usize, fen: i64 },
        Reverse { pick: usize },
    }

    fn accounts() -> Vec<Account> {
        vec![
            Account::Clearing,
            Account::MerchantPending(m("m1")),
            Account::MerchantAvailable(m("m1")),
            Account::MerchantFrozen(m("m1")),
            Account::MerchantDeposit(m("m1")),
            Account::MerchantPending(m("m2")),
            Account::PlatformCommission,
            Account::PlatformPenalty,
            Account::BuyerRefundPayable(m("b1")),
            Account::PromoterCommission(m("p1")),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..10, 0usize..10, 1i64..100_000).prop_map(|(from, to, fen)| Op::Transfer { from, to, fen }),
            1 => any::<usize>().prop_map(|pick| Op::Reverse { pick }),
        ]
    }

    proptest! {
        #[test]
        fn ledger_sums_to_zero_and_balances_equal_entries_after_every_step(
            ops in prop::collection::vec(op(), 1..80),
            deposit_debt in any::<bool>(),
        ) {
            let acc = accounts();
            let mut l = Ledger::new(NegativePolicy { deposit_debt, available_debt: false });
            for (i, op) in ops.into_iter().enumerate() {
                let before = l.balances().clone();
                let r = match op {
                    Op::Transfer { from, to, fen } if from != to => {
                        let t = TxnBuilder::new(TxnKind::Hold, "p")
                            .transfer(acc[from].clone(), acc[to].clone(), Money::fen(fen))
                            .build(format!("t{i}"), t0())
                            .unwrap();
                        l.post(t).map(|_| ())
                    }
                    Op::Transfer { .. } => Ok(()),
                    Op::Reverse { pick } => {
                        let n = l.txns().len();
                        if n == 0 { Ok(()) } else {
                            let id = l.txns()[pick % n].id.clone();
                            l.reverse(&id, format!("r{i}"), t0()).map(|_| ())
                        }
                    }
                };
                if r.is_err() {
                    prop_assert_eq!(l.balances(), &before, "a refused posting changed balances");
                }
                prop_assert_eq!(l.total(), Money::ZERO);
                prop_assert_eq!(&l.projected(), l.balances());
                for t in l.txns() { prop_assert_eq!(t.sum(), 0); }
                for (a, b) in l.balances() {
                    if !a.may_go_negative(l.policy()) { prop_assert!(!b.is_negative(), "{a} went to {b}"); }
                }
            }
        }
    }
}
