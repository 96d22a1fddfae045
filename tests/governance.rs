//! Governance conformance suite: deposits, reviews and scores, after-sales and disputes, penalties,
//! settlement and profit sharing, on SQLite always and on PostgreSQL when `DATABASE_URL` is set (each
//! case in a fresh schema), with the injectable clock. Every case ends with a clean ledger audit.

mod common;
#[path = "common/stores.rs"]
mod stores;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use wxshop::market::governance::GovernanceConfig;
use wxshop::market::governance::aftersale::{CaseKind, CaseState, CloseReason, Decision, Payer, Waybill};
use wxshop::market::governance::commission::{CommissionRule, Rate, Scope};
use wxshop::market::governance::deposit::{DepositRefund, DepositRefundStatus, DepositStatus};
use wxshop::market::governance::ledger::Account;
use wxshop::market::governance::penalty::PenaltyStatus;
use wxshop::market::governance::review::{Ratings, ReviewStatus, TextVerdict};
use wxshop::market::governance::settlement::{AttributionState, PayoutStatus, SettlementState};
use wxshop::market::*;

use stores::{BoxFut, Factory};

struct Env {
    market: Market,
    gw: Arc<RecordingGateway>,
    clock: Arc<ManualClock>,
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn env(store: Arc<dyn MarketStore>) -> Env {
    let gw = Arc::new(RecordingGateway::default());
    let clock = Arc::new(ManualClock::new(t0()));
    let market = Market::builder(store)
        .payments(gw.clone())
        .shipping(gw.clone())
        .clock(clock.clone())
        .config(MarketConfig { max_retries: 40, ..MarketConfig::default() })
        .build()
        .unwrap();
    Env { market, gw, clock }
}

impl Env {
    fn advance(&self, d: chrono::Duration) {
        self.clock.advance(d.to_std().unwrap());
    }

    async fn run(&self) {
        // Twice: gateway calls scheduled by the first run's last step are due at once.
        self.market.ops().run_due_timers(self.market.now()).await.unwrap();
        self.market.ops().run_due_timers(self.market.now()).await.unwrap();
    }

    async fn audit(&self) {
        let a = self.market.governance().ledger_audit().await.unwrap();
        assert_eq!((a.total, a.mismatches.len(), a.unbalanced.len()), (0, 0, 0), "ledger audit {a:?}");
    }

    async fn balance(&self, a: Account) -> i64 {
        self.market.governance().ledger_balance(&a).await.unwrap().as_fen()
    }
}

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

fn days(d: i64) -> chrono::Duration {
    chrono::Duration::days(d)
}

struct Shop {
    merchant: String,
    category: String,
    product: String,
    skus: Vec<String>,
}

async fn shop(m: &Market, name: &str, deposit: i64, prices: &[i64]) -> Shop {
    shop_of(m, NewMerchant::new(name), deposit, prices).await
}

async fn shop_of(m: &Market, nm: NewMerchant, deposit: i64, prices: &[i64]) -> Shop {
    let name = nm.name.clone();
    let spec = RuleSpec { deposit_required: Money::fen(deposit), ..RuleSpec::default() };
    let (category, _) = m.categories().create_category(&format!("{name} goods"), None, spec).await.unwrap();
    let merchant = m.merchants().create_merchant(nm).await.unwrap();
    m.merchants().approve_merchant(&merchant.id).await.unwrap();
    m.merchants().grant_category(&merchant.id, &category.id).await.unwrap();
    let skus = prices
        .iter()
        .enumerate()
        .map(|(i, p)| NewSku {
            attrs: BTreeMap::from([("size".to_string(), format!("S{i}"))]),
            price: Money::fen(*p),
            purchase_limit: None,
        })
        .collect();
    let p = m
        .catalog()
        .create_product(
            &merchant.id,
            NewProduct {
                category_id: category.id.clone(),
                title: format!("{name} tea"),
                description: String::new(),
                skus,
            },
        )
        .await
        .unwrap();
    m.catalog().list_product(&merchant.id, &p.product.id).await.unwrap();
    let skus: Vec<String> = p.skus.iter().map(|s| s.id.clone()).collect();
    for s in &skus {
        m.inventory().set_stock(&merchant.id, s, 100).await.unwrap();
    }
    Shop { merchant: merchant.id, category: category.id, product: p.product.id, skus }
}

/// Checks out `lines` (sku index, qty) for `buyer` and pays; returns the merchant order id.
async fn buy(e: &Env, s: &Shop, buyer: &str, lines: &[(usize, i64)]) -> String {
    let m = &e.market;
    let req = CheckoutRequest::new(
        buyer,
        new_id(),
        lines.iter().map(|(i, q)| CheckoutLine::new(s.skus[*i].clone(), *q)).collect(),
    );
    let co = m.orders().checkout(req).await.unwrap();
    let n = PaymentNotice {
        notify_id: new_id(),
        out_trade_no: co.group.id.clone(),
        transaction_id: format!("wx{}", co.group.id),
        amount: co.group.total,
        paid_at: m.now(),
        sub_orders: vec![],
    };
    assert_eq!(m.payments().handle_payment_notice(&n).await.unwrap(), NoticeOutcome::Paid);
    m.governance().sync_governance().await.unwrap();
    co.orders[0].id.clone()
}

async fn ship_and_receive(e: &Env, s: &Shop, buyer: &str, order: &str) {
    let m = &e.market;
    let ship = ShipRequest {
        tracking_no: format!("SF{}", &order[..8]),
        express_company: "SF".into(),
        items: None,
        receiver_phone: None,
    };
    m.orders().ship(&s.merchant, order, ship).await.unwrap();
    m.orders().confirm_receipt(buyer, order).await.unwrap();
    m.governance().sync_governance().await.unwrap();
}

fn calls(gw: &RecordingGateway) -> Vec<GatewayCall> {
    gw.calls()
}

fn deposit_refund_calls(gw: &RecordingGateway) -> Vec<RefundRequest> {
    gw.calls()
        .into_iter()
        .filter_map(|c| if let GatewayCall::Refund(r) = c { Some(r) } else { None })
        .filter(|r| r.out_refund_no.starts_with("dpr"))
        .collect()
}

/// Pays a deposit in through WeChat Pay (prepay, then its notification); returns the out_trade_no.
async fn pay_deposit(e: &Env, merchant: &str, fen: i64, key: &str) -> String {
    let m = &e.market;
    let p = m.governance().deposits().deposit_prepay(merchant, Money::fen(fen), "o-boss", key).await.unwrap();
    let n = PaymentNotice {
        notify_id: format!("n-{key}"),
        out_trade_no: p.out_trade_no.clone(),
        transaction_id: format!("42{key}"),
        amount: Money::fen(fen),
        paid_at: m.now(),
        sub_orders: Vec::new(),
    };
    assert_eq!(m.payments().handle_payment_notice(&n).await.unwrap(), NoticeOutcome::Paid);
    p.out_trade_no
}

fn refund_of<'a>(refunds: &'a [DepositRefund], payment: &str) -> &'a DepositRefund {
    refunds.iter().find(|r| r.payment_id.as_deref() == Some(payment)).unwrap()
}

// ------------------------------------------------------------------ the cases

async fn late_shipment_becomes_a_penalty_and_a_deposit_deduction_and_an_upheld_appeal_restores_it(e: Env) {
    let m = &e.market;
    let s = shop(m, "Late", 50_000, &[10_000]).await;
    let d = m.governance().deposits().deposit(&s.merchant).await.unwrap();
    assert_eq!(
        (d.account.status, d.account.required, d.balance),
        (DepositStatus::Unfunded, Money::fen(50_000), Money::ZERO)
    );
    m.governance().deposits().deposit_paid_in(&s.merchant, "wxdep1", Money::fen(50_000)).await.unwrap();
    let d = m.governance().deposits().deposit_paid_in(&s.merchant, "wxdep1", Money::fen(50_000)).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(50_000)), "a repeated pay-in is one");
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    let before = m.governance().reviews().merchant_score(&s.merchant).await.unwrap();

    // 47 h 59 m after payment: not late yet.
    e.advance(hours(48) - minutes(1));
    e.run().await;
    assert!(m.governance().penalties().penalty_log(&s.merchant).await.unwrap().records.is_empty());
    // 48 h 01 m: the shipping deadline has passed: a late-shipment penalty, paid from the deposit.
    e.advance(minutes(2));
    e.run().await;
    let log = m.governance().penalties().penalty_log(&s.merchant).await.unwrap();
    assert_eq!(log.records.len(), 1);
    let rec = &log.records[0];
    assert_eq!((rec.rule_code.as_str(), rec.minus_score, rec.points, rec.status), ("late_shipment", 1, 2, Some(2)));
    assert_eq!(rec.order_id.as_deref(), Some(order.as_str()));
    assert_eq!(log.points, 2);
    // 5 % of ¥100 = ¥5 compensation to the buyer, out of the deposit, paid through WeChat Pay.
    assert_eq!(e.balance(Account::MerchantDeposit(s.merchant.clone())).await, 49_500);
    let comp: Vec<CompensationRequest> = calls(&e.gw)
        .into_iter()
        .filter_map(|c| if let GatewayCall::Compensate(r) = c { Some(r) } else { None })
        .collect();
    assert_eq!(comp.len(), 1);
    assert_eq!(
        (comp[0].amount, comp[0].business_type.as_str(), comp[0].payer_openid.as_str()),
        (Money::fen(500), "DEPOSIT_COMPENSATION", "b1")
    );
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 0, "compensation paid out");
    let d = m.governance().deposits().deposit(&s.merchant).await.unwrap();
    assert_eq!(d.account.status, DepositStatus::Insufficient);
    let mid = m.governance().reviews().merchant_score(&s.merchant).await.unwrap();
    assert_eq!((mid.penalty_deduction, mid.score), (100, mid.base - 100));
    // A second run does not penalize twice.
    e.run().await;
    assert_eq!(m.governance().penalties().penalty_log(&s.merchant).await.unwrap().records.len(), 1);

    // The merchant appeals; the platform upholds: deposit, status, points and score come back exactly.
    let pid = rec.id.clone();
    assert!(matches!(
        m.governance().penalties().appeal_penalty("other", &pid, "x").await,
        Err(MarketError::NotFound { .. })
    ));
    m.governance().penalties().appeal_penalty(&s.merchant, &pid, "快递停运").await.unwrap();
    assert_eq!(m.governance().penalties().penalty(&pid).await.unwrap().status, PenaltyStatus::Appealing);
    let p = m.governance().penalties().decide_penalty_appeal(&pid, true, "承运商原因").await.unwrap();
    assert_eq!(p.status, PenaltyStatus::AppealUpheld);
    let d = m.governance().deposits().deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(50_000)));
    let log = m.governance().penalties().penalty_log(&s.merchant).await.unwrap();
    assert_eq!((log.points, log.records[0].status), (0, Some(6)));
    let after = m.governance().reviews().merchant_score(&s.merchant).await.unwrap();
    assert_eq!((after.penalty_deduction, after.score), (0, after.base));
    assert_eq!(after.components, mid.components);
    assert!(before.score >= after.score, "the late shipment itself still counts in on-time shipping");
    // The buyer keeps the compensation; the platform refilled the deposit.
    assert_eq!(e.balance(Account::PlatformPenalty).await, -500);
    assert!(matches!(
        m.governance().penalties().appeal_penalty(&s.merchant, &pid, "again").await,
        Err(MarketError::IllegalTransition { .. })
    ));
    e.audit().await;
}

