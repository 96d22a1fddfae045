//! The marketplace bench fixture and the raw-SQL baselines, shared by `benches/market.rs` (criterion) and
//! `examples/bench.rs` (the report) through `#[path = ...] mod market_fixture;`, so both measure the same thing.
//!
//! A category with one approved merchant and `skus` SKUs (100 per product), every product listed and stocked;
//! checkout through `Market::checkout` and through the same statements written out by hand; the catalog
//! page query through `Market::browse` and as raw SQL; a concurrent checkout driver and page percentiles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wxshop::market::*;

const SKUS_PER_PRODUCT: usize = 100;
const STOCK: i64 = 1_000_000_000;

#[derive(Clone)]
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Pg(sqlx::PgPool),
}

#[derive(Clone)]
pub struct Fixture {
    pub name: &'static str,
    pub market: Market,
    pub raw: Raw,
    pub merchant: String,
    pub category: String,
    pub skus: Arc<Vec<String>>,
    pub deep_cursor: String,
    pub seq: Arc<AtomicU64>,
}

impl Fixture {
    pub fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
    pub fn spread_sku(&self, n: u64) -> &str {
        // A multiplicative hash spreads consecutive checkouts over the whole catalog.
        &self.skus[(n.wrapping_mul(2_654_435_761) % self.skus.len() as u64) as usize]
    }
}

/// The catalog size: `MARKET_BENCH_SKUS` when set, else `default`.
pub fn sku_count(default: usize) -> usize {
    std::env::var("MARKET_BENCH_SKUS").ok().and_then(|v| v.parse().ok()).unwrap_or(default).max(SKUS_PER_PRODUCT)
}

pub async fn fixture(name: &'static str, store: Arc<dyn MarketStore>, raw: Raw, sku_count: usize) -> Fixture {
    let gw = Arc::new(NoGateway);
    let market = Market::builder(store).payments(gw.clone()).shipping(gw).build().unwrap();
    let (cat, _) = market
        .categories()
        .create_category("Bench", None, RuleSpec { commission_bps: 300, ..RuleSpec::default() })
        .await
        .unwrap();
    let merchant = market.merchants().create_merchant(NewMerchant::new("Bench shop")).await.unwrap();
    market.merchants().approve_merchant(&merchant.id).await.unwrap();
    market.merchants().grant_category(&merchant.id, &cat.id).await.unwrap();
    let started = Instant::now();
    let mut skus = Vec::new();
    for p in 0..sku_count / SKUS_PER_PRODUCT {
        let np = NewProduct {
            category_id: cat.id.clone(),
            title: format!("Product {p}"),
            description: String::new(),
            skus: (0..SKUS_PER_PRODUCT)
                .map(|i| NewSku {
                    attrs: BTreeMap::from([("n".to_string(), i.to_string())]),
                    price: Money::fen(100 + ((p * SKUS_PER_PRODUCT + i) as i64 * 7919) % 100_000),
                    purchase_limit: None,
                })
                .collect(),
        };
        let d = market.catalog().create_product(&merchant.id, np).await.unwrap();
        market.catalog().list_product(&merchant.id, &d.product.id).await.unwrap();
        skus.extend(d.skus.into_iter().map(|s| s.id));
    }
    // Stock for the whole catalog in one statement (seeding only; the benches go through the API).
    let sql = "UPDATE inventory SET on_hand = $1";
    match &raw {
        Raw::Sqlite(p) => sqlx::query(sql).bind(STOCK).execute(p).await.map(|_| ()).unwrap(),
        #[cfg(feature = "postgres")]
        Raw::Pg(p) => sqlx::query(sql).bind(STOCK).execute(p).await.map(|_| ()).unwrap(),
    }
    // The cursor of a page half-way through the category (the first page's if there is only one).
    let mut q = BrowseQuery::default().category(&cat.id).limit(20);
    for _ in 0..(sku_count / SKUS_PER_PRODUCT / 2 / 20).max(1) {
        match market.catalog().browse(&q).await.unwrap().next {
            Some(c) => q = q.after(c),
            None => break,
        }
    }
    let deep_cursor = q.cursor.clone().unwrap_or_else(|| Cursor::Newest { product_id: "f".repeat(32) }.encode());
    eprintln!("{name}: seeded {} SKUs in {:.1} s", skus.len(), started.elapsed().as_secs_f64());
    Fixture {
        name,
        market,
        raw,
        merchant: merchant.id,
        category: cat.id,
        skus: Arc::new(skus),
        deep_cursor,
        seq: Arc::new(AtomicU64::new(0)),
    }
}

/// A gateway that answers instantly, so the benches measure the marketplace and its database.
#[derive(Debug)]
pub struct NoGateway;

#[async_trait::async_trait]
impl PaymentGateway for NoGateway {
    async fn prepay(&self, req: &PrepayRequest) -> wxshop::Result<PrepayTicket> {
        Ok(PrepayTicket { prepay_id: format!("wx{}", req.out_trade_no), pay_params: serde_json::json!({}) })
    }
    async fn close(&self, _: &CloseRequest) -> wxshop::Result<()> {
        Ok(())
    }
    async fn refund(&self, r: &RefundRequest) -> wxshop::Result<RefundTicket> {
        Ok(RefundTicket { refund_id: r.out_refund_no.clone(), succeeded: true })
    }
}

