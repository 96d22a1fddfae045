//! Recommendation: exact rankings on tiny hand-made data, the rules as properties, the evaluator's
//! metrics, and the market's feed on SQLite and PostgreSQL (each case in a fresh store).
#![cfg(all(feature = "sqlite", feature = "emulator"))]

mod common;
#[path = "common/stores.rs"]
mod stores;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use wxshop::market::recommend::Step as RStep;
use wxshop::market::recommend::eval::{self, gini};
use wxshop::market::recommend::rules::{self, Fairness, MarketFacts};
use wxshop::market::recommend::*;
use wxshop::market::*;

use stores::Factory;

fn ev(u: &str, i: &str, ts: i64, k: EventKind) -> Interaction {
    Interaction::new(u, i, ts, k)
}

fn ids(d: &Dataset, list: &[Scored]) -> Vec<String> {
    list.iter().map(|s| d.items.id(s.item).to_string()).collect()
}

/// Five buyers over items a…e: a and b go together, c and d go together, e is bought by everyone.
fn tiny() -> Dataset {
    use EventKind::*;
    let events = vec![
        ev("u1", "a", 10, View),
        ev("u1", "b", 20, View),
        ev("u1", "e", 30, Buy),
        ev("u2", "a", 10, View),
        ev("u2", "b", 20, Click),
        ev("u2", "e", 30, Buy),
        ev("u3", "c", 10, View),
        ev("u3", "d", 20, View),
        ev("u3", "e", 30, Buy),
        ev("u4", "c", 10, View),
        ev("u4", "d", 20, Cart),
        ev("u5", "a", 10, View),
    ];
    let items: Vec<ItemInfo> =
        [("a", "m1", "tea"), ("b", "m1", "tea"), ("c", "m2", "cup"), ("d", "m2", "cup"), ("e", "m3", "pot")]
            .iter()
            .map(|(i, m, c)| ItemInfo {
                item: i.to_string(),
                merchant: m.to_string(),
                category: c.to_string(),
                price: 100,
            })
            .collect();
    Dataset::build(&events, &items)
}

fn query_for<'a>(d: &'a Dataset, user: &str, exclude: &'a mut Vec<u32>) -> Query<'a> {
    let u = d.users.get(user).unwrap();
    *exclude = d.user_items.row(u as usize).0.to_vec();
    exclude.sort_unstable();
    Query { history: d.sequence(u), exclude, context_item: None }
}

#[test]
fn popular_ranks_by_decayed_weight_and_prefers_the_context_category() {
    let d = tiny();
    let mut p = Popular::default();
    p.fit(&d);
    // e: 3 buys (24); b: view + click (3, later than a); a: 3 views (3); d: view + cart (5); c: 2 views (2).
    assert_eq!(p.ranked.iter().map(|&i| d.items.id(i)).collect::<Vec<_>>(), ["e", "d", "b", "a", "c"]);
    let mut ex = Vec::new();
    let q = query_for(&d, "u5", &mut ex); // u5 viewed a (tea): tea first, then the rest by popularity
    let got = p.recommend(&d, &q, 3);
    assert_eq!(ids(&d, &got), ["b", "e", "d"]);
    assert_eq!(got[0].reason, Reason::PopularIn { category: d.categories.get("tea").unwrap() });
    assert_eq!(got[1].reason, Reason::Popular);
}

#[test]
fn covisitation_finds_what_was_seen_together_and_says_why() {
    let d = tiny();
    let mut c = CoVisit::default();
    c.fit(&d);
    let mut ex = Vec::new();
    let q = query_for(&d, "u5", &mut ex);
    let got = c.recommend(&d, &q, 3);
    assert_eq!(ids(&d, &got), ["b", "e"]);
    assert_eq!(got[0].reason, Reason::Viewed { item: d.items.get("a").unwrap() });
    // Related to c: d (seen together twice), then e (after c in u3's session).
    let rel = c.related(d.items.get("c").unwrap(), 5, &[]);
    assert_eq!(rel.iter().map(|r| d.items.id(r.0)).collect::<Vec<_>>(), ["d", "e"]);
    // Incremental: a new pair learned from one event.
    let mut c2 = c.clone();
    let b = d.items.get("b").unwrap();
    let cc = d.items.get("c").unwrap();
    c2.observe(
        &[RStep { item: b, kind: EventKind::View, ts: 40 }],
        RStep { item: cc, kind: EventKind::View, ts: 41 },
        d.n_items(),
    );
    assert!(c.related(b, 5, &[]).iter().all(|r| r.0 != cc));
    assert!(c2.related(b, 5, &[]).iter().any(|r| r.0 == cc));
}