async fn an_unrefilled_deposit_restricts_the_merchant_after_the_grace_period(e: Env) {
    let m = &e.market;
    let s = shop(m, "Grace", 20_000, &[10_000]).await;
    m.governance().deposits().deposit_paid_in(&s.merchant, "wxd", Money::fen(20_000)).await.unwrap();
    buy(&e, &s, "b1", &[(0, 1)]).await;
    e.advance(hours(49));
    let deducted_at = m.now();
    e.run().await;
    let d = m.governance().deposits().deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Insufficient, Money::fen(19_500)));
    let grace = d.account.grace_until.unwrap();
    assert_eq!(grace, deducted_at + hours(168));
    e.advance(grace - m.now() - minutes(1));
    e.run().await;
    assert_eq!(m.merchants().merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
    e.advance(minutes(2));
    e.run().await;
    assert_eq!(m.governance().deposits().deposit(&s.merchant).await.unwrap().account.status, DepositStatus::Restricted);
    let merchant = m.merchants().merchant(&s.merchant).await.unwrap();
    assert_eq!(
        (merchant.status, merchant.restrictions),
        (MerchantStatus::Restricted, Restrictions::LISTING | Restrictions::CHECKOUT)
    );
    // A top-up lifts it.
    m.governance().deposits().deposit_paid_in(&s.merchant, "wxd2", Money::fen(500)).await.unwrap();
    assert_eq!(m.governance().deposits().deposit(&s.merchant).await.unwrap().account.status, DepositStatus::Funded);
    assert_eq!(m.merchants().merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
    e.audit().await;
}

async fn merchant_answers_within_48_hours_or_the_refund_is_approved(e: Env) {
    let m = &e.market;
    let s = shop(m, "Answer", 0, &[5_000]).await;
    let order = buy(&e, &s, "b1", &[(0, 2)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let req = CaseRequest {
        order_id: order.clone(),
        line_no: 1,
        kind: CaseKind::RefundOnly,
        amount: Money::fen(3_000),
        reason: "破损".into(),
        evidence: vec![],
    };
    assert!(matches!(m.governance().aftersales().open_case("b2", &req).await, Err(MarketError::NotFound { .. })));
    let too_much = CaseRequest { amount: Money::fen(10_001), ..req.clone() };
    assert!(matches!(
        m.governance().aftersales().open_case("b1", &too_much).await,
        Err(MarketError::RefundExceeds { requested: 10_001, refundable: 10_000 })
    ));
    let c = m.governance().aftersales().open_case("b1", &req).await.unwrap();
    assert_eq!(c.state, CaseState::MerchantReview);
    assert!(matches!(
        m.governance().aftersales().open_case("b1", &req).await,
        Err(MarketError::CaseLimit { open: 1, total: 1, .. })
    ));

    e.advance(hours(48) - minutes(1));
    e.run().await;
    assert_eq!(m.governance().aftersales().case(&c.id).await.unwrap().state, CaseState::MerchantReview);
    e.advance(minutes(2));
    assert!(matches!(
        m.governance().aftersales().approve_case(&s.merchant, &c.id).await,
        Err(MarketError::DeadlinePassed { what: "merchant_response", .. })
    ));
    e.run().await;
    let c = m.governance().aftersales().case(&c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Refunded);
    let notes: Vec<&str> = c.history.iter().map(|t| t.note.as_str()).collect();
    assert_eq!(notes, ["opened", "merchant_response_overdue", "refund_succeeded"]);
    let refunds: Vec<RefundRequest> =
        calls(&e.gw).into_iter().filter_map(|c| if let GatewayCall::Refund(r) = c { Some(r) } else { None }).collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0].refund, refunds[0].total), (Money::fen(3_000), Money::fen(10_000)));
    // The timeout is a penalty of its own.
    let log = m.governance().penalties().penalty_log(&s.merchant).await.unwrap();
    assert_eq!(log.records.iter().map(|r| r.rule_code.as_str()).collect::<Vec<_>>(), ["after_sale_timeout"]);
    // Ledger: 10 000 paid, 3 000 refunded and paid out; 7 000 still pending.
    assert_eq!(e.balance(Account::MerchantPending(s.merchant.clone())).await, 7_000);
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 0);
    assert_eq!(e.balance(Account::Clearing).await, -7_000);
    let st = m.governance().settlements().settlement(&order).await.unwrap();
    assert_eq!(st.lines[0].refunded, Money::fen(3_000));
    // The next case may ask at most what is left.
    let left = CaseRequest { amount: Money::fen(7_001), ..req };
    assert!(matches!(
        m.governance().aftersales().open_case("b1", &left).await,
        Err(MarketError::RefundExceeds { refundable: 7_000, .. })
    ));
    e.audit().await;
}