#[async_trait::async_trait]
impl ShippingGateway for NoGateway {
    async fn upload(&self, _: &ShippingUpload) -> wxshop::Result<()> {
        Ok(())
    }
}

pub async fn wx_checkout(f: &Fixture, sku: &str, n: u64) {
    let co = f
        .market
        .orders()
        .checkout(CheckoutRequest::new(format!("b{n}"), format!("k{n}"), vec![CheckoutLine::new(sku, 1)]))
        .await;
    co.unwrap();
}

/// The statements `Market::checkout` runs for a one-line, one-merchant checkout, written out by hand:
/// the same reads, inserts, conditional reservation and prepay update, without the service around them.
macro_rules! raw_checkout {
    ($pool:expr, $begin:expr, $f:expr, $sku:expr, $n:expr) => {{
        let (f, sku, n): (&Fixture, &str, u64) = ($f, $sku, $n);
        let now = chrono::Utc::now().timestamp_millis();
        let (gid, oid) = (new_id(), new_id());
        let buyer = format!("rb{n}");
        let key = format!("{buyer}:rk{n}");
        let mut tx = $pool.begin_with($begin).await.unwrap();
        let _: Option<(String, String)> =
            sqlx::query_as("SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND idem_key = $2")
                .bind("checkout")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .unwrap();
        let (price, product_id): (i64, String) = sqlx::query_as(
            "SELECT s.price_fen, s.product_id FROM skus s JOIN products p ON p.merchant_id = s.merchant_id \
             AND p.product_id = s.product_id JOIN merchants m ON m.merchant_id = s.merchant_id WHERE s.sku_id = $1",
        )
        .bind(sku)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let (version, bps): (i64, i64) = sqlx::query_as(
            "SELECT r.version, r.commission_bps FROM category_rules r WHERE r.category_id = $1 AND r.version = \
             (SELECT MAX(r2.version) FROM category_rules r2 WHERE r2.category_id = r.category_id)",
        )
        .bind(&f.category)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let commission = (price * bps + 5000) / 10000;
        sqlx::query("INSERT INTO idempotency_keys (scope, idem_key, request_hash, response, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, idem_key) DO NOTHING")
            .bind("checkout").bind(&key).bind("h").bind(&gid).bind(now).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO checkout_groups (group_id, buyer_openid, status, subtotal_fen, discount_fen, total_fen, merchant_count, pay_deadline, version, created_at, updated_at) VALUES ($1, $2, 'AwaitingPayment', $3, 0, $3, 1, $4, 1, $5, $5)")
            .bind(&gid).bind(&buyer).bind(price).bind(now + 900_000).bind(now).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO payments (group_id, buyer_openid, mode, amount_fen, status, prepay_id, pay_params, transaction_id, paid_at, refunded_fen, version, created_at, updated_at) VALUES ($1, $2, 'Jsapi', $3, 'Initiated', NULL, NULL, NULL, NULL, 0, 1, $4, $4)")
            .bind(&gid).bind(&buyer).bind(price).bind(now).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO merchant_orders (merchant_id, order_id, group_id, buyer_openid, status, subtotal_fen, discount_fen, total_fen, commission_fen, ship_sla_hours, auto_confirm_days, after_sale_days, version, created_at, updated_at) VALUES ($1, $2, $3, $4, 'PendingPayment', $5, 0, $5, $6, 48, 10, 7, 1, $7, $7)")
            .bind(&f.merchant).bind(&oid).bind(&gid).bind(&buyer).bind(price).bind(commission).bind(now).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO order_lines (merchant_id, order_id, line_no, sku_id, product_id, title, attrs, category_id, rule_version, unit_price_fen, qty, line_total_fen, discount_fen, commission_bps, commission_fen, shipped_qty) VALUES ($1, $2, 1, $3, $4, 'p', '{}', $5, $6, $7, 1, $7, 0, $8, $9, 0)")
            .bind(&f.merchant).bind(&oid).bind(sku).bind(&product_id).bind(&f.category).bind(version).bind(price).bind(bps).bind(commission).execute(&mut *tx).await.unwrap();
        let rid = new_id();
        sqlx::query("INSERT INTO reservations (merchant_id, reservation_id, group_id, order_id, sku_id, qty, status, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, 'Active', $6, $7, $7)")
            .bind(&f.merchant).bind(&rid).bind(&gid).bind(&oid).bind(sku).bind(now + 900_000).bind(now).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO stock_movements (merchant_id, movement_id, sku_id, kind, on_hand_delta, reserved_delta, ref_id, at) VALUES ($1, $2, $3, 'Reserve', 0, 1, $4, $5)")
            .bind(&f.merchant).bind(new_id()).bind(sku).bind(&rid).bind(now).execute(&mut *tx).await.unwrap();
        for (agg, id) in [("order", &oid), ("group", &gid)] {
            sqlx::query("INSERT INTO audit_log (audit_id, merchant_id, aggregate_type, aggregate_id, actor, action, from_state, to_state, reason, at) VALUES ($1, NULL, $2, $3, $4, 'created', NULL, 'x', NULL, $5)")
                .bind(new_id()).bind(agg).bind(id).bind(&buyer).bind(now).execute(&mut *tx).await.unwrap();
            sqlx::query("INSERT INTO outbox (event_id, merchant_id, aggregate_type, aggregate_id, event_type, payload, created_at) VALUES ($1, NULL, $2, $3, 'created', '{}', $4)")
                .bind(new_id()).bind(agg).bind(id).bind(now).execute(&mut *tx).await.unwrap();
            if agg == "order" {
                continue;
            }
            sqlx::query("INSERT INTO timers (timer_id, merchant_id, aggregate_type, aggregate_id, action, due_at, status, attempts, last_error, created_at, updated_at) VALUES ($1, NULL, 'group', $2, 'CloseUnpaid', $3, 'Scheduled', 0, NULL, $4, $4)")
                .bind(new_id()).bind(id).bind(now + 900_000).bind(now).execute(&mut *tx).await.unwrap();
        }
        let got: Vec<String> = sqlx::query_scalar(
            "WITH d (d_merchant, d_sku, d_qty) AS (VALUES ($1, $2, $3)) UPDATE inventory SET reserved = \
             inventory.reserved + d.d_qty, updated_at = $4 FROM d WHERE inventory.merchant_id = d.d_merchant \
             AND inventory.sku_id = d.d_sku AND inventory.on_hand - inventory.reserved >= d.d_qty RETURNING sku_id",
        )
        .bind(&f.merchant)
        .bind(sku)
        .bind(1i64)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert_eq!(got.len(), 1);
        tx.commit().await.unwrap();
        let mut tx = $pool.begin_with($begin).await.unwrap();
        let (v,): (i64,) = sqlx::query_as("SELECT version FROM payments WHERE group_id = $1").bind(&gid).fetch_one(&mut *tx).await.unwrap();
        sqlx::query("UPDATE payments SET prepay_id = $1, pay_params = '{}', version = $2, updated_at = $3 WHERE group_id = $4 AND version = $5")
            .bind(format!("wx{gid}")).bind(v + 1).bind(now).bind(&gid).bind(v).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }};
}

