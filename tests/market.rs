//! Marketplace conformance suite: every rule, on SQLite always and on PostgreSQL when `DATABASE_URL` is
//! set (each case in a fresh schema, dropped afterwards; CI sets it and WXSHOP_REQUIRE_SERVICES=1).
#![cfg(all(feature = "sqlite", feature = "emulator"))]

mod common;
#[path = "common/stores.rs"]
mod stores;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
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
    let market = Market::builder(store).payments(gw.clone()).shipping(gw.clone()).clock(clock.clone()).build().unwrap();
    Env { market, gw, clock }
}

struct Shop {
    merchant: Merchant,
    category: Category,
    product: String,
    skus: Vec<String>,
}

/// An active merchant with one listed product whose SKUs cost `prices` and hold `stock` units each.
async fn shop(m: &Market, name: &str, sub_mchid: Option<&str>, prices: &[i64], stock: i64) -> Shop {
    let (category, _) =
        m.categories().create_category(&format!("{name} goods"), None, RuleSpec::default()).await.unwrap();
    shop_in(m, name, sub_mchid, &category, prices, stock).await
}

async fn shop_in(
    m: &Market,
    name: &str,
    sub_mchid: Option<&str>,
    category: &Category,
    prices: &[i64],
    stock: i64,
) -> Shop {
    let mut nm = NewMerchant::new(name);
    nm.sub_mchid = sub_mchid.map(str::to_string);
    let merchant = m.merchants().create_merchant(nm).await.unwrap();
    let merchant = m.merchants().approve_merchant(&merchant.id).await.unwrap();
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
        m.inventory().set_stock(&merchant.id, s, stock).await.unwrap();
    }
    Shop { merchant, category: category.clone(), product: p.product.id, skus }
}

fn req(buyer: &str, key: &str, lines: &[(&str, i64)]) -> CheckoutRequest {
    CheckoutRequest::new(buyer, key, lines.iter().map(|(s, q)| CheckoutLine::new(*s, *q)).collect())
}

fn notice(co: &Checkout, notify_id: &str, at: DateTime<Utc>) -> PaymentNotice {
    PaymentNotice {
        notify_id: notify_id.into(),
        out_trade_no: co.group.id.clone(),
        transaction_id: format!("wx{}", co.group.id),
        amount: co.group.total,
        paid_at: at,
        sub_orders: if co.orders.len() > 1 {
            co.orders
                .iter()
                .map(|o| SubOrderPaid {
                    out_trade_no: o.id.clone(),
                    transaction_id: format!("wx{}", o.id),
                    amount: o.total,
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

async fn assert_consistent(m: &Market, merchant_id: &str, sku: &str) -> StockReconciliation {
    let r = m.inventory().reconcile_sku(merchant_id, sku).await.unwrap();
    assert!(r.is_consistent(), "inconsistent stock for {sku}: {r:?}");
    r
}

fn count_calls(gw: &RecordingGateway, f: impl Fn(&GatewayCall) -> bool) -> usize {
    gw.calls().iter().filter(|c| f(c)).count()
}

// ------------------------------------------------------------------ the cases

async fn store_round_trips_and_rejects_bad_input(e: Env) {
    let m = &e.market;
    let s = shop(m, "Leaf", None, &[1200, 3400], 7).await;
    let merchant = m.merchants().merchant(&s.merchant.id).await.unwrap();
    assert_eq!(merchant, s.merchant);
    let p = m.catalog().product(&s.product).await.unwrap();
    assert_eq!(p.product.status, ProductStatus::Listed);
    assert_eq!((p.product.min_price, p.product.max_price), (Money::fen(1200), Money::fen(3400)));
    assert_eq!(p.skus.len(), 2);
    assert_eq!(p.skus[0].attrs.get("size").map(String::as_str), Some("S0"));
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 7, reserved: 0 });
    assert!(matches!(m.merchants().merchant("nope").await, Err(MarketError::NotFound { entity: "merchant", .. })));
    assert!(matches!(m.inventory().stock("nope").await, Err(MarketError::NotFound { .. })));
    assert!(matches!(m.inventory().set_stock(&s.merchant.id, &s.skus[0], -1).await, Err(MarketError::Invalid(_))));
    assert!(matches!(m.inventory().set_stock("other", &s.skus[0], 1).await, Err(MarketError::NotFound { .. })));
    assert!(matches!(m.orders().checkout(req("b", "k", &[(&s.skus[0], 0)])).await, Err(MarketError::Invalid(_))));
    assert!(matches!(m.orders().checkout(req("b", "k", &[("missing", 1)])).await, Err(MarketError::NotFound { .. })));
    // Movements: two Adjust(+7).
    let mv = m.inventory().movements(&s.merchant.id, &s.skus[0]).await.unwrap();
    assert_eq!(mv.iter().map(|x| (x.kind, x.on_hand_delta)).collect::<Vec<_>>(), vec![(MovementKind::Adjust, 7)]);
}

async fn a_merchant_reads_only_its_own_stock(e: Env) {
    let m = &e.market;
    let a = shop(m, "Leaf", None, &[1200], 7).await;
    let b = shop(m, "Silk", None, &[900], 3).await;
    let co = m.orders().checkout(req("buyer", "k1", &[(&a.skus[0], 2)])).await.unwrap();
    assert_eq!(co.orders.len(), 1);
    let level = m.inventory().merchant_stock(&a.merchant.id, &a.skus[0]).await.unwrap();
    assert_eq!(level, StockLevel { on_hand: 7, reserved: 2 });
    assert_eq!(level.available(), 5);
    assert!(matches!(
        m.inventory().merchant_stock(&b.merchant.id, &a.skus[0]).await,
        Err(MarketError::NotFound { entity: "sku", .. })
    ));
    assert!(matches!(m.inventory().merchant_stock(&a.merchant.id, "missing").await, Err(MarketError::NotFound { .. })));
    assert_eq!(
        m.inventory().merchant_stock(&b.merchant.id, &b.skus[0]).await.unwrap(),
        StockLevel { on_hand: 3, reserved: 0 }
    );
    let cats = m.merchants().merchant_categories(&a.merchant.id).await.unwrap();
    assert_eq!(cats.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["Leaf goods"]);
    assert!(matches!(
        m.merchants().merchant_categories("nope").await,
        Err(MarketError::NotFound { entity: "merchant", .. })
    ));
    // An absolute set conditional on what was read: a sale (or adjustment) in between refuses it.
    m.inventory().adjust_stock(&a.merchant.id, &a.skus[0], -1).await.unwrap();
    let stale = m.inventory().set_stock_if(&a.merchant.id, &a.skus[0], 7, 20).await.unwrap_err();
    assert!(
        matches!(&stale, MarketError::VersionMismatch { entity: "stock", expected, actual } if expected == "7" && actual == "6"),
        "{stale:?}"
    );
    assert_eq!(
        m.inventory().set_stock_if(&a.merchant.id, &a.skus[0], 6, 20).await.unwrap(),
        StockLevel { on_hand: 20, reserved: 2 }
    );
    assert!(matches!(
        m.inventory().set_stock_if(&b.merchant.id, &a.skus[0], 20, 1).await,
        Err(MarketError::NotFound { .. })
    ));
}

async fn merchant_restrictions_block_what_they_name(e: Env) {
    let m = &e.market;
    let s = shop(m, "Rice", None, &[500], 10).await;
    let id = &s.merchant.id;
    // LISTING blocks listing but not selling.
    m.merchants().restrict_merchant(id, Restrictions::LISTING, "rectify listings").await.unwrap();
    m.catalog().delist_product(id, &s.product).await.unwrap();
    let err = m.catalog().list_product(id, &s.product).await.unwrap_err();
    assert!(matches!(err, MarketError::MerchantBlocked { action: "list", .. }), "{err}");
    m.merchants().lift_restrictions(id, Restrictions::LISTING, "fixed").await.unwrap();
    m.catalog().list_product(id, &s.product).await.unwrap();
    // CHECKOUT blocks selling and hides the products; listing still works.
    let r = m.merchants().restrict_merchant(id, Restrictions::CHECKOUT, "late shipping").await.unwrap();
    assert_eq!((r.status, r.restrictions), (MerchantStatus::Restricted, Restrictions::CHECKOUT));
    let err = m.orders().checkout(req("b1", "k1", &[(&s.skus[0], 1)])).await.unwrap_err();
    assert!(matches!(err, MarketError::MerchantBlocked { action: "sell", .. }), "{err}");
    assert!(m.catalog().browse(&BrowseQuery::default().merchant(id)).await.unwrap().items.is_empty());
    // Adding PAYOUT keeps CHECKOUT; lifting CHECKOUT leaves PAYOUT (still Restricted, selling again).
    let r = m.merchants().restrict_merchant(id, Restrictions::PAYOUT, "dispute").await.unwrap();
    assert_eq!(r.restrictions, Restrictions::CHECKOUT | Restrictions::PAYOUT);
    let r = m.merchants().lift_restrictions(id, Restrictions::CHECKOUT, "ok").await.unwrap();
    assert_eq!(
        (r.status, r.restrictions, r.can_sell(), r.can_payout()),
        (MerchantStatus::Restricted, Restrictions::PAYOUT, true, false)
    );
    let co = m.orders().checkout(req("b1", "k2", &[(&s.skus[0], 1)])).await.unwrap();
    // Suspended blocks everything; closing needs every order finished.
    m.merchants().suspend_merchant(id, "fraud check").await.unwrap();
    assert!(matches!(
        m.orders().checkout(req("b2", "k", &[(&s.skus[0], 1)])).await,
        Err(MarketError::MerchantBlocked { .. })
    ));
    m.merchants().begin_closing(id, "leaving").await.unwrap();
    let err = m.merchants().close_merchant(id, "bye").await.unwrap_err();
    assert!(matches!(err, MarketError::IllegalTransition { entity: "merchant", .. }), "{err}");
    m.orders().cancel_checkout("b1", &co.group.id).await.unwrap();
    let closed = m.merchants().close_merchant(id, "bye").await.unwrap();
    assert_eq!(closed.status, MerchantStatus::Closed);
    assert!(matches!(m.merchants().approve_merchant(id).await, Err(MarketError::IllegalTransition { .. })));
    // Same-state moves are no-ops (no new version, no new audit row).
    let before = m.ops().audit_trail(id).await.unwrap().len();
    assert_eq!(m.merchants().close_merchant(id, "again").await.unwrap().version, closed.version);
    assert_eq!(m.ops().audit_trail(id).await.unwrap().len(), before);
}

async fn order_lines_keep_the_rule_version_they_were_sold_under(e: Env) {
    let m = &e.market;
    let s = shop(m, "Silk", None, &[10_000], 10).await;
    let co1 = m.orders().checkout(req("b1", "k1", &[(&s.skus[0], 1)])).await.unwrap();
    let v2 = m
        .categories()
        .publish_rule(&s.category.id, RuleSpec { commission_bps: 500, ship_sla_hours: 24, ..RuleSpec::default() })
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let co2 = m.orders().checkout(req("b2", "k1", &[(&s.skus[0], 1)])).await.unwrap();
    let l1 = &m.orders().order(&co1.orders[0].id).await.unwrap().lines[0];
    let l2 = &m.orders().order(&co2.orders[0].id).await.unwrap().lines[0];
    assert_eq!((l1.rule_version, l1.commission_bps, l1.commission), (1, 0, Money::ZERO));
    assert_eq!((l2.rule_version, l2.commission_bps, l2.commission), (2, 500, Money::fen(500)));
    assert_eq!((co1.orders[0].ship_sla_hours, co2.orders[0].ship_sla_hours), (48, 24));
    assert_eq!(m.categories().rule(&s.category.id, 1).await.unwrap().spec.commission_bps, 0);
    assert!(matches!(
        m.categories().publish_rule(&s.category.id, RuleSpec { commission_bps: 3_001, ..RuleSpec::default() }).await,
        Err(MarketError::Invalid(_))
    ));
}

async fn listing_needs_an_active_merchant_and_an_allowed_category(e: Env) {
    let m = &e.market;
    let s = shop(m, "Jade", None, &[900], 1).await;
    let (other, _) = m.categories().create_category("Other", None, RuleSpec::default()).await.unwrap();
    let np = |cat: &str| NewProduct {
        category_id: cat.into(),
        title: "x".into(),
        description: String::new(),
        skus: vec![NewSku { price: Money::fen(1), ..Default::default() }],
    };
    let err = m.catalog().create_product(&s.merchant.id, np(&other.id)).await.unwrap_err();
    assert!(matches!(err, MarketError::CategoryNotAllowed { .. }), "{err}");
    let applying = m.merchants().create_merchant(NewMerchant::new("New")).await.unwrap();
    m.merchants().grant_category(&applying.id, &other.id).await.unwrap();
    assert!(matches!(
        m.catalog().create_product(&applying.id, np(&other.id)).await,
        Err(MarketError::MerchantBlocked { .. })
    ));
    // Draft products are not browseable; the platform's force-delisting cannot be undone by the merchant.
    let d = m.catalog().create_product(&s.merchant.id, np(&s.category.id)).await.unwrap();
    assert_eq!(d.product.status, ProductStatus::Draft);
    let page = m.catalog().browse(&BrowseQuery::default().merchant(&s.merchant.id)).await.unwrap();
    assert_eq!(page.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec![s.product.as_str()]);
    let f = m.catalog().force_delist(&s.product, "counterfeit").await.unwrap();
    assert_eq!(f.status, ProductStatus::ForceDelisted);
    assert!(matches!(
        m.catalog().list_product(&s.merchant.id, &s.product).await,
        Err(MarketError::IllegalTransition { .. })
    ));
    assert!(matches!(
        m.orders().checkout(req("b", "k", &[(&s.skus[0], 1)])).await,
        Err(MarketError::Unavailable { .. })
    ));
    m.catalog().lift_force_delist(&s.product, "appeal upheld").await.unwrap();
    m.catalog().list_product(&s.merchant.id, &s.product).await.unwrap();
}

async fn browse_filters_and_pages_stably(e: Env) {
    let m = &e.market;
    let (cat_a, _) = m.categories().create_category("A", None, RuleSpec::default()).await.unwrap();
    let (cat_b, _) = m.categories().create_category("B", None, RuleSpec::default()).await.unwrap();
    let m1 = shop_in(m, "North", None, &cat_a, &[100], 1).await;
    let m2 = shop_in(m, "South", None, &cat_b, &[200], 1).await;
    m.merchants().grant_category(&m1.merchant.id, &cat_b.id).await.unwrap();
    let mut ids = vec![m1.product.clone(), m2.product.clone()];
    for i in 0..23i64 {
        let (merchant, cat) = if i % 2 == 0 { (&m1.merchant.id, &cat_a.id) } else { (&m1.merchant.id, &cat_b.id) };
        let title = if i % 5 == 0 { format!("Green Tea 50%_{i}") } else { format!("Oolong {i}") };
        let p = m
            .catalog()
            .create_product(
                merchant,
                NewProduct {
                    category_id: cat.clone(),
                    title,
                    description: String::new(),
                    skus: vec![NewSku { price: Money::fen(1000 + (i * 37) % 500), ..Default::default() }],
                },
            )
            .await
            .unwrap();
        m.catalog().list_product(merchant, &p.product.id).await.unwrap();
        ids.push(p.product.id);
    }
    // Newest first, 10 per page, a product added mid-way does not disturb the pages after the cursor.
    let mut seen = Vec::new();
    let mut q = BrowseQuery::default().limit(10);
    let mut pages = 0;
    loop {
        let page = m.catalog().browse(&q).await.unwrap();
        seen.extend(page.items.iter().map(|p| p.id.clone()));
        pages += 1;
        if pages == 1 {
            let late = m
                .catalog()
                .create_product(
                    &m2.merchant.id,
                    NewProduct {
                        category_id: cat_b.id.clone(),
                        title: "late".into(),
                        description: String::new(),
                        skus: vec![NewSku { price: Money::fen(1), ..Default::default() }],
                    },
                )
                .await
                .unwrap();
            m.catalog().list_product(&m2.merchant.id, &late.product.id).await.unwrap();
        }
        match page.next {
            Some(c) => q = q.after(c),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    // Filters.
    let by_cat = m.catalog().browse(&BrowseQuery::default().category(&cat_b.id).limit(100)).await.unwrap();
    assert_eq!(by_cat.items.len(), 11 + 1 + 1);
    assert!(by_cat.items.iter().all(|p| p.category_id == cat_b.id));
    let text = m.catalog().browse(&BrowseQuery::default().text("green TEA 50%_").limit(100)).await.unwrap();
    assert_eq!(text.items.len(), 5);
    let none = m.catalog().browse(&BrowseQuery::default().text("50%x").limit(100)).await.unwrap();
    assert!(none.items.is_empty());
    let priced = m
        .catalog()
        .browse(&BrowseQuery::default().price(Some(Money::fen(1200)), Some(Money::fen(1300))).limit(100))
        .await
        .unwrap();
    assert!(!priced.items.is_empty());
    assert!(priced.items.iter().all(|p| p.min_price >= Money::fen(1200) && p.min_price <= Money::fen(1300)));
    // Cheapest first, paged 7 at a time, is the full list in (price, id) order.
    let mut all = Vec::new();
    let mut q = BrowseQuery::default().sort(BrowseSort::PriceAsc).limit(7);
    loop {
        let page = m.catalog().browse(&q).await.unwrap();
        all.extend(page.items.into_iter().map(|p| (p.min_price, p.id)));
        match page.next {
            Some(c) => q = q.after(c),
            None => break,
        }
    }
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all.len(), 26);
    assert!(matches!(m.catalog().browse(&BrowseQuery::default().after("!!")).await, Err(MarketError::Invalid(_))));
}

async fn duplicate_lines_count_once_and_shortage_writes_nothing(e: Env) {
    let m = &e.market;
    let s = shop(m, "Salt", None, &[100], 3).await;
    let sku = s.skus[0].as_str();
    let err = m.orders().checkout(req("b1", "k1", &[(sku, 2), (sku, 2)])).await.unwrap_err();
    match err {
        MarketError::OutOfStock { shortages } => {
            assert_eq!(shortages, vec![Shortage { sku_id: sku.into(), requested: 4, available: 3 }]);
        }
        other => panic!("{other}"),
    }
    assert_eq!(m.inventory().stock(sku).await.unwrap(), StockLevel { on_hand: 3, reserved: 0 });
    assert!(m.orders().buyer_orders("b1", None, 10).await.unwrap().items.is_empty());
    assert!(e.gw.calls().is_empty());
    let co = m.orders().checkout(req("b1", "k1", &[(sku, 1), (sku, 2)])).await.unwrap();
    assert_eq!(co.orders.len(), 1);
    let d = m.orders().order(&co.orders[0].id).await.unwrap();
    assert_eq!(d.lines.iter().map(|l| (l.sku_id.as_str(), l.qty)).collect::<Vec<_>>(), vec![(sku, 3)]);
    assert_eq!(m.inventory().stock(sku).await.unwrap(), StockLevel { on_hand: 3, reserved: 3 });
    assert_consistent(m, &s.merchant.id, sku).await;
    // The stock cannot be set below what is reserved.
    assert!(matches!(m.inventory().set_stock(&s.merchant.id, sku, 2).await, Err(MarketError::Invalid(_))));
}

async fn no_oversell_under_200_concurrent_checkouts(e: Env) {
    let m = &e.market;
    let s = shop(m, "Flash", None, &[990], 50).await;
    let sku = s.skus[0].clone();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let m = m.clone();
        let sku = sku.clone();
        tasks.push(tokio::spawn(
            async move { m.orders().checkout(req(&format!("buyer{i}"), "flash", &[(&sku, 1)])).await },
        ));
    }
    let mut ok = Vec::new();
    let mut out = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(co) => ok.push(co),
            Err(MarketError::OutOfStock { shortages }) => {
                assert_eq!(shortages[0].requested, 1);
                assert_eq!(shortages[0].available, 0);
                out += 1;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((ok.len(), out), (50, 150));
    assert_eq!(m.inventory().stock(&sku).await.unwrap(), StockLevel { on_hand: 50, reserved: 50 });
    for (i, co) in ok.iter().enumerate() {
        assert_eq!(
            m.payments().handle_payment_notice(&notice(co, &format!("n{i}"), t0())).await.unwrap(),
            NoticeOutcome::Paid
        );
    }
    assert_eq!(m.inventory().stock(&sku).await.unwrap(), StockLevel { on_hand: 0, reserved: 0 });
    let paid = m.orders().merchant_orders(&s.merchant.id, Some(OrderStatus::Paid), None, 100).await.unwrap();
    assert_eq!(paid.items.len(), 50);
    let r = assert_consistent(m, &s.merchant.id, &sku).await;
    assert_eq!(r.committed, 50);
}

async fn checkout_is_idempotent_by_key(e: Env) {
    let m = &e.market;
    let s = shop(m, "Idem", None, &[700, 300], 10).await;
    let r1 = req("b1", "key-1", &[(&s.skus[0], 2), (&s.skus[1], 1)]);
    let a = m.orders().checkout(r1.clone()).await.unwrap();
    // Same key, same request (lines split and reordered): the same result, no second prepay.
    let b =
        m.orders().checkout(req("b1", "key-1", &[(&s.skus[1], 1), (&s.skus[0], 1), (&s.skus[0], 1)])).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.payment.prepay_id.as_deref(), Some(format!("prepay_{}", a.group.id).as_str()));
    assert_eq!(count_calls(&e.gw, |c| matches!(c, GatewayCall::Prepay(_))), 1);
    // Same key, different request: a conflict.
    let err = m.orders().checkout(req("b1", "key-1", &[(&s.skus[0], 1)])).await.unwrap_err();
    assert!(matches!(err, MarketError::IdempotencyConflict { .. }), "{err}");
    // The key is per buyer.
    m.orders().checkout(req("b2", "key-1", &[(&s.skus[0], 1)])).await.unwrap();
    // Ten concurrent calls with one key: one group.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let m = m.clone();
        let sku = s.skus[1].clone();
        tasks.push(tokio::spawn(async move {
            m.orders().checkout(req("b3", "same", &[(&sku, 1)])).await.unwrap().group.id
        }));
    }
    let mut groups = Vec::new();
    for t in tasks {
        groups.push(t.await.unwrap());
    }
    groups.dedup();
    assert_eq!(groups.len(), 1);
    assert_eq!(m.inventory().stock(&s.skus[1]).await.unwrap().reserved, 2);
    // A prepay failure keeps the group; the same call again completes it.
    e.gw.fail_next("prepay", true);
    let err = m.orders().checkout(req("b4", "k", &[(&s.skus[0], 1)])).await.unwrap_err();
    assert!(matches!(err, MarketError::Gateway(_)), "{err}");
    let again = m.orders().checkout(req("b4", "k", &[(&s.skus[0], 1)])).await.unwrap();
    assert!(again.payment.prepay_id.is_some());
}

async fn five_redeliveries_make_one_paid_transition(e: Env) {
    let m = &e.market;
    let s = shop(m, "Notify", None, &[1000], 5).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 2)])).await.unwrap();
    let n = notice(&co, "notify-1", t0());
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let m = m.clone();
        let n = n.clone();
        tasks.push(tokio::spawn(async move { m.payments().handle_payment_notice(&n).await.unwrap() }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == NoticeOutcome::Paid).count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == NoticeOutcome::Duplicate).count(), 4);
    // Another notification of the same payment (a reconciliation query, say) changes nothing.
    assert_eq!(
        m.payments().handle_payment_notice(&notice(&co, "notify-2", t0())).await.unwrap(),
        NoticeOutcome::AlreadyPaid
    );
    let paid_rows =
        m.ops().audit_trail(&co.orders[0].id).await.unwrap().into_iter().filter(|a| a.action == "paid").count();
    assert_eq!(paid_rows, 1);
    let events = m.ops().poll_events("test", 1000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.event_type == "order.paid").count(), 1);
    assert_eq!(events.iter().filter(|e| e.event_type == "payment.succeeded").count(), 1);
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 3, reserved: 0 });
    // A wrong amount pays nothing: it is recorded (held for review) and acknowledged.
    let co2 = m.orders().checkout(req("b2", "k", &[(&s.skus[0], 1)])).await.unwrap();
    let mut bad = notice(&co2, "notify-3", t0());
    bad.amount = Money::fen(1);
    let NoticeOutcome::Held { anomaly_ids } = m.payments().handle_payment_notice(&bad).await.unwrap() else { panic!() };
    assert_eq!(anomaly_ids.len(), 1);
    assert_eq!(m.orders().checkout_view(&co2.group.id).await.unwrap().group.status, GroupStatus::AwaitingPayment);
}