async fn a_refund_made_in_the_merchant_platform_settles_the_open_case(e: Env) {
    let m = &e.market;
    let s = shop(m, "Outside", 0, &[5_000]).await;
    let order = buy(&e, &s, "b1", &[(0, 2)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let req = CaseRequest {
        order_id: order.clone(),
        line_no: 1,
        kind: CaseKind::RefundOnly,
        amount: Money::fen(3_000),
        reason: "破损".into(),
        evidence: vec![],
    };
    let c = m.governance().aftersales().open_case("b1", &req).await.unwrap();
    let o = m.orders().order(&order).await.unwrap().order;
    // The merchant refunds in WeChat Pay's merchant platform instead of answering the case.
    let n = wxshop::market::anomaly::RefundNotice {
        notify_id: "rn-1".into(),
        out_refund_no: "mp-1".into(),
        out_trade_no: o.group_id.clone(),
        transaction_id: o.transaction_id.clone().unwrap(),
        refund_id: "50001".into(),
        succeeded: true,
        amount: Money::fen(3_000),
    };
    let a = m.payments().handle_external_refund(&n).await.unwrap().unwrap();
    assert_eq!(a.note, Some(format!("settles after-sale case {}", c.id)));
    e.run().await;
    let c = m.governance().aftersales().case(&c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Refunded);
    let notes: Vec<&str> = c.history.iter().map(|t| t.note.as_str()).collect();
    assert_eq!(notes, ["opened", "refunded_outside"]);
    // No refund was asked of WeChat Pay; the one made outside is booked like any refund.
    assert!(!calls(&e.gw).iter().any(|c| matches!(c, GatewayCall::Refund(_))));
    assert_eq!(m.governance().settlements().settlement(&order).await.unwrap().lines[0].refunded, Money::fen(3_000));
    assert_eq!(e.balance(Account::MerchantPending(s.merchant.clone())).await, 7_000);
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 0);
    assert_eq!(e.balance(Account::Clearing).await, -7_000);
    // The timers of the case stopped: the merchant's 48 hours pass without a penalty.
    e.advance(hours(49));
    e.run().await;
    assert!(m.governance().penalties().penalty_log(&s.merchant).await.unwrap().records.is_empty());
    e.audit().await;
}

async fn a_return_becomes_a_refund_and_the_settlement_splits_to_the_fen(e: Env) {
    let m = &e.market;
    let s = shop(m, "Return", 0, &[6_000, 4_000]).await;
    let t = m.now();
    m.governance()
        .settlements()
        .put_commission_rule(CommissionRule::new("global", Scope::Global, Rate::Bps(600), Money::ZERO, t))
        .await
        .unwrap();
    m.governance()
        .settlements()
        .put_commission_rule(CommissionRule::new(
            "cat",
            Scope::Category(s.category.clone()),
            Rate::Bps(500),
            Money::ZERO,
            t,
        ))
        .await
        .unwrap();
    m.governance().settlements().record_click("b1", "p1", "tok1").await.unwrap();
    let order = buy(&e, &s, "b1", &[(0, 1), (1, 1)]).await;
    let st = m.governance().settlements().settlement(&order).await.unwrap();
    assert_eq!(st.state, SettlementState::Frozen);
    assert_eq!(st.lines.iter().map(|l| l.commission.rule_id.as_str()).collect::<Vec<_>>(), ["cat", "cat"]);
    assert_eq!(
        m.governance().settlements().attribution(&order).await.unwrap().unwrap().state,
        AttributionState::Attributed
    );
    ship_and_receive(&e, &s, "b1", &order).await;

    let c = m
        .governance()
        .aftersales()
        .open_case(
            "b1",
            &CaseRequest {
                order_id: order.clone(),
                line_no: 1,
                kind: CaseKind::ReturnRefund,
                amount: Money::fen(2_500),
                reason: "不合适".into(),
                evidence: vec![],
            },
        )
        .await
        .unwrap();
    m.governance().aftersales().approve_case(&s.merchant, &c.id).await.unwrap();
    let wb = Waybill { company: "SF".into(), number: "SF123".into() };
    assert!(matches!(
        m.governance()
            .aftersales()
            .upload_return("b1", &c.id, Waybill { company: "".into(), number: "1".into() })
            .await,
        Err(MarketError::Invalid(_))
    ));
    m.governance().aftersales().upload_return("b1", &c.id, wb).await.unwrap();
    m.governance().aftersales().confirm_return_received(&s.merchant, &c.id).await.unwrap();
    m.governance().sync_governance().await.unwrap();
    assert_eq!(m.governance().aftersales().case(&c.id).await.unwrap().state, CaseState::Refunded);

    // The after-sale window closes: released.
    e.advance(days(7));
    e.run().await;
    let st = m.governance().settlements().settlement(&order).await.unwrap();
    assert_eq!(st.state, SettlementState::Released);
    let a = st.amounts.unwrap();
    // commission: 6 000 × 5 % = 300, × 3 500 / 6 000 = 175; 4 000 × 5 % = 200.
    // promoter:    3 500 × 5 % = 175;                     4 000 × 5 % = 200.
    assert_eq!(
        (a.gross, a.refunds, a.commission, a.promoter_fee, a.net),
        (Money::fen(10_000), Money::fen(2_500), Money::fen(375), Money::fen(375), Money::fen(6_750))
    );
    let shares: Vec<ProfitShareRequest> = calls(&e.gw)
        .into_iter()
        .filter_map(|c| if let GatewayCall::ProfitShare(r) = c { Some(r) } else { None })
        .collect();
    assert_eq!(shares.len(), 1);
    let r: Vec<(&str, &str, i64)> =
        shares[0].receivers.iter().map(|r| (r.receiver_type.as_str(), r.account.as_str(), r.amount.as_fen())).collect();
    // The platform collected this payment (JSAPI) and holds the commission: only the promoter is shared to.
    assert_eq!(r, [("PERSONAL_OPENID", "p1", 375)]);
    assert_eq!(shares[0].sub_mchid, None);
    assert!(shares[0].unfreeze_unsplit);
    assert_eq!(shares[0].transaction_id, st.transaction_id);
    let attr = m.governance().settlements().attribution(&order).await.unwrap().unwrap();
    assert_eq!((attr.state, attr.amount), (AttributionState::Paid, Money::fen(375)));
    assert_eq!(e.balance(Account::MerchantPending(s.merchant.clone())).await, 0);
    assert_eq!(e.balance(Account::MerchantAvailable(s.merchant.clone())).await, 6_750);
    assert_eq!(e.balance(Account::PlatformCommission).await, 375);
    assert_eq!(e.balance(Account::PromoterCommission("p1".into())).await, 0);
    let paid = m.governance().settlements().payout_settlement(&s.merchant, &order).await.unwrap();
    assert_eq!(paid.state, SettlementState::PaidOut);
    assert_eq!(e.balance(Account::MerchantAvailable(s.merchant.clone())).await, 0);
    // Clearing: 10 000 in; 2 500 refunded, 375 to the promoter, 6 750 to the merchant out: 375 left.
    assert_eq!(e.balance(Account::Clearing).await, -375);
    e.audit().await;
}

async fn return_and_receipt_timers_at_their_boundaries(e: Env) {
    let m = &e.market;
    let s = shop(m, "Timers", 0, &[3_000]).await;
    let order = buy(&e, &s, "b1", &[(0, 3)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let open = |line_amount: i64| CaseRequest {
        order_id: order.clone(),
        line_no: 1,
        kind: CaseKind::ReturnRefund,
        amount: Money::fen(line_amount),
        reason: "r".into(),
        evidence: vec![],
    };
    // The buyer never ships the return: closed 7 days after approval.
    let c = m.governance().aftersales().open_case("b1", &open(1_000)).await.unwrap();
    m.governance().aftersales().approve_case(&s.merchant, &c.id).await.unwrap();
    e.advance(days(7) - minutes(1));
    e.run().await;
    assert_eq!(m.governance().aftersales().case(&c.id).await.unwrap().state, CaseState::AwaitingReturn);
    e.advance(minutes(2));
    e.run().await;
    let c = m.governance().aftersales().case(&c.id).await.unwrap();
    assert_eq!((c.state, c.close_reason), (CaseState::Closed, Some(CloseReason::ReturnNotShipped)));

    // The window is 7 days after receipt: it has closed now; re-open the window with a fresh order.
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let c = m
        .governance()
        .aftersales()
        .open_case("b1", &CaseRequest { order_id: order.clone(), ..open(3_000) })
        .await
        .unwrap();
    m.governance().aftersales().approve_case(&s.merchant, &c.id).await.unwrap();
    m.governance()
        .aftersales()
        .upload_return("b1", &c.id, Waybill { company: "YTO".into(), number: "YT1".into() })
        .await
        .unwrap();
    // The merchant never confirms the goods: accepted and refunded 10 days later.
    e.advance(days(10) - minutes(1));
    e.run().await;
    assert_eq!(m.governance().aftersales().case(&c.id).await.unwrap().state, CaseState::ReturnInTransit);
    e.advance(minutes(2));
    e.run().await;
    let c = m.governance().aftersales().case(&c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Refunded);
    assert!(c.history.iter().any(|t| t.note == "merchant_receive_overdue"));
    e.audit().await;
}

async fn a_rejection_escalates_within_7_days_and_the_platform_decides_from_the_deposit(e: Env) {
    let m = &e.market;
    let s = shop(m, "Dispute", 10_000, &[8_000]).await;
    m.governance().deposits().deposit_paid_in(&s.merchant, "wxd", Money::fen(10_000)).await.unwrap();
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let req = CaseRequest {
        order_id: order.clone(),
        line_no: 1,
        kind: CaseKind::RefundOnly,
        amount: Money::fen(8_000),
        reason: "假货".into(),
        evidence: vec!["img".into()],
    };
    let c = m.governance().aftersales().open_case("b1", &req).await.unwrap();
    m.governance().aftersales().reject_case(&s.merchant, &c.id, "正品").await.unwrap();
    // Unescalated for 7 days: closed.
    e.advance(days(7) + minutes(1));
    e.run().await;
    assert_eq!(m.governance().aftersales().case(&c.id).await.unwrap().close_reason, Some(CloseReason::NotEscalated));
    // Next time the buyer escalates at 6 days 23 h 59 m (the window is the order's 7 days, so a fresh order).
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let c = m
        .governance()
        .aftersales()
        .open_case("b1", &CaseRequest { order_id: order.clone(), ..req.clone() })
        .await
        .unwrap();
    m.governance().aftersales().reject_case(&s.merchant, &c.id, "正品").await.unwrap();
    e.advance(days(7) - minutes(1));
    let c = m.governance().aftersales().escalate_case("b1", &c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Escalated);
    let disputes = m.governance().aftersales().merchant_disputes(&s.merchant, 10).await.unwrap();
    let d = disputes.iter().find(|d| d.case_id.as_deref() == Some(c.id.as_str())).unwrap();
    let too_much = Decision::BuyerWins { refund: Money::fen(8_001), payer: Payer::Deposit };
    assert!(matches!(
        m.governance().aftersales().decide_dispute(&d.id, too_much, "").await,
        Err(MarketError::RefundExceeds { .. })
    ));
    m.governance()
        .aftersales()
        .decide_dispute(&d.id, Decision::BuyerWins { refund: Money::fen(8_000), payer: Payer::Deposit }, "假货成立")
        .await
        .unwrap();
    e.run().await;
    let c = m.governance().aftersales().case(&c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Refunded);
    // 8 000 from the deposit to the buyer, through WeChat Pay's deposit compensation.
    assert_eq!(e.balance(Account::MerchantDeposit(s.merchant.clone())).await, 2_000);
    assert!(calls(&e.gw).iter().any(|c| matches!(c, GatewayCall::Compensate(r) if r.amount == Money::fen(8_000))));
    // The merchant keeps its sale proceeds (the deposit paid), and lost a dispute.
    assert_eq!(m.governance().settlements().settlement(&order).await.unwrap().lines[0].refunded, Money::ZERO);
    let log = m.governance().penalties().penalty_log(&s.merchant).await.unwrap();
    assert!(log.records.iter().any(|r| r.rule_code == "dispute_lost"));
    let score = m.governance().reviews().merchant_score(&s.merchant).await.unwrap();
    assert_eq!(score.samples.disputes_lost, 1);
    e.audit().await;
}

async fn at_most_one_open_and_five_total_cases_per_line(e: Env) {
    let m = &e.market;
    let s = shop(m, "Limits", 0, &[10_000]).await;
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let req = CaseRequest {
        order_id: order.clone(),
        line_no: 1,
        kind: CaseKind::RefundOnly,
        amount: Money::fen(100),
        reason: "r".into(),
        evidence: vec![],
    };
    for _ in 0..5 {
        let c = m.governance().aftersales().open_case("b1", &req).await.unwrap();
        m.governance().aftersales().cancel_case("b1", &c.id).await.unwrap();
    }
    assert!(matches!(
        m.governance().aftersales().open_case("b1", &req).await,
        Err(MarketError::CaseLimit { open: 0, total: 5, .. })
    ));
    assert_eq!(m.governance().aftersales().cases_of_order(&order).await.unwrap().len(), 5);
    e.audit().await;
}

async fn reviews_are_once_per_line_after_receipt_and_feed_the_score(e: Env) {
    let m = &e.market;
    let s = shop(m, "Review", 0, &[2_000]).await;
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    let r = ReviewRequest {
        order_id: order.clone(),
        line_no: 1,
        ratings: Ratings::new(1, 1, 1).unwrap(),
        text: "差".into(),
        images: vec![],
    };
    assert!(matches!(
        m.governance().reviews().submit_review("b1", &r, TextVerdict::Pass).await,
        Err(MarketError::NotEligible(_))
    ));
    ship_and_receive(&e, &s, "b1", &order).await;
    assert!(matches!(
        m.governance().reviews().submit_review("b2", &r, TextVerdict::Pass).await,
        Err(MarketError::NotFound { .. })
    ));
    let before = m.governance().reviews().merchant_score(&s.merchant).await.unwrap();
    let rev = m.governance().reviews().submit_review("b1", &r, TextVerdict::Pass).await.unwrap();
    assert_eq!(rev.status, ReviewStatus::Published);
    assert!(matches!(
        m.governance().reviews().submit_review("b1", &r, TextVerdict::Pass).await,
        Err(MarketError::AlreadyDone("review"))
    ));
    let with = m.governance().reviews().merchant_score(&s.merchant).await.unwrap();
    assert_eq!(with.samples.reviews, 1);
    // One 1★ review against the 4.5★ prior… the category's own mean is that review: 1★.
    assert!(with.components.ratings < before.components.ratings);
    m.governance().reviews().reply_review(&s.merchant, &rev.id, "抱歉").await.unwrap();
    assert!(matches!(
        m.governance().reviews().reply_review(&s.merchant, &rev.id, "again").await,
        Err(MarketError::AlreadyDone("reply"))
    ));
    m.governance().reviews().follow_up_review("b1", &rev.id, "还是差", vec![], TextVerdict::Pass).await.unwrap();
    // Hidden by the platform: it stops counting; restored on appeal: it counts again.
    m.governance().reviews().moderate_review(&rev.id, ReviewStatus::Hidden, "辱骂").await.unwrap();
    assert_eq!(m.governance().reviews().merchant_score(&s.merchant).await.unwrap().samples.reviews, 0);
    m.governance().reviews().appeal_review("b1", &rev.id, "没有辱骂").await.unwrap();
    m.governance().reviews().decide_review_appeal(&rev.id, true).await.unwrap();
    let restored = m.governance().reviews().merchant_score(&s.merchant).await.unwrap();
    assert_eq!(restored, with);
    assert_eq!(m.governance().reviews().merchant_reviews(&s.merchant, false, 10).await.unwrap().len(), 1);
    e.audit().await;
}

async fn manual_penalty_delists_and_restricts_and_an_upheld_appeal_relists_exactly(e: Env) {
    let m = &e.market;
    let s = shop(m, "Manual", 0, &[1_000]).await;
    let mut cfg = GovernanceConfig::default();
    cfg.penalty
        .rules
        .iter_mut()
        .find(|r| r.code == "manual")
        .unwrap()
        .actions
        .push(wxshop::market::governance::penalty::Action::Restrict { days: 3 });
    m.governance().set_governance_config(&cfg).await.unwrap();
    assert_eq!(m.governance().governance_config().await.unwrap(), cfg);
    let p = m
        .governance()
        .penalties()
        .file_violation(&s.merchant, "manual", "虚假宣传", None, vec![s.product.clone()])
        .await
        .unwrap();
    assert_eq!(p.status, PenaltyStatus::PendingReview);
    assert_eq!(m.catalog().product(&s.product).await.unwrap().product.status, ProductStatus::Listed);
    m.governance().penalties().confirm_penalty(&p.id).await.unwrap();
    assert_eq!(m.catalog().product(&s.product).await.unwrap().product.status, ProductStatus::ForceDelisted);
    let merchant = m.merchants().merchant(&s.merchant).await.unwrap();
    assert_eq!(
        (merchant.status, merchant.restrictions),
        (MerchantStatus::Restricted, Restrictions::LISTING | Restrictions::PAYOUT)
    );
    assert_eq!(m.governance().penalties().merchant_restrictions(&s.merchant).await.unwrap().len(), 1);
    m.governance().penalties().appeal_penalty(&s.merchant, &p.id, "有依据").await.unwrap();
    m.governance().penalties().decide_penalty_appeal(&p.id, true, "ok").await.unwrap();
    assert_eq!(m.catalog().product(&s.product).await.unwrap().product.status, ProductStatus::Listed);
    assert_eq!(m.merchants().merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
    assert!(m.governance().penalties().merchant_restrictions(&s.merchant).await.unwrap().is_empty());

    // Confirmed again (a new violation) and left alone: the restriction ends by its timer after 3 days.
    let p = m.governance().penalties().file_violation(&s.merchant, "manual", "again", None, vec![]).await.unwrap();
    m.governance().penalties().confirm_penalty(&p.id).await.unwrap();
    assert_eq!(m.merchants().merchant(&s.merchant).await.unwrap().status, MerchantStatus::Restricted);
    e.advance(days(3) - minutes(1));
    e.run().await;
    assert_eq!(m.merchants().merchant(&s.merchant).await.unwrap().status, MerchantStatus::Restricted);
    e.advance(minutes(2));
    e.run().await;
    assert_eq!(m.merchants().merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
    e.audit().await;
}

/// Who shares at release is who collected the payment: a sub-merchant's own (partner-mode) payment
/// shares the commission to the platform's merchant id; a payment the platform collected (JSAPI) already
/// holds the commission, so its profit sharing only unfreezes the rest.
async fn profit_sharing_shares_from_whoever_collected_the_payment(e: Env) {
    use wxshop::market::governance::settlement::ShareStatus;
    let m = &e.market;
    let mut cfg = GovernanceConfig::default();
    cfg.settlement.platform_mchid = "1230000109".into();
    m.governance().set_governance_config(&cfg).await.unwrap();
    m.governance()
        .settlements()
        .put_commission_rule(CommissionRule::new("global", Scope::Global, Rate::Bps(500), Money::ZERO, m.now()))
        .await
        .unwrap();
    let direct = shop(m, "Direct", 0, &[10_000]).await;
    let partner = shop_of(m, NewMerchant::new("Partner").sub_mchid("1900000109"), 0, &[10_000]).await;
    let a = buy(&e, &direct, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &direct, "b1", &a).await;
    let b = buy(&e, &partner, "b2", &[(0, 1)]).await;
    ship_and_receive(&e, &partner, "b2", &b).await;
    assert_eq!(m.governance().settlements().profit_share_of(&b).await.unwrap(), None);
    e.advance(days(7));
    e.run().await;
    type Share = (String, Option<String>, Vec<(String, String, i64)>, bool);
    let mut shares: Vec<Share> = calls(&e.gw)
        .into_iter()
        .filter_map(|c| if let GatewayCall::ProfitShare(r) = c { Some(r) } else { None })
        .map(|r| {
            let rs =
                r.receivers.iter().map(|x| (x.receiver_type.clone(), x.account.clone(), x.amount.as_fen())).collect();
            (r.out_order_no, r.sub_mchid, rs, r.unfreeze_unsplit)
        })
        .collect();
    shares.sort();
    let mut want = vec![
        (format!("ps_{a}"), None, vec![], true),
        (
            format!("ps_{b}"),
            Some("1900000109".to_string()),
            vec![("MERCHANT_ID".into(), "1230000109".into(), 500)],
            true,
        ),
    ];
    want.sort();
    assert_eq!(shares, want);
    for o in [&a, &b] {
        let p = m.governance().settlements().profit_share_of(o).await.unwrap().unwrap();
        assert_eq!((p.status, p.amount()), (ShareStatus::Finished, Money::fen(500)));
    }
    assert_eq!(e.balance(Account::PlatformCommission).await, 1_000);
    e.audit().await;
}

/// Fake-shipment detection is opt-in (a platform without a carrier feed would judge every parcel
/// fake); on, a parcel the carrier has not scanned 48 h after "shipped" is a fake shipment: 6 points,
/// −3 score, 5 % compensation and ¥50 out of the deposit. A scanned parcel, or one shipped while the
/// check was off, is not judged.
async fn fake_shipment_is_judged_only_with_carrier_tracking_and_only_without_a_scan(e: Env) {
    let m = &e.market;
    assert!(!GovernanceConfig::default().carrier_tracking);
    let s = shop(m, "Fake", 50_000, &[10_000]).await;
    m.governance().deposits().deposit_paid_in(&s.merchant, "wxf1", Money::fen(50_000)).await.unwrap();
    let ship = |o: &str| ShipRequest {
        tracking_no: format!("SF{}", &o[..8]),
        express_company: "SF".into(),
        items: None,
        receiver_phone: None,
    };
    let untracked = buy(&e, &s, "b1", &[(0, 1)]).await;
    m.orders().ship(&s.merchant, &untracked, ship(&untracked)).await.unwrap();
    m.governance().sync_governance().await.unwrap();
    let cfg = GovernanceConfig { carrier_tracking: true, ..GovernanceConfig::default() };
    m.governance().set_governance_config(&cfg).await.unwrap();
    let scanned = buy(&e, &s, "b2", &[(0, 1)]).await;
    let fake = buy(&e, &s, "b3", &[(0, 1)]).await;
    for o in [&scanned, &fake] {
        m.orders().ship(&s.merchant, o, ship(o)).await.unwrap();
    }
    m.governance().sync_governance().await.unwrap();
    e.advance(hours(2));
    m.governance().penalties().record_carrier_event(&scanned, m.now()).await.unwrap();
    e.advance(hours(46) - minutes(1));
    e.run().await;
    assert!(m.governance().penalties().penalty_log(&s.merchant).await.unwrap().records.is_empty());
    e.advance(minutes(2));
    e.run().await;
    let log = m.governance().penalties().penalty_log(&s.merchant).await.unwrap();
    assert_eq!(log.records.len(), 1, "{log:?}");
    let rec = &log.records[0];
    assert_eq!(
        (rec.rule_code.as_str(), rec.minus_score, rec.points, rec.order_id.as_deref()),
        ("fake_shipment", 3, 6, Some(fake.as_str()))
    );
    assert_eq!(e.balance(Account::MerchantDeposit(s.merchant.clone())).await, 44_500);
    e.audit().await;
}

/// A restriction (or suspension) the platform set by hand survives every governance recomputation — a
/// deposit funded, a penalty restriction expiring — until the platform lifts it.
async fn a_manual_restriction_outlives_governance_until_the_platform_lifts_it(e: Env) {
    let m = &e.market;
    let s = shop(m, "Held", 20_000, &[1_000]).await;
    let view = |mm: Merchant| (mm.status, mm.restrictions, mm.manual_restrictions, mm.manual_suspension);
    let held = m.merchants().restrict_merchant(&s.merchant, Restrictions::CHECKOUT, "资质复核").await.unwrap();
    assert_eq!(view(held), (MerchantStatus::Restricted, Restrictions::CHECKOUT, Restrictions::CHECKOUT, false));
    // The deposit is funded: governance recomputes the status and keeps the platform's restriction.
    let d = m.governance().deposits().deposit_paid_in(&s.merchant, "wxh1", Money::fen(20_000)).await.unwrap();
    assert_eq!(d.account.status, DepositStatus::Funded);
    assert_eq!(
        view(m.merchants().merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Restricted, Restrictions::CHECKOUT, Restrictions::CHECKOUT, false)
    );
    // A 3-day penalty restriction adds listing and payout; when it expires, only the platform's stays.
    let mut cfg = GovernanceConfig::default();
    let rule = cfg.penalty.rules.iter_mut().find(|r| r.code == "manual").unwrap();
    rule.actions = vec![wxshop::market::governance::penalty::Action::Restrict { days: 3 }];
    m.governance().set_governance_config(&cfg).await.unwrap();
    let p = m.governance().penalties().file_violation(&s.merchant, "manual", "虚假宣传", None, vec![]).await.unwrap();
    m.governance().penalties().confirm_penalty(&p.id).await.unwrap();
    let all = Restrictions::LISTING | Restrictions::CHECKOUT | Restrictions::PAYOUT;
    assert_eq!(
        view(m.merchants().merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Restricted, all, Restrictions::CHECKOUT, false)
    );
    e.advance(days(3) + minutes(1));
    e.run().await;
    assert!(m.governance().penalties().merchant_restrictions(&s.merchant).await.unwrap().is_empty());
    assert_eq!(
        view(m.merchants().merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Restricted, Restrictions::CHECKOUT, Restrictions::CHECKOUT, false)
    );
    // The platform lifts it: Active, nothing held.
    let lifted = m.merchants().lift_restrictions(&s.merchant, Restrictions::CHECKOUT, "复核通过").await.unwrap();
    assert_eq!(view(lifted), (MerchantStatus::Active, Restrictions::NONE, Restrictions::NONE, false));
    // A suspension by hand outlives a penalty restriction's expiry too; only reinstating ends it.
    m.merchants().suspend_merchant(&s.merchant, "涉嫌欺诈").await.unwrap();
    let p = m.governance().penalties().file_violation(&s.merchant, "manual", "again", None, vec![]).await.unwrap();
    m.governance().penalties().confirm_penalty(&p.id).await.unwrap();
    assert_eq!(
        view(m.merchants().merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Suspended, Restrictions::NONE, Restrictions::NONE, true)
    );
    e.advance(days(3) + minutes(1));
    e.run().await;
    assert_eq!(
        view(m.merchants().merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Suspended, Restrictions::NONE, Restrictions::NONE, true)
    );
    let back = m.merchants().reinstate_merchant(&s.merchant, "调查结束").await.unwrap();
    assert_eq!(view(back), (MerchantStatus::Active, Restrictions::NONE, Restrictions::NONE, false));
    e.audit().await;
}

async fn the_deposit_is_refunded_on_exit_only_after_the_windows_close(e: Env) {
    let m = &e.market;
    let s = shop(m, "Exit", 5_000, &[1_000]).await;
    m.governance().deposits().deposit_paid_in(&s.merchant, "wx1", Money::fen(5_000)).await.unwrap();
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    m.governance().deposits().request_deposit_exit(&s.merchant).await.unwrap();
    assert!(matches!(m.governance().deposits().refund_deposit(&s.merchant).await, Err(MarketError::OpenItems(_))));
    ship_and_receive(&e, &s, "b1", &order).await;
    e.advance(days(7));
    e.run().await;
    assert_eq!(m.governance().settlements().settlement(&order).await.unwrap().state, SettlementState::Released);
    // Released, but a late rejection could still be escalated for 7 more days.
    assert!(matches!(m.governance().deposits().refund_deposit(&s.merchant).await, Err(MarketError::Window { .. })));
    e.advance(days(7));
    // Paid in outside a DepositPayment (deposit_paid_in): no WeChat Pay payment to refund, so it is
    // owed to the merchant as a manual payout until the platform confirms it.
    let d = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance, d.refunding), (DepositStatus::Refunding, Money::ZERO, Money::fen(5_000)));
    assert_eq!(d.refunds.len(), 1);
    let r = &d.refunds[0];
    assert_eq!((r.status, r.amount, r.payment_id.as_deref()), (DepositRefundStatus::Manual, Money::fen(5_000), None));
    assert_eq!(deposit_refund_calls(&e.gw).len(), 0);
    e.audit().await;
    let paid = m.governance().deposits().deposit_refund_paid_manually(&r.id, "BANK-0001").await.unwrap();
    assert_eq!((paid.status, paid.note.as_deref()), (DepositRefundStatus::Succeeded, Some("paid manually: BANK-0001")));
    let d = m.governance().deposits().deposit_refunds(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance, d.refunding), (DepositStatus::Closed, Money::ZERO, Money::ZERO));
    assert_eq!(e.balance(Account::DepositRefundPayable(s.merchant.clone())).await, 0);
    e.audit().await;
}

async fn ledger_stays_balanced_through_a_random_run(e: Env) {
    use rand::{Rng, SeedableRng};
    let m = &e.market;
    let s = shop(m, "Random", 3_000, &[1_500, 2_700]).await;
    m.governance().deposits().deposit_paid_in(&s.merchant, "wx0", Money::fen(3_000)).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut orders: Vec<(String, String)> = Vec::new();
    for step in 0..40 {
        match rng.random_range(0..6) {
            0 | 1 => {
                let buyer = format!("b{}", rng.random_range(0..3));
                let o = buy(&e, &s, &buyer, &[(rng.random_range(0..2), rng.random_range(1..3))]).await;
                orders.push((o, buyer));
            }
            2 if !orders.is_empty() => {
                let (o, b) = orders[rng.random_range(0..orders.len())].clone();
                let ship = ShipRequest {
                    tracking_no: format!("T{step}"),
                    express_company: "SF".into(),
                    items: None,
                    receiver_phone: None,
                };
                if m.orders().ship(&s.merchant, &o, ship).await.is_ok() {
                    let _ = m.orders().confirm_receipt(&b, &o).await;
                }
            }
            3 if !orders.is_empty() => {
                let (o, b) = orders[rng.random_range(0..orders.len())].clone();
                let req = CaseRequest {
                    order_id: o.clone(),
                    line_no: 1,
                    kind: CaseKind::RefundOnly,
                    amount: Money::fen(rng.random_range(1..1_500)),
                    reason: "r".into(),
                    evidence: vec![],
                };
                if let Ok(c) = m.governance().aftersales().open_case(&b, &req).await
                    && rng.random_bool(0.5)
                {
                    let _ = m.governance().aftersales().approve_case(&s.merchant, &c.id).await;
                }
            }
            4 if !orders.is_empty() => {
                let (o, _) = orders[rng.random_range(0..orders.len())].clone();
                let _ = m.orders().cancel_paid_order(&s.merchant, &o, "out of stock").await;
            }
            _ => e.advance(hours(rng.random_range(1..60))),
        }
        e.run().await;
        e.audit().await;
        if m.governance().deposits().deposit(&s.merchant).await.unwrap().balance.is_negative() {
            panic!("the deposit went negative at step {step}");
        }
    }
}

async fn the_sql_ledger_matches_the_reference_ledger_step_by_step(e: Env) {
    use rand::{Rng, SeedableRng};
    use wxshop::market::governance::ledger::{Ledger, NegativePolicy, TxnBuilder, TxnKind};
    use wxshop::market::store::governance::{Posted, post};
    let store = e.market.store().clone();
    let accounts = [
        Account::Clearing,
        Account::MerchantPending("m1".into()),
        Account::MerchantAvailable("m1".into()),
        Account::MerchantDeposit("m1".into()),
        Account::PlatformCommission,
        Account::BuyerRefundPayable("b1".into()),
        Account::PromoterCommission("p1".into()),
    ];
    let policy = NegativePolicy::default();
    let mut reference = Ledger::new(policy);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for i in 0..150 {
        let txn = if rng.random_bool(0.2) && !reference.txns().is_empty() {
            let pick = reference.txns()[rng.random_range(0..reference.txns().len())].clone();
            pick.reversal(format!("r{i}"), t0())
        } else {
            let (a, b) = (rng.random_range(0..accounts.len()), rng.random_range(0..accounts.len()));
            if a == b {
                continue;
            }
            TxnBuilder::new(TxnKind::Hold, "prop")
                .transfer(accounts[a].clone(), accounts[b].clone(), Money::fen(rng.random_range(1..5_000)))
                .build(format!("t{i}"), t0())
                .unwrap()
        };
        let expected = reference.post(txn.clone());
        let mut tx = store.begin().await.unwrap();
        let got = post(&mut *tx, &txn, &policy).await;
        match (&expected, got) {
            (Ok(()), Ok(Posted::Posted)) => tx.commit().await.unwrap(),
            (Err(_), Ok(Posted::Negative { .. })) | (Err(_), Err(_)) => drop(tx),
            (exp, got) => panic!("step {i}: reference {exp:?}, store {got:?} for {txn:?}"),
        }
        let mut tx = store.read().await.unwrap();
        for a in &accounts {
            assert_eq!(tx.ledger_balance(&a.to_string()).await.unwrap(), reference.balance(a).as_fen(), "step {i} {a}");
        }
        let audit = tx.ledger_audit().await.unwrap();
        assert_eq!((audit.total, audit.mismatches.len(), audit.unbalanced.len()), (0, 0, 0), "step {i}");
    }
    // Posting the same transaction again is a no-op; a second reversal is refused by the schema.
    let first = reference.txns()[0].clone();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(post(&mut *tx, &first, &policy).await.unwrap(), Posted::Duplicate);
    drop(tx);
}

async fn cancelling_after_a_partial_refund_refunds_only_the_rest(e: Env) {
    let m = &e.market;
    let s = shop(m, "Cancel", 0, &[5_000]).await;
    let order = buy(&e, &s, "b1", &[(0, 2)]).await;
    let req = CaseRequest {
        order_id: order.clone(),
        line_no: 1,
        kind: CaseKind::RefundOnly,
        amount: Money::fen(3_000),
        reason: "少发一件".into(),
        evidence: vec![],
    };
    let c = m.governance().aftersales().open_case("b1", &req).await.unwrap();
    m.governance().aftersales().approve_case(&s.merchant, &c.id).await.unwrap();
    e.run().await;
    assert_eq!(m.governance().aftersales().case(&c.id).await.unwrap().state, CaseState::Refunded);
    m.orders().cancel_paid_order(&s.merchant, &order, "out of stock").await.unwrap();
    e.run().await;
    let refunds: Vec<Money> = calls(&e.gw)
        .into_iter()
        .filter_map(|c| if let GatewayCall::Refund(r) = c { Some(r.refund) } else { None })
        .collect();
    // 3 000 by the case, then only the 7 000 left — never the whole 10 000 again.
    assert_eq!(refunds, [Money::fen(3_000), Money::fen(7_000)]);
    e.audit().await;
}

// ------------------------------------------------------------------ the runner

type Case = (&'static str, fn(Env) -> BoxFut<()>);

async fn a_deposit_prepaid_through_wechat_pay_is_credited_once_by_its_notification(e: Env) {
    let m = &e.market;
    let s = shop(m, "Dep", 30_000, &[1_000]).await;
    let p = m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(30_000), "o-boss", "top-1").await.unwrap();
    assert_eq!((p.out_trade_no.len(), &p.out_trade_no[..3]), (32, "dep"));
    assert!(p.out_trade_no.bytes().all(|b| b.is_ascii_alphanumeric()), "{}", p.out_trade_no);
    assert_eq!(p.pay_params["package"], format!("prepay_id=prepay_{}", p.out_trade_no));
    // The same key is the same payment; another amount under it is refused, and nothing is pending twice.
    let again =
        m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(30_000), "o-boss", "top-1").await.unwrap();
    assert_eq!(again.out_trade_no, p.out_trade_no);
    let err =
        m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(1), "o-boss", "top-1").await.unwrap_err();
    assert!(matches!(err, MarketError::Invalid(_)), "{err:?}");
    let prepays: Vec<PrepayRequest> =
        calls(&e.gw).into_iter().filter_map(|c| if let GatewayCall::Prepay(r) = c { Some(r) } else { None }).collect();
    assert_eq!(prepays.len(), 2);
    assert!(prepays.iter().all(|r| r.out_trade_no == p.out_trade_no
        && r.total == Money::fen(30_000)
        && r.mode == PayMode::Jsapi
        && r.payer_openid == "o-boss"
        && r.purpose == wxshop::market::payment::PaymentPurpose::Deposit
        && !r.is_sale()));
    let notice = |id: &str, fen: i64| PaymentNotice {
        notify_id: id.into(),
        out_trade_no: p.out_trade_no.clone(),
        transaction_id: "4200000001".into(),
        amount: Money::fen(fen),
        paid_at: t0(),
        sub_orders: Vec::new(),
    };
    // A wrong amount credits nothing: it is recorded, held for review, and acknowledged.
    let NoticeOutcome::Held { anomaly_ids } = m.payments().handle_payment_notice(&notice("n0", 29_999)).await.unwrap()
    else {
        panic!()
    };
    let a = m.payments().anomaly(&anomaly_ids[0]).await.unwrap();
    assert_eq!(
        (a.group_id.as_str(), a.amount, a.status),
        (p.out_trade_no.as_str(), Money::fen(29_999), wxshop::market::anomaly::AnomalyStatus::Held)
    );
    assert_eq!(m.payments().handle_payment_notice(&notice("n0", 29_999)).await.unwrap(), NoticeOutcome::Duplicate);
    assert!(matches!(m.payments().refund_anomaly(&a.id, "x").await, Err(MarketError::Invalid(_))));
    let d = m.governance().deposits().deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Unfunded, Money::ZERO));
    assert_eq!(m.payments().handle_payment_notice(&notice("n1", 30_000)).await.unwrap(), NoticeOutcome::Paid);
    assert_eq!(m.payments().handle_payment_notice(&notice("n1", 30_000)).await.unwrap(), NoticeOutcome::Duplicate);
    assert_eq!(m.payments().handle_payment_notice(&notice("n2", 30_000)).await.unwrap(), NoticeOutcome::AlreadyPaid);
    let d = m.governance().deposits().deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(30_000)));
    assert_eq!(e.balance(Account::MerchantDeposit(s.merchant.clone())).await, 30_000);
    e.audit().await;
    // A paid key cannot be prepaid again; a new key tops up.
    let err =
        m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(30_000), "o-boss", "top-1").await.unwrap_err();
    assert!(matches!(err, MarketError::AlreadyDone(_)), "{err:?}");
    let p2 = m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(500), "o-boss", "top-2").await.unwrap();
    assert_ne!(p2.out_trade_no, p.out_trade_no);
    // An unknown deposit out_trade_no is refused, not applied.
    let mut stray = notice("n3", 500);
    stray.out_trade_no = "dep0000000000000000000000000000x".into();
    assert!(m.payments().handle_payment_notice(&stray).await.is_err());
    assert_eq!(m.governance().deposits().deposit(&s.merchant).await.unwrap().balance, Money::fen(30_000));
}