#[test]
fn ease_and_ials_rank_the_partner_item_first() {
    let d = tiny();
    let mut e = Ease::default();
    e.lambda = Some(0.5);
    e.fit(&d);
    let mut ex = Vec::new();
    let q = query_for(&d, "u5", &mut ex);
    assert_eq!(ids(&d, &e.recommend(&d, &q, 1)), ["b"]);
    let mut f = Ials::default();
    (f.factors, f.iterations) = (4, 20);
    f.fit(&d);
    assert_eq!(ids(&d, &f.recommend(&d, &q, 1)), ["b"]);
    // A buyer the fit never saw is folded in from the history alone.
    let c = d.items.get("c").unwrap();
    let hist = [RStep { item: c, kind: EventKind::View, ts: 50 }];
    let q = Query { history: &hist, exclude: &[c], context_item: None };
    assert_eq!(ids(&d, &f.recommend(&d, &q, 1)), ["d"]);
    assert_eq!(ids(&d, &e.recommend(&d, &q, 1)), ["d"]);
}

#[test]
fn the_blend_applies_the_merchant_cap() {
    let d = tiny();
    let mut b = Blend::default();
    b.fit(&d);
    b.fairness = Fairness { max_merchant_share: 0.5, explore_share: 0.0 };
    let q = Query { history: &[], exclude: &[], context_item: None };
    let got = b.recommend(&d, &q, 2);
    let merchants: Vec<u32> = got.iter().map(|s| d.item_merchant[s.item as usize]).collect();
    assert_eq!(got.len(), 2);
    assert_ne!(merchants[0], merchants[1]);
}

