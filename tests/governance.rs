//! Governance conformance suite: deposits, reviews and scores, after-sales and disputes, penalties,
//! settlement and profit sharing, on SQLite always and on PostgreSQL when `DATABASE_URL` is set (each
//! case in a fresh schema), with the injectable clock. Every case ends with a clean ledger audit.

mod common;
#[path = "common/stores.rs"]
mod stores;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use wxshop::market::governance::aftersale::{CaseKind, CaseState, CloseReason, Decision, Payer, Waybill};
use wxshop::market::governance::commission::{CommissionRule, Rate, Scope};
use wxshop::market::governance::deposit::DepositStatus;
use wxshop::market::governance::ledger::Account;
use wxshop::market::governance::penalty::PenaltyStatus;
use wxshop::market::governance::review::{Ratings, ReviewStatus, TextVerdict};
use wxshop::market::governance::settlement::{AttributionState, SettlementState};
use wxshop::market::governance::{GovError, GovernanceConfig};
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
        self.market.run_due_timers(self.market.now()).await.unwrap();
        self.market.run_due_timers(self.market.now()).await.unwrap();
    }

    async fn audit(&self) {
        let a = self.market.ledger_audit().await.unwrap();
        assert_eq!((a.total, a.mismatches.len(), a.unbalanced.len()), (0, 0, 0), "ledger audit {a:?}");
    }

    async fn balance(&self, a: Account) -> i64 {
        self.market.ledger_balance(&a).await.unwrap().as_fen()
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
    let (category, _) = m.create_category(&format!("{name} goods"), None, spec).await.unwrap();
    let merchant = m.create_merchant(nm).await.unwrap();
    m.approve_merchant(&merchant.id).await.unwrap();
    m.grant_category(&merchant.id, &category.id).await.unwrap();
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
    m.list_product(&merchant.id, &p.product.id).await.unwrap();
    let skus: Vec<String> = p.skus.iter().map(|s| s.id.clone()).collect();
    for s in &skus {
        m.set_stock(&merchant.id, s, 100).await.unwrap();
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
    let co = m.checkout(req).await.unwrap();
    let n = PaymentNotice {
        notify_id: new_id(),
        out_trade_no: co.group.id.clone(),
        transaction_id: format!("wx{}", co.group.id),
        amount: co.group.total,
        paid_at: m.now(),
        sub_orders: vec![],
    };
    assert_eq!(m.handle_payment_notice(&n).await.unwrap(), NoticeOutcome::Paid);
    m.sync_governance().await.unwrap();
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
    m.ship(&s.merchant, order, ship).await.unwrap();
    m.confirm_receipt(buyer, order).await.unwrap();
    m.sync_governance().await.unwrap();
}

fn calls(gw: &RecordingGateway) -> Vec<GatewayCall> {
    gw.calls()
}

// ------------------------------------------------------------------ the cases

async fn late_shipment_becomes_a_penalty_and_a_deposit_deduction_and_an_upheld_appeal_restores_it(e: Env) {
    let m = &e.market;
    let s = shop(m, "Late", 50_000, &[10_000]).await;
    let d = m.deposit(&s.merchant).await.unwrap();
    assert_eq!(
        (d.account.status, d.account.required, d.balance),
        (DepositStatus::Unfunded, Money::fen(50_000), Money::ZERO)
    );
    m.deposit_paid_in(&s.merchant, "wxdep1", Money::fen(50_000)).await.unwrap();
    let d = m.deposit_paid_in(&s.merchant, "wxdep1", Money::fen(50_000)).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(50_000)), "a repeated pay-in is one");
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    let before = m.merchant_score(&s.merchant).await.unwrap();

    // 47 h 59 m after payment: not late yet.
    e.advance(hours(48) - minutes(1));
    e.run().await;
    assert!(m.penalty_log(&s.merchant).await.unwrap().records.is_empty());
    // 48 h 01 m: the shipping deadline has passed: a late-shipment penalty, paid from the deposit.
    e.advance(minutes(2));
    e.run().await;
    let log = m.penalty_log(&s.merchant).await.unwrap();
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
    let d = m.deposit(&s.merchant).await.unwrap();
    assert_eq!(d.account.status, DepositStatus::Insufficient);
    let mid = m.merchant_score(&s.merchant).await.unwrap();
    assert_eq!((mid.penalty_deduction, mid.score), (100, mid.base - 100));
    // A second run does not penalize twice.
    e.run().await;
    assert_eq!(m.penalty_log(&s.merchant).await.unwrap().records.len(), 1);

    // The merchant appeals; the platform upholds: deposit, status, points and score come back exactly.
    let pid = rec.id.clone();
    assert!(matches!(m.appeal_penalty("other", &pid, "x").await, Err(GovError::NotFound { .. })));
    m.appeal_penalty(&s.merchant, &pid, "快递停运").await.unwrap();
    assert_eq!(m.penalty(&pid).await.unwrap().status, PenaltyStatus::Appealing);
    let p = m.decide_penalty_appeal(&pid, true, "承运商原因").await.unwrap();
    assert_eq!(p.status, PenaltyStatus::AppealUpheld);
    let d = m.deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(50_000)));
    let log = m.penalty_log(&s.merchant).await.unwrap();
    assert_eq!((log.points, log.records[0].status), (0, Some(6)));
    let after = m.merchant_score(&s.merchant).await.unwrap();
    assert_eq!((after.penalty_deduction, after.score), (0, after.base));
    assert_eq!(after.components, mid.components);
    assert!(before.score >= after.score, "the late shipment itself still counts in on-time shipping");
    // The buyer keeps the compensation; the platform refilled the deposit.
    assert_eq!(e.balance(Account::PlatformPenalty).await, -500);
    assert!(matches!(m.appeal_penalty(&s.merchant, &pid, "again").await, Err(GovError::IllegalTransition { .. })));
    e.audit().await;
}