async fn the_exit_refund_is_split_over_the_pay_ins_newest_first_through_wechat_pay(e: Env) {
    let m = &e.market;
    let s = shop(m, "Split", 30_000, &[1_000]).await;
    let older = pay_deposit(&e, &s.merchant, 20_000, "k1").await;
    e.advance(days(1));
    let newer = pay_deposit(&e, &s.merchant, 15_001, "k2").await;
    m.governance().deposits().request_deposit_exit(&s.merchant).await.unwrap();
    e.gw.hold_refunds(true); // WeChat Pay answers PROCESSING; notifications conclude
    let d = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance, d.refunding), (DepositStatus::Refunding, Money::ZERO, Money::fen(35_001)));
    assert_eq!(d.awaiting_retry, Money::ZERO);
    assert_eq!(d.refunds.len(), 2);
    let (rn, ro) = (refund_of(&d.refunds, &newer).clone(), refund_of(&d.refunds, &older).clone());
    assert_eq!(
        (rn.amount, rn.total, rn.status),
        (Money::fen(15_001), Money::fen(15_001), DepositRefundStatus::Processing)
    );
    assert_eq!(
        (ro.amount, ro.total, ro.status),
        (Money::fen(20_000), Money::fen(20_000), DepositRefundStatus::Processing)
    );
    assert_eq!((rn.id.len(), &rn.id[..3]), (32, "dpr"));
    assert_eq!(rn.wx_refund_id, Some(format!("wxrefund_{}", rn.id)));
    let asked = deposit_refund_calls(&e.gw);
    assert_eq!(asked.len(), 2);
    assert_eq!(
        (asked[0].out_trade_no.as_str(), asked[0].transaction_id.as_deref(), asked[0].refund, asked[0].total),
        (newer.as_str(), Some("42k2"), Money::fen(15_001), Money::fen(15_001)),
        "the newest pay-in first"
    );
    assert_eq!(
        (asked[1].out_trade_no.as_str(), asked[1].transaction_id.as_deref(), asked[1].refund, asked[1].total),
        (older.as_str(), Some("42k1"), Money::fen(20_000), Money::fen(20_000))
    );
    assert_eq!(e.balance(Account::DepositRefundPayable(s.merchant.clone())).await, 35_001);
    e.audit().await;
    // A repeated call asks nothing again; so do the timers.
    let again = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!(again.refunds, d.refunds);
    e.run().await;
    assert_eq!(deposit_refund_calls(&e.gw).len(), 2);
    // The newer refund's notification arrives, twice.
    let RefundSettled::Deposit(r) = m.payments().handle_refund_notice(&rn.id, true, Some("50300001")).await.unwrap()
    else {
        panic!("not a deposit refund")
    };
    assert_eq!((r.status, r.wx_refund_id.as_deref()), (DepositRefundStatus::Succeeded, Some("50300001")));
    let RefundSettled::Deposit(r2) = m.payments().handle_refund_notice(&rn.id, true, Some("50300001")).await.unwrap()
    else {
        panic!("not a deposit refund")
    };
    assert_eq!(r2, r, "a redelivered notice changes nothing");
    // A late contradicting notice cannot undo a concluded refund.
    let RefundSettled::Deposit(r3) = m.payments().handle_refund_notice(&rn.id, false, None).await.unwrap() else {
        panic!("not a deposit refund")
    };
    assert_eq!(r3, r);
    assert_eq!(
        m.governance().deposits().deposit_refunds(&s.merchant).await.unwrap().refunds[0].status,
        DepositRefundStatus::Succeeded
    );
    assert_eq!(e.balance(Account::DepositRefundPayable(s.merchant.clone())).await, 20_000);
    assert_eq!(m.governance().deposits().deposit(&s.merchant).await.unwrap().account.status, DepositStatus::Refunding);
    // The older refund's notification is lost: reconciliation queries it a minute later.
    e.gw.settle_refund(&ro.id, RefundQuery::Succeeded { refund_id: "50300002".into() });
    let r = m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(r, ReconcileReport::default(), "not before a minute");
    e.advance(minutes(1));
    let r = m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 1, applied: 1, failed: 0 });
    let d = m.governance().deposits().deposit_refunds(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance, d.refunding), (DepositStatus::Closed, Money::ZERO, Money::ZERO));
    assert!(d.refunds.iter().all(|r| r.status == DepositRefundStatus::Succeeded));
    // The late notification is a no-op, and so is another refund request.
    m.payments().handle_refund_notice(&ro.id, true, Some("50300002")).await.unwrap();
    let after = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!(after.refunds, d.refunds);
    assert_eq!(deposit_refund_calls(&e.gw).len(), 2);
    assert_eq!(e.balance(Account::MerchantDeposit(s.merchant.clone())).await, 0);
    assert_eq!(e.balance(Account::DepositRefundPayable(s.merchant.clone())).await, 0);
    let mut kinds: Vec<(String, i64)> = m
        .governance()
        .ledger_txns(&format!("deposit:{}", s.merchant))
        .await
        .unwrap()
        .iter()
        .map(|t| (t.kind.to_string(), t.entries.iter().map(|e| e.amount.as_fen()).filter(|f| *f > 0).sum()))
        .collect();
    kinds.sort();
    let k = |kind: &str, fen: i64| (kind.to_string(), fen);
    assert_eq!(
        kinds,
        [
            k("deposit_pay_in", 15_001),
            k("deposit_pay_in", 20_000),
            k("deposit_refund", 35_001),
            k("deposit_refund_paid", 15_001),
            k("deposit_refund_paid", 20_000)
        ]
    );
    e.audit().await;
}