#[test]
fn evaluation_metrics_are_exact_on_a_hand_made_split() {
    use EventKind::*;
    // Train: u1 and u2 view a then b; u3 views a. Test: u3 views b (hit at rank 1) and z (unknown).
    let train = vec![
        ev("u1", "a", 1, View),
        ev("u1", "b", 2, View),
        ev("u2", "a", 1, View),
        ev("u2", "b", 2, View),
        ev("u3", "a", 5, View),
    ];
    let test = vec![ev("u3", "b", 9, View), ev("u3", "z", 9, View), ev("ghost", "a", 9, View)];
    let r = eval::evaluate(&train, &test, &[], 1);
    let cv = &r.models["covisit"];
    assert_eq!(cv.users, 1);
    assert_eq!(cv.recall, 0.5);
    assert_eq!(cv.hit_rate, 1.0);
    assert_eq!(cv.ndcg, 1.0);
    assert_eq!(cv.catalog_coverage, 0.5); // b of {a, b}
    assert_eq!(cv.merchant_gini, None);
    assert_eq!(r.models.keys().collect::<Vec<_>>(), ["blend", "covisit", "ease", "ials", "popular"]);
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "recall@k",
        "ndcg@k",
        "hit_rate@k",
        "catalog_coverage",
        "merchant_gini",
        "users",
        "fit_ms",
        "recommend_p50_us",
        "recommend_p99_us",
        "models",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(gini(&[1.0, 1.0, 1.0]), 0.0);
    assert!((gini(&[0.0, 0.0, 3.0]) - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn malformed_files_name_their_line() {
    let ok = "user,item,ts,event\nu1,a,1,view\n\"u,2\",b,2,BUY\n";
    let v = eval::read_interactions(ok.as_bytes()).unwrap();
    assert_eq!(v[1], ev("u,2", "b", 2, EventKind::Buy));
    let bad = |s: &str| eval::read_interactions(s.as_bytes()).unwrap_err();
    assert_eq!(bad("user,item,ts,event\nu1,a,1,view\nu1,a,x,view\n").line, 3);
    assert_eq!(bad("user,item,ts,event\nu1,a,1,view\nu1,a,2,like\n").line, 3);
    assert_eq!(bad("user,item,ts\nu1,a,1\n").line, 1);
    assert_eq!(bad("user,item,ts,event\nu1,,1,view\n").line, 2);
    assert_eq!(bad("user,item,ts,event\nu1,a\n").line, 2);
    let e = eval::read_items("item,merchant,category,price\ni,m,c,1.5\n".as_bytes()).unwrap_err();
    assert_eq!((e.line, e.message.contains("price")), (2, true));
}

proptest! {
    #[test]
    fn rules_always_hold(
        cands in prop::collection::vec((0u32..40, 0.0f32..10.0), 0..60),
        merchant_of in prop::collection::vec(0u32..6, 40),
        eligible in prop::collection::vec(any::<bool>(), 40),
        small in prop::collection::vec(any::<bool>(), 6),
        exclude in prop::collection::btree_set(0u32..40, 0..10),
        k in 1usize..25,
        share in 0.05f32..1.0,
        explore in 0.0f32..0.5,
    ) {
        let mut d = Dataset::default();
        for i in 0..40 { d.items.intern(&format!("i{i}")); }
        for m in 0..6 { d.merchants.intern(&format!("m{m}")); }
        d.item_merchant = merchant_of.clone();
        let facts = MarketFacts {
            eligible: eligible.clone(),
            small: small.clone(),
            weight: vec![1.0; 6],
            explore_pool: (0..40).filter(|&i| small[merchant_of[i as usize] as usize]).collect(),
        };
        let fair = Fairness { max_merchant_share: share, explore_share: explore };
        let exclude: Vec<u32> = exclude.into_iter().collect();
        let list: Vec<Scored> = cands.iter().map(|&(item, score)| Scored { item, score, reason: Reason::ForYou }).collect();
        let out = rules::apply(&d, &facts, fair, list, &exclude, k);
        prop_assert!(out.len() <= k);
        let mut seen = std::collections::HashSet::new();
        let mut per = [0usize; 6];
        for s in &out {
            prop_assert!(eligible[s.item as usize], "ineligible item {}", s.item);
            prop_assert!(!exclude.contains(&s.item));
            prop_assert!(seen.insert(s.item), "duplicate {}", s.item);
            per[merchant_of[s.item as usize] as usize] += 1;
        }
        let cap = fair.merchant_cap(k);
        prop_assert!(per.iter().all(|&n| n <= cap));
        let small_shown = out.iter().filter(|s| small[merchant_of[s.item as usize] as usize]).count();
        if small_shown < fair.explore_slots(k).min(k) {
            // Every eligible small item left out belongs to a merchant at its cap.
            for i in 0..40u32 {
                let m = merchant_of[i as usize] as usize;
                if small[m] && eligible[i as usize] && !exclude.contains(&i) && !seen.contains(&i) {
                    prop_assert_eq!(per[m], cap);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ the market's feed, both backends

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

async fn product(m: &Market, merchant: &Merchant, cat: &Category, title: &str, stock: i64) -> String {
    let p = m
        .catalog()
        .create_product(
            &merchant.id,
            NewProduct {
                category_id: cat.id.clone(),
                title: title.into(),
                description: String::new(),
                skus: vec![NewSku { price: Money::fen(1000), ..Default::default() }],
            },
        )
        .await
        .unwrap();
    m.catalog().list_product(&merchant.id, &p.product.id).await.unwrap();
    m.inventory().set_stock(&merchant.id, &p.skus[0].id, stock).await.unwrap();
    p.product.id
}

fn view(buyer: &str, product: &str, id: &str) -> NewEvent {
    NewEvent {
        event_id: Some(id.into()),
        buyer: buyer.into(),
        product_id: product.into(),
        kind: EventKind::View,
        surface: Surface::Home,
    }
}

async fn feed_follows_views_and_rules_hold(store: Arc<dyn MarketStore>) {
    let gw = Arc::new(RecordingGateway::default());
    let clock = Arc::new(ManualClock::new(t0()));
    let m = Market::builder(store).payments(gw.clone()).shipping(gw).clock(clock.clone()).build().unwrap();
    let (tea, _) = m.categories().create_category("Tea", None, RuleSpec::default()).await.unwrap();
    let mut shops = Vec::new();
    for name in ["Leaf", "Cup", "Pot"] {
        let s = m.merchants().create_merchant(NewMerchant::new(name)).await.unwrap();
        m.merchants().approve_merchant(&s.id).await.unwrap();
        m.merchants().grant_category(&s.id, &tea.id).await.unwrap();
        shops.push(s);
    }
    let a = product(&m, &shops[0], &tea, "Longjing", 5).await;
    let b = product(&m, &shops[1], &tea, "Gaiwan", 5).await;
    let c = product(&m, &shops[2], &tea, "Teapot", 5).await;
    let gone = product(&m, &shops[2], &tea, "Sold out", 1).await;
    let sus = product(&m, &shops[1], &tea, "Suspended shop's", 5).await;
    let r = m.recommend();
    // Unknown products are refused, typed; so are empty buyers.
    assert!(matches!(r.record(view("b1", "nope", "x")).await, Err(MarketError::NotFound { .. })));
    assert!(matches!(r.record(view("", &a, "x")).await, Err(MarketError::Invalid(_))));
    // Three buyers view a then b; one of them twice (the same event id: stored once).
    let mut n = 0;
    for buyer in ["b1", "b2", "b3"] {
        for (p, gap) in [(&a, 0), (&b, 60)] {
            clock.advance(std::time::Duration::from_secs(gap + 1));
            n += 1;
            r.record(view(buyer, p, &format!("e{n}"))).await.unwrap();
        }
    }
    r.record(view("b1", &a, "e1")).await.unwrap();
    assert_eq!(r.flush().await.unwrap(), 6);
    // The sold-out product goes out of stock; the suspended shop's product must not show either.
    m.inventory().set_stock(&shops[2].id, &m.catalog().product(&gone).await.unwrap().skus[0].id, 0).await.unwrap();
    m.merchants().suspend_merchant(&shops[1].id, "test").await.unwrap();
    assert_eq!(r.refit().await.unwrap(), 1);
    let rel = r.related(&a, 5).await.unwrap();
    assert!(rel.iter().all(|x| x.product_id != sus && x.product_id != gone && x.product_id != b), "{rel:?}");
    m.merchants().reinstate_merchant(&shops[1].id, "test").await.unwrap();
    assert_eq!(r.refit().await.unwrap(), 2);
    let rel = r.related(&a, 5).await.unwrap();
    assert_eq!(
        rel[0],
        FeedItem {
            product_id: b.clone(),
            merchant_id: shops[1].id.clone(),
            why: Why::Viewed { product_id: a.clone() }
        }
    );
    // A guest views a; at login the guest's history becomes the buyer's, and the feed follows it.
    r.record(view("device:g1", &a, "g1")).await.unwrap();
    assert_eq!(r.merge_guest("device:g1", "b9").await.unwrap(), 1);
    let page = r.home_feed("b9", None, 2, None).await.unwrap();
    assert_eq!(page.items[0].product_id, b);
    assert!(page.items.iter().all(|x| x.product_id != a && x.product_id != gone));
    // Pages never repeat an item.
    let next = r.home_feed("b9", page.next.as_deref(), 2, None).await.unwrap();
    for x in &next.items {
        assert!(page.items.iter().all(|y| y.product_id != x.product_id));
    }
    assert!(matches!(r.home_feed("b9", Some("junk"), 2, None).await, Err(MarketError::Invalid(_))));
    // Ranking a result list puts the buyer's taste first and ineligible products last.
    let ranked = r.rank("b9", &[gone.clone(), c.clone(), b.clone()]).await.unwrap();
    assert_eq!(ranked, [b.clone(), c.clone(), gone.clone()]);
    // Pruning by age.
    clock.advance(std::time::Duration::from_secs(2 * 86_400));
    assert_eq!(r.prune_events(1).await.unwrap(), 7);
}

async fn run(factory: Factory) {
    let fresh = factory().await;
    feed_follows_views_and_rules_hold(fresh.store).await;
    fresh.cleanup.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_feed() {
    run(stores::sqlite_factory("wxshop-rec")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_feed() {
    let Some(factory) = stores::postgres_factory("wxshop_rec") else { return };
    run(factory).await;
}
