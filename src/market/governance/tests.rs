//! Cross-module properties: the modules composed the way the store composes them, in memory.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::Actor;
use super::deposit::{DepositAccount, DepositPolicy, DepositStatus, pay_in_txn};
use super::ledger::{Account, Ledger, NegativePolicy, TxnBuilder, TxnKind};
use super::penalty::{
    Penalty, PenaltyContext, PenaltyPolicy, PenaltyStatus, Restriction, ShipmentFacts, Violation, detect_late_shipment,
    points_in_period,
};
use super::score::{PenaltySample, ScoreCard, ScoreInputs, ScorePolicy, compute};
use crate::market::Money;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

/// One merchant's governed state, in memory.
struct World {
    ledger: Ledger,
    deposit: DepositAccount,
    deposit_policy: DepositPolicy,
    policy: PenaltyPolicy,
    penalties: Vec<Penalty>,
    listed: BTreeSet<String>,
    restrictions: Vec<Restriction>,
    next: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    deposit_balance: Money,
    deposit_status: DepositStatus,
    grace_until: Option<DateTime<Utc>>,
    points: i64,
    score: ScoreCard,
    listed: BTreeSet<String>,
    restrictions: BTreeSet<String>,
    buyer_paid: Money,
}

impl World {
    fn new(balance: i64, required: i64, products: usize) -> World {
        let deposit_policy = DepositPolicy::default();
        let mut w = World {
            ledger: Ledger::new(NegativePolicy::default()),
            deposit: DepositAccount::new("m1", Money::fen(required), t0()),
            deposit_policy,
            policy: PenaltyPolicy::default(),
            penalties: vec![],
            listed: (0..products).map(|i| format!("p{i}")).collect(),
            restrictions: vec![],
            next: 0,
        };
        if balance > 0 {
            let t = pay_in_txn("m1", Money::fen(balance), "deposit:m1").build("init", t0()).unwrap();
            w.ledger.post(t).unwrap();
        }
        w.reevaluate(t0());
        w
    }

    fn id(&mut self) -> String {
        self.next += 1;
        format!("x{}", self.next)
    }

    fn balance(&self) -> Money {
        self.ledger.balance(&Account::MerchantDeposit("m1".into()))
    }

    fn reevaluate(&mut self, now: DateTime<Utc>) {
        let b = self.balance();
        self.deposit.reevaluate(b, now, &self.deposit_policy);
    }

    fn penalize(&mut self, v: Violation, now: DateTime<Utc>) -> usize {
        let rule = self.policy.rule(&v.rule_code).unwrap().clone();
        let pid = self.id();
        let mut p = Penalty::new(pid, v, &rule, now).unwrap();
        let ctx = PenaltyContext {
            points_before: points_in_period(&self.penalties, self.policy.period, now),
            deposit_balance: self.balance(),
            listed_products: self.listed.iter().cloned().collect(),
        };
        let mut n = self.next;
        let mut next = || {
            n += 1;
            format!("x{n}")
        };
        let (plan, _) =
            p.confirm(&rule, &self.policy, &ctx, &self.deposit_policy, Actor::Timer, now, &mut next).unwrap();
        self.next = n;
        for t in plan.txns {
            self.ledger.post(t).unwrap();
        }
        for prod in &plan.products {
            assert!(self.listed.remove(prod), "delisted a product that was not listed");
        }
        self.restrictions.extend(plan.add_restrictions);
        self.penalties.push(p);
        self.reevaluate(now);
        self.penalties.len() - 1
    }

    /// WeChat Pay confirmed every compensation owed to buyers.
    fn pay_buyers(&mut self, now: DateTime<Utc>) {
        let owed: Vec<(Account, Money)> = self
            .ledger
            .balances()
            .iter()
            .filter(|(a, m)| matches!(a, Account::BuyerRefundPayable(_)) && m.is_positive())
            .map(|(a, m)| (a.clone(), *m))
            .collect();
        for (a, m) in owed {
            let id = self.id();
            let t =
                TxnBuilder::new(TxnKind::RefundPaid, "comp").transfer(a, Account::Clearing, m).build(id, now).unwrap();
            self.ledger.post(t).unwrap();
        }
    }

    fn uphold(&mut self, i: usize, now: DateTime<Utc>) {
        let policy = self.policy.clone();
        self.penalties[i].appeal("证据", now, &policy).unwrap();
        let comp_paid = self.penalties[i].effects.iter().any(|e| {
            matches!(e, super::penalty::Effect::DepositDeducted { buyer_id: Some(b), compensation, .. }
                if compensation.is_positive() && self.ledger.balance(&Account::BuyerRefundPayable(b.clone())) < *compensation)
        });
        let orig = self.penalties[i].deduction_txn_id().and_then(|id| self.ledger.txn(id)).cloned();
        let mut n = self.next;
        let mut next = || {
            n += 1;
            format!("x{n}")
        };
        let (plan, tr) = self.penalties[i].uphold_appeal("ok", comp_paid, orig.as_ref(), now, &mut next).unwrap();
        self.next = n;
        assert_eq!(tr.to, "appeal_upheld");
        for t in plan.txns {
            self.ledger.post(t).unwrap();
        }
        for prod in plan.products {
            assert!(self.listed.insert(prod), "relisted a product that was listed");
        }
        self.restrictions.retain(|r| !plan.lift_restrictions.contains(&r.id));
        self.reevaluate(now);
    }