async fn a_failed_deposit_refund_stays_visible_until_the_platform_retries_it(e: Env) {
    let m = &e.market;
    let s = shop(m, "Retry", 30_000, &[1_000]).await;
    let pay = pay_deposit(&e, &s.merchant, 30_000, "k1").await;
    m.governance().deposits().request_deposit_exit(&s.merchant).await.unwrap();
    // WeChat Pay refuses the call for good: the refund fails, the money stays owed and visible.
    e.gw.fail_next("refund", false);
    let d = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!(d.account.status, DepositStatus::Refunding);
    assert_eq!((d.refunding, d.awaiting_retry), (Money::fen(30_000), Money::fen(30_000)));
    let first = d.refunds[0].clone();
    assert_eq!((first.status, first.amount), (DepositRefundStatus::Failed, Money::fen(30_000)));
    assert!(first.note.as_deref().unwrap().contains("PARAM_ERROR"), "{:?}", first.note);
    e.audit().await;
    // The platform retries: a new refund of the same payment; WeChat Pay accepts it (PROCESSING) but
    // then reports it abnormal.
    e.gw.hold_refunds(true);
    let d = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!(d.refunds.len(), 2);
    let second = d.refunds[1].clone();
    assert_eq!(
        (second.status, second.amount, second.payment_id.as_deref(), second.retry_of.as_deref()),
        (DepositRefundStatus::Processing, Money::fen(30_000), Some(pay.as_str()), Some(first.id.as_str()))
    );
    assert_eq!(d.awaiting_retry, Money::ZERO);
    m.payments().handle_refund_notice(&second.id, false, Some("50300009")).await.unwrap();
    let d = m.governance().deposits().deposit_refunds(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.awaiting_retry), (DepositStatus::Refunding, Money::fen(30_000)));
    assert_eq!(d.refunds[1].status, DepositRefundStatus::Failed);
    // Again: this time a transient error first, then the timers retry the same out_refund_no.
    e.gw.hold_refunds(false);
    e.gw.fail_next("refund", true);
    let d = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    let third = d.refunds[2].clone();
    assert_eq!((third.status, third.retry_of.as_deref()), (DepositRefundStatus::Requested, Some(second.id.as_str())));
    e.advance(minutes(10));
    e.run().await;
    let asked: Vec<String> = deposit_refund_calls(&e.gw).into_iter().map(|r| r.out_refund_no).collect();
    assert_eq!(asked, [first.id.clone(), second.id.clone(), third.id.clone(), third.id.clone()]);
    let d = m.governance().deposits().deposit_refunds(&s.merchant).await.unwrap();
    assert_eq!(
        d.refunds.iter().map(|r| r.status).collect::<Vec<_>>(),
        [DepositRefundStatus::Failed, DepositRefundStatus::Failed, DepositRefundStatus::Succeeded]
    );
    assert_eq!((d.account.status, d.balance, d.refunding), (DepositStatus::Closed, Money::ZERO, Money::ZERO));
    e.audit().await;
}