async fn a_wrong_amount_is_held_for_review_then_refunded_or_dismissed(e: Env) {
    let m = &e.market;
    let s = shop(m, "Wrong", None, &[2500], 5).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 2)])).await.unwrap();
    let mut bad = notice(&co, "n-bad", t0());
    bad.amount = Money::fen(4999);
    let NoticeOutcome::Held { anomaly_ids } = m.payments().handle_payment_notice(&bad).await.unwrap() else { panic!() };
    let a = m.payments().anomaly(&anomaly_ids[0]).await.unwrap();
    assert_eq!(
        (a.kind, a.status, a.group_id.as_str(), a.amount, a.expected, a.transaction_id.as_str()),
        (
            anomaly::AnomalyKind::AmountMismatch,
            anomaly::AnomalyStatus::Held,
            co.group.id.as_str(),
            Money::fen(4999),
            Some(Money::fen(5000)),
            bad.transaction_id.as_str()
        )
    );
    assert_eq!(
        a.detail,
        format!("payment of checkout {}: paid 4999 fen, expected 5000 fen (notification n-bad)", co.group.id)
    );
    // A redelivery is a duplicate; the same transaction under another notification id records nothing new.
    assert_eq!(m.payments().handle_payment_notice(&bad).await.unwrap(), NoticeOutcome::Duplicate);
    let mut again = bad.clone();
    again.notify_id = "n-bad-2".into();
    assert_eq!(m.payments().handle_payment_notice(&again).await.unwrap(), NoticeOutcome::Held { anomaly_ids: vec![] });
    let held = m.payments().anomalies(Some(anomaly::AnomalyStatus::Held), None, 10).await.unwrap();
    assert_eq!(held.items.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec![a.id.as_str()]);
    // Nothing was paid: the stock stays reserved, the order unpaid.
    let view = m.orders().checkout_view(&co.group.id).await.unwrap();
    assert_eq!((view.group.status, view.payment.status), (GroupStatus::AwaitingPayment, PaymentStatus::Initiated));
    assert_eq!(view.orders[0].status, OrderStatus::PendingPayment);
    // The platform sends it back: a refund of the transaction, not counted by the checkout's payment.
    let refunded = m.payments().refund_anomaly(&a.id, "buyer paid 1 fen short").await.unwrap();
    assert_eq!(
        (refunded.status, refunded.note.as_deref()),
        (anomaly::AnomalyStatus::Refunded, Some("buyer paid 1 fen short"))
    );
    let refund_id = refunded.refund_id.clone().unwrap();
    let refunds = m.orders().refunds(&co.group.id).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (
            refunds[0].id.as_str(),
            refunds[0].status,
            refunds[0].amount,
            refunds[0].total,
            refunds[0].order_id.as_deref()
        ),
        (refund_id.as_str(), RefundStatus::Succeeded, Money::fen(4999), Money::fen(4999), None)
    );
    assert_eq!(
        count_calls(&e.gw, |c| matches!(c, GatewayCall::Refund(r)
            if r.transaction_id.as_deref() == Some(bad.transaction_id.as_str()) && r.refund == Money::fen(4999))),
        1
    );
    assert_eq!(m.orders().checkout_view(&co.group.id).await.unwrap().payment.refunded, Money::ZERO);
    // Refunded is final.
    assert!(matches!(m.payments().dismiss_anomaly(&a.id, "late").await, Err(MarketError::IllegalTransition { .. })));
    // The right amount then pays the checkout as usual.
    assert_eq!(m.payments().handle_payment_notice(&notice(&co, "n-good", t0())).await.unwrap(), NoticeOutcome::Paid);
    // Another held one is dismissed with a note (and a dismissal needs one).
    let co2 = m.orders().checkout(req("b2", "k", &[(&s.skus[0], 1)])).await.unwrap();
    let mut bad2 = notice(&co2, "n-bad-3", t0());
    bad2.amount = Money::fen(1);
    let NoticeOutcome::Held { anomaly_ids } = m.payments().handle_payment_notice(&bad2).await.unwrap() else {
        panic!()
    };
    assert!(matches!(m.payments().dismiss_anomaly(&anomaly_ids[0], " ").await, Err(MarketError::Invalid(_))));
    let d = m.payments().dismiss_anomaly(&anomaly_ids[0], "settled by bank transfer").await.unwrap();
    assert_eq!((d.status, d.note.as_deref()), (anomaly::AnomalyStatus::Dismissed, Some("settled by bank transfer")));
    assert!(m.payments().anomalies(Some(anomaly::AnomalyStatus::Held), None, 10).await.unwrap().items.is_empty());
}

async fn a_second_payment_of_a_paid_checkout_is_refunded_automatically(e: Env) {
    let m = &e.market;
    let s = shop(m, "Twice", None, &[1800], 5).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 1)])).await.unwrap();
    assert_eq!(m.payments().handle_payment_notice(&notice(&co, "n1", t0())).await.unwrap(), NoticeOutcome::Paid);
    let mut second = notice(&co, "n2", t0());
    second.transaction_id = "wx-second".into();
    let NoticeOutcome::DuplicateRefunded { anomaly_ids } = m.payments().handle_payment_notice(&second).await.unwrap()
    else {
        panic!()
    };
    let a = m.payments().anomaly(&anomaly_ids[0]).await.unwrap();
    assert_eq!(
        (a.kind, a.status, a.amount, a.transaction_id.as_str()),
        (anomaly::AnomalyKind::DuplicatePayment, anomaly::AnomalyStatus::Refunded, Money::fen(1800), "wx-second")
    );
    assert_eq!(
        count_calls(&e.gw, |c| matches!(c, GatewayCall::Refund(r)
            if r.transaction_id.as_deref() == Some("wx-second") && r.refund == Money::fen(1800) && r.total == Money::fen(1800))),
        1
    );
    // The first payment stands untouched.
    let view = m.orders().checkout_view(&co.group.id).await.unwrap();
    assert_eq!((view.payment.status, view.payment.refunded), (PaymentStatus::Paid, Money::ZERO));
    assert_eq!(view.payment.transaction_id.as_deref(), Some(format!("wx{}", co.group.id).as_str()));
    assert_eq!(view.orders[0].status, OrderStatus::Paid);
    // Redelivered, or found again under another id: refunded once.
    assert_eq!(m.payments().handle_payment_notice(&second).await.unwrap(), NoticeOutcome::Duplicate);
    second.notify_id = "n3".into();
    assert_eq!(
        m.payments().handle_payment_notice(&second).await.unwrap(),
        NoticeOutcome::DuplicateRefunded { anomaly_ids: vec![] }
    );
    assert_eq!(count_calls(&e.gw, |c| matches!(c, GatewayCall::Refund(_))), 1);
    // The first transaction again is just already paid.
    assert_eq!(m.payments().handle_payment_notice(&notice(&co, "n4", t0())).await.unwrap(), NoticeOutcome::AlreadyPaid);
}

async fn a_refund_made_outside_the_market_is_applied_to_the_order(e: Env) {
    let m = &e.market;
    let s = shop(m, "Outside", None, &[3000], 5).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 2)])).await.unwrap();
    assert_eq!(m.payments().handle_payment_notice(&notice(&co, "n1", t0())).await.unwrap(), NoticeOutcome::Paid);
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 3, reserved: 0 });
    let external = |no: &str, fen: i64| anomaly::RefundNotice {
        notify_id: format!("rn-{no}"),
        out_refund_no: no.into(),
        out_trade_no: co.group.id.clone(),
        transaction_id: format!("wx{}", co.group.id),
        refund_id: format!("50{no}"),
        succeeded: true,
        amount: Money::fen(fen),
    };
    // Part of it, refunded in the merchant platform.
    let a = m.payments().handle_external_refund(&external("mp-1", 1000)).await.unwrap().unwrap();
    assert_eq!(
        (a.kind, a.status, a.refund_id.as_deref()),
        (anomaly::AnomalyKind::ExternalRefund, anomaly::AnomalyStatus::Applied, Some("mp-1"))
    );
    assert_eq!(a.order_id.as_deref(), Some(co.orders[0].id.as_str()));
    let view = m.orders().checkout_view(&co.group.id).await.unwrap();
    assert_eq!((view.payment.status, view.payment.refunded), (PaymentStatus::PartiallyRefunded, Money::fen(1000)));
    assert_eq!(view.orders[0].status, OrderStatus::Paid);
    let r = &m.orders().refunds(&co.group.id).await.unwrap()[0];
    assert_eq!(
        (r.id.as_str(), r.status, r.amount, r.wx_refund_id.as_deref(), r.order_id.as_deref()),
        ("mp-1", RefundStatus::Succeeded, Money::fen(1000), Some("50mp-1"), Some(co.orders[0].id.as_str()))
    );
    // Applied once, whatever repeats it; no refund was asked of WeChat Pay.
    assert_eq!(m.payments().handle_external_refund(&external("mp-1", 1000)).await.unwrap(), None);
    assert_eq!(count_calls(&e.gw, |c| matches!(c, GatewayCall::Refund(_))), 0);
    // More than is left is held, not applied.
    let over = m.payments().handle_external_refund(&external("mp-2", 5001)).await.unwrap().unwrap();
    assert_eq!((over.status, over.expected), (anomaly::AnomalyStatus::Held, Some(Money::fen(5000))));
    assert_eq!(m.orders().checkout_view(&co.group.id).await.unwrap().payment.refunded, Money::fen(1000));
    // The rest: the unshipped order is refunded in full, so it is cancelled and its units restocked.
    m.payments().handle_external_refund(&external("mp-3", 5000)).await.unwrap().unwrap();
    let view = m.orders().checkout_view(&co.group.id).await.unwrap();
    assert_eq!((view.payment.status, view.payment.refunded), (PaymentStatus::Refunded, Money::fen(6000)));
    assert_eq!(view.orders[0].status, OrderStatus::Cancelled);
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 5, reserved: 0 });
    assert_consistent(m, &s.merchant.id, &s.skus[0]).await;
    let events = m.ops().poll_events("test", 1000).await.unwrap();
    let kinds = |t: &str| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!((kinds("refund.requested"), kinds("refund.succeeded"), kinds("anomaly.recorded")), (2, 2, 3));
    // A refund of someone else's payment is not the market's.
    let mut foreign = external("x-1", 100);
    foreign.out_trade_no = "not-ours".into();
    assert_eq!(m.payments().handle_external_refund(&foreign).await.unwrap(), None);
}