    fn snapshot(&self, now: DateTime<Utc>) -> Snapshot {
        let inputs = ScoreInputs {
            penalties: self
                .penalties
                .iter()
                .map(|p| PenaltySample {
                    at: p.confirmed_at.unwrap(),
                    minus_score: p.minus_score,
                    counts: p.status.counts(),
                })
                .collect(),
            orders: 10,
            ..ScoreInputs::default()
        };
        let buyer_paid = self
            .ledger
            .balances()
            .iter()
            .filter(|(a, _)| matches!(a, Account::BuyerRefundPayable(_)))
            .map(|(_, m)| *m)
            .fold(Money::ZERO, |a, b| a.checked_add(b).unwrap());
        Snapshot {
            deposit_balance: self.balance(),
            deposit_status: self.deposit.status,
            grace_until: self.deposit.grace_until,
            points: points_in_period(&self.penalties, self.policy.period, now),
            score: compute("m1", &inputs, now, &ScorePolicy::default()),
            listed: self.listed.clone(),
            restrictions: self.restrictions.iter().filter(|r| r.active(now)).map(|r| r.id.clone()).collect(),
            buyer_paid,
        }
    }
}

fn violation(code: &str, order: usize, products: &[usize], amount: i64, now: DateTime<Utc>) -> Violation {
    let f = ShipmentFacts {
        order_id: format!("o{order}"),
        merchant_id: "m1".into(),
        buyer_id: format!("b{order}"),
        amount: Money::fen(amount),
        paid_at: now - Duration::hours(50),
        deadline: now - Duration::hours(2),
        shipped_at: None,
        first_carrier_event_at: None,
        product_ids: products.iter().map(|p| format!("p{p}")).collect(),
    };
    let mut v = detect_late_shipment(&f, now).unwrap();
    v.rule_code = code.into();
    v.key = format!("{code}:o{order}");
    v
}

const CODES: [&str; 5] = ["late_shipment", "fake_shipment", "after_sale_timeout", "dispute_lost", "manual"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn an_upheld_appeal_restores_score_points_deposit_and_listings_exactly(
        balance in 0i64..120_000,
        required in 0i64..100_000,
        products in 1usize..8,
        prior in prop::collection::vec((0usize..5, prop::collection::vec(0usize..8, 0..3), 100i64..500_000), 0..8),
        last in (0usize..5, prop::collection::vec(0usize..8, 0..3), 100i64..500_000),
        pay_before_appeal in any::<bool>(),
    ) {
        let mut w = World::new(balance, required, products);
        let mut now = t0();
        for (i, (code, prods, amount)) in prior.into_iter().enumerate() {
            now += Duration::hours(1);
            w.penalize(violation(CODES[code], i, &prods, amount, now), now);
        }
        w.pay_buyers(now);
        now += Duration::hours(1);
        let decide_at = now + Duration::days(1);
        let before = w.snapshot(decide_at);
        let grace_before = w.deposit.grace_until;
        let (code, prods, amount) = last;
        let i = w.penalize(violation(CODES[code], 99, &prods, amount, now), now);
        prop_assert!(w.penalties[i].status == PenaltyStatus::Confirmed);
        if pay_before_appeal { w.pay_buyers(now); }
        w.uphold(i, decide_at);
        let mut after = w.snapshot(decide_at);
        // Compensation already paid to the buyer stays paid; only the merchant side is restored.
        if pay_before_appeal { after.buyer_paid = before.buyer_paid; }
        prop_assert_eq!(&after, &before);
        prop_assert_eq!(w.deposit.grace_until, grace_before);
        prop_assert_eq!(w.ledger.total(), Money::ZERO);
        prop_assert_eq!(&w.ledger.projected(), w.ledger.balances());
    }
}

#[test]
fn a_late_shipment_becomes_a_penalty_and_a_deposit_deduction_then_an_upheld_appeal_undoes_it() {
    let mut w = World::new(50_000, 50_000, 2);
    let now = t0() + Duration::hours(3);
    let before = w.snapshot(now + Duration::days(2));
    let i = w.penalize(violation("late_shipment", 1, &[0], 20_000, now), now);
    assert_eq!(w.balance(), Money::fen(49_000));
    assert_eq!(w.ledger.balance(&Account::BuyerRefundPayable("b1".into())), Money::fen(1_000));
    assert_eq!(w.deposit.status, DepositStatus::Insufficient);
    assert_eq!(w.deposit.grace_until, Some(now + Duration::days(7)));
    let mid = w.snapshot(now + Duration::days(2));
    assert_eq!((mid.points, mid.score.penalty_deduction), (2, 100));
    w.pay_buyers(now);
    w.uphold(i, now + Duration::days(2));
    let after = w.snapshot(now + Duration::days(2));
    assert_eq!(after.deposit_balance, Money::fen(50_000));
    assert_eq!(after.deposit_status, DepositStatus::Funded);
    assert_eq!(after.points, before.points);
    assert_eq!(after.score, before.score);
    // The platform refilled the deposit; the buyer keeps the compensation.
    assert_eq!(w.ledger.balance(&Account::PlatformPenalty), Money::fen(-1_000));
    assert_eq!(w.ledger.balance(&Account::Clearing), Money::fen(-49_000));
}