async fn the_exit_refund_is_refused_while_an_order_case_dispute_or_settlement_is_open(e: Env) {
    let m = &e.market;
    let s = shop(m, "Busy", 10_000, &[8_000]).await;
    pay_deposit(&e, &s.merchant, 10_000, "k1").await;
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    m.governance().deposits().request_deposit_exit(&s.merchant).await.unwrap();
    let refused = |r: Result<DepositRefundView>| match r {
        Err(MarketError::OpenItems(what)) => what,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(refused(m.governance().deposits().refund_deposit(&s.merchant).await), "1 orders, 1 settlements");
    ship_and_receive(&e, &s, "b1", &order).await;
    let req = CaseRequest {
        order_id: order.clone(),
        line_no: 1,
        kind: CaseKind::RefundOnly,
        amount: Money::fen(8_000),
        reason: "假货".into(),
        evidence: vec!["img".into()],
    };
    let c = m.governance().aftersales().open_case("b1", &req).await.unwrap();
    assert_eq!(
        refused(m.governance().deposits().refund_deposit(&s.merchant).await),
        "1 orders, 1 cases, 1 settlements"
    );
    m.governance().aftersales().reject_case(&s.merchant, &c.id, "正品").await.unwrap();
    m.governance().aftersales().escalate_case("b1", &c.id).await.unwrap();
    assert_eq!(
        refused(m.governance().deposits().refund_deposit(&s.merchant).await),
        "1 orders, 1 cases, 1 disputes, 1 settlements"
    );
    let disputes = m.governance().aftersales().merchant_disputes(&s.merchant, 10).await.unwrap();
    m.governance().aftersales().decide_dispute(&disputes[0].id, Decision::MerchantWins, "正品").await.unwrap();
    e.advance(days(7) + minutes(1));
    e.run().await;
    assert!(matches!(m.governance().deposits().refund_deposit(&s.merchant).await, Err(MarketError::Window { .. })));
    assert_eq!(deposit_refund_calls(&e.gw).len(), 0);
    assert_eq!(m.governance().deposits().deposit(&s.merchant).await.unwrap().account.status, DepositStatus::Exiting);
    e.advance(days(7));
    let d = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance, d.refunding), (DepositStatus::Closed, Money::ZERO, Money::ZERO));
    assert_eq!(deposit_refund_calls(&e.gw).len(), 1);
    e.audit().await;
}