async fn a_trade_bill_finds_what_lost_notifications_hid(e: Env) {
    let m = &e.market;
    let s = shop(m, "Bill", None, &[1500], 5).await;
    let day = chrono::NaiveDate::from_ymd_opt(2025, 6, 15).unwrap();
    // A: paid, but the notification was lost and the checkout closed meanwhile.
    let a = m.orders().checkout(req("b1", "ka", &[(&s.skus[0], 1)])).await.unwrap();
    e.clock.advance(Duration::from_secs(16 * 60));
    m.ops().run_due_timers(m.now()).await.unwrap();
    assert_eq!(m.orders().checkout_view(&a.group.id).await.unwrap().payment.status, PaymentStatus::Closed);
    // B: paid and notified; then refunded in the merchant platform, and that notification was lost.
    let b = m.orders().checkout(req("b2", "kb", &[(&s.skus[0], 2)])).await.unwrap();
    assert_eq!(m.payments().handle_payment_notice(&notice(&b, "nb", m.now())).await.unwrap(), NoticeOutcome::Paid);
    let paid = |c: &Checkout| BillLine::Paid {
        out_trade_no: c.group.id.clone(),
        transaction_id: format!("wx{}", c.group.id),
        amount: c.group.total,
    };
    let lines = vec![
        paid(&a),
        paid(&b),
        BillLine::Refunded {
            out_trade_no: b.group.id.clone(),
            transaction_id: format!("wx{}", b.group.id),
            out_refund_no: "mp-refund-1".into(),
            refund_id: "5000001".into(),
            amount: Money::fen(500),
        },
        BillLine::Paid { out_trade_no: "someone-else".into(), transaction_id: "42".into(), amount: Money::fen(1) },
    ];
    e.gw.set_trade_bill(day, lines);
    let r = m.payments().reconcile_trade_bill(day).await.unwrap();
    assert_eq!(
        r,
        BillReport {
            lines: 4,
            matched: 1,
            payments_applied: 1,
            refunds_applied: 1,
            anomalies: 1,
            foreign: 1,
            failed: vec![]
        }
    );
    // A's money goes back (its stock went back on sale); B's external refund is on its payment.
    let va = m.orders().checkout_view(&a.group.id).await.unwrap();
    assert_eq!((va.payment.status, va.payment.refunded), (PaymentStatus::Refunded, Money::fen(1500)));
    let vb = m.orders().checkout_view(&b.group.id).await.unwrap();
    assert_eq!((vb.payment.status, vb.payment.refunded), (PaymentStatus::PartiallyRefunded, Money::fen(500)));
    // Reconciling again changes nothing.
    let again = m.payments().reconcile_trade_bill(day).await.unwrap();
    assert_eq!(
        again,
        BillReport {
            lines: 4,
            matched: 3,
            payments_applied: 0,
            refunds_applied: 0,
            anomalies: 0,
            foreign: 1,
            failed: vec![]
        }
    );
    assert_eq!(m.orders().checkout_view(&b.group.id).await.unwrap().payment.refunded, Money::fen(500));
    // A day without a bill has nothing to reconcile.
    let empty = m.payments().reconcile_trade_bill(day.succ_opt().unwrap()).await.unwrap();
    assert_eq!(empty, BillReport::default());
}

async fn api_keys_are_random_scoped_revocable_and_rotate(e: Env) {
    use access::{KeyScope, Role};
    let m = &e.market;
    let a = shop(m, "KeysA", None, &[100], 1).await;
    let b = shop(m, "KeysB", None, &[100], 1).await;
    let owner =
        m.access().issue_key(KeyScope::merchant(&a.merchant.id, Role::MerchantOwner), "owner", None).await.unwrap();
    let staff =
        m.access().issue_key(KeyScope::merchant(&a.merchant.id, Role::MerchantStaff), "till", None).await.unwrap();
    let other =
        m.access().issue_key(KeyScope::merchant(&b.merchant.id, Role::MerchantOwner), "owner", None).await.unwrap();
    let admin = m.access().issue_key(KeyScope::platform(), "ops", None).await.unwrap();
    assert_ne!(owner.secret.expose(), other.secret.expose());
    assert!(owner.secret.expose().starts_with("wxk_") && owner.secret.expose().len() == 4 + 16 + 1 + 64);
    let who = m.access().authenticate_key(staff.secret.expose()).await.unwrap();
    assert_eq!((who.role, who.merchant_id.as_deref()), (Role::MerchantStaff, Some(a.merchant.id.as_str())));
    assert_eq!(m.access().authenticate_key(admin.secret.expose()).await.unwrap().role, Role::Platform);
    // Only digests are stored: the secret is nowhere in the key record.
    let listed = m.access().keys(Some(&a.merchant.id)).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.label.as_str()).collect::<Vec<_>>().len(), 2);
    assert!(!format!("{listed:?}").contains(&owner.secret.expose()[21..]));
    // A wrong secret under a real id, a malformed key: refused alike.
    let forged = format!("{}{}", &owner.secret.expose()[..21], "0".repeat(64));
    for bad in [forged.as_str(), "", "mk_0123", "wxk_zz"] {
        assert!(matches!(m.access().authenticate_key(bad).await, Err(MarketError::Unauthorized(_))), "{bad}");
    }
    // Scopes are checked: a platform key has no merchant, a merchant key needs one that exists.
    assert!(
        m.access()
            .issue_key(KeyScope { role: Role::Platform, merchant_id: Some(a.merchant.id.clone()) }, "x", None)
            .await
            .is_err()
    );
    assert!(matches!(
        m.access().issue_key(KeyScope::merchant("nope", Role::MerchantStaff), "x", None).await,
        Err(MarketError::NotFound { .. })
    ));
    // Another merchant's key cannot be revoked or rotated through this one.
    assert!(matches!(
        m.access().revoke_key(Some(&b.merchant.id), &staff.key.id).await,
        Err(MarketError::NotFound { .. })
    ));
    // Revoked: refused from then on; revoking again is a no-op.
    let revoked = m.access().revoke_key(Some(&a.merchant.id), &staff.key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(m.access().authenticate_key(staff.secret.expose()).await, Err(MarketError::Unauthorized(_))));
    assert_eq!(
        m.access().revoke_key(Some(&a.merchant.id), &staff.key.id).await.unwrap().revoked_at,
        revoked.revoked_at
    );
    // Rotation: the successor works at once, the old key for the overlap only.
    let next = m.access().rotate_key(Some(&a.merchant.id), &owner.key.id, Duration::from_secs(3600)).await.unwrap();
    assert_eq!((next.key.role, next.key.label.as_str()), (Role::MerchantOwner, "owner"));
    assert!(m.access().authenticate_key(next.secret.expose()).await.is_ok());
    assert!(m.access().authenticate_key(owner.secret.expose()).await.is_ok());
    e.clock.advance(Duration::from_secs(3601));
    assert!(matches!(m.access().authenticate_key(owner.secret.expose()).await, Err(MarketError::Unauthorized(_))));
    assert!(m.access().authenticate_key(next.secret.expose()).await.is_ok());
    assert!(m.access().rotate_key(Some(&a.merchant.id), &owner.key.id, Duration::from_secs(1)).await.is_err());
    // Expiring keys.
    let temp = m.access().issue_key(KeyScope::platform(), "temp", Some(Duration::from_secs(60))).await.unwrap();
    assert!(m.access().authenticate_key(temp.secret.expose()).await.is_ok());
    e.clock.advance(Duration::from_secs(61));
    assert!(m.access().authenticate_key(temp.secret.expose()).await.is_err());
    assert_eq!(m.access().keys(None).await.unwrap().len(), 2);
}

async fn claims_are_shared_by_instances_and_expire(e: Env) {
    use wxshop::dedupe::{Claim, DedupeStore};
    let m = &e.market;
    let ttl = Duration::from_secs(600);
    // A second instance over the same database.
    let other = Market::builder(m.store().clone())
        .payments(e.gw.clone())
        .shipping(e.gw.clone())
        .clock(e.clock.clone())
        .build()
        .unwrap();
    let (here, there) = (m.ops().claims("push"), other.ops().claims("push"));
    assert_eq!(here.claim("msg:1", ttl).await.unwrap(), Claim::Fresh);
    assert_eq!(there.claim("msg:1", ttl).await.unwrap(), Claim::InProgress);
    // Scopes are apart.
    assert_eq!(other.ops().claims("open-push").claim("msg:1", ttl).await.unwrap(), Claim::Fresh);
    // A released claim (the handler failed) can be taken again.
    there.release("msg:1").await.unwrap();
    assert_eq!(there.claim("msg:1", ttl).await.unwrap(), Claim::Fresh);
    // A completed one is done, on every instance, until it expires.
    there.complete("msg:1").await.unwrap();
    assert_eq!(here.claim("msg:1", ttl).await.unwrap(), Claim::Done);
    assert_eq!(there.claim("msg:1", ttl).await.unwrap(), Claim::Done);
    assert_eq!(other.ops().claims("open-push").claim("msg:1", ttl).await.unwrap(), Claim::InProgress);
    // Completing a key no one holds does not claim it.
    here.complete("msg:never").await.unwrap();
    assert_eq!(here.claim("msg:never", ttl).await.unwrap(), Claim::Fresh);
    // A claim whose holder died mid-work (never completed nor released) is held for the lease only,
    // while a completed one is remembered for its whole ttl.
    assert_eq!(here.claim("msg:crashed", ttl).await.unwrap(), Claim::Fresh);
    assert_eq!(there.claim("msg:done", ttl).await.unwrap(), Claim::Fresh);
    there.complete("msg:done").await.unwrap();
    e.clock.advance(wxshop::market::CLAIM_LEASE - Duration::from_secs(1));
    assert_eq!(there.claim("msg:crashed", ttl).await.unwrap(), Claim::InProgress);
    e.clock.advance(Duration::from_secs(2));
    assert_eq!(there.claim("msg:crashed", ttl).await.unwrap(), Claim::Fresh);
    assert_eq!(here.claim("msg:done", ttl).await.unwrap(), Claim::Done);
    e.clock.advance(ttl - wxshop::market::CLAIM_LEASE - Duration::from_secs(2));
    assert_eq!(here.claim("msg:done", ttl).await.unwrap(), Claim::Done);
    e.clock.advance(Duration::from_secs(2));
    assert_eq!(here.claim("msg:done", ttl).await.unwrap(), Claim::Fresh);
    // An expired claim is fresh again, done or not, and pruning deletes expired rows only.
    assert_eq!(here.claim("msg:2", Duration::from_secs(60)).await.unwrap(), Claim::Fresh);
    here.complete("msg:2").await.unwrap();
    e.clock.advance(Duration::from_secs(61));
    assert_eq!(here.claim("msg:2", Duration::from_secs(60)).await.unwrap(), Claim::Fresh);
    assert_eq!(here.claim("msg:2", Duration::from_secs(60)).await.unwrap(), Claim::InProgress);
    e.clock.advance(Duration::from_secs(30 * 86_400));
    let report = m.ops().prune(&Retention::default()).await.unwrap();
    // push msg:1, msg:never, msg:2, msg:crashed, msg:done and open-push msg:1.
    assert_eq!(report.claims, 6);
    assert_eq!(here.claim("msg:1", ttl).await.unwrap(), Claim::Fresh);
}

/// Pay notifications over the market's claims: a failed callback releases its claim, so the redelivery
/// (here on another instance) applies it; every later redelivery, on any instance, is answered 204 and
/// not applied again; a delivery while another holds the id is answered 503 so WeChat retries.
async fn pay_notifications_are_applied_once_across_instances(e: Env) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wxshop::crypto::pay::{ApiV3Key, MerchantKey};
    use wxshop::dedupe::{Claim, DedupeStore};
    use wxshop::pay::notify::{DEFAULT_RETENTION, NotifyService, SignedNotification, sign_notification};
    use wxshop::pay::{PayClient, PayConfig};
    let wechat = MerchantKey::generate().unwrap();
    let apiv3 = "0123456789abcdef0123456789abcdef";
    let config = PayConfig::new(
        "1900009191",
        "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        MerchantKey::generate().unwrap(),
        apiv3,
    )
    .unwrap()
    .with_public_key("PUB_KEY_ID_01", wechat.public_key())
    .unwrap();
    let pay = PayClient::builder(config).build().unwrap();
    let other = Market::builder(e.market.store().clone())
        .payments(e.gw.clone())
        .shipping(e.gw.clone())
        .clock(e.clock.clone())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let service = |m: &Market| {
        let calls = calls.clone();
        NotifyService::new(pay.clone(), move |_n| {
            let calls = calls.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(wxshop::Error::Store("database unavailable".into()));
                }
                Ok(())
            }
        })
        .with_store(Arc::new(m.ops().claims("pay-notify")))
    };
    let (here, there) = (service(&e.market), service(&other));
    let signed = |no: &str| -> SignedNotification {
        let resource = serde_json::json!({"mchid": "1900009191", "out_trade_no": no,
            "transaction_id": format!("4200{no}"), "trade_state": "SUCCESS", "amount": {"total": 100}});
        let body = serde_json::to_vec(&resource).unwrap();
        let key = ApiV3Key::new(apiv3).unwrap();
        sign_notification(&wechat, "PUB_KEY_ID_01", &key, "TRANSACTION.SUCCESS", &body, chrono::Utc::now().timestamp())
            .unwrap()
    };
    let n = signed("1001");
    let out = here.process(&n.headers, &n.body).await;
    assert_eq!((out.status, out.processed, out.id.as_deref()), (500, false, Some(n.id.as_str())));
    let out = there.process(&n.headers, &n.body).await;
    assert_eq!((out.status, out.processed, out.body), (204, true, None));
    for svc in [&here, &there, &here] {
        let out = svc.process(&n.headers, &n.body).await;
        assert_eq!((out.status, out.processed, out.body), (204, false, None));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let claims = e.market.ops().claims("pay-notify");
    assert_eq!(claims.claim(&n.id, DEFAULT_RETENTION).await.unwrap(), Claim::Done);
    // Another delivery holds the next id.
    let n2 = signed("1002");
    assert_eq!(claims.claim(&n2.id, DEFAULT_RETENTION).await.unwrap(), Claim::Fresh);
    let out = there.process(&n2.headers, &n2.body).await;
    assert_eq!(
        (out.status, out.processed, out.body),
        (503, false, Some(serde_json::json!({"code": "FAIL", "message": "this notification is being processed"})))
    );
    claims.release(&n2.id).await.unwrap();
    let out = there.process(&n2.headers, &n2.body).await;
    assert_eq!((out.status, out.processed), (204, true));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

async fn expiry_releases_stock_and_closes_the_prepay(e: Env) {
    let m = &e.market;
    let s = shop(m, "Expire", None, &[100], 5).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 2)])).await.unwrap();
    assert_eq!(co.group.pay_deadline, t0() + chrono::Duration::minutes(15));
    assert_eq!(m.ops().run_due_timers(m.now()).await.unwrap(), TimerReport::default());
    e.clock.advance(Duration::from_secs(15 * 60 + 1));
    let report = m.ops().run_due_timers(m.now()).await.unwrap();
    assert_eq!(report, TimerReport { fired: 2, retried: 0, failed: 0 }); // CloseUnpaid, then ClosePrepay
    let view = m.orders().checkout_view(&co.group.id).await.unwrap();
    assert_eq!(view.group.status, GroupStatus::Expired);
    assert_eq!(view.orders[0].status, OrderStatus::Cancelled);
    assert_eq!(view.payment.status, PaymentStatus::Closed);
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 5, reserved: 0 });
    assert_eq!(count_calls(&e.gw, |c| matches!(c, GatewayCall::Close(r) if r.out_trade_no == co.group.id)), 1);
    let r = assert_consistent(m, &s.merchant.id, &s.skus[0]).await;
    assert_eq!(r.active_reserved, 0);
    let kinds: Vec<MovementKind> =
        m.inventory().movements(&s.merchant.id, &s.skus[0]).await.unwrap().iter().map(|x| x.kind).collect();
    assert_eq!(kinds, vec![MovementKind::Adjust, MovementKind::Reserve, MovementKind::Expire]);
    // Firing again does nothing.
    assert_eq!(m.ops().run_due_timers(m.now()).await.unwrap(), TimerReport::default());
    // Cancelling is not possible any more.
    assert!(matches!(m.orders().cancel_checkout("b1", &co.group.id).await, Err(MarketError::IllegalTransition { .. })));
}