pub async fn raw_checkout(f: &Fixture, sku: &str, n: u64) {
    match &f.raw {
        Raw::Sqlite(p) => raw_checkout!(p, "BEGIN IMMEDIATE", f, sku, n),
        #[cfg(feature = "postgres")]
        Raw::Pg(p) => raw_checkout!(p, "BEGIN", f, sku, n),
    }
}

pub const PAGE_SQL: &str = "SELECT p.merchant_id, p.product_id, p.category_id, p.title, p.description, p.status, \
     p.min_price_fen, p.max_price_fen, p.version, p.created_at, p.updated_at FROM products p JOIN merchants m \
     ON m.merchant_id = p.merchant_id WHERE p.status = $1 AND m.sellable = $2 AND p.category_id = $3 \
     AND ($4 = '' OR p.product_id < $4) ORDER BY p.product_id DESC LIMIT $5";

pub type PageRow = (String, String, String, String, String, String, i64, i64, i64, i64, i64);

pub async fn raw_page(f: &Fixture, after: &str) -> usize {
    macro_rules! run {
        ($p:expr) => {
            sqlx::query_as::<_, PageRow>(PAGE_SQL)
                .bind("Listed")
                .bind(true)
                .bind(&f.category)
                .bind(after)
                .bind(21i64)
                .fetch_all($p)
                .await
                .unwrap()
                .len()
        };
    }
    match &f.raw {
        Raw::Sqlite(p) => run!(p),
        #[cfg(feature = "postgres")]
        Raw::Pg(p) => run!(p),
    }
}

pub async fn wx_page(f: &Fixture, deep: bool) -> usize {
    let mut q = BrowseQuery::default().category(&f.category).limit(20);
    if deep {
        q = q.after(f.deep_cursor.clone());
    }
    f.market.catalog().browse(&q).await.unwrap().items.len()
}

pub fn deep_after(cursor: &str) -> String {
    match Cursor::decode(cursor) {
        Ok(Cursor::Newest { product_id }) => product_id,
        _ => String::new(),
    }
}

/// Orders/s with `clients` concurrent checkouts for `secs`.
pub async fn concurrent_rate(f: &Fixture, clients: usize, secs: f64, hot: bool, raw: bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (f, done) = (f.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = f.next();
                let sku = if hot { f.skus[0].clone() } else { f.spread_sku(n).to_string() };
                if raw {
                    raw_checkout(&f, &sku, n).await
                } else {
                    wx_checkout(&f, &sku, n).await
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

pub async fn page_percentiles(f: &Fixture, deep: bool, raw: bool, n: usize) -> (Duration, Duration) {
    let after = deep_after(&f.deep_cursor);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if raw {
            raw_page(f, if deep { &after } else { "" }).await;
        } else {
            wx_page(f, deep).await;
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    (samples[n / 2], samples[n * 99 / 100])
}