async fn a_pay_in_older_than_a_year_is_paid_back_manually(e: Env) {
    let m = &e.market;
    let s = shop(m, "Old", 10_000, &[1_000]).await;
    let old = pay_deposit(&e, &s.merchant, 10_000, "k1").await;
    e.advance(days(300));
    let new = pay_deposit(&e, &s.merchant, 2_500, "k2").await;
    e.advance(days(65)); // the first pay-in is exactly a year old: WeChat Pay no longer refunds it
    m.governance().deposits().request_deposit_exit(&s.merchant).await.unwrap();
    let d = m.governance().deposits().refund_deposit(&s.merchant).await.unwrap();
    assert_eq!(d.refunds.len(), 2);
    let r = refund_of(&d.refunds, &new);
    assert_eq!((r.amount, r.status), (Money::fen(2_500), DepositRefundStatus::Succeeded));
    let manual = d.refunds.iter().find(|r| r.payment_id.is_none()).unwrap();
    assert_eq!((manual.amount, manual.status), (Money::fen(10_000), DepositRefundStatus::Manual));
    assert!(deposit_refund_calls(&e.gw).iter().all(|r| r.out_trade_no != old));
    assert_eq!((d.account.status, d.refunding), (DepositStatus::Refunding, Money::fen(10_000)));
    let err = m.governance().deposits().deposit_refund_paid_manually(&r.id, "BANK-1").await.unwrap_err();
    assert!(matches!(err, MarketError::IllegalTransition { .. }), "a WeChat Pay refund is not paid manually: {err:?}");
    m.governance().deposits().deposit_refund_paid_manually(&manual.id, "BANK-2").await.unwrap();
    m.governance().deposits().deposit_refund_paid_manually(&manual.id, "BANK-2").await.unwrap();
    let d = m.governance().deposits().deposit_refunds(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance, d.refunding), (DepositStatus::Closed, Money::ZERO, Money::ZERO));
    e.audit().await;
}

async fn a_lost_deposit_payment_notice_is_credited_once_by_reconciliation(e: Env) {
    let m = &e.market;
    let s = shop(m, "Lost", 30_000, &[1_000]).await;
    let p = m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(30_000), "o-boss", "k1").await.unwrap();
    let unpaid = m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(700), "o-boss", "k2").await.unwrap();
    let notice = PaymentNotice {
        notify_id: "real-notice".into(),
        out_trade_no: p.out_trade_no.clone(),
        transaction_id: "4200000077".into(),
        amount: Money::fen(30_000),
        paid_at: m.now(),
        sub_orders: Vec::new(),
    };
    e.gw.set_paid(notice.clone()); // the buyer paid; the notification is lost
    assert_eq!(m.payments().reconcile_pending_payments(m.now()).await.unwrap(), ReconcileReport::default());
    e.advance(minutes(1));
    let r = m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 2, applied: 1, failed: 0 });
    let d = m.governance().deposits().deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(30_000)));
    // Again: the paid one is no longer pending; the late notification changes nothing.
    let r = m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 1, applied: 0, failed: 0 });
    assert_eq!(m.payments().handle_payment_notice(&notice).await.unwrap(), NoticeOutcome::AlreadyPaid);
    assert_eq!(m.governance().deposits().deposit(&s.merchant).await.unwrap().balance, Money::fen(30_000));
    let pay_ins = m.governance().ledger_txns(&format!("deposit:{}", s.merchant)).await.unwrap();
    assert_eq!(pay_ins.len(), 1);
    assert_eq!(pay_ins[0].id, "payin:4200000077");
    // The unpaid one expires with its prepay order (15 minutes): closed at WeChat Pay and here.
    e.advance(minutes(13));
    let closes = |gw: &RecordingGateway| {
        gw.calls()
            .into_iter()
            .filter(|c| matches!(c, GatewayCall::Close(r) if r.out_trade_no == unpaid.out_trade_no))
            .count()
    };
    m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(closes(&e.gw), 0);
    e.advance(minutes(1));
    let r = m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 1, applied: 0, failed: 0 });
    assert_eq!(closes(&e.gw), 1);
    assert_eq!(m.payments().reconcile_pending_payments(m.now()).await.unwrap(), ReconcileReport::default());
    let err = m.governance().deposits().deposit_prepay(&s.merchant, Money::fen(700), "o-boss", "k2").await.unwrap_err();
    assert!(matches!(err, MarketError::Window { .. }), "{err:?}");
    assert_eq!(m.governance().deposits().deposit(&s.merchant).await.unwrap().balance, Money::fen(30_000));
    e.audit().await;
}

/// A ¥100 order shipped late: ¥5 compensation to `b1` out of the deposit, asked of a gateway paying by
/// merchant transfer. Returns the merchant and the compensation id.
async fn late_compensation_by_transfer(e: &Env) -> (Shop, String) {
    let m = &e.market;
    e.gw.pay_by_transfer();
    let s = shop(m, "Transfer", 50_000, &[10_000]).await;
    m.governance().deposits().deposit_paid_in(&s.merchant, "wxdep-t", Money::fen(50_000)).await.unwrap();
    buy(e, &s, "b1", &[(0, 1)]).await;
    e.advance(hours(48) + minutes(1));
    e.run().await;
    let list = m.governance().transfers().buyer_compensations("b1").await.unwrap();
    assert_eq!(list.len(), 1);
    let c = &list[0];
    let t = c.transfer.clone().expect("a transfer bill");
    assert_eq!(
        (c.compensation.amount, c.compensation.status, c.compensation.source, t.attempt),
        (Money::fen(500), PayoutStatus::Requested, Payer::Deposit, 1)
    );
    let id = c.compensation.id.clone();
    assert_eq!(id.len(), 32, "the compensation id is the first out_bill_no: 32 of [0-9a-f]");
    assert_eq!(
        (t.out_bill_no.as_str(), t.state.as_str(), t.transfer_bill_no.clone(), t.package_info.clone()),
        (id.as_str(), "WAIT_USER_CONFIRM", Some(format!("wxtransfer_{id}")), Some(format!("package_{id}")))
    );
    assert!(t.awaits_buyer());
    // Owed until WeChat Pay says the money arrived.
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 500);
    e.audit().await;
    (s, id)
}

fn transfer_notice(id: &str, out_bill_no: &str, outcome: TransferOutcome, fen: i64) -> TransferNotice {
    TransferNotice {
        notify_id: id.into(),
        out_bill_no: out_bill_no.into(),
        transfer_bill_no: format!("wxtransfer_{out_bill_no}"),
        outcome,
        amount: Money::fen(fen),
        openid: "b1".into(),
        fail_reason: (outcome == TransferOutcome::Fail).then(|| "PAYEE_ACCOUNT_ABNORMAL".to_string()),
    }
}