async fn late_payment_is_refunded_not_oversold(e: Env) {
    let m = &e.market;
    let s = shop(m, "Late", None, &[2500], 1).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 1)])).await.unwrap();
    e.clock.advance(Duration::from_secs(16 * 60));
    m.ops().run_due_timers(m.now()).await.unwrap();
    // Someone else buys the last unit.
    let other = m.orders().checkout(req("b2", "k", &[(&s.skus[0], 1)])).await.unwrap();
    let out = m.payments().handle_payment_notice(&notice(&co, "late-1", m.now())).await.unwrap();
    let NoticeOutcome::LateRefunded { refund_ids } = out else { panic!("{out:?}") };
    assert_eq!(refund_ids.len(), 1);
    let refunds = m.orders().refunds(&co.group.id).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (refunds[0].status, refunds[0].amount, refunds[0].total),
        (RefundStatus::Succeeded, Money::fen(2500), Money::fen(2500))
    );
    assert_eq!(
        count_calls(
            &e.gw,
            |c| matches!(c, GatewayCall::Refund(r) if r.out_trade_no == co.group.id && r.refund == Money::fen(2500))
        ),
        1
    );
    let view = m.orders().checkout_view(&co.group.id).await.unwrap();
    assert_eq!((view.group.status, view.payment.status), (GroupStatus::Expired, PaymentStatus::Refunded));
    assert_eq!(view.orders[0].status, OrderStatus::Cancelled);
    // The unit stays with the other buyer.
    assert_eq!(m.payments().handle_payment_notice(&notice(&other, "n2", m.now())).await.unwrap(), NoticeOutcome::Paid);
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 0, reserved: 0 });
    assert_consistent(m, &s.merchant.id, &s.skus[0]).await;
    // A redelivery of the late notice changes nothing.
    assert_eq!(
        m.payments().handle_payment_notice(&notice(&co, "late-1", m.now())).await.unwrap(),
        NoticeOutcome::Duplicate
    );
    assert_eq!(m.orders().refunds(&co.group.id).await.unwrap().len(), 1);
}

async fn refund_calls_are_retried_until_they_succeed(e: Env) {
    let m = &e.market;
    let s = shop(m, "Retry", None, &[300], 2).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 1)])).await.unwrap();
    e.clock.advance(Duration::from_secs(16 * 60));
    m.ops().run_due_timers(m.now()).await.unwrap();
    e.gw.fail_next("refund", true);
    let out = m.payments().handle_payment_notice(&notice(&co, "late", m.now())).await.unwrap();
    assert!(matches!(out, NoticeOutcome::LateRefunded { .. }));
    let r = &m.orders().refunds(&co.group.id).await.unwrap()[0];
    assert_eq!(r.status, RefundStatus::Requested);
    // Not before its backoff…
    assert_eq!(m.ops().run_due_timers(m.now()).await.unwrap(), TimerReport::default());
    e.clock.advance(Duration::from_secs(31));
    assert_eq!(m.ops().run_due_timers(m.now()).await.unwrap().fired, 1);
    let r = &m.orders().refunds(&co.group.id).await.unwrap()[0];
    assert_eq!(r.status, RefundStatus::Succeeded);
    assert_eq!(count_calls(&e.gw, |c| matches!(c, GatewayCall::Refund(_))), 2);
    // A final refusal marks the refund Failed and says so in the outbox.
    let co = m.orders().checkout(req("b2", "k", &[(&s.skus[0], 1)])).await.unwrap();
    e.clock.advance(Duration::from_secs(16 * 60));
    m.ops().run_due_timers(m.now()).await.unwrap();
    e.gw.fail_next("refund", false);
    m.payments().handle_payment_notice(&notice(&co, "late2", m.now())).await.unwrap();
    assert_eq!(m.orders().refunds(&co.group.id).await.unwrap()[0].status, RefundStatus::Failed);
    let ev = m.ops().poll_events("ops", 1000).await.unwrap();
    assert!(ev.iter().any(|e| e.event_type == "effect.failed"));
}

async fn two_merchants_pay_once_with_combined_payment(e: Env) {
    let m = &e.market;
    let a = shop(m, "Alpha", None, &[1000], 5).await;
    let b = shop(m, "Beta", Some("1900000109"), &[333], 5).await;
    let mut r = req("b1", "k", &[(&a.skus[0], 1), (&b.skus[0], 2)]);
    r.discount = Money::fen(100);
    r.expected_total = Some(Money::fen(1000 + 666 - 100));
    let co = m.orders().checkout(r).await.unwrap();
    assert_eq!(co.payment.mode, PayMode::Combine);
    assert_eq!(
        (co.group.subtotal, co.group.discount, co.group.total),
        (Money::fen(1666), Money::fen(100), Money::fen(1566))
    );
    assert_eq!(co.orders.len(), 2);
    // 100 fen split 1000:666 → 60.02 / 39.98 → 60 / 40.
    let by_merchant: BTreeMap<_, _> =
        co.orders.iter().map(|o| (o.merchant_id.clone(), (o.subtotal, o.discount, o.total))).collect();
    assert_eq!(by_merchant[&a.merchant.id], (Money::fen(1000), Money::fen(60), Money::fen(940)));
    assert_eq!(by_merchant[&b.merchant.id], (Money::fen(666), Money::fen(40), Money::fen(626)));
    assert_eq!(Money::sum(co.orders.iter().map(|o| o.total)).unwrap(), co.group.total);
    let prepay =
        e.gw.calls().into_iter().find_map(|c| if let GatewayCall::Prepay(p) = c { Some(p) } else { None }).unwrap();
    assert_eq!(prepay.mode, PayMode::Combine);
    assert_eq!(prepay.out_trade_no, co.group.id);
    assert_eq!(prepay.sub_orders.len(), 2);
    assert_eq!(
        prepay.sub_orders.iter().find(|s| s.merchant_id == b.merchant.id).unwrap().sub_mchid.as_deref(),
        Some("1900000109")
    );
    // Expected total that moved: a typed error.
    let mut r = req("b1", "k2", &[(&a.skus[0], 1)]);
    r.expected_total = Some(Money::fen(999));
    assert!(matches!(m.orders().checkout(r).await, Err(MarketError::PriceChanged { expected: 999, actual: 1000 })));
    // Pay: both orders move, each with its sub-order transaction.
    assert_eq!(m.payments().handle_payment_notice(&notice(&co, "n", t0())).await.unwrap(), NoticeOutcome::Paid);
    for o in &co.orders {
        let d = m.orders().order(&o.id).await.unwrap();
        assert_eq!(d.order.status, OrderStatus::Paid);
        assert_eq!(d.order.transaction_id, Some(format!("wx{}", o.id)));
        assert_eq!(d.order.ship_deadline, Some(t0() + chrono::Duration::hours(48)));
    }
    // A single sub-merchant is partner mode; a single direct merchant is JSAPI.
    let co_b = m.orders().checkout(req("b2", "k", &[(&b.skus[0], 1)])).await.unwrap();
    assert_eq!(co_b.payment.mode, PayMode::Partner);
    let co_a = m.orders().checkout(req("b3", "k", &[(&a.skus[0], 1)])).await.unwrap();
    assert_eq!(co_a.payment.mode, PayMode::Jsapi);
    let partner =
        e.gw.calls()
            .into_iter()
            .find_map(|c| {
                if let GatewayCall::Prepay(p) = c { (p.out_trade_no == co_b.group.id).then_some(p) } else { None }
            })
            .unwrap();
    assert_eq!(partner.sub_mchid.as_deref(), Some("1900000109"));
}

async fn orders_ship_partially_then_fully_and_complete(e: Env) {
    let m = &e.market;
    let s = shop(m, "Ship", None, &[100, 200], 10).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 2), (&s.skus[1], 1)])).await.unwrap();
    let oid = co.orders[0].id.clone();
    let mid = s.merchant.id.clone();
    let ship = |no: &str, items: Option<Vec<ShipItem>>| ShipRequest {
        tracking_no: no.into(),
        express_company: "SF".into(),
        items,
        receiver_phone: Some("13812345678".into()),
    };
    // Not paid yet: shipping is illegal.
    assert!(matches!(m.orders().ship(&mid, &oid, ship("SF1", None)).await, Err(MarketError::IllegalTransition { .. })));
    m.payments().handle_payment_notice(&notice(&co, "n", t0())).await.unwrap();
    // A failed upload changes nothing.
    e.gw.fail_next("ship", false);
    assert!(matches!(m.orders().ship(&mid, &oid, ship("SF1", None)).await, Err(MarketError::Gateway(_))));
    assert_eq!(m.orders().order(&oid).await.unwrap().order.status, OrderStatus::Paid);
    let d = m.orders().ship(&mid, &oid, ship("SF1", Some(vec![ShipItem { line_no: 1, qty: 1 }]))).await.unwrap();
    assert_eq!(d.order.status, OrderStatus::PartiallyShipped);
    assert_eq!(d.lines.iter().map(|l| l.shipped_qty).collect::<Vec<_>>(), vec![1, 0]);
    // The same waybill again is a no-op; shipping more than bought is refused.
    assert_eq!(m.orders().ship(&mid, &oid, ship("SF1", Some(vec![ShipItem { line_no: 1, qty: 1 }]))).await.unwrap(), d);
    assert!(matches!(
        m.orders().ship(&mid, &oid, ship("SF2", Some(vec![ShipItem { line_no: 1, qty: 2 }]))).await,
        Err(MarketError::Invalid(_))
    ));
    assert!(matches!(m.orders().ship("someone", &oid, ship("SF9", None)).await, Err(MarketError::NotFound { .. })));
    e.clock.advance(Duration::from_secs(3600));
    let d = m.orders().ship(&mid, &oid, ship("SF2", None)).await.unwrap();
    assert_eq!(d.order.status, OrderStatus::Shipped);
    assert_eq!(d.shipments.len(), 2);
    let uploads: Vec<ShippingUpload> =
        e.gw.calls().into_iter().filter_map(|c| if let GatewayCall::Ship(u) = c { Some(u) } else { None }).collect();
    assert_eq!(uploads.len(), 3); // the failed one, then two parcels
    assert_eq!((uploads[1].split, uploads[1].is_all_delivered), (true, false));
    assert_eq!((uploads[2].split, uploads[2].is_all_delivered), (true, true));
    assert_eq!(uploads[2].out_trade_no, co.group.id);
    assert_eq!(uploads[2].transaction_id.as_deref(), Some(format!("wx{}", co.group.id).as_str()));
    let timers = m.ops().timers(&oid).await.unwrap();
    let auto = timers.iter().find(|t| t.action == TimerAction::AutoConfirm).unwrap();
    assert_eq!(auto.due_at, t0() + chrono::Duration::hours(1) + chrono::Duration::days(10));
    assert_eq!(timers.iter().find(|t| t.action == TimerAction::ShipOverdue).unwrap().status, TimerStatus::Cancelled);
    // Cancelling a shipped order is illegal; receipt by the buyer, twice, is one transition.
    assert!(matches!(m.orders().cancel_paid_order(&mid, &oid, "x").await, Err(MarketError::IllegalTransition { .. })));
    assert!(matches!(m.orders().confirm_receipt("b2", &oid).await, Err(MarketError::NotFound { .. })));
    let d = m.orders().confirm_receipt("b1", &oid).await.unwrap();
    assert_eq!((d.order.status, d.order.received_by.as_deref()), (OrderStatus::Received, Some("buyer")));
    assert_eq!(m.orders().confirm_receipt("b1", &oid).await.unwrap().order.version, d.order.version);
    // The after-sale window (7 days) closes: Completed; the auto-confirm timer was cancelled.
    e.clock.advance(Duration::from_secs(7 * 86400));
    let rep = m.ops().run_due_timers(m.now()).await.unwrap();
    assert_eq!(rep.fired, 1);
    assert_eq!(m.orders().order(&oid).await.unwrap().order.status, OrderStatus::Completed);
    let transitions: Vec<(Option<String>, Option<String>)> = m
        .ops()
        .audit_trail(&oid)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.from_state.is_some())
        .map(|a| (a.from_state, a.to_state))
        .collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        transitions,
        vec![
            (s("PendingPayment"), s("Paid")),
            (s("Paid"), s("PartiallyShipped")),
            (s("PartiallyShipped"), s("Shipped")),
            (s("Shipped"), s("Received")),
            (s("Received"), s("Completed")),
        ]
    );
}

async fn timers_confirm_receipt_and_report_late_shipping(e: Env) {
    let m = &e.market;
    let s = shop(m, "Timer", None, &[100], 10).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 1)])).await.unwrap();
    let oid = co.orders[0].id.clone();
    m.payments().handle_payment_notice(&notice(&co, "n", t0())).await.unwrap();
    e.clock.advance(Duration::from_secs(49 * 3600));
    assert_eq!(m.ops().run_due_timers(m.now()).await.unwrap().fired, 1);
    let ev = m.ops().poll_events("governance", 1000).await.unwrap();
    let overdue: Vec<_> = ev.iter().filter(|e| e.event_type == "order.ship_overdue").collect();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].merchant_id.as_deref(), Some(s.merchant.id.as_str()));
    let d = m
        .orders()
        .ship(
            &s.merchant.id,
            &oid,
            ShipRequest { tracking_no: "YT1".into(), express_company: "YTO".into(), items: None, receiver_phone: None },
        )
        .await
        .unwrap();
    assert_eq!(d.order.status, OrderStatus::Shipped);
    e.clock.advance(Duration::from_secs(10 * 86400));
    m.ops().run_due_timers(m.now()).await.unwrap();
    let d = m.orders().order(&oid).await.unwrap();
    assert_eq!((d.order.status, d.order.received_by.as_deref()), (OrderStatus::Received, Some("timer")));
    e.clock.advance(Duration::from_secs(7 * 86400));
    m.ops().run_due_timers(m.now()).await.unwrap();
    assert_eq!(m.orders().order(&oid).await.unwrap().order.status, OrderStatus::Completed);
}

async fn cancellations_release_or_restock_and_refund(e: Env) {
    let m = &e.market;
    let s = shop(m, "Cancel", None, &[400], 4).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 3)])).await.unwrap();
    assert!(matches!(m.orders().cancel_checkout("someone", &co.group.id).await, Err(MarketError::NotFound { .. })));
    let v = m.orders().cancel_checkout("b1", &co.group.id).await.unwrap();
    assert_eq!((v.group.status, v.orders[0].status), (GroupStatus::Cancelled, OrderStatus::Cancelled));
    assert_eq!(m.orders().cancel_checkout("b1", &co.group.id).await.unwrap().group.status, GroupStatus::Cancelled);
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 4, reserved: 0 });
    assert_eq!(count_calls(&e.gw, |c| matches!(c, GatewayCall::Close(_))), 1);
    // A paid order cancelled by the merchant: restocked and refunded.
    let co = m.orders().checkout(req("b1", "k2", &[(&s.skus[0], 2)])).await.unwrap();
    m.payments().handle_payment_notice(&notice(&co, "n", t0())).await.unwrap();
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 2, reserved: 0 });
    let d = m.orders().cancel_paid_order(&s.merchant.id, &co.orders[0].id, "out of stock in warehouse").await.unwrap();
    assert_eq!(d.order.status, OrderStatus::Cancelled);
    assert_eq!(m.inventory().stock(&s.skus[0]).await.unwrap(), StockLevel { on_hand: 4, reserved: 0 });
    let refunds = m.orders().refunds(&co.group.id).await.unwrap();
    assert_eq!((refunds.len(), refunds[0].amount, refunds[0].status), (1, Money::fen(800), RefundStatus::Succeeded));
    assert_eq!(m.orders().checkout_view(&co.group.id).await.unwrap().payment.status, PaymentStatus::Refunded);
    assert_eq!(
        m.orders().cancel_paid_order(&s.merchant.id, &co.orders[0].id, "again").await.unwrap().order.version,
        d.order.version
    );
    assert_consistent(m, &s.merchant.id, &s.skus[0]).await;
}