async fn an_unrefilled_deposit_restricts_the_merchant_after_the_grace_period(e: Env) {
    let m = &e.market;
    let s = shop(m, "Grace", 20_000, &[10_000]).await;
    m.deposit_paid_in(&s.merchant, "wxd", Money::fen(20_000)).await.unwrap();
    buy(&e, &s, "b1", &[(0, 1)]).await;
    e.advance(hours(49));
    let deducted_at = m.now();
    e.run().await;
    let d = m.deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Insufficient, Money::fen(19_500)));
    let grace = d.account.grace_until.unwrap();
    assert_eq!(grace, deducted_at + hours(168));
    e.advance(grace - m.now() - minutes(1));
    e.run().await;
    assert_eq!(m.merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
    e.advance(minutes(2));
    e.run().await;
    assert_eq!(m.deposit(&s.merchant).await.unwrap().account.status, DepositStatus::Restricted);
    let merchant = m.merchant(&s.merchant).await.unwrap();
    assert_eq!(
        (merchant.status, merchant.restrictions),
        (MerchantStatus::Restricted, Restrictions::LISTING | Restrictions::CHECKOUT)
    );
    // A top-up lifts it.
    m.deposit_paid_in(&s.merchant, "wxd2", Money::fen(500)).await.unwrap();
    assert_eq!(m.deposit(&s.merchant).await.unwrap().account.status, DepositStatus::Funded);
    assert_eq!(m.merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
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
    assert!(matches!(m.open_case("b2", &req).await, Err(GovError::NotFound { .. })));
    let too_much = CaseRequest { amount: Money::fen(10_001), ..req.clone() };
    assert!(matches!(
        m.open_case("b1", &too_much).await,
        Err(GovError::RefundExceeds { requested: 10_001, refundable: 10_000 })
    ));
    let c = m.open_case("b1", &req).await.unwrap();
    assert_eq!(c.state, CaseState::MerchantReview);
    assert!(matches!(m.open_case("b1", &req).await, Err(GovError::CaseLimit { open: 1, total: 1, .. })));

    e.advance(hours(48) - minutes(1));
    e.run().await;
    assert_eq!(m.case(&c.id).await.unwrap().state, CaseState::MerchantReview);
    e.advance(minutes(2));
    assert!(matches!(
        m.approve_case(&s.merchant, &c.id).await,
        Err(GovError::DeadlinePassed { what: "merchant_response", .. })
    ));
    e.run().await;
    let c = m.case(&c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Refunded);
    let notes: Vec<&str> = c.history.iter().map(|t| t.note.as_str()).collect();
    assert_eq!(notes, ["opened", "merchant_response_overdue", "refund_succeeded"]);
    let refunds: Vec<RefundRequest> =
        calls(&e.gw).into_iter().filter_map(|c| if let GatewayCall::Refund(r) = c { Some(r) } else { None }).collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!((refunds[0].refund, refunds[0].total), (Money::fen(3_000), Money::fen(10_000)));
    // The timeout is a penalty of its own.
    let log = m.penalty_log(&s.merchant).await.unwrap();
    assert_eq!(log.records.iter().map(|r| r.rule_code.as_str()).collect::<Vec<_>>(), ["after_sale_timeout"]);
    // Ledger: 10 000 paid, 3 000 refunded and paid out; 7 000 still pending.
    assert_eq!(e.balance(Account::MerchantPending(s.merchant.clone())).await, 7_000);
    assert_eq!(e.balance(Account::BuyerRefundPayable("b1".into())).await, 0);
    assert_eq!(e.balance(Account::Clearing).await, -7_000);
    let st = m.settlement(&order).await.unwrap();
    assert_eq!(st.lines[0].refunded, Money::fen(3_000));
    // The next case may ask at most what is left.
    let left = CaseRequest { amount: Money::fen(7_001), ..req };
    assert!(matches!(m.open_case("b1", &left).await, Err(GovError::RefundExceeds { refundable: 7_000, .. })));
    e.audit().await;
}

async fn a_return_becomes_a_refund_and_the_settlement_splits_to_the_fen(e: Env) {
    let m = &e.market;
    let s = shop(m, "Return", 0, &[6_000, 4_000]).await;
    let t = m.now();
    m.put_commission_rule(CommissionRule::new("global", Scope::Global, Rate::Bps(600), Money::ZERO, t)).await.unwrap();
    m.put_commission_rule(CommissionRule::new(
        "cat",
        Scope::Category(s.category.clone()),
        Rate::Bps(500),
        Money::ZERO,
        t,
    ))
    .await
    .unwrap();
    m.record_click("b1", "p1", "tok1").await.unwrap();
    let order = buy(&e, &s, "b1", &[(0, 1), (1, 1)]).await;
    let st = m.settlement(&order).await.unwrap();
    assert_eq!(st.state, SettlementState::Frozen);
    assert_eq!(st.lines.iter().map(|l| l.commission.rule_id.as_str()).collect::<Vec<_>>(), ["cat", "cat"]);
    assert_eq!(m.attribution(&order).await.unwrap().unwrap().state, AttributionState::Attributed);
    ship_and_receive(&e, &s, "b1", &order).await;

    let c = m
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
    m.approve_case(&s.merchant, &c.id).await.unwrap();
    let wb = Waybill { company: "SF".into(), number: "SF123".into() };
    assert!(matches!(
        m.upload_return("b1", &c.id, Waybill { company: "".into(), number: "1".into() }).await,
        Err(GovError::Invalid(_))
    ));
    m.upload_return("b1", &c.id, wb).await.unwrap();
    m.confirm_return_received(&s.merchant, &c.id).await.unwrap();
    m.sync_governance().await.unwrap();
    assert_eq!(m.case(&c.id).await.unwrap().state, CaseState::Refunded);

    // The after-sale window closes: released.
    e.advance(days(7));
    e.run().await;
    let st = m.settlement(&order).await.unwrap();
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
    let attr = m.attribution(&order).await.unwrap().unwrap();
    assert_eq!((attr.state, attr.amount), (AttributionState::Paid, Money::fen(375)));
    assert_eq!(e.balance(Account::MerchantPending(s.merchant.clone())).await, 0);
    assert_eq!(e.balance(Account::MerchantAvailable(s.merchant.clone())).await, 6_750);
    assert_eq!(e.balance(Account::PlatformCommission).await, 375);
    assert_eq!(e.balance(Account::PromoterCommission("p1".into())).await, 0);
    let paid = m.payout_settlement(&s.merchant, &order).await.unwrap();
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
    let c = m.open_case("b1", &open(1_000)).await.unwrap();
    m.approve_case(&s.merchant, &c.id).await.unwrap();
    e.advance(days(7) - minutes(1));
    e.run().await;
    assert_eq!(m.case(&c.id).await.unwrap().state, CaseState::AwaitingReturn);
    e.advance(minutes(2));
    e.run().await;
    let c = m.case(&c.id).await.unwrap();
    assert_eq!((c.state, c.close_reason), (CaseState::Closed, Some(CloseReason::ReturnNotShipped)));

    // The window is 7 days after receipt: it has closed now; re-open the window with a fresh order.
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let c = m.open_case("b1", &CaseRequest { order_id: order.clone(), ..open(3_000) }).await.unwrap();
    m.approve_case(&s.merchant, &c.id).await.unwrap();
    m.upload_return("b1", &c.id, Waybill { company: "YTO".into(), number: "YT1".into() }).await.unwrap();
    // The merchant never confirms the goods: accepted and refunded 10 days later.
    e.advance(days(10) - minutes(1));
    e.run().await;
    assert_eq!(m.case(&c.id).await.unwrap().state, CaseState::ReturnInTransit);
    e.advance(minutes(2));
    e.run().await;
    let c = m.case(&c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Refunded);
    assert!(c.history.iter().any(|t| t.note == "merchant_receive_overdue"));
    e.audit().await;
}

async fn a_rejection_escalates_within_7_days_and_the_platform_decides_from_the_deposit(e: Env) {
    let m = &e.market;
    let s = shop(m, "Dispute", 10_000, &[8_000]).await;
    m.deposit_paid_in(&s.merchant, "wxd", Money::fen(10_000)).await.unwrap();
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
    let c = m.open_case("b1", &req).await.unwrap();
    m.reject_case(&s.merchant, &c.id, "正品").await.unwrap();
    // Unescalated for 7 days: closed.
    e.advance(days(7) + minutes(1));
    e.run().await;
    assert_eq!(m.case(&c.id).await.unwrap().close_reason, Some(CloseReason::NotEscalated));
    // Next time the buyer escalates at 6 days 23 h 59 m (the window is the order's 7 days, so a fresh order).
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &s, "b1", &order).await;
    let c = m.open_case("b1", &CaseRequest { order_id: order.clone(), ..req.clone() }).await.unwrap();
    m.reject_case(&s.merchant, &c.id, "正品").await.unwrap();
    e.advance(days(7) - minutes(1));
    let c = m.escalate_case("b1", &c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Escalated);
    let disputes = m.merchant_disputes(&s.merchant, 10).await.unwrap();
    let d = disputes.iter().find(|d| d.case_id.as_deref() == Some(c.id.as_str())).unwrap();
    let too_much = Decision::BuyerWins { refund: Money::fen(8_001), payer: Payer::Deposit };
    assert!(matches!(m.decide_dispute(&d.id, too_much, "").await, Err(GovError::RefundExceeds { .. })));
    m.decide_dispute(&d.id, Decision::BuyerWins { refund: Money::fen(8_000), payer: Payer::Deposit }, "假货成立")
        .await
        .unwrap();
    e.run().await;
    let c = m.case(&c.id).await.unwrap();
    assert_eq!(c.state, CaseState::Refunded);
    // 8 000 from the deposit to the buyer, through WeChat Pay's deposit compensation.
    assert_eq!(e.balance(Account::MerchantDeposit(s.merchant.clone())).await, 2_000);
    assert!(calls(&e.gw).iter().any(|c| matches!(c, GatewayCall::Compensate(r) if r.amount == Money::fen(8_000))));
    // The merchant keeps its sale proceeds (the deposit paid), and lost a dispute.
    assert_eq!(m.settlement(&order).await.unwrap().lines[0].refunded, Money::ZERO);
    let log = m.penalty_log(&s.merchant).await.unwrap();
    assert!(log.records.iter().any(|r| r.rule_code == "dispute_lost"));
    let score = m.merchant_score(&s.merchant).await.unwrap();
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
        let c = m.open_case("b1", &req).await.unwrap();
        m.cancel_case("b1", &c.id).await.unwrap();
    }
    assert!(matches!(m.open_case("b1", &req).await, Err(GovError::CaseLimit { open: 0, total: 5, .. })));
    assert_eq!(m.cases_of_order(&order).await.unwrap().len(), 5);
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
    assert!(matches!(m.submit_review("b1", &r, TextVerdict::Pass).await, Err(GovError::NotEligible(_))));
    ship_and_receive(&e, &s, "b1", &order).await;
    assert!(matches!(m.submit_review("b2", &r, TextVerdict::Pass).await, Err(GovError::NotFound { .. })));
    let before = m.merchant_score(&s.merchant).await.unwrap();
    let rev = m.submit_review("b1", &r, TextVerdict::Pass).await.unwrap();
    assert_eq!(rev.status, ReviewStatus::Published);
    assert!(matches!(m.submit_review("b1", &r, TextVerdict::Pass).await, Err(GovError::AlreadyDone("review"))));
    let with = m.merchant_score(&s.merchant).await.unwrap();
    assert_eq!(with.samples.reviews, 1);
    // One 1★ review against the 4.5★ prior… the category's own mean is that review: 1★.
    assert!(with.components.ratings < before.components.ratings);
    m.reply_review(&s.merchant, &rev.id, "抱歉").await.unwrap();
    assert!(matches!(m.reply_review(&s.merchant, &rev.id, "again").await, Err(GovError::AlreadyDone("reply"))));
    m.follow_up_review("b1", &rev.id, "还是差", vec![], TextVerdict::Pass).await.unwrap();
    // Hidden by the platform: it stops counting; restored on appeal: it counts again.
    m.moderate_review(&rev.id, ReviewStatus::Hidden, "辱骂").await.unwrap();
    assert_eq!(m.merchant_score(&s.merchant).await.unwrap().samples.reviews, 0);
    m.appeal_review("b1", &rev.id, "没有辱骂").await.unwrap();
    m.decide_review_appeal(&rev.id, true).await.unwrap();
    let restored = m.merchant_score(&s.merchant).await.unwrap();
    assert_eq!(restored, with);
    assert_eq!(m.merchant_reviews(&s.merchant, false, 10).await.unwrap().len(), 1);
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
    m.set_governance_config(&cfg).await.unwrap();
    assert_eq!(m.governance_config().await.unwrap(), cfg);
    let p = m.file_violation(&s.merchant, "manual", "虚假宣传", None, vec![s.product.clone()]).await.unwrap();
    assert_eq!(p.status, PenaltyStatus::PendingReview);
    assert_eq!(m.product(&s.product).await.unwrap().product.status, ProductStatus::Listed);
    m.confirm_penalty(&p.id).await.unwrap();
    assert_eq!(m.product(&s.product).await.unwrap().product.status, ProductStatus::ForceDelisted);
    let merchant = m.merchant(&s.merchant).await.unwrap();
    assert_eq!(
        (merchant.status, merchant.restrictions),
        (MerchantStatus::Restricted, Restrictions::LISTING | Restrictions::PAYOUT)
    );
    assert_eq!(m.merchant_restrictions(&s.merchant).await.unwrap().len(), 1);
    m.appeal_penalty(&s.merchant, &p.id, "有依据").await.unwrap();
    m.decide_penalty_appeal(&p.id, true, "ok").await.unwrap();
    assert_eq!(m.product(&s.product).await.unwrap().product.status, ProductStatus::Listed);
    assert_eq!(m.merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
    assert!(m.merchant_restrictions(&s.merchant).await.unwrap().is_empty());

    // Confirmed again (a new violation) and left alone: the restriction ends by its timer after 3 days.
    let p = m.file_violation(&s.merchant, "manual", "again", None, vec![]).await.unwrap();
    m.confirm_penalty(&p.id).await.unwrap();
    assert_eq!(m.merchant(&s.merchant).await.unwrap().status, MerchantStatus::Restricted);
    e.advance(days(3) - minutes(1));
    e.run().await;
    assert_eq!(m.merchant(&s.merchant).await.unwrap().status, MerchantStatus::Restricted);
    e.advance(minutes(2));
    e.run().await;
    assert_eq!(m.merchant(&s.merchant).await.unwrap().status, MerchantStatus::Active);
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
    m.set_governance_config(&cfg).await.unwrap();
    m.put_commission_rule(CommissionRule::new("global", Scope::Global, Rate::Bps(500), Money::ZERO, m.now()))
        .await
        .unwrap();
    let direct = shop(m, "Direct", 0, &[10_000]).await;
    let partner = shop_of(m, NewMerchant::new("Partner").sub_mchid("1900000109"), 0, &[10_000]).await;
    let a = buy(&e, &direct, "b1", &[(0, 1)]).await;
    ship_and_receive(&e, &direct, "b1", &a).await;
    let b = buy(&e, &partner, "b2", &[(0, 1)]).await;
    ship_and_receive(&e, &partner, "b2", &b).await;
    assert_eq!(m.profit_share_of(&b).await.unwrap(), None);
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
        let p = m.profit_share_of(o).await.unwrap().unwrap();
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
    m.deposit_paid_in(&s.merchant, "wxf1", Money::fen(50_000)).await.unwrap();
    let ship = |o: &str| ShipRequest {
        tracking_no: format!("SF{}", &o[..8]),
        express_company: "SF".into(),
        items: None,
        receiver_phone: None,
    };
    let untracked = buy(&e, &s, "b1", &[(0, 1)]).await;
    m.ship(&s.merchant, &untracked, ship(&untracked)).await.unwrap();
    m.sync_governance().await.unwrap();
    let cfg = GovernanceConfig { carrier_tracking: true, ..GovernanceConfig::default() };
    m.set_governance_config(&cfg).await.unwrap();
    let scanned = buy(&e, &s, "b2", &[(0, 1)]).await;
    let fake = buy(&e, &s, "b3", &[(0, 1)]).await;
    for o in [&scanned, &fake] {
        m.ship(&s.merchant, o, ship(o)).await.unwrap();
    }
    m.sync_governance().await.unwrap();
    e.advance(hours(2));
    m.record_carrier_event(&scanned, m.now()).await.unwrap();
    e.advance(hours(46) - minutes(1));
    e.run().await;
    assert!(m.penalty_log(&s.merchant).await.unwrap().records.is_empty());
    e.advance(minutes(2));
    e.run().await;
    let log = m.penalty_log(&s.merchant).await.unwrap();
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
    let held = m.restrict_merchant(&s.merchant, Restrictions::CHECKOUT, "资质复核").await.unwrap();
    assert_eq!(view(held), (MerchantStatus::Restricted, Restrictions::CHECKOUT, Restrictions::CHECKOUT, false));
    // The deposit is funded: governance recomputes the status and keeps the platform's restriction.
    let d = m.deposit_paid_in(&s.merchant, "wxh1", Money::fen(20_000)).await.unwrap();
    assert_eq!(d.account.status, DepositStatus::Funded);
    assert_eq!(
        view(m.merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Restricted, Restrictions::CHECKOUT, Restrictions::CHECKOUT, false)
    );
    // A 3-day penalty restriction adds listing and payout; when it expires, only the platform's stays.
    let mut cfg = GovernanceConfig::default();
    let rule = cfg.penalty.rules.iter_mut().find(|r| r.code == "manual").unwrap();
    rule.actions = vec![wxshop::market::governance::penalty::Action::Restrict { days: 3 }];
    m.set_governance_config(&cfg).await.unwrap();
    let p = m.file_violation(&s.merchant, "manual", "虚假宣传", None, vec![]).await.unwrap();
    m.confirm_penalty(&p.id).await.unwrap();
    let all = Restrictions::LISTING | Restrictions::CHECKOUT | Restrictions::PAYOUT;
    assert_eq!(
        view(m.merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Restricted, all, Restrictions::CHECKOUT, false)
    );
    e.advance(days(3) + minutes(1));
    e.run().await;
    assert!(m.merchant_restrictions(&s.merchant).await.unwrap().is_empty());
    assert_eq!(
        view(m.merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Restricted, Restrictions::CHECKOUT, Restrictions::CHECKOUT, false)
    );
    // The platform lifts it: Active, nothing held.
    let lifted = m.lift_restrictions(&s.merchant, Restrictions::CHECKOUT, "复核通过").await.unwrap();
    assert_eq!(view(lifted), (MerchantStatus::Active, Restrictions::NONE, Restrictions::NONE, false));
    // A suspension by hand outlives a penalty restriction's expiry too; only reinstating ends it.
    m.suspend_merchant(&s.merchant, "涉嫌欺诈").await.unwrap();
    let p = m.file_violation(&s.merchant, "manual", "again", None, vec![]).await.unwrap();
    m.confirm_penalty(&p.id).await.unwrap();
    assert_eq!(
        view(m.merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Suspended, Restrictions::NONE, Restrictions::NONE, true)
    );
    e.advance(days(3) + minutes(1));
    e.run().await;
    assert_eq!(
        view(m.merchant(&s.merchant).await.unwrap()),
        (MerchantStatus::Suspended, Restrictions::NONE, Restrictions::NONE, true)
    );
    let back = m.reinstate_merchant(&s.merchant, "调查结束").await.unwrap();
    assert_eq!(view(back), (MerchantStatus::Active, Restrictions::NONE, Restrictions::NONE, false));
    e.audit().await;
}