async fn a_compensation_transfer_is_paid_exactly_once_by_its_notification(e: Env) {
    let m = &e.market;
    let (_, id) = late_compensation_by_transfer(&e).await;
    // A notice whose amount is not the compensation's changes nothing (and leaves its id unused).
    let err = m
        .governance()
        .transfers()
        .handle_transfer_notice(&transfer_notice("t1", &id, TransferOutcome::Success, 499))
        .await
        .unwrap_err();
    assert!(matches!(err, MarketError::PaymentMismatch { .. }), "{err:?}");
    let stray = transfer_notice("t0", "0123456789abcdef0123456789abcdef", TransferOutcome::Success, 500);
    assert!(matches!(
        m.governance().transfers().handle_transfer_notice(&stray).await,
        Err(MarketError::NotFound { .. })
    ));
    let ok = transfer_notice("t1", &id, TransferOutcome::Success, 500);
    assert_eq!(m.governance().transfers().handle_transfer_notice(&ok).await.unwrap(), TransferNoticeOutcome::Paid);
    assert_eq!(m.governance().transfers().handle_transfer_notice(&ok).await.unwrap(), TransferNoticeOutcome::Duplicate);
    let again = transfer_notice("t2", &id, TransferOutcome::Success, 500);
    assert_eq!(
        m.governance().transfers().handle_transfer_notice(&again).await.unwrap(),
        TransferNoticeOutcome::AlreadyApplied
    );
    let v = m.governance().transfers().compensation_view(&id).await.unwrap();
    let t = v.transfer.unwrap();
    assert_eq!(
        (v.compensation.status, t.state.as_str(), t.package_info, t.transfer_bill_no),
        (PayoutStatus::Succeeded, "SUCCESS", None, Some(format!("wxtransfer_{id}")))
    );
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 0, "paid out once");
    // Nothing is left to reconcile, and a paid compensation is not re-issued.
    assert_eq!(m.governance().transfers().reconcile_pending_transfers(m.now()).await.unwrap().checked, 0);
    assert!(matches!(m.governance().transfers().reissue_compensation(&id).await, Err(MarketError::AlreadyDone(_))));
    e.audit().await;
}

async fn a_failed_compensation_transfer_stays_owed_and_is_reissued_once(e: Env) {
    let m = &e.market;
    let (_, id) = late_compensation_by_transfer(&e).await;
    let fail = transfer_notice("f1", &id, TransferOutcome::Fail, 500);
    assert_eq!(m.governance().transfers().handle_transfer_notice(&fail).await.unwrap(), TransferNoticeOutcome::Failed);
    assert_eq!(
        m.governance().transfers().handle_transfer_notice(&fail).await.unwrap(),
        TransferNoticeOutcome::Duplicate
    );
    let v = m.governance().transfers().compensation_view(&id).await.unwrap();
    let t = v.transfer.clone().unwrap();
    assert_eq!(
        (v.compensation.status, t.state.as_str(), t.fail_reason.as_deref()),
        (PayoutStatus::Failed, "FAIL", Some("PAYEE_ACCOUNT_ABNORMAL"))
    );
    let trail = m.ops().audit_trail(&id).await.unwrap();
    assert!(trail.iter().any(|a| a.reason.as_deref() == Some("PAYEE_ACCOUNT_ABNORMAL")), "{trail:?}");
    // Still owed to the buyer.
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 500);
    e.audit().await;

    // The platform re-issues it: a new bill with a new out_bill_no, asked of WeChat Pay at once; twice is once.
    let r = m.governance().transfers().reissue_compensation(&id).await.unwrap();
    let t2 = r.transfer.clone().unwrap();
    assert_eq!(
        (r.compensation.status, t2.attempt, t2.state.as_str()),
        (PayoutStatus::Requested, 2, "WAIT_USER_CONFIRM")
    );
    assert_ne!(t2.out_bill_no, id);
    assert!(t2.out_bill_no.len() == 32 && t2.out_bill_no.bytes().all(|b| b.is_ascii_alphanumeric()));
    let r2 = m.governance().transfers().reissue_compensation(&id).await.unwrap();
    assert_eq!(r2.transfer.unwrap().out_bill_no, t2.out_bill_no);
    let asked: Vec<String> = calls(&e.gw)
        .into_iter()
        .filter_map(|c| if let GatewayCall::Compensate(r) = c { Some(r.out_no) } else { None })
        .collect();
    assert_eq!(asked, vec![id.clone(), t2.out_bill_no.clone()]);
    // The old bill's failure delivered again under another id changes nothing.
    let late = transfer_notice("f2", &id, TransferOutcome::Fail, 500);
    assert_eq!(
        m.governance().transfers().handle_transfer_notice(&late).await.unwrap(),
        TransferNoticeOutcome::AlreadyApplied
    );
    assert_eq!(
        m.governance().transfers().compensation_view(&id).await.unwrap().compensation.status,
        PayoutStatus::Requested
    );

    // The new bill's notification is lost; reconciliation finds it SUCCESS by query, once.
    let mut found = transfer_notice("", &t2.out_bill_no, TransferOutcome::Success, 500);
    found.notify_id = transfer_query_notify_id(&found.transfer_bill_no, TransferOutcome::Success);
    e.gw.set_transfer(&t2.out_bill_no, TransferQuery::Finished(found.clone()));
    let rep = m.governance().transfers().reconcile_pending_transfers(m.now()).await.unwrap();
    assert_eq!((rep.checked, rep.applied, rep.failed), (1, 1, 0));
    let rep = m.governance().transfers().reconcile_pending_transfers(m.now()).await.unwrap();
    assert_eq!((rep.checked, rep.applied, rep.failed), (0, 0, 0));
    // The notification arriving after all is a no-op.
    let late_ok = transfer_notice("s9", &t2.out_bill_no, TransferOutcome::Success, 500);
    assert_eq!(
        m.governance().transfers().handle_transfer_notice(&late_ok).await.unwrap(),
        TransferNoticeOutcome::AlreadyApplied
    );
    let v = m.governance().transfers().compensation_view(&id).await.unwrap();
    assert_eq!((v.compensation.status, v.transfer.unwrap().state.as_str()), (PayoutStatus::Succeeded, "SUCCESS"));
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 0);
    e.audit().await;
}

async fn promoter_ids_are_small_durable_and_one_per_openid(e: Env) {
    let m = &e.market;
    assert_eq!(m.governance().settlements().promoter_openid(1).await.unwrap(), None);
    assert_eq!(m.governance().settlements().promoter_id("p-alice").await.unwrap(), 1);
    assert_eq!(m.governance().settlements().promoter_id("p-alice").await.unwrap(), 1);
    assert_eq!(m.governance().settlements().promoter_id("p-bob").await.unwrap(), 2);
    assert_eq!(m.governance().settlements().promoter_openid(1).await.unwrap().as_deref(), Some("p-alice"));
    assert_eq!(m.governance().settlements().promoter_openid(2).await.unwrap().as_deref(), Some("p-bob"));
    assert_eq!(m.governance().settlements().promoter_openid(3).await.unwrap(), None);
    assert_eq!(m.governance().settlements().promoter_openid(0).await.unwrap(), None);
    assert_eq!(m.governance().settlements().promoter_openid(u64::MAX).await.unwrap(), None);
    assert!(matches!(m.governance().settlements().promoter_id("").await, Err(MarketError::Invalid(_))));
    // Sixteen first shares of one buyer at once: one id, and no id spent by the losers.
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.governance().settlements().promoter_id("p-carol").await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for c in calls {
        ids.push(c.await.unwrap());
    }
    assert_eq!(ids, vec![3; 16]);
    // Sixteen different buyers at once: sixteen distinct ids, dense.
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(
                async move { m.governance().settlements().promoter_id(&format!("p-many-{i:02}")).await.unwrap() },
            )
        })
        .collect();
    let mut ids = Vec::new();
    for c in calls {
        ids.push(c.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (4..=19).collect::<Vec<u64>>());
    assert_eq!(m.governance().settlements().promoter_id("p-dave").await.unwrap(), 20);
    // A restarted storefront (a new Market over the same store) reads the same ids back.
    let restarted = env(m.store().clone()).market;
    assert_eq!(restarted.governance().settlements().promoter_id("p-carol").await.unwrap(), 3);
    assert_eq!(restarted.governance().settlements().promoter_openid(2).await.unwrap().as_deref(), Some("p-bob"));
    e.audit().await;
}

macro_rules! cases {
    ($($f:ident),* $(,)?) => { vec![$((stringify!($f), (|e| Box::pin($f(e)) as BoxFut<()>) as fn(Env) -> BoxFut<()>)),*] };
}

fn cases() -> Vec<Case> {
    cases![
        late_shipment_becomes_a_penalty_and_a_deposit_deduction_and_an_upheld_appeal_restores_it,
        an_unrefilled_deposit_restricts_the_merchant_after_the_grace_period,
        merchant_answers_within_48_hours_or_the_refund_is_approved,
        a_refund_made_in_the_merchant_platform_settles_the_open_case,
        cancelling_after_a_partial_refund_refunds_only_the_rest,
        a_return_becomes_a_refund_and_the_settlement_splits_to_the_fen,
        return_and_receipt_timers_at_their_boundaries,
        a_rejection_escalates_within_7_days_and_the_platform_decides_from_the_deposit,
        at_most_one_open_and_five_total_cases_per_line,
        reviews_are_once_per_line_after_receipt_and_feed_the_score,
        manual_penalty_delists_and_restricts_and_an_upheld_appeal_relists_exactly,
        a_manual_restriction_outlives_governance_until_the_platform_lifts_it,
        fake_shipment_is_judged_only_with_carrier_tracking_and_only_without_a_scan,
        profit_sharing_shares_from_whoever_collected_the_payment,
        the_deposit_is_refunded_on_exit_only_after_the_windows_close,
        ledger_stays_balanced_through_a_random_run,
        the_sql_ledger_matches_the_reference_ledger_step_by_step,
        a_deposit_prepaid_through_wechat_pay_is_credited_once_by_its_notification,
        the_exit_refund_is_split_over_the_pay_ins_newest_first_through_wechat_pay,
        a_failed_deposit_refund_stays_visible_until_the_platform_retries_it,
        the_exit_refund_is_refused_while_an_order_case_dispute_or_settlement_is_open,
        a_pay_in_older_than_a_year_is_paid_back_manually,
        a_lost_deposit_payment_notice_is_credited_once_by_reconciliation,
        a_compensation_transfer_is_paid_exactly_once_by_its_notification,
        a_failed_compensation_transfer_stays_owed_and_is_reissued_once,
        promoter_ids_are_small_durable_and_one_per_openid,
    ]
}

async fn suite(backend: &str, factory: Factory) {
    let only = std::env::var("GOV_CASE").ok();
    for (name, case) in cases() {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        eprintln!("[{backend}] {name}");
        let fresh = factory().await;
        case(env(fresh.store)).await;
        fresh.cleanup.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_governance() {
    suite("sqlite", stores::sqlite_factory("wxshop-gov")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_governance() {
    let Some(factory) = stores::postgres_factory("wxshop_g") else { return };
    suite("postgres", factory).await;
}