async fn carts_merge_at_login_and_report_price_changes(e: Env) {
    let m = &e.market;
    let a = shop(m, "CartA", None, &[100], 4).await;
    let b = shop(m, "CartB", None, &[250], 10).await;
    let guest = CartOwner::guest("anon-token-1");
    let buyer = CartOwner::buyer("openid-9");
    m.carts().cart_add(&buyer, &a.skus[0], 2).await.unwrap();
    m.carts().cart_add(&guest, &a.skus[0], 3).await.unwrap();
    m.carts().cart_add(&guest, &b.skus[0], 1).await.unwrap();
    let v = m.carts().merge_carts("anon-token-1", "openid-9").await.unwrap();
    assert_eq!(v.changes, vec![CartChange::QuantityCapped { sku_id: a.skus[0].clone(), requested: 5, capped_to: 4 }]);
    assert_eq!(v.merchants.len(), 2);
    let qty: BTreeMap<_, _> =
        v.merchants.iter().flat_map(|g| g.items.iter().map(|i| (i.sku_id.clone(), i.qty))).collect();
    assert_eq!(qty[&a.skus[0]], 4);
    assert_eq!(qty[&b.skus[0]], 1);
    assert_eq!(v.total, Money::fen(650));
    assert!(m.carts().cart(&guest).await.unwrap().merchants.is_empty());
    // A price change is reported once.
    m.catalog().set_sku_price(&b.merchant.id, &b.skus[0], Money::fen(300)).await.unwrap();
    let v = m.carts().cart(&buyer).await.unwrap();
    assert_eq!(
        v.changes,
        vec![CartChange::PriceChanged { sku_id: b.skus[0].clone(), old: Money::fen(250), new: Money::fen(300) }]
    );
    assert_eq!(v.total, Money::fen(700));
    assert!(m.carts().cart(&buyer).await.unwrap().changes.is_empty());
    assert_eq!(m.catalog().product(&b.product).await.unwrap().product.min_price, Money::fen(300));
    // Delisted: reported, not counted, not checked out.
    m.catalog().delist_product(&a.merchant.id, &a.product).await.unwrap();
    let v = m.carts().cart(&buyer).await.unwrap();
    assert_eq!(v.changes, vec![CartChange::Unavailable { sku_id: a.skus[0].clone() }]);
    assert_eq!(v.total, Money::fen(300));
    let co = m.carts().checkout_cart("openid-9", "cart-1").await.unwrap();
    assert_eq!(co.group.total, Money::fen(300));
    // A retried call with the same key finds the same checkout, though the cart no longer holds its lines.
    assert_eq!(m.carts().checkout_cart("openid-9", "cart-1").await.unwrap().group.id, co.group.id);
    let left = m.carts().cart(&buyer).await.unwrap();
    assert_eq!(
        left.merchants.iter().flat_map(|g| g.items.iter().map(|i| i.sku_id.clone())).collect::<Vec<_>>(),
        vec![a.skus[0].clone()]
    );
    assert!(matches!(m.carts().cart_add(&buyer, &a.skus[0], 1).await, Err(MarketError::Unavailable { .. })));
    assert!(matches!(m.carts().cart_add(&CartOwner::guest(""), &b.skus[0], 1).await, Err(MarketError::Invalid(_))));
}

async fn purchase_limits_cap_carts_and_refuse_checkouts(e: Env) {
    let m = &e.market;
    let s = shop(m, "Limit", None, &[100], 10).await;
    let p = m
        .catalog()
        .create_product(
            &s.merchant.id,
            NewProduct {
                category_id: s.category.id.clone(),
                title: "Limited".into(),
                description: String::new(),
                skus: vec![NewSku { price: Money::fen(50), purchase_limit: Some(2), ..Default::default() }],
            },
        )
        .await
        .unwrap();
    m.catalog().list_product(&s.merchant.id, &p.product.id).await.unwrap();
    let sku = p.skus[0].id.clone();
    m.inventory().set_stock(&s.merchant.id, &sku, 10).await.unwrap();
    let err = m.orders().checkout(req("b1", "k", &[(&sku, 1), (&sku, 2)])).await.unwrap_err();
    assert!(matches!(err, MarketError::PurchaseLimit { limit: 2, requested: 3, .. }), "{err}");
    let buyer = CartOwner::buyer("b1");
    let v = m.carts().cart_add(&buyer, &sku, 5).await.unwrap();
    assert_eq!(v.changes, vec![CartChange::QuantityCapped { sku_id: sku.clone(), requested: 5, capped_to: 2 }]);
    assert_eq!(v.total, Money::fen(100));
    let co = m.carts().checkout_cart("b1", "k").await.unwrap();
    assert_eq!(co.group.total, Money::fen(100));
}

async fn outbox_delivers_at_least_once(e: Env) {
    let m = &e.market;
    let s = shop(m, "Outbox", None, &[100], 3).await;
    m.orders().checkout(req("b1", "k", &[(&s.skus[0], 1)])).await.unwrap();
    let all = m.ops().poll_events("c1", 1000).await.unwrap();
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert!(types.starts_with(&["category.rule_published", "merchant.created", "merchant.activated"]), "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "checkout.created").count(), 1);
    // A handler that fails on the 3rd event: two are acked, the 3rd comes again.
    let mut n = 0;
    let err = m
        .ops()
        .consume_events("c1", 1000, |_| {
            n += 1;
            let fail = n == 3;
            async move { if fail { Err(MarketError::Invalid("boom".into())) } else { Ok(()) } }
        })
        .await;
    assert!(err.is_err());
    let again = m.ops().poll_events("c1", 1000).await.unwrap();
    assert_eq!(again.len(), all.len() - 2);
    assert_eq!(again[0].id, all[2].id);
    // Acks are per consumer and idempotent.
    let ids: Vec<String> = again.iter().map(|e| e.id.clone()).collect();
    m.ops().ack_events("c1", &ids).await.unwrap();
    m.ops().ack_events("c1", &ids).await.unwrap();
    assert!(m.ops().poll_events("c1", 1000).await.unwrap().is_empty());
    assert_eq!(m.ops().poll_events("c2", 1000).await.unwrap().len(), all.len());
    assert_eq!(m.ops().consume_events("c2", 1000, |_| async { Ok(()) }).await.unwrap(), all.len());
}

/// Housekeeping deletes exactly the outbox events every consumer acked (with their acks) and the
/// notification dedupe rows older than the retention; never an event a consumer still waits for, never
/// a row younger than the retention, and never with a retention inside WeChat's redelivery horizon.
async fn prune_deletes_only_processed_rows_older_than_the_retention(e: Env) {
    let m = &e.market;
    let s = shop(m, "Prune", None, &[100], 3).await;
    let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 1)])).await.unwrap();
    assert_eq!(m.payments().handle_payment_notice(&notice(&co, "n1", m.now())).await.unwrap(), NoticeOutcome::Paid);
    m.governance().sync_governance().await.unwrap();
    let all = m.ops().poll_events("probe", 1000).await.unwrap();
    let n = all.len() as u64;
    assert!(n > 2, "{all:?}");
    assert!(m.ops().poll_events(GOVERNANCE_CONSUMER, 1000).await.unwrap().is_empty());
    // Consumer c1 has handled all but the last two.
    let ids: Vec<String> = all.iter().take(all.len() - 2).map(|e| e.id.clone()).collect();
    m.ops().ack_events("c1", &ids).await.unwrap();

    // A retention inside WeChat Pay's ~24 h redelivery horizon is refused.
    let short = Retention { keep: chrono::Duration::hours(MIN_RETENTION_HOURS - 1), consumers: vec![] };
    assert!(matches!(m.ops().prune(&short).await, Err(MarketError::Invalid(_))));
    // Nothing is older than 30 days yet.
    e.clock.advance(Duration::from_secs(30 * 86_400 - 60));
    assert_eq!(
        m.ops().prune(&Retention::default()).await.unwrap(),
        PruneReport { events: 0, acks: 0, notices: 0, claims: 0 }
    );
    // 30 days and a minute later: a consumer named but never acking holds every event back.
    e.clock.advance(Duration::from_secs(120));
    let waiting = Retention::default().consumer("c2");
    assert_eq!(m.ops().prune(&waiting).await.unwrap(), PruneReport { events: 0, acks: 0, notices: 1, claims: 0 });
    // A fresh event (unacked, young) and the default retention: the n − 2 events both governance and
    // c1 acked go, with their 2 × (n − 2) acks but one: c1's newest ack stays, so that c1 is still
    // waited for; the two c1 has not acked stay, and so does the new one.
    m.orders().checkout(req("b2", "k2", &[(&s.skus[0], 1)])).await.unwrap();
    let ids = |v: Vec<OutboxEvent>| v.into_iter().map(|e| e.id).collect::<Vec<String>>();
    let fresh: Vec<String> = ids(m.ops().poll_events("probe", 1000).await.unwrap()).split_off(all.len());
    assert!(!fresh.is_empty());
    let gov_pending = ids(m.ops().poll_events(GOVERNANCE_CONSUMER, 1000).await.unwrap());
    let r = m.ops().prune(&Retention::default()).await.unwrap();
    assert_eq!(r, PruneReport { events: n - 2, acks: 2 * (n - 2) - 1, notices: 0, claims: 0 });
    assert_eq!(m.ops().prune(&Retention::default()).await.unwrap(), PruneReport::default(), "idempotent");
    let mut kept = vec![all[all.len() - 2].id.clone(), all[all.len() - 1].id.clone()];
    kept.extend(fresh);
    assert_eq!(ids(m.ops().poll_events("probe", 1000).await.unwrap()), kept);
    assert_eq!(ids(m.ops().poll_events("c1", 1000).await.unwrap()), kept);
    assert_eq!(ids(m.ops().poll_events(GOVERNANCE_CONSUMER, 1000).await.unwrap()), gov_pending);
    // A notification redelivered after its dedupe row went is still applied once: the payment is paid.
    assert_eq!(
        m.payments().handle_payment_notice(&notice(&co, "n1", m.now())).await.unwrap(),
        NoticeOutcome::AlreadyPaid
    );
}

// ------------------------------------------------------------------ the suite

type Case = (&'static str, fn(Env) -> BoxFut<()>);

/// Reconciliation asks only about groups awaiting payment, leaves a failed query to the next run,
/// applies a paid answer once, and two reconcilers of the same payment deduplicate.
async fn reconciliation_applies_queried_payments_once(e: Env) {
    let m = &e.market;
    let s = shop(m, "Tea", None, &[500], 10).await;
    let co = m.orders().checkout(req("o-a", "k1", &[(&s.skus[0], 2)])).await.unwrap();
    let other = m.orders().checkout(req("o-b", "k2", &[(&s.skus[0], 1)])).await.unwrap();
    m.orders().cancel_checkout("o-b", &other.group.id).await.unwrap();
    let r = m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 1, applied: 0, failed: 0 });
    e.gw.set_paid(notice(&co, "lost", t0()));
    e.gw.fail_next("query", true);
    let r = m.payments().reconcile_pending_payments(m.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 1, applied: 0, failed: 1 });
    let payments = m.payments();
    let (a, b) =
        tokio::join!(payments.reconcile_pending_payments(m.now()), payments.reconcile_pending_payments(m.now()));
    assert_eq!(a.unwrap().applied + b.unwrap().applied, 1);
    let v = m.orders().checkout_view(&co.group.id).await.unwrap();
    assert_eq!(
        (v.group.status, v.payment.transaction_id.as_deref()),
        (GroupStatus::Paid, Some(&*format!("wx{}", co.group.id)))
    );
    assert_eq!(m.ops().audit_trail(&co.orders[0].id).await.unwrap().iter().filter(|a| a.action == "paid").count(), 1);
    assert_eq!(m.payments().reconcile_pending_payments(m.now()).await.unwrap(), ReconcileReport::default());
    // The real notification afterwards: nothing changes.
    assert_eq!(
        m.payments().handle_payment_notice(&notice(&co, "lost", t0())).await.unwrap(),
        NoticeOutcome::AlreadyPaid
    );
    assert_eq!(assert_consistent(m, &s.merchant.id, &s.skus[0]).await.level.on_hand, 8);
}

/// WeChat allows one correction of a shipped payment's shipping info: the market sends every parcel of
/// the order with the named one replaced, records the new waybill, and refuses a second correction, an
/// unshipped order, another merchant, and (for a split shipment) an unnamed parcel; a failed call
/// changes nothing.
async fn a_shipped_order_corrects_its_waybill_once(e: Env) {
    let m = &e.market;
    let s = shop(m, "Fix", None, &[100, 200], 10).await;
    let mid = s.merchant.id.clone();
    let co = m.orders().checkout(req("b1", "k1", &[(&s.skus[0], 2), (&s.skus[1], 1)])).await.unwrap();
    let oid = co.orders[0].id.clone();
    m.payments().handle_payment_notice(&notice(&co, "n1", t0())).await.unwrap();
    let fix = |replaces: Option<&str>, no: &str| ShipCorrection {
        replaces: replaces.map(str::to_string),
        tracking_no: no.into(),
        express_company: "YTO".into(),
        receiver_phone: None,
    };
    let refused = |r: Result<OrderDetail>| matches!(r, Err(MarketError::CorrectionRefused { .. }));
    assert!(refused(m.orders().correct_shipment(&mid, &oid, fix(None, "YT1")).await), "an unshipped order");
    let ship =
        ShipRequest { tracking_no: "SF1".into(), express_company: "SF".into(), items: None, receiver_phone: None };
    m.orders().ship(&mid, &oid, ship).await.unwrap();
    assert!(matches!(
        m.orders().correct_shipment("other", &oid, fix(None, "YT1")).await,
        Err(MarketError::NotFound { .. })
    ));
    e.gw.fail_next("correct_shipping", false);
    assert!(matches!(m.orders().correct_shipment(&mid, &oid, fix(None, "YT1")).await, Err(MarketError::Gateway(_))));
    assert_eq!(m.orders().order(&oid).await.unwrap().shipments[0].tracking_no, "SF1");
    e.clock.advance(Duration::from_secs(60));
    let d = m.orders().correct_shipment(&mid, &oid, fix(None, "YT1")).await.unwrap();
    assert_eq!(d.order.status, OrderStatus::Shipped);
    let waybills: Vec<(&str, &str)> =
        d.shipments.iter().map(|p| (p.tracking_no.as_str(), p.express_company.as_str())).collect();
    assert_eq!(waybills, [("YT1", "YTO")]);
    assert_eq!(d.shipments[0].items, [ShipItem { line_no: 1, qty: 2 }, ShipItem { line_no: 2, qty: 1 }]);
    let calls = e.gw.calls();
    let shipped = calls.iter().find_map(|c| if let GatewayCall::Ship(u) = c { Some(u.clone()) } else { None }).unwrap();
    let corrections: Vec<ShippingUpload> = calls
        .iter()
        .filter_map(|c| if let GatewayCall::CorrectShipping(u) = c { Some(u.clone()) } else { None })
        .collect();
    assert_eq!(corrections.len(), 2); // the failed call, then the correction
    let u = &corrections[1];
    assert_eq!((u.split, u.is_all_delivered, u.out_trade_no.as_str()), (false, true, co.group.id.as_str()));
    assert_eq!(u.upload_time, t0() + chrono::Duration::seconds(60));
    assert_eq!(
        u.parcels,
        [ShippingParcel {
            tracking_no: "YT1".into(),
            express_company: "YTO".into(),
            item_desc: shipped.parcels[0].item_desc.clone(),
            receiver_phone: None
        }]
    );
    assert_eq!(shipped.parcels[0].item_desc, "Fix tea×2, Fix tea×1");
    // The one correction is spent: refused, nothing changes.
    assert!(refused(m.orders().correct_shipment(&mid, &oid, fix(None, "YT2")).await));
    assert_eq!(m.orders().order(&oid).await.unwrap().shipments[0].tracking_no, "YT1");
    let audited = m.ops().audit_trail(&oid).await.unwrap().iter().filter(|a| a.action == "shipping_corrected").count();
    assert_eq!(audited, 1);
    // A split shipment: the parcel must be named, may not take another parcel's waybill, and the
    // correction carries both parcels.
    let co = m.orders().checkout(req("b1", "k2", &[(&s.skus[0], 1), (&s.skus[1], 1)])).await.unwrap();
    let oid = co.orders[0].id.clone();
    m.payments().handle_payment_notice(&notice(&co, "n2", t0())).await.unwrap();
    for (no, line) in [("SF-A", 1), ("SF-B", 2)] {
        let items = Some(vec![ShipItem { line_no: line, qty: 1 }]);
        let r = ShipRequest { tracking_no: no.into(), express_company: "SF".into(), items, receiver_phone: None };
        m.orders().ship(&mid, &oid, r).await.unwrap();
    }
    assert!(matches!(m.orders().correct_shipment(&mid, &oid, fix(None, "YT3")).await, Err(MarketError::Invalid(_))));
    assert!(matches!(
        m.orders().correct_shipment(&mid, &oid, fix(Some("SF-B"), "SF-A")).await,
        Err(MarketError::Invalid(_))
    ));
    assert!(matches!(
        m.orders().correct_shipment(&mid, &oid, fix(Some("SF-X"), "YT3")).await,
        Err(MarketError::NotFound { .. })
    ));
    let d = m.orders().correct_shipment(&mid, &oid, fix(Some("SF-B"), "YT3")).await.unwrap();
    let mut waybills: Vec<&str> = d.shipments.iter().map(|p| p.tracking_no.as_str()).collect();
    waybills.sort();
    assert_eq!(waybills, ["SF-A", "YT3"]);
    let u =
        e.gw.calls()
            .into_iter()
            .rev()
            .find_map(|c| if let GatewayCall::CorrectShipping(u) = c { Some(u) } else { None })
            .unwrap();
    let mut parcels: Vec<(&str, &str)> =
        u.parcels.iter().map(|p| (p.tracking_no.as_str(), p.item_desc.as_str())).collect();
    parcels.sort();
    assert_eq!((u.split, u.is_all_delivered), (true, true));
    assert_eq!(parcels, [("SF-A", "Fix tea×1"), ("YT3", "Fix tea×1")]);
}