async fn the_deposit_is_refunded_on_exit_only_after_the_windows_close(e: Env) {
    let m = &e.market;
    let s = shop(m, "Exit", 5_000, &[1_000]).await;
    m.deposit_paid_in(&s.merchant, "wx1", Money::fen(5_000)).await.unwrap();
    let order = buy(&e, &s, "b1", &[(0, 1)]).await;
    m.request_deposit_exit(&s.merchant).await.unwrap();
    assert!(matches!(m.refund_deposit(&s.merchant).await, Err(GovError::OpenItems(_))));
    ship_and_receive(&e, &s, "b1", &order).await;
    e.advance(days(7));
    e.run().await;
    assert_eq!(m.settlement(&order).await.unwrap().state, SettlementState::Released);
    // Released, but a late rejection could still be escalated for 7 more days.
    assert!(matches!(m.refund_deposit(&s.merchant).await, Err(GovError::Window { .. })));
    e.advance(days(7));
    let d = m.refund_deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Closed, Money::ZERO));
    e.audit().await;
}

async fn ledger_stays_balanced_through_a_random_run(e: Env) {
    use rand::{Rng, SeedableRng};
    let m = &e.market;
    let s = shop(m, "Random", 3_000, &[1_500, 2_700]).await;
    m.deposit_paid_in(&s.merchant, "wx0", Money::fen(3_000)).await.unwrap();
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
                if m.ship(&s.merchant, &o, ship).await.is_ok() {
                    let _ = m.confirm_receipt(&b, &o).await;
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
                if let Ok(c) = m.open_case(&b, &req).await
                    && rng.random_bool(0.5)
                {
                    let _ = m.approve_case(&s.merchant, &c.id).await;
                }
            }
            4 if !orders.is_empty() => {
                let (o, _) = orders[rng.random_range(0..orders.len())].clone();
                let _ = m.cancel_paid_order(&s.merchant, &o, "out of stock").await;
            }
            _ => e.advance(hours(rng.random_range(1..60))),
        }
        e.run().await;
        e.audit().await;
        if m.deposit(&s.merchant).await.unwrap().balance.is_negative() {
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
    let c = m.open_case("b1", &req).await.unwrap();
    m.approve_case(&s.merchant, &c.id).await.unwrap();
    e.run().await;
    assert_eq!(m.case(&c.id).await.unwrap().state, CaseState::Refunded);
    m.cancel_paid_order(&s.merchant, &order, "out of stock").await.unwrap();
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
    let p = m.deposit_prepay(&s.merchant, Money::fen(30_000), "o-boss", "top-1").await.unwrap();
    assert_eq!((p.out_trade_no.len(), &p.out_trade_no[..3]), (32, "dep"));
    assert!(p.out_trade_no.bytes().all(|b| b.is_ascii_alphanumeric()), "{}", p.out_trade_no);
    assert_eq!(p.pay_params["package"], format!("prepay_id=prepay_{}", p.out_trade_no));
    // The same key is the same payment; another amount under it is refused, and nothing is pending twice.
    let again = m.deposit_prepay(&s.merchant, Money::fen(30_000), "o-boss", "top-1").await.unwrap();
    assert_eq!(again.out_trade_no, p.out_trade_no);
    let err = m.deposit_prepay(&s.merchant, Money::fen(1), "o-boss", "top-1").await.unwrap_err();
    assert!(matches!(err, GovError::Invalid(_)), "{err:?}");
    let prepays: Vec<PrepayRequest> =
        calls(&e.gw).into_iter().filter_map(|c| if let GatewayCall::Prepay(r) = c { Some(r) } else { None }).collect();
    assert_eq!(prepays.len(), 2);
    assert!(prepays.iter().all(|r| r.out_trade_no == p.out_trade_no
        && r.total == Money::fen(30_000)
        && r.mode == PayMode::Jsapi
        && r.payer_openid == "o-boss"));
    let notice = |id: &str, fen: i64| PaymentNotice {
        notify_id: id.into(),
        out_trade_no: p.out_trade_no.clone(),
        transaction_id: "4200000001".into(),
        amount: Money::fen(fen),
        paid_at: t0(),
        sub_orders: Vec::new(),
    };
    // A wrong amount changes nothing (and leaves the notification id unused).
    let err = m.handle_payment_notice(&notice("n1", 29_999)).await.unwrap_err();
    assert!(matches!(err, MarketError::PaymentMismatch { .. }), "{err:?}");
    let d = m.deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Unfunded, Money::ZERO));
    assert_eq!(m.handle_payment_notice(&notice("n1", 30_000)).await.unwrap(), NoticeOutcome::Paid);
    assert_eq!(m.handle_payment_notice(&notice("n1", 30_000)).await.unwrap(), NoticeOutcome::Duplicate);
    assert_eq!(m.handle_payment_notice(&notice("n2", 30_000)).await.unwrap(), NoticeOutcome::AlreadyPaid);
    let d = m.deposit(&s.merchant).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(30_000)));
    assert_eq!(e.balance(Account::MerchantDeposit(s.merchant.clone())).await, 30_000);
    e.audit().await;
    // A paid key cannot be prepaid again; a new key tops up.
    let err = m.deposit_prepay(&s.merchant, Money::fen(30_000), "o-boss", "top-1").await.unwrap_err();
    assert!(matches!(err, GovError::AlreadyDone(_)), "{err:?}");
    let p2 = m.deposit_prepay(&s.merchant, Money::fen(500), "o-boss", "top-2").await.unwrap();
    assert_ne!(p2.out_trade_no, p.out_trade_no);
    // An unknown deposit out_trade_no is refused, not applied.
    let mut stray = notice("n3", 500);
    stray.out_trade_no = "dep0000000000000000000000000000x".into();
    assert!(m.handle_payment_notice(&stray).await.is_err());
    assert_eq!(m.deposit(&s.merchant).await.unwrap().balance, Money::fen(30_000));
}

macro_rules! cases {
    ($($f:ident),* $(,)?) => { vec![$((stringify!($f), (|e| Box::pin($f(e)) as BoxFut<()>) as fn(Env) -> BoxFut<()>)),*] };
}

fn cases() -> Vec<Case> {
    cases![
        late_shipment_becomes_a_penalty_and_a_deposit_deduction_and_an_upheld_appeal_restores_it,
        an_unrefilled_deposit_restricts_the_merchant_after_the_grace_period,
        merchant_answers_within_48_hours_or_the_refund_is_approved,
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