macro_rules! cases {
    ($($f:ident),* $(,)?) => { vec![$((stringify!($f), (|e| Box::pin($f(e)) as BoxFut<()>) as fn(Env) -> BoxFut<()>)),*] };
}

fn cases() -> Vec<Case> {
    cases![
        store_round_trips_and_rejects_bad_input,
        a_merchant_reads_only_its_own_stock,
        merchant_restrictions_block_what_they_name,
        order_lines_keep_the_rule_version_they_were_sold_under,
        listing_needs_an_active_merchant_and_an_allowed_category,
        browse_filters_and_pages_stably,
        duplicate_lines_count_once_and_shortage_writes_nothing,
        no_oversell_under_200_concurrent_checkouts,
        checkout_is_idempotent_by_key,
        five_redeliveries_make_one_paid_transition,
        a_wrong_amount_is_held_for_review_then_refunded_or_dismissed,
        a_second_payment_of_a_paid_checkout_is_refunded_automatically,
        a_refund_made_outside_the_market_is_applied_to_the_order,
        api_keys_are_random_scoped_revocable_and_rotate,
        a_trade_bill_finds_what_lost_notifications_hid,
        claims_are_shared_by_instances_and_expire,
        pay_notifications_are_applied_once_across_instances,
        expiry_releases_stock_and_closes_the_prepay,
        late_payment_is_refunded_not_oversold,
        refund_calls_are_retried_until_they_succeed,
        two_merchants_pay_once_with_combined_payment,
        orders_ship_partially_then_fully_and_complete,
        a_shipped_order_corrects_its_waybill_once,
        timers_confirm_receipt_and_report_late_shipping,
        cancellations_release_or_restock_and_refund,
        carts_merge_at_login_and_report_price_changes,
        purchase_limits_cap_carts_and_refuse_checkouts,
        outbox_delivers_at_least_once,
        reconciliation_applies_queried_payments_once,
        prune_deletes_only_processed_rows_older_than_the_retention,
    ]
}

/// Runs every case against fresh stores from `factory`.
async fn suite(backend: &str, factory: Factory) {
    let only = std::env::var("MARKET_CASE").ok();
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
async fn sqlite_conformance() {
    suite("sqlite", stores::sqlite_factory("wxshop-market")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    let Some(factory) = stores::postgres_factory("wxshop_t") else { return };
    suite("postgres", factory).await;
}

#[tokio::test]
async fn sqlite_memory_store_works() {
    let e = env(store::open("sqlite::memory:").await.unwrap());
    let s = shop(&e.market, "Mem", None, &[100], 2).await;
    let co = e.market.orders().checkout(req("b", "k", &[(&s.skus[0], 2)])).await.unwrap();
    assert_eq!(e.market.payments().handle_payment_notice(&notice(&co, "n", t0())).await.unwrap(), NoticeOutcome::Paid);
    assert_eq!(e.market.store().backend(), Backend::Sqlite);
    assert!(matches!(store::open("mysql://x").await, Err(MarketError::Invalid(_))));
}

// ------------------------------------------------------------------ random operation sequences

mod random_ops {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    pub enum Op {
        Checkout { buyer: u8, lines: Vec<(usize, i64)>, discount: i64 },
        Pay { pick: usize, redeliveries: u8 },
        Cancel { pick: usize },
        Advance { minutes: u32 },
        Ship { pick: usize, partial: bool },
        Receive { pick: usize },
        MerchantCancel { pick: usize },
        SetStock { sku: usize, on_hand: i64 },
    }

    pub fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, prop::collection::vec((0usize..3, 1i64..4), 1..4), prop_oneof![Just(0i64), 1i64..50])
                .prop_map(|(buyer, lines, discount)| Op::Checkout { buyer, lines, discount }),
            3 => (any::<usize>(), 1u8..4).prop_map(|(pick, redeliveries)| Op::Pay { pick, redeliveries }),
            1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
            2 => prop_oneof![Just(5u32), Just(16), Just(49 * 60), Just(10 * 24 * 60)].prop_map(|minutes| Op::Advance { minutes }),
            2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, partial)| Op::Ship { pick, partial }),
            1 => any::<usize>().prop_map(|pick| Op::Receive { pick }),
            1 => any::<usize>().prop_map(|pick| Op::MerchantCancel { pick }),
            1 => (0usize..3, 0i64..8).prop_map(|(sku, on_hand)| Op::SetStock { sku, on_hand }),
        ]
    }

    struct World {
        e: Env,
        skus: Vec<(String, String)>,   // (merchant, sku)
        groups: Vec<(String, String)>, // (group, buyer)
        notices: usize,
    }

    fn allowed(r: Result<()>) {
        match r {
            Ok(())
            | Err(MarketError::OutOfStock { .. })
            | Err(MarketError::IllegalTransition { .. })
            | Err(MarketError::Invalid(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    async fn apply(w: &mut World, op: &Op) {
        let m = w.e.market.clone();
        let pick = |p: usize, w: &World| (!w.groups.is_empty()).then(|| w.groups[p % w.groups.len()].clone());
        match op {
            Op::Checkout { buyer, lines, discount } => {
                let lines: Vec<(&str, i64)> = lines.iter().map(|(i, q)| (w.skus[*i].1.as_str(), *q)).collect();
                let buyer = format!("buyer{buyer}");
                let mut r = req(&buyer, &new_id(), &lines);
                r.discount = Money::fen(*discount);
                match m.orders().checkout(r).await {
                    Ok(co) => w.groups.push((co.group.id, buyer)),
                    Err(e) => allowed(Err(e)),
                }
            }
            Op::Pay { pick: p, redeliveries } => {
                let Some((g, _)) = pick(*p, w) else { return };
                let co = m.orders().checkout_view(&g).await.unwrap();
                w.notices += 1;
                let n = notice(&co, &format!("n{}", w.notices), m.now());
                let mut paid = 0;
                for _ in 0..*redeliveries {
                    let out = m.payments().handle_payment_notice(&n).await.unwrap();
                    if out != NoticeOutcome::Duplicate {
                        paid += 1;
                    }
                }
                assert_eq!(paid, 1, "exactly one delivery of a notice takes effect");
            }
            Op::Cancel { pick: p } => {
                let Some((g, b)) = pick(*p, w) else { return };
                allowed(m.orders().cancel_checkout(&b, &g).await.map(|_| ()));
            }
            Op::Advance { minutes } => {
                w.e.clock.advance(Duration::from_secs(*minutes as u64 * 60));
                let rep = m.ops().run_due_timers(m.now()).await.unwrap();
                assert_eq!(rep.failed, 0);
            }
            Op::Ship { pick: p, partial } => {
                let Some((g, _)) = pick(*p, w) else { return };
                for o in m.orders().checkout_view(&g).await.unwrap().orders {
                    let items = partial.then(|| vec![ShipItem { line_no: 1, qty: 1 }]);
                    let r = ShipRequest {
                        tracking_no: new_id(),
                        express_company: "ZTO".into(),
                        items,
                        receiver_phone: None,
                    };
                    allowed(m.orders().ship(&o.merchant_id, &o.id, r).await.map(|_| ()));
                }
            }
            Op::Receive { pick: p } => {
                let Some((g, b)) = pick(*p, w) else { return };
                for o in m.orders().checkout_view(&g).await.unwrap().orders {
                    allowed(m.orders().confirm_receipt(&b, &o.id).await.map(|_| ()));
                }
            }
            Op::MerchantCancel { pick: p } => {
                let Some((g, _)) = pick(*p, w) else { return };
                for o in m.orders().checkout_view(&g).await.unwrap().orders {
                    allowed(m.orders().cancel_paid_order(&o.merchant_id, &o.id, "random").await.map(|_| ()));
                }
            }
            Op::SetStock { sku, on_hand } => {
                let (mid, sid) = &w.skus[*sku];
                allowed(m.inventory().set_stock(mid, sid, *on_hand).await.map(|_| ()));
            }
        }
    }

    async fn check(w: &World) {
        let m = &w.e.market;
        let mut paid_units: BTreeMap<String, i64> = BTreeMap::new();
        for (g, _) in &w.groups {
            let co = m.orders().checkout_view(g).await.unwrap();
            assert_eq!(co.group.total, co.group.subtotal.checked_sub(co.group.discount).unwrap());
            assert_eq!(Money::sum(co.orders.iter().map(|o| o.total)).unwrap(), co.group.total);
            assert_eq!(co.payment.amount, co.group.total);
            assert!(co.payment.refunded <= co.payment.amount);
            for o in &co.orders {
                let d = m.orders().order(&o.id).await.unwrap();
                assert_eq!(Money::sum(d.lines.iter().map(|l| l.line_total)).unwrap(), o.subtotal);
                assert_eq!(Money::sum(d.lines.iter().map(|l| l.discount)).unwrap(), o.discount);
                assert!(d.lines.iter().all(|l| 0 <= l.shipped_qty && l.shipped_qty <= l.qty));
                let expected_group_state = match co.group.status {
                    GroupStatus::AwaitingPayment => o.status == OrderStatus::PendingPayment,
                    GroupStatus::Expired | GroupStatus::Cancelled => o.status == OrderStatus::Cancelled,
                    GroupStatus::Paid => o.status != OrderStatus::PendingPayment,
                };
                assert!(expected_group_state, "group {:?} with order {:?}", co.group.status, o.status);
                if o.paid_at.is_some() {
                    for l in &d.lines {
                        *paid_units.entry(l.sku_id.clone()).or_default() += l.qty;
                    }
                }
                let trail = m.ops().audit_trail(&o.id).await.unwrap();
                assert!(trail.iter().filter(|a| a.action == "paid").count() <= 1);
                for a in trail.iter().filter(|a| a.from_state.is_some()) {
                    let from: OrderStatus = a.from_state.as_deref().unwrap().parse().unwrap();
                    let to: OrderStatus = a.to_state.as_deref().unwrap().parse().unwrap();
                    assert!(from.can_become(to), "illegal recorded transition {from} -> {to}");
                }
            }
        }
        for (mid, sid) in &w.skus {
            let r = assert_consistent(m, mid, sid).await;
            assert_eq!(r.committed, paid_units.get(sid).copied().unwrap_or(0), "sold units of {sid}");
        }
    }

    pub async fn run(store: Arc<dyn MarketStore>, ops: Vec<Op>) {
        let e = env(store);
        let a = shop(&e.market, "PA", None, &[100, 250], 3).await;
        let b = shop(&e.market, "PB", Some("1900000109"), &[999], 2).await;
        let skus = vec![
            (a.merchant.id.clone(), a.skus[0].clone()),
            (a.merchant.id.clone(), a.skus[1].clone()),
            (b.merchant.id.clone(), b.skus[0].clone()),
        ];
        let mut w = World { e, skus, groups: Vec::new(), notices: 0 };
        for op in &ops {
            apply(&mut w, op).await;
            check(&w).await;
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
    #[test]
    fn sqlite_random_operations_keep_every_invariant(ops in proptest::collection::vec(random_ops::op(), 1..30)) {
        runtime().block_on(async {
            let fresh = stores::sqlite_factory("wxshop-market")().await;
            random_ops::run(fresh.store, ops).await;
            fresh.cleanup.await;
        });
    }
}

#[test]
fn postgres_random_operations_keep_every_invariant() {
    use proptest::strategy::{Strategy, ValueTree};
    let Some(factory) = stores::postgres_factory("wxshop_t") else { return };
    let rt = runtime();
    let mut runner =
        proptest::test_runner::TestRunner::new(proptest::test_runner::Config { cases: 6, ..Default::default() });
    let strategy = proptest::collection::vec(random_ops::op(), 1..30);
    for _ in 0..6 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        eprintln!("ops: {ops:?}"); // shown if the case fails
        rt.block_on(async {
            let fresh = factory().await;
            random_ops::run(fresh.store, ops).await;
            fresh.cleanup.await;
        });
    }
}

/// The shipping gateway over the mini-program client, against the emulator's shipping-info
/// management: a split shipment of a paid order ends Shipped at WeChat too.
#[tokio::test]
async fn ships_through_wechat_shipping_info_management() {
    use wxshop::emulator::Emulator;
    use wxshop::emulator::mp::shipping::{PaidTransaction, register_paid_transaction};
    use wxshop::mp::shipping::{OrderRef, OrderState};

    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let gw = Arc::new(RecordingGateway::default());
    let market = Market::builder(store::open("sqlite::memory:").await.unwrap())
        .payments(gw)
        .shipping(Arc::new(MpShippingGateway::new(client.clone())))
        .build()
        .unwrap();
    let s = shop(&market, "Emu", None, &[500, 700], 5).await;
    let co = market.orders().checkout(req("o-buyer", "k", &[(&s.skus[0], 1), (&s.skus[1], 2)])).await.unwrap();
    let n = notice(&co, "n1", Utc::now());
    let txn = register_paid_transaction(
        emu.state(),
        PaidTransaction::new("1230000109", &co.group.id, "o-buyer", co.group.total.as_fen())
            .transaction_id(&n.transaction_id),
    )
    .unwrap();
    assert_eq!(txn, n.transaction_id);
    market.payments().handle_payment_notice(&n).await.unwrap();
    let oid = &co.orders[0].id;
    let first = ShipRequest {
        tracking_no: "SF100".into(),
        express_company: "SF".into(),
        items: Some(vec![ShipItem { line_no: 1, qty: 1 }]),
        receiver_phone: Some("13812345678".into()),
    };
    // SF Express without a contact is refused before anything is sent, and nothing changes.
    let no_contact = ShipRequest { receiver_phone: None, ..first.clone() };
    assert!(matches!(market.orders().ship(&s.merchant.id, oid, no_contact).await, Err(MarketError::Gateway(_))));
    assert_eq!(market.orders().order(oid).await.unwrap().order.status, OrderStatus::Paid);
    assert_eq!(
        market.orders().ship(&s.merchant.id, oid, first).await.unwrap().order.status,
        OrderStatus::PartiallyShipped
    );
    let wx = client.shipping().get_order(&OrderRef::transaction_id(&txn)).await.unwrap();
    assert_eq!(wx.order_state, OrderState::Unshipped);
    let rest =
        ShipRequest { tracking_no: "YT200".into(), express_company: "YTO".into(), items: None, receiver_phone: None };
    assert_eq!(market.orders().ship(&s.merchant.id, oid, rest).await.unwrap().order.status, OrderStatus::Shipped);
    let wx = client.shipping().get_order(&OrderRef::transaction_id(&txn)).await.unwrap();
    assert_eq!(wx.order_state, OrderState::Shipped);
}

/// The one correction through WeChat's shipping-info management (the emulator): the corrected waybill
/// and the masked SF contact reach WeChat (`finish_shipping_count` 2); a second correction is refused
/// before anything is uploaded, and the market keeps the corrected waybill.
#[tokio::test]
async fn corrects_shipping_info_once_through_wechat() {
    use wxshop::emulator::Emulator;
    use wxshop::emulator::mp::shipping::{PaidTransaction, register_paid_transaction};
    use wxshop::mp::shipping::{OrderRef, OrderState};

    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let market = Market::builder(store::open("sqlite::memory:").await.unwrap())
        .payments(Arc::new(RecordingGateway::default()))
        .shipping(Arc::new(MpShippingGateway::new(client.clone())))
        .build()
        .unwrap();
    let s = shop(&market, "Emu", None, &[500], 5).await;
    let co = market.orders().checkout(req("o-buyer", "k", &[(&s.skus[0], 1)])).await.unwrap();
    let n = notice(&co, "n1", Utc::now());
    let txn = register_paid_transaction(
        emu.state(),
        PaidTransaction::new("1230000109", &co.group.id, "o-buyer", co.group.total.as_fen())
            .transaction_id(&n.transaction_id),
    )
    .unwrap();
    market.payments().handle_payment_notice(&n).await.unwrap();
    let oid = &co.orders[0].id;
    let ship = ShipRequest {
        tracking_no: "SF100".into(),
        express_company: "SF".into(),
        items: None,
        receiver_phone: Some("13812345678".into()),
    };
    market.orders().ship(&s.merchant.id, oid, ship).await.unwrap();
    let fix = |no: &str| ShipCorrection {
        replaces: None,
        tracking_no: no.into(),
        express_company: "SF".into(),
        receiver_phone: Some("13812345678".into()),
    };
    // WeChat wants a later upload_time than the first upload's (whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let d = market.orders().correct_shipment(&s.merchant.id, oid, fix("SF101")).await.unwrap();
    assert_eq!(d.shipments[0].tracking_no, "SF101");
    let wx = client.shipping().get_order(&OrderRef::transaction_id(&txn)).await.unwrap();
    let sh = wx.shipping.clone().unwrap();
    assert_eq!((wx.order_state, sh.finish_shipping_count, sh.shipping_list.len()), (OrderState::Shipped, 2, 1));
    let p = &sh.shipping_list[0];
    assert_eq!((p.tracking_no.as_str(), p.express_company.as_str()), ("SF101", "SF"));
    assert_eq!(p.contact.as_ref().and_then(|c| c.receiver_contact.as_deref()), Some("138****5678"));
    let uploads = emu.calls("/wxa/sec/order/upload_shipping_info");
    let err = market.orders().correct_shipment(&s.merchant.id, oid, fix("SF102")).await.unwrap_err();
    assert!(matches!(&err, MarketError::CorrectionRefused { order_id, .. } if order_id == oid), "{err:?}");
    assert_eq!(emu.calls("/wxa/sec/order/upload_shipping_info"), uploads, "nothing was uploaded");
    assert_eq!(market.orders().order(oid).await.unwrap().shipments[0].tracking_no, "SF101");
}

/// WeChat Pay shares only to receivers added beforehand: `WechatPayGateway::profit_share` adds each
/// promoter (`PERSONAL_OPENID`, relation DISTRIBUTOR) under whoever shares — the platform for its own
/// payment, the sub-merchant for a partner-mode one — and then shares. Without it the emulator refuses.
#[tokio::test]
async fn profit_sharing_adds_the_promoter_as_a_receiver_first() {
    use wxshop::emulator::Emulator;
    use wxshop::pay::partner::PartnerJsapiPrepay;
    use wxshop::pay::profitsharing::{CreateOrder, OrderReceiver};
    use wxshop::pay::transactions::JsapiPrepay;

    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let appid = "wx_emulator_app";
    let notify = "http://127.0.0.1:9/wx/pay/notify";
    let gw = WechatPayGateway::new(pay.clone(), appid, notify).with_profit_sharing(true);
    // The platform's own JSAPI payment, marked for profit sharing and paid in the cashier.
    let prepay = JsapiPrepay::new(appid, "tea", "ps-own-1", notify, 10_000, "o-buyer").profit_sharing(true);
    pay.transactions().jsapi(prepay).await.unwrap();
    let txn = emu.cashier_pay(pay.mchid(), "ps-own-1").await.unwrap();
    // Straight to WeChat Pay without adding the promoter: refused.
    let direct = CreateOrder::new(appid, &txn, "ps-direct", false).receiver(OrderReceiver::person(
        "o-promoter",
        500,
        "推广佣金",
    ));
    let err = pay.profit_sharing().create_order(direct).await.unwrap_err();
    assert_eq!(err.pay_code(), Some("INVALID_REQUEST"), "{err:?}");
    let promoter = ProfitShareReceiver {
        receiver_type: "PERSONAL_OPENID".into(),
        account: "o-promoter".into(),
        amount: Money::fen(500),
        description: "推广佣金".into(),
    };
    let req = ProfitShareRequest {
        out_order_no: "ps_own".into(),
        transaction_id: txn.clone(),
        sub_mchid: None,
        receivers: vec![promoter.clone()],
        unfreeze_unsplit: true,
    };
    let t = gw.profit_share(&req).await.unwrap();
    assert!(t.finished);
    let added = emu.last_json("/v3/profitsharing/receivers/add").unwrap();
    assert_eq!(
        added,
        serde_json::json!({ "appid": appid, "type": "PERSONAL_OPENID", "account": "o-promoter",
                            "relation_type": PROMOTER_RELATION })
    );
    let wx = pay.profit_sharing().query_order("ps_own", &txn, None).await.unwrap();
    let shared: Vec<(&str, &str, i64)> =
        wx.receivers.iter().map(|r| (r.kind.as_str(), r.account.as_str(), r.amount)).collect();
    assert_eq!(shared, [("PERSONAL_OPENID", "o-promoter", 500)]);
    // Again (a retried release): the receiver is added again, harmlessly, and the share is the same.
    assert_eq!(gw.profit_share(&req).await.unwrap(), t);
    // A sub-merchant's own payment: the promoter is added under the sub-merchant.
    let sub = "1900000109";
    let prepay = PartnerJsapiPrepay::new(appid, sub, "silk", "ps-sub-1", notify, 20_000)
        .sp_openid("o-buyer")
        .profit_sharing(true);
    pay.partner().jsapi(prepay).await.unwrap();
    let txn = emu.cashier_pay(sub, "ps-sub-1").await.unwrap();
    let req = ProfitShareRequest {
        out_order_no: "ps_sub".into(),
        transaction_id: txn.clone(),
        sub_mchid: Some(sub.into()),
        receivers: vec![ProfitShareReceiver { amount: Money::fen(1_000), ..promoter }],
        unfreeze_unsplit: true,
    };
    assert!(gw.profit_share(&req).await.unwrap().finished);
    let added = emu.last_json("/v3/profitsharing/receivers/add").unwrap();
    assert_eq!((added["sub_mchid"].as_str(), added["account"].as_str()), (Some(sub), Some("o-promoter")));
    let wx = pay.profit_sharing().query_order("ps_sub", &txn, Some(sub)).await.unwrap();
    assert_eq!(
        wx.receivers.iter().map(|r| (r.account.as_str(), r.amount)).collect::<Vec<_>>(),
        [("o-promoter", 1_000)]
    );
}

/// The whole WeChat path against the emulator: a combined payment over two merchants prepaid through
/// `PayClient`, paid in the cashier, its notification verified and applied (redeliveries are no-ops),
/// shipping uploaded to shipping-info management, then a merchant cancellation refunded through
/// WeChat Pay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_through_wechat_pay_and_refunds() {
    use wxshop::emulator::Emulator;
    use wxshop::mp::shipping::{OrderRef, OrderState};
    use wxshop::pay::NotificationResource;
    use wxshop::pay::notify::NotifyService;

    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let pay = emu.pay_client().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/wx/pay/notify", listener.local_addr().unwrap());
    let market = Market::builder(store::open("sqlite::memory:").await.unwrap())
        .payments(Arc::new(WechatPayGateway::new(pay.clone(), client.appid(), notify_url)))
        .shipping(Arc::new(MpShippingGateway::new(client.clone())))
        .build()
        .unwrap();
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (m2, seen) = (market.clone(), outcomes.clone());
    let svc = NotifyService::new(pay.clone(), move |n| {
        let (m, seen) = (m2.clone(), seen.clone());
        async move {
            if let Some(notice) = PaymentNotice::from_notification(&n) {
                let out = m.payments().handle_payment_notice(&notice).await?;
                seen.lock().unwrap().push(out);
            } else if let NotificationResource::Refund(r) = &n.resource {
                m.orders().refund_settled(&r.out_refund_no, r.refund_status.as_str() == "SUCCESS").await?;
            }
            Ok(())
        }
    });
    tokio::spawn(async move { axum::serve(listener, svc.router("/wx/pay/notify")).await });

    let a = shop(&market, "Tea", None, &[1200], 5).await;
    let b = shop(&market, "Silk", Some("1900000109"), &[3300], 5).await;
    let co = market.orders().checkout(req("o-buyer", "k1", &[(&a.skus[0], 1), (&b.skus[0], 1)])).await.unwrap();
    assert_eq!(co.payment.mode, PayMode::Combine);
    let params = co.payment.pay_params.clone().unwrap();
    assert_eq!(params["signType"], "RSA");
    assert!(params["package"].as_str().unwrap().starts_with("prepay_id="));
    // The buyer pays in the cashier; WeChat Pay notifies.
    let a_order = co.orders.iter().find(|o| o.merchant_id == a.merchant.id).unwrap();
    emu.cashier_pay(pay.mchid(), &a_order.id).await.unwrap();
    let mut paid = false;
    for _ in 0..200 {
        if market.orders().checkout_view(&co.group.id).await.unwrap().group.status == GroupStatus::Paid {
            paid = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(paid, "the notification did not mark the group paid");
    // Five redeliveries of the same notification: still one Paid transition.
    let delivery = emu.notifications().into_iter().find(|d| d.event_type == "TRANSACTION.SUCCESS").unwrap();
    for _ in 0..5 {
        assert!(emu.redeliver(&delivery.id).await);
    }
    assert_eq!(outcomes.lock().unwrap().iter().filter(|o| **o == NoticeOutcome::Paid).count(), 1);
    let paid_rows: usize = {
        let mut n = 0;
        for o in &co.orders {
            n += market.ops().audit_trail(&o.id).await.unwrap().iter().filter(|e| e.action == "paid").count();
        }
        n
    };
    assert_eq!(paid_rows, 2);
    // Each sub-order ships under its own transaction.
    let a_paid = market.orders().order(&a_order.id).await.unwrap().order;
    let txn = a_paid.transaction_id.clone().unwrap();
    let ship =
        ShipRequest { tracking_no: "YT1".into(), express_company: "YTO".into(), items: None, receiver_phone: None };
    market.orders().ship(&a.merchant.id, &a_order.id, ship).await.unwrap();
    let wx = client.shipping().get_order(&OrderRef::transaction_id(&txn)).await.unwrap();
    assert_eq!(wx.order_state, OrderState::Shipped);
    // The other merchant cannot ship and cancels: refunded through WeChat Pay.
    let b_order = co.orders.iter().find(|o| o.merchant_id == b.merchant.id).unwrap();
    market.orders().cancel_paid_order(&b.merchant.id, &b_order.id, "out of stock").await.unwrap();
    let mut refunded = false;
    for _ in 0..200 {
        let r = market.orders().refunds(&co.group.id).await.unwrap();
        if r.len() == 1 && r[0].status == RefundStatus::Succeeded {
            assert_eq!((r[0].amount, r[0].sub_mchid.as_deref()), (Money::fen(3300), None));
            refunded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refunded, "refund not settled: {:?}", market.orders().refunds(&co.group.id).await.unwrap());
    assert_eq!(
        market.orders().checkout_view(&co.group.id).await.unwrap().payment.status,
        PaymentStatus::PartiallyRefunded
    );
    // An unpaid single-merchant checkout closes at its deadline; the prepay order is closed at WeChat Pay.
    let co2 = market.orders().checkout(req("o-buyer", "k2", &[(&a.skus[0], 1)])).await.unwrap();
    assert_eq!(co2.payment.mode, PayMode::Jsapi);
    market.ops().run_due_timers(market.now() + chrono::Duration::minutes(16)).await.unwrap();
    assert_eq!(market.orders().checkout_view(&co2.group.id).await.unwrap().group.status, GroupStatus::Expired);
    assert_eq!(emu.pay_order_state(pay.mchid(), &co2.group.id).as_deref(), Some("CLOSED"));
}

/// A marketplace that shares at settlement marks its prepay orders for profit sharing, as WeChat
/// Pay requires before any share; by default the flag is not sent.
#[tokio::test]
async fn profit_sharing_gateways_mark_prepay_orders() {
    use wxshop::emulator::Emulator;
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    for (sharing, expected) in [(false, serde_json::Value::Null), (true, serde_json::Value::Bool(true))] {
        let gateway = WechatPayGateway::new(pay.clone(), "wx_emulator_app", "http://127.0.0.1:9/wx/pay/notify")
            .with_profit_sharing(sharing);
        let market = Market::builder(store::open("sqlite::memory:").await.unwrap())
            .payments(Arc::new(gateway))
            .shipping(Arc::new(RecordingGateway::default()))
            .build()
            .unwrap();
        let a = shop(&market, "Tea", None, &[1200], 5).await;
        market.orders().checkout(req("o-buyer", "k1", &[(&a.skus[0], 1)])).await.unwrap();
        let body = emu.last_json("/v3/pay/transactions/jsapi").unwrap();
        assert_eq!(body["settle_info"]["profit_sharing"], expected, "{body}");
        // Each sub-order of a combined payment is marked too; a deposit pay-in never is.
        let b = shop(&market, "Silk", None, &[3300], 5).await;
        market.orders().checkout(req("o-buyer", "k2", &[(&a.skus[0], 1), (&b.skus[0], 1)])).await.unwrap();
        let body = emu.last_json("/v3/combine-transactions/jsapi").unwrap();
        let flags: Vec<&serde_json::Value> =
            body["sub_orders"].as_array().unwrap().iter().map(|s| &s["settle_info"]["profit_sharing"]).collect();
        assert_eq!(flags, [&expected, &expected], "{body}");
        market
            .governance()
            .deposits()
            .deposit_prepay(&a.merchant.id, Money::fen(5_000), "o-boss", "dep-1")
            .await
            .unwrap();
        let body = emu.last_json("/v3/pay/transactions/jsapi").unwrap();
        assert_eq!(body["settle_info"]["profit_sharing"], serde_json::Value::Null, "{body}");
    }
}

/// A payment whose notification is lost (the notify URL answers nothing) is found by reconciliation,
/// which queries WeChat Pay and applies it once; the notification arriving afterwards changes nothing.
/// Both a JSAPI payment and a combined payment (queried through the combine query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_recovers_a_lost_payment_notification() {
    use wxshop::emulator::Emulator;
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    // Port 9 (discard) on loopback: nothing answers, every notification is lost.
    let gateway = WechatPayGateway::new(pay.clone(), "wx_emulator_app", "http://127.0.0.1:9/wx/pay/notify");
    let market = Market::builder(store::open("sqlite::memory:").await.unwrap())
        .payments(Arc::new(gateway))
        .shipping(Arc::new(RecordingGateway::default()))
        .build()
        .unwrap();
    let a = shop(&market, "Tea", None, &[1200], 5).await;
    let b = shop(&market, "Silk", None, &[3300], 5).await;
    let single = market.orders().checkout(req("o-buyer", "k1", &[(&a.skus[0], 1)])).await.unwrap();
    let combined = market.orders().checkout(req("o-buyer", "k2", &[(&a.skus[0], 1), (&b.skus[0], 2)])).await.unwrap();
    let unpaid = market.orders().checkout(req("o-buyer", "k3", &[(&b.skus[0], 1)])).await.unwrap();
    assert_eq!((single.payment.mode, combined.payment.mode), (PayMode::Jsapi, PayMode::Combine));

    // Nothing paid yet: reconciliation asks about all three and changes nothing.
    let r = market.payments().reconcile_pending_payments(market.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 3, applied: 0, failed: 0 });

    emu.cashier_pay(pay.mchid(), &single.group.id).await.unwrap();
    emu.cashier_pay(pay.mchid(), &combined.orders[0].id).await.unwrap();
    assert_eq!(
        market.orders().checkout_view(&single.group.id).await.unwrap().group.status,
        GroupStatus::AwaitingPayment
    );

    let r = market.payments().reconcile_pending_payments(market.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 3, applied: 2, failed: 0 });
    for co in [&single, &combined] {
        let v = market.orders().checkout_view(&co.group.id).await.unwrap();
        assert_eq!(v.group.status, GroupStatus::Paid);
        assert_eq!(v.payment.status, PaymentStatus::Paid);
        assert!(v.orders.iter().all(|o| o.status == OrderStatus::Paid && o.transaction_id.is_some()), "{v:?}");
    }
    // Each combined sub-order keeps its own transaction id.
    let v = market.orders().checkout_view(&combined.group.id).await.unwrap();
    assert_ne!(v.orders[0].transaction_id, v.orders[1].transaction_id);
    assert_eq!(
        market.orders().checkout_view(&unpaid.group.id).await.unwrap().group.status,
        GroupStatus::AwaitingPayment
    );
    // Stock committed once: 5 - 1 - 1 of Tea, 5 - 2 (paid) - 1 (still reserved) of Silk.
    let tea = assert_consistent(&market, &a.merchant.id, &a.skus[0]).await;
    assert_eq!(tea.level.on_hand, 3);

    // Running again (or from another process) finds only the unpaid one.
    let r = market.payments().reconcile_pending_payments(market.now()).await.unwrap();
    assert_eq!(r, ReconcileReport { checked: 1, applied: 0, failed: 0 });

    // The lost notification arrives after all (its own id): nothing changes.
    for co in [&single, &combined] {
        let v = market.orders().checkout_view(&co.group.id).await.unwrap();
        let delivery = emu
            .notifications()
            .into_iter()
            .find(|d| {
                d.event_type == "TRANSACTION.SUCCESS"
                    && (d.out_trade_no == co.group.id || co.orders.iter().any(|o| o.id == d.out_trade_no))
            })
            .unwrap();
        assert!(!delivery.delivered);
        let late = PaymentNotice {
            notify_id: delivery.id.clone(),
            out_trade_no: co.group.id.clone(),
            transaction_id: v.orders[0].transaction_id.clone().unwrap(),
            amount: v.payment.amount,
            paid_at: market.now(),
            sub_orders: if co.payment.mode == PayMode::Combine {
                v.orders
                    .iter()
                    .map(|o| SubOrderPaid {
                        out_trade_no: o.id.clone(),
                        transaction_id: o.transaction_id.clone().unwrap(),
                        amount: o.total,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        };
        assert_eq!(market.payments().handle_payment_notice(&late).await.unwrap(), NoticeOutcome::AlreadyPaid);
        assert_eq!(market.payments().handle_payment_notice(&late).await.unwrap(), NoticeOutcome::Duplicate);
        let mut paid_rows = 0;
        for o in &co.orders {
            paid_rows += market.ops().audit_trail(&o.id).await.unwrap().iter().filter(|e| e.action == "paid").count();
        }
        assert_eq!(paid_rows, co.orders.len());
    }
}

/// A merchant's deposit paid through WeChat Pay (emulator): prepay, the cashier pays, the notification
/// (redelivered) credits the deposit once with the exact amount, and the ledger stays balanced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_is_paid_in_through_wechat_pay() {
    use wxshop::emulator::Emulator;
    use wxshop::market::governance::deposit::DepositStatus;
    use wxshop::pay::notify::NotifyService;

    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let pay = emu.pay_client().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/wx/pay/notify", listener.local_addr().unwrap());
    let market = Market::builder(store::open("sqlite::memory:").await.unwrap())
        .payments(Arc::new(WechatPayGateway::new(pay.clone(), client.appid(), notify_url)))
        .shipping(Arc::new(MpShippingGateway::new(client.clone())))
        .build()
        .unwrap();
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (m2, seen) = (market.clone(), outcomes.clone());
    let svc = NotifyService::new(pay.clone(), move |n| {
        let (m, seen) = (m2.clone(), seen.clone());
        async move {
            if let Some(notice) = PaymentNotice::from_notification(&n) {
                let out = m.payments().handle_payment_notice(&notice).await?;
                seen.lock().unwrap().push((notice, out));
            }
            Ok(())
        }
    });
    tokio::spawn(async move { axum::serve(listener, svc.router("/wx/pay/notify")).await });

    let spec = RuleSpec { deposit_required: Money::fen(20_000), ..RuleSpec::default() };
    let (category, _) = market.categories().create_category("Tea goods", None, spec).await.unwrap();
    let merchant = market.merchants().create_merchant(NewMerchant::new("Tea")).await.unwrap();
    market.merchants().approve_merchant(&merchant.id).await.unwrap();
    market.merchants().grant_category(&merchant.id, &category.id).await.unwrap();
    let p = market
        .governance()
        .deposits()
        .deposit_prepay(&merchant.id, Money::fen(20_000), "o-boss", "dep-1")
        .await
        .unwrap();
    assert_eq!(p.pay_params["signType"], "RSA");
    assert_eq!(p.pay_params["package"], format!("prepay_id={}", p.prepay_id));
    // The merchant pays in the cashier; WeChat Pay notifies.
    emu.cashier_pay(pay.mchid(), &p.out_trade_no).await.unwrap();
    let mut funded = false;
    for _ in 0..200 {
        if market.governance().deposits().deposit(&merchant.id).await.unwrap().account.status == DepositStatus::Funded {
            funded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(funded, "the notification did not fund the deposit");
    // Redeliveries change nothing.
    let delivery = emu.notifications().into_iter().find(|d| d.event_type == "TRANSACTION.SUCCESS").unwrap();
    for _ in 0..3 {
        assert!(emu.redeliver(&delivery.id).await);
    }
    // NotifyService drops repeated notification ids; the market reached once:
    let seen = outcomes.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(), vec![NoticeOutcome::Paid]);
    let (notice, _) = seen[0].clone();
    assert_eq!((notice.out_trade_no.as_str(), notice.amount), (p.out_trade_no.as_str(), Money::fen(20_000)));
    // The same notice again, and under another notification id, changes nothing either.
    assert_eq!(market.payments().handle_payment_notice(&notice).await.unwrap(), NoticeOutcome::Duplicate);
    let other = PaymentNotice { notify_id: format!("{}-again", notice.notify_id), ..notice.clone() };
    assert_eq!(market.payments().handle_payment_notice(&other).await.unwrap(), NoticeOutcome::AlreadyPaid);
    let d = market.governance().deposits().deposit(&merchant.id).await.unwrap();
    assert_eq!((d.account.status, d.balance), (DepositStatus::Funded, Money::fen(20_000)));
    let audit = market.governance().ledger_audit().await.unwrap();
    assert_eq!((audit.total, audit.mismatches.len(), audit.unbalanced.len()), (0, 0, 0), "{audit:?}");
    let paid_in = market.ops().audit_trail(&format!("deposit:{}", merchant.id)).await.unwrap();
    assert_eq!(paid_in.iter().filter(|e| e.action == "paid_in").count(), 1);
}

/// A deposit paid in and refunded on exit through the emulator's WeChat Pay: two pay-ins paid in the
/// cashier and credited by their notifications, the exit refund split over them newest first, each refund
/// accepted (PROCESSING) then concluded by its REFUND.SUCCESS notification, the deposit Closed and the
/// ledger clean; the refund call and the refund query are idempotent by `out_refund_no`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_exit_refund_through_wechat_pay() {
    use wxshop::emulator::Emulator;
    use wxshop::market::governance::deposit::{DepositRefundStatus, DepositStatus};
    use wxshop::pay::NotificationResource;
    use wxshop::pay::notify::NotifyService;

    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let pay = emu.pay_client().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/wx/pay/notify", listener.local_addr().unwrap());
    let gw = Arc::new(WechatPayGateway::new(pay.clone(), client.appid(), notify_url));
    let market = Market::builder(store::open("sqlite::memory:").await.unwrap())
        .payments(gw.clone())
        .shipping(Arc::new(MpShippingGateway::new(client.clone())))
        .build()
        .unwrap();
    // The library's own dispatcher routes the deposit pay-ins and the exit refunds.
    let m2 = market.clone();
    let svc = NotifyService::new(pay.clone(), move |n| {
        let m = m2.clone();
        async move {
            assert!(
                m.payments().handle_pay_notification(&n).await?,
                "the market did not own {} {}",
                n.event_type,
                n.id
            );
            Ok(())
        }
    });
    tokio::spawn(async move { axum::serve(listener, svc.router("/wx/pay/notify")).await });
    // What the market does not own is `Ok(false)`, not an error: a stranger's payment, a refund of an
    // unknown `out_refund_no`, another event.
    let stranger = |event: &str, resource: NotificationResource| wxshop::pay::Notification {
        id: format!("EV-{event}"),
        create_time: "2026-12-02T10:00:00+08:00".into(),
        event_type: event.into(),
        resource_type: "encrypt-resource".into(),
        summary: String::new(),
        resource,
        plaintext: Vec::new(),
    };
    let other_payment: wxshop::pay::transactions::Transaction = serde_json::from_value(serde_json::json!({
        "appid": "wx", "mchid": pay.mchid(), "out_trade_no": "NOT_OURS_1", "transaction_id": "4200000000000000000001",
        "trade_state": "SUCCESS", "amount": { "total": 100, "payer_total": 100, "currency": "CNY" }
    }))
    .unwrap();
    let other_refund: wxshop::pay::notify::RefundNotice = serde_json::from_value(serde_json::json!({
        "mchid": pay.mchid(), "out_trade_no": "NOT_OURS_1", "transaction_id": "4200000000000000000001",
        "out_refund_no": "NOT_OURS_R1", "refund_id": "50300000000000000001", "refund_status": "SUCCESS",
        "amount": { "total": 100, "refund": 100, "payer_total": 100, "payer_refund": 100 }
    }))
    .unwrap();
    for n in [
        stranger("TRANSACTION.SUCCESS", NotificationResource::Transaction(other_payment)),
        stranger("REFUND.SUCCESS", NotificationResource::Refund(other_refund)),
        stranger("PROFITSHARING.SUCCESS", NotificationResource::Other(serde_json::json!({}))),
    ] {
        assert!(!market.payments().handle_pay_notification(&n).await.unwrap(), "{}", n.event_type);
    }

    let s = shop(&market, "Leaving", None, &[1_000], 5).await;
    let merchant = s.merchant.id.clone();
    let mut pay_ins = Vec::new();
    for (key, fen, total) in [("k1", 20_000, 20_000), ("k2", 4_321, 24_321)] {
        let p = market.governance().deposits().deposit_prepay(&merchant, Money::fen(fen), "o-boss", key).await.unwrap();
        emu.cashier_pay(pay.mchid(), &p.out_trade_no).await.unwrap();
        let mut credited = false;
        for _ in 0..200 {
            if market.governance().deposits().deposit(&merchant).await.unwrap().balance == Money::fen(total) {
                credited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(credited, "the notification did not credit {key}");
        pay_ins.push(p.out_trade_no);
    }
    market.governance().deposits().request_deposit_exit(&merchant).await.unwrap();
    let d = market.governance().deposits().refund_deposit(&merchant).await.unwrap();
    let split: Vec<(Option<&str>, i64)> =
        d.refunds.iter().map(|r| (r.payment_id.as_deref(), r.amount.as_fen())).collect();
    assert_eq!(split, [(Some(pay_ins[1].as_str()), 4_321), (Some(pay_ins[0].as_str()), 20_000)]);
    let mut closed = None;
    for _ in 0..200 {
        let v = market.governance().deposits().deposit_refunds(&merchant).await.unwrap();
        if v.account.status == DepositStatus::Closed {
            closed = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = closed.expect("the refund notifications did not close the deposit");
    assert_eq!((v.balance, v.refunding), (Money::ZERO, Money::ZERO));
    assert!(v.refunds.iter().all(|r| r.status == DepositRefundStatus::Succeeded && r.wx_refund_id.is_some()));
    let a = market.governance().ledger_audit().await.unwrap();
    assert_eq!((a.total, a.mismatches.len(), a.unbalanced.len()), (0, 0, 0));
    // WeChat Pay knows each refund: asked again it answers the same refund; queried, it succeeded.
    let r = &v.refunds[0];
    let again = RefundRequest {
        out_refund_no: r.id.clone(),
        out_trade_no: pay_ins[1].clone(),
        transaction_id: r.transaction_id.clone(),
        sub_mchid: None,
        refund: r.amount,
        total: r.total,
        reason: "保证金退还".into(),
    };
    assert_eq!(gw.refund(&again).await.unwrap().refund_id, r.wx_refund_id.clone().unwrap());
    let q = gw.query_refund(&RefundQueryRequest { out_refund_no: r.id.clone(), sub_mchid: None }).await.unwrap();
    assert_eq!(q, RefundQuery::Succeeded { refund_id: r.wx_refund_id.clone().unwrap() });
    let unknown = RefundQueryRequest { out_refund_no: "dpr-unknown".into(), sub_mchid: None };
    assert_eq!(gw.query_refund(&unknown).await.unwrap(), RefundQuery::NotFound);
}

/// Any sequence of payment and refund notifications — redelivered, repeated under new ids, with the
/// wrong amount, a second transaction, refunds made outside the market — is accepted (what the HTTP
/// endpoint answers 2xx) once recorded, and never applied twice.
mod notice_sequences {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    pub enum Ev {
        Pay { notify: u8, txn: u8, right_amount: bool },
        ExternalRefund { no: u8, fen: i64 },
    }

    pub fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            3 => (0u8..6, 0u8..3, any::<bool>()).prop_map(|(notify, txn, right_amount)| Ev::Pay { notify, txn, right_amount }),
            1 => (0u8..3, 1i64..=4000).prop_map(|(no, fen)| Ev::ExternalRefund { no, fen }),
        ]
    }

    pub async fn run(store: Arc<dyn MarketStore>, evs: Vec<Ev>) {
        let e = env(store);
        let m = &e.market;
        let s = shop(m, "Seq", None, &[2000], 5).await;
        let co = m.orders().checkout(req("b1", "k", &[(&s.skus[0], 2)])).await.unwrap();
        let total = co.group.total.as_fen();
        let mut seen_notify = std::collections::HashSet::new();
        let mut paid_by: Option<String> = None;
        let mut anomaly_keys = std::collections::HashSet::new();
        let mut applied_refunds = std::collections::HashMap::new();
        let mut refunded = 0i64;
        for ev in evs {
            match ev {
                Ev::Pay { notify, txn, right_amount } => {
                    let txn = format!("wx-{txn}");
                    let mut n = notice(&co, &format!("n{notify}"), t0());
                    n.transaction_id = txn.clone();
                    // A notify id names one notification: its content never changes.
                    let right_amount = right_amount || notify % 2 == 0;
                    n.amount = if right_amount { co.group.total } else { Money::fen(total - 1) };
                    let out = m.payments().handle_payment_notice(&n).await.unwrap();
                    if !seen_notify.insert(n.notify_id.clone()) {
                        assert_eq!(out, NoticeOutcome::Duplicate);
                        continue;
                    }
                    match &paid_by {
                        Some(t) if *t == txn => assert_eq!(out, NoticeOutcome::AlreadyPaid),
                        Some(_) => {
                            let fresh = anomaly_keys.insert(("dup", txn.clone()));
                            let NoticeOutcome::DuplicateRefunded { anomaly_ids } = out else { panic!("{out:?}") };
                            assert_eq!(anomaly_ids.len(), usize::from(fresh));
                        }
                        None if right_amount => {
                            assert_eq!(out, NoticeOutcome::Paid);
                            paid_by = Some(txn);
                        }
                        None => {
                            let fresh = anomaly_keys.insert(("held", txn.clone()));
                            let NoticeOutcome::Held { anomaly_ids } = out else { panic!("{out:?}") };
                            assert_eq!(anomaly_ids.len(), usize::from(fresh));
                        }
                    }
                }
                Ev::ExternalRefund { no, fen } => {
                    let r = anomaly::RefundNotice {
                        notify_id: format!("r{no}"),
                        out_refund_no: format!("ext-{no}"),
                        out_trade_no: co.group.id.clone(),
                        transaction_id: paid_by.clone().unwrap_or_else(|| "wx-0".into()),
                        refund_id: format!("50{no}"),
                        succeeded: true,
                        amount: Money::fen(*applied_refunds.get(&no).unwrap_or(&fen)),
                    };
                    let out = m.payments().handle_external_refund(&r).await.unwrap();
                    let first = !applied_refunds.contains_key(&no);
                    applied_refunds.entry(no).or_insert(fen);
                    let fits = paid_by.is_some() && refunded + r.amount.as_fen() <= total;
                    match out {
                        Some(a) if first && fits => {
                            assert_eq!(a.status, anomaly::AnomalyStatus::Applied);
                            refunded += r.amount.as_fen();
                        }
                        Some(a) if first => assert_eq!(a.status, anomaly::AnomalyStatus::Held),
                        None if !first => {}
                        other => panic!("refund {no} ({fen} fen, first {first}, fits {fits}): {other:?}"),
                    }
                }
            }
        }
        let view = m.orders().checkout_view(&co.group.id).await.unwrap();
        assert_eq!(view.payment.refunded, Money::fen(refunded));
        assert_eq!(view.group.status == GroupStatus::Paid, paid_by.is_some());
        let paid_rows =
            m.ops().audit_trail(&co.group.id).await.unwrap().into_iter().filter(|a| a.action == "paid").count();
        assert_eq!(paid_rows, usize::from(paid_by.is_some()));
        let dups = anomaly_keys.iter().filter(|(k, _)| *k == "dup").count();
        assert_eq!(count_calls(&e.gw, |c| matches!(c, GatewayCall::Refund(_))), dups);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]
    #[test]
    fn sqlite_notification_sequences_apply_once(evs in proptest::collection::vec(notice_sequences::ev(), 1..16)) {
        runtime().block_on(async {
            let fresh = stores::sqlite_factory("wxshop-notices")().await;
            notice_sequences::run(fresh.store, evs).await;
            fresh.cleanup.await;
        });
    }
}

#[test]
fn postgres_notification_sequences_apply_once() {
    use proptest::strategy::{Strategy, ValueTree};
    let Some(factory) = stores::postgres_factory("wxshop_n") else { return };
    let rt = runtime();
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config::default());
    let strategy = proptest::collection::vec(notice_sequences::ev(), 1..16);
    for _ in 0..6 {
        let evs = strategy.new_tree(&mut runner).unwrap().current();
        eprintln!("events: {evs:?}"); // shown if the case fails
        rt.block_on(async {
            let fresh = factory().await;
            notice_sequences::run(fresh.store, evs).await;
            fresh.cleanup.await;
        });
    }
}
