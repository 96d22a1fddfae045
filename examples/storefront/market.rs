//! The marketplace: catalog, cart, checkout, payment, orders for buyers; products, stock and shipping
//! for merchants.
//!
//! Buyer routes (`Authorization: Bearer <session_token>`; the cart also works for guests with
//! `X-Cart-Token: <anonymous token>`):
//!
//! | route | what |
//! |---|---|
//! | `GET /api/products?category=&merchant=&min=&max=&q=&sort=newest\|price&limit=&cursor=` | browse |
//! | `GET /api/products/{id}` | a product, its SKUs and their stock |
//! | `GET /api/cart` | the cart, re-priced, grouped by merchant |
//! | `POST /api/cart/items` `{sku_id, qty}` | add units |
//! | `PUT /api/cart/items/{sku_id}` `{qty}` | set units (0 removes) |
//! | `POST /api/cart/merge` `{guest_token}` | merge a guest cart at login |
//! | `POST /api/checkout` `{idempotency_key, lines?}` | check out the cart (or the given lines) |
//! | `GET /api/checkout/{group_id}` | a checkout: group, orders, payment (`pay_params` for `wx.requestPayment`) |
//! | `POST /api/checkout/{group_id}/cancel` | cancel an unpaid checkout |
//! | `GET /api/market/orders?cursor=&limit=` · `GET /api/market/orders/{id}` | order list and detail |
//! | `POST /api/market/orders/{id}/receive` | confirm receipt |
//!
//! Lists page one way: `?cursor=<next of the previous page>&limit=1..100` answered `{items, next}`; a
//! malformed cursor or an out-of-range limit is 400 `invalid` on every route.
//!
//! Payment goes through WeChat Pay (`pay.rs` builds the client: the emulator's merchant, or one from
//! the environment): one combined payment for several merchants, and `/wx/pay/notify` hands the
//! verified notification to the market.
//!
//! Merchant routes (`X-Merchant-Key: <key>`: an owner key is printed once, at the first run, for each seeded
//! merchant; `access.rs` issues, rotates and revokes keys):
//!
//! | route | what |
//! |---|---|
//! | `POST /api/merchant/products` `{category_id, title, description, skus}` | create a product (Draft) |
//! | `POST /api/merchant/products/{id}/list` · `/delist` | list or delist |
//! | `GET /api/merchant/skus/{sku_id}/stock` | on hand, reserved, available, `version` (also the `ETag`) |
//! | `PUT /api/merchant/skus/{sku_id}/stock` `{on_hand}` + `If-Match: "<version>"` | set stock (412 if it changed since; `If-Match: *` overwrites) |
//! | `POST /api/merchant/skus/{sku_id}/stock/adjust` `{delta}` | add or remove units relatively |
//! | `GET /api/merchant/me` | the merchant and the categories it may sell in |
//! | `GET /api/merchant/orders?status=Paid&cursor=&limit=` | orders |
//! | `POST /api/merchant/orders/{id}/ship` `{tracking_no, express_company, items?, receiver_phone?}` | ship a parcel (shipping info uploaded to WeChat; SF Express: the phone, sent masked, defaults to the buyer's bound phone) |
//! | `POST /api/merchant/orders/{id}/shipping/correct` `{replaces?, tracking_no, express_company, receiver_phone?}` | correct the waybill once (`shipping.rs`) |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use wxshop::market::access::{KeyScope, Role};
use wxshop::market::{
    BrowseQuery, BrowseSort, CartOwner, CheckoutLine, CheckoutRequest, Market, MarketError, Money, MpShippingGateway,
    NewMerchant, NewProduct, NewSku, OrderStatus, PruneReport, RecordingGateway, Retention, RuleSpec, ShipRequest,
    WechatPayGateway, store,
};

use crate::AppState;
use crate::access::MerchantAuth;
use crate::api::{Answer, ApiError, Buyer, ok};
use crate::api::{Body, Params};
use crate::routes::{Auth, Routes, doc};

/// The marketplace part of the state.
#[derive(Clone)]
pub struct MarketState {
    /// The marketplace service.
    pub market: Market,
    /// The owner keys issued at this start (the first run), by merchant id: shown once at startup and
    /// used by `--demo`; the database keeps only their digests.
    pub issued_keys: Arc<Vec<(String, String)>>,
    /// The seeded merchants, by name.
    pub seeded: Arc<Vec<(String, String)>>,
    /// The WeChat Pay gateway, when WeChat Pay is configured (its notify URL follows the server).
    pub pay_gateway: Option<Arc<WechatPayGateway>>,
    /// The demo's throwaway PostgreSQL schema, dropped by [`MarketState::shutdown`].
    #[cfg(feature = "postgres")]
    demo_schema: Option<store::PgStore>,
}

impl MarketState {
    /// Points WeChat Pay notifications at this server (unless `WXSHOP_NOTIFY_URL` says otherwise).
    pub fn serving_at(&self, base: &str) {
        if let Some(gw) = &self.pay_gateway
            && std::env::var("WXSHOP_NOTIFY_URL").is_err()
        {
            gw.set_notify_url(format!("{base}/wx/pay/notify"));
        }
    }

    /// Drops what the demo created.
    pub async fn shutdown(&self) {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.demo_schema.clone()
            && let Err(e) = pg.drop_schema().await
        {
            eprintln!("market: could not drop the demo schema: {e}");
        }
    }
}

/// Opens the store (PostgreSQL when `DATABASE_URL` is set, SQLite otherwise), builds the market over
/// WeChat Pay (sales marked for profit sharing, 分账) and shipping-info management, seeds two merchants,
/// adds the platform as a profit-sharing receiver of each sub-merchant, and starts the timer loop.
pub async fn build(
    demo_mode: bool,
    client: &wxshop::Client,
    pay: Option<wxshop::pay::PayClient>,
) -> wxshop::Result<MarketState> {
    let (store, demo_schema) = open_store(demo_mode).await?;
    let notify_url =
        std::env::var("WXSHOP_NOTIFY_URL").unwrap_or_else(|_| "http://127.0.0.1:3000/wx/pay/notify".to_string());
    // A released settlement shares commission (and promoter fees) out of the frozen payment and
    // unfreezes the rest, so every sale is paid with `settle_info.profit_sharing`.
    let pay_gateway =
        pay.clone().map(|p| Arc::new(WechatPayGateway::new(p, client.appid(), notify_url).with_profit_sharing(true)));
    let builder = Market::builder(store).shipping(Arc::new(MpShippingGateway::new(client.clone())));
    let market = match &pay_gateway {
        Some(gw) => builder.payments(gw.clone()).build()?,
        None => {
            println!("market: WeChat Pay is off; prepay orders are only recorded");
            builder.payments(Arc::new(RecordingGateway::default())).build()?
        }
    };
    let (issued, seeded) = seed(&market, pay.as_ref().map(|p| p.mchid())).await?;
    if let Some(p) = &pay {
        let n = add_profit_sharing_receivers(&market, p, client.appid()).await?;
        println!("market: the platform ({}) is a profit-sharing receiver of {n} sub-merchant(s)", p.mchid());
    }
    let timers = market.clone();
    tokio::spawn(async move {
        // Lost payment notifications are reconciled by querying WeChat Pay: once at startup (a crash
        // may have eaten one), then every RECONCILE_EVERY ticks. Housekeeping (processed outbox rows
        // and notification dedupe rows older than 30 days) runs at startup and every PRUNE_EVERY ticks.
        for tick in 0u64.. {
            if tick % PRUNE_EVERY == 0 {
                match timers.ops().prune(&Retention::default()).await {
                    Ok(r) if r != PruneReport::default() => println!(
                        "market: pruned {} outbox events, {} acks, {} notification dedupe rows",
                        r.events, r.acks, r.notices
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "market housekeeping"),
                }
            }
            if tick % RECONCILE_EVERY == 0 {
                match timers.payments().reconcile_pending_payments(timers.now()).await {
                    Ok(r) if tick == 0 => println!(
                        "market: reconciled at startup: {} checked, {} applied, {} failed",
                        r.checked, r.applied, r.failed
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "payment reconciliation"),
                }
                // Yesterday's trade bill (Beijing time; WeChat Pay has it from 10:00): what a lost
                // notification hid. Idempotent, so running it every reconciliation round is harmless.
                if tick % BILL_EVERY == 0 {
                    let yesterday = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive().pred_opt();
                    if let Some(day) = yesterday {
                        match timers.payments().reconcile_trade_bill(day).await {
                            Ok(r) if r.payments_applied + r.refunds_applied > 0 || !r.failed.is_empty() => {
                                println!("market: trade bill {day}: {r:?}")
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, %day, "trade-bill reconciliation"),
                        }
                    }
                }
                // Compensation transfers whose MCHTRANSFER.BILL.FINISHED got lost, likewise.
                if let Err(e) = timers.governance().transfers().reconcile_pending_transfers(timers.now()).await {
                    tracing::warn!(error = %e, "transfer reconciliation");
                }
            }
            if let Err(e) = timers.ops().run_due_timers(timers.now()).await {
                tracing::warn!(error = %e, "market timers");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    #[cfg(not(feature = "postgres"))]
    let () = demo_schema;
    Ok(MarketState {
        market,
        issued_keys: Arc::new(issued),
        seeded: Arc::new(seeded),
        pay_gateway,
        #[cfg(feature = "postgres")]
        demo_schema,
    })
}

/// Timer ticks (seconds) between payment reconciliations.
const RECONCILE_EVERY: u64 = 10;
/// Timer ticks (seconds) between trade-bill reconciliations of the day before: hourly.
const BILL_EVERY: u64 = 3600;
/// Timer ticks (seconds) between housekeeping runs ([`Ops::prune`](crate::market::handles::Ops::prune)): once an hour.
const PRUNE_EVERY: u64 = 3600;

/// WeChat Pay shares only to receivers added beforehand: the platform's merchant id under each
/// sub-merchant, whose own (partner-mode) payments share the commission to it (relation
/// `SERVICE_PROVIDER`; the name is the platform's full name, `STOREFRONT_PLATFORM_NAME`). Adding again
/// is harmless, so this runs at every startup; a real platform adds it when a sub-merchant onboards.
/// Payments the platform collects itself (JSAPI, combined) need no receiver for the commission.
async fn add_profit_sharing_receivers(m: &Market, pay: &wxshop::pay::PayClient, appid: &str) -> wxshop::Result<usize> {
    use wxshop::pay::profitsharing::AddReceiver;
    let name = std::env::var("STOREFRONT_PLATFORM_NAME").unwrap_or_else(|_| "wxshop 示例平台有限公司".into());
    let mut n = 0;
    for merchant in m.merchants().merchants(1000).await? {
        let Some(sub) = merchant.sub_mchid else { continue };
        let r = AddReceiver::merchant(appid, pay.mchid(), "SERVICE_PROVIDER").name(name.as_str()).sub_mchid(sub);
        pay.profit_sharing().add_receiver(r).await?;
        n += 1;
    }
    Ok(n)
}

#[cfg(feature = "postgres")]
type DemoSchema = Option<store::PgStore>;
#[cfg(not(feature = "postgres"))]
type DemoSchema = ();

async fn open_store(demo_mode: bool) -> wxshop::Result<(Arc<dyn store::MarketStore>, DemoSchema)> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        #[cfg(feature = "postgres")]
        if demo_mode {
            // The demo keeps to a schema of its own, so it never mixes with other data in the database.
            let schema = format!("storefront_demo_{}", wxshop::market::new_id());
            println!("market: PostgreSQL (schema {schema})");
            let pg = store::PgStore::open_in_schema(&url, &schema).await?;
            return Ok((Arc::new(pg.clone()), Some(pg)));
        }
        // Several instances share one schema: MARKET_PG_SCHEMA names it (created if missing, never dropped).
        #[cfg(feature = "postgres")]
        if let Ok(schema) = std::env::var("MARKET_PG_SCHEMA")
            && !schema.is_empty()
        {
            println!("market: PostgreSQL (shared schema {schema})");
            let pg = store::PgStore::open_in_schema(&url, &schema).await?;
            return Ok((Arc::new(pg), DemoSchema::default()));
        }
        println!("market: PostgreSQL from DATABASE_URL");
        return Ok((store::open(&url).await?, DemoSchema::default()));
    }
    let url = if demo_mode {
        "sqlite::memory:".to_string()
    } else if let Ok(url) = std::env::var("MARKET_DB")
        && !url.is_empty()
    {
        url
    } else {
        let dir = data_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| wxshop::Error::Config(format!("cannot create the data directory {}: {e}", dir.display())))?;
        format!("sqlite://{}", dir.join("storefront.db").display())
    };
    println!("market: SQLite at {url}");
    Ok((store::open(&url).await?, DemoSchema::default()))
}

/// Where the storefront keeps its state (the SQLite database): `--data-dir DIR`, else
/// `STOREFRONT_DATA_DIR`, else the user's data directory (`$XDG_DATA_HOME/wxshop-storefront` or
/// `~/.local/share/wxshop-storefront`), else `./data` — never the directory it happens to start in.
pub fn data_dir() -> std::path::PathBuf {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if let Some(dir) = a.strip_prefix("--data-dir=") {
            return dir.into();
        }
        if a == "--data-dir"
            && let Some(dir) = args.next()
        {
            return dir.into();
        }
    }
    let env_dir = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    if let Some(dir) = env_dir("STOREFRONT_DATA_DIR") {
        return dir;
    }
    if let Some(xdg) = env_dir("XDG_DATA_HOME") {
        return xdg.join("wxshop-storefront");
    }
    if let Some(home) = env_dir("HOME") {
        return home.join(".local/share/wxshop-storefront");
    }
    "data".into()
}

/// Two merchants (one paid directly, one a WeChat Pay sub-merchant) with listed, stocked products, and
/// the platform's first governance policies: commission is shared to its own merchant id
/// (`platform_mchid`), and fake-shipment detection is on because this server takes carrier scans
/// (`POST /admin/governance/orders/{id}/carrier-scan`, fed by the tracking provider).
async fn seed(
    m: &Market,
    platform_mchid: Option<&str>,
) -> wxshop::Result<(Vec<(String, String)>, Vec<(String, String)>)> {
    let mut keys = Vec::new();
    let mut seeded = Vec::new();
    let fresh = m.merchants().merchants(1).await?.is_empty();
    if fresh {
        let mut cfg = m.governance().governance_config().await?;
        cfg.carrier_tracking = true;
        if let Some(mchid) = platform_mchid {
            cfg.settlement.platform_mchid = mchid.to_string();
        }
        m.governance().set_governance_config(&cfg).await?;
        let (tea, _) = m
            .categories()
            .create_category("Tea", None, RuleSpec { commission_bps: 300, ..RuleSpec::default() })
            .await?;
        let (silk, _) = m
            .categories()
            .create_category("Silk", None, RuleSpec { commission_bps: 500, ..RuleSpec::default() })
            .await?;
        for (name, sub, cat, products) in [
            ("Leaf & Co", None, &tea, vec![("West Lake Longjing", 8800, 20), ("Tieguanyin", 6600, 15)]),
            ("Silk Road", Some("1900000109"), &silk, vec![("Silk scarf", 19900, 5), ("Silk pillowcase", 12900, 8)]),
        ] {
            let mut nm = NewMerchant::new(name);
            nm.sub_mchid = sub.map(str::to_string);
            let merchant = m.merchants().create_merchant(nm).await?;
            m.merchants().approve_merchant(&merchant.id).await?;
            m.merchants().grant_category(&merchant.id, &cat.id).await?;
            for (title, price, stock) in products {
                let p = m
                    .catalog()
                    .create_product(
                        &merchant.id,
                        NewProduct {
                            category_id: cat.id.clone(),
                            title: title.into(),
                            description: String::new(),
                            skus: vec![NewSku { price: Money::fen(price), ..Default::default() }],
                        },
                    )
                    .await?;
                m.catalog().list_product(&merchant.id, &p.product.id).await?;
                m.inventory().set_stock(&merchant.id, &p.skus[0].id, stock).await?;
            }
        }
    }
    for merchant in m.merchants().merchants(100).await? {
        // Keys are issued once, with the seed; later starts find only their digests.
        if fresh {
            let issued = m
                .access()
                .issue_key(KeyScope::merchant(&merchant.id, Role::MerchantOwner), "seeded owner", None)
                .await?;
            println!(
                "market: merchant {:?} owner key (shown once, keep it): {}",
                merchant.name,
                issued.secret.expose()
            );
            keys.push((merchant.id.clone(), issued.secret.expose().to_string()));
        }
        seeded.push((merchant.name, merchant.id));
    }
    Ok((keys, seeded))
}

pub fn routes() -> Routes {
    Routes::new("market")
        .get("/api/products", browse, doc("Browse listed products", Auth::Public).query::<BrowseParams>())
        .get("/api/products/{id}", product, doc("A product, its SKUs and their stock", Auth::Public))
        .get("/api/cart", cart, doc("The cart, re-priced, grouped by merchant", Auth::BuyerOrGuest))
        .post("/api/cart/items", cart_add, doc("Add units to the cart", Auth::BuyerOrGuest).body::<QtyBody>())
        .put(
            "/api/cart/items/{sku_id}",
            cart_set,
            doc("Set a cart line's units (0 removes)", Auth::BuyerOrGuest).body::<QtyBody>(),
        )
        .post("/api/cart/merge", cart_merge, doc("Merge a guest cart at login", Auth::Buyer).body::<MergeBody>())
        .post("/api/checkout", checkout, doc("Check out the cart (or the given lines)", Auth::Buyer))
        .get(
            "/api/checkout/{group_id}",
            checkout_view,
            doc("A checkout: group, orders, payment parameters", Auth::Buyer),
        )
        .post("/api/checkout/{group_id}/cancel", cancel, doc("Cancel an unpaid checkout", Auth::Buyer))
        .get("/api/market/orders", orders, doc("The buyer's orders", Auth::Buyer).query::<PageParams>())
        .get("/api/market/orders/{id}", order, doc("A buyer's order", Auth::Buyer))
        .post("/api/market/orders/{id}/receive", receive, doc("Confirm receipt", Auth::Buyer))
        .post("/api/merchant/products", create_product, doc("Create a product (Draft)", Auth::Merchant))
        .post("/api/merchant/products/{id}/list", list_product, doc("List a product", Auth::Merchant))
        .post("/api/merchant/products/{id}/delist", delist_product, doc("Delist a product", Auth::Merchant))
        .get(
            "/api/merchant/skus/{sku_id}/stock",
            stock,
            doc("A SKU's stock: on hand, reserved, available", Auth::Merchant),
        )
        .put(
            "/api/merchant/skus/{sku_id}/stock",
            set_stock,
            doc("Set a SKU's stock on hand", Auth::Merchant).body::<StockBody>(),
        )
        .post(
            "/api/merchant/skus/{sku_id}/stock/adjust",
            adjust_stock,
            doc("Adjust a SKU's stock by a delta", Auth::Merchant).body::<AdjustBody>(),
        )
        .get(
            "/api/merchant/me",
            merchant_me,
            doc("The merchant, its status and the categories it may sell in", Auth::Merchant),
        )
        .get(
            "/api/merchant/orders",
            merchant_orders,
            doc("The merchant's orders", Auth::Merchant).query::<PageParams>(),
        )
        .post(
            "/api/merchant/orders/{id}/ship",
            ship,
            doc("Ship a parcel (shipping info uploaded to WeChat)", Auth::Merchant),
        )
}

/// The cart owner: the signed-in buyer, or a guest by `X-Cart-Token`.
pub struct Shopper(CartOwner);

impl FromRequestParts<AppState> for Shopper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            let b = Buyer::from_request_parts(parts, state).await?;
            return Ok(Shopper(CartOwner::buyer(b.openid)));
        }
        let token =
            parts.headers.get("x-cart-token").and_then(|v| v.to_str().ok()).ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "sign in, or send X-Cart-Token for a guest cart")
            })?;
        Ok(Shopper(CartOwner::guest(token)))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
struct BrowseParams {
    category: Option<String>,
    merchant: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    q: Option<String>,
    sort: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn browse(State(s): State<AppState>, Params(p): Params<BrowseParams>) -> Answer {
    let q = BrowseQuery {
        category_id: p.category,
        merchant_id: p.merchant,
        min_price: p.min.map(Money::fen),
        max_price: p.max.map(Money::fen),
        text: p.q,
        sort: match p.sort.as_deref() {
            None | Some("newest") => BrowseSort::Newest,
            Some("price") => BrowseSort::PriceAsc,
            Some(other) => {
                return Err(MarketError::Invalid(format!("unknown sort {other:?}: use newest or price")).into());
            }
        },
        limit: p.limit.unwrap_or(20),
        cursor: p.cursor,
    };
    ok(s.market.market.catalog().browse(&q).await?)
}

async fn product(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    let m = &s.market.market;
    let d = m.catalog().product(&id).await?;
    let mut stock = serde_json::Map::new();
    for sku in &d.skus {
        stock.insert(sku.id.clone(), json!(m.inventory().stock(&sku.id).await?.available()));
    }
    ok(json!({ "product": d.product, "skus": d.skus, "available": stock }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct QtyBody {
    sku_id: Option<String>,
    qty: i64,
}

async fn cart(State(s): State<AppState>, who: Shopper) -> Answer {
    ok(s.market.market.carts().cart(&who.0).await?)
}

async fn cart_add(State(s): State<AppState>, who: Shopper, Body(b): Body<QtyBody>) -> Answer {
    let sku = b.sku_id.ok_or_else(|| MarketError::Invalid("sku_id is required".into()))?;
    ok(s.market.market.carts().cart_add(&who.0, &sku, b.qty).await?)
}

async fn cart_set(State(s): State<AppState>, who: Shopper, Path(sku): Path<String>, Body(b): Body<QtyBody>) -> Answer {
    ok(s.market.market.carts().cart_set(&who.0, &sku, b.qty).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MergeBody {
    guest_token: String,
}

async fn cart_merge(State(s): State<AppState>, buyer: Buyer, Body(b): Body<MergeBody>) -> Answer {
    ok(s.market.market.carts().merge_carts(&b.guest_token, &buyer.openid).await?)
}

#[derive(Deserialize)]
struct CheckoutBody {
    idempotency_key: String,
    #[serde(default)]
    lines: Option<Vec<CheckoutLine>>,
    #[serde(default)]
    expected_total: Option<Money>,
}

async fn checkout(State(s): State<AppState>, buyer: Buyer, Body(b): Body<CheckoutBody>) -> Answer {
    let m = &s.market.market;
    let co = match b.lines {
        Some(lines) => {
            let mut r = CheckoutRequest::new(&buyer.openid, &b.idempotency_key, lines);
            r.expected_total = b.expected_total;
            m.orders().checkout(r).await?
        }
        None => m.carts().checkout_cart(&buyer.openid, &b.idempotency_key).await?,
    };
    ok(co)
}

async fn cancel(State(s): State<AppState>, buyer: Buyer, Path(group_id): Path<String>) -> Answer {
    ok(s.market.market.orders().cancel_checkout(&buyer.openid, &group_id).await?)
}

async fn checkout_view(State(s): State<AppState>, buyer: Buyer, Path(group_id): Path<String>) -> Answer {
    let co = s.market.market.orders().checkout_view(&group_id).await?;
    if co.group.buyer_openid != buyer.openid {
        return Err(MarketError::NotFound { entity: "checkout", id: group_id }.into());
    }
    ok(co)
}

/// Every list pages the same way: `?cursor=<the previous page's next>&limit=1..100`, answered
/// `{items, next}`; a malformed cursor or limit is 400 (`after` is accepted for `cursor`).
#[derive(Deserialize, utoipa::IntoParams)]
struct PageParams {
    #[serde(alias = "after")]
    cursor: Option<String>,
    limit: Option<i64>,
    status: Option<String>,
}

async fn orders(State(s): State<AppState>, buyer: Buyer, Params(p): Params<PageParams>) -> Answer {
    ok(s.market.market.orders().buyer_orders(&buyer.openid, p.cursor.as_deref(), p.limit.unwrap_or(20)).await?)
}

async fn order(State(s): State<AppState>, buyer: Buyer, Path(id): Path<String>) -> Answer {
    let d = s.market.market.orders().order(&id).await?;
    if d.order.buyer_openid != buyer.openid {
        return Err(MarketError::NotFound { entity: "order", id }.into());
    }
    ok(d)
}

async fn receive(State(s): State<AppState>, buyer: Buyer, Path(id): Path<String>) -> Answer {
    ok(s.market.market.orders().confirm_receipt(&buyer.openid, &id).await?)
}

async fn create_product(State(s): State<AppState>, me: MerchantAuth, Body(p): Body<NewProduct>) -> Answer {
    ok(s.market.market.catalog().create_product(&me.0, p).await?)
}

async fn list_product(State(s): State<AppState>, me: MerchantAuth, Path(id): Path<String>) -> Answer {
    ok(s.market.market.catalog().list_product(&me.0, &id).await?)
}

async fn delist_product(State(s): State<AppState>, me: MerchantAuth, Path(id): Path<String>) -> Answer {
    ok(s.market.market.catalog().delist_product(&me.0, &id).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct StockBody {
    on_hand: i64,
}

/// `GET /api/merchant/me`: the signed-in merchant (status, restrictions) and the categories it may sell in.
async fn merchant_me(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    let merchant = s.market.market.merchants().merchant(&me.0).await?;
    let categories = s.market.market.merchants().merchant_categories(&me.0).await?;
    Ok(Json(json!({ "merchant": merchant, "categories": categories })))
}

fn stock_json(sku_id: &str, l: &wxshop::market::StockLevel) -> Value {
    json!({ "sku_id": sku_id, "on_hand": l.on_hand, "reserved": l.reserved, "available": l.available(),
            "version": l.on_hand.to_string() })
}

/// A stock answer with its version as the `ETag`: the on-hand figure, which every sale and every
/// adjustment changes, so `If-Match` with it makes an absolute set refuse to overwrite them.
fn stock_answer(sku_id: &str, l: &wxshop::market::StockLevel) -> axum::response::Response {
    use axum::response::IntoResponse;
    let etag = format!("\"{}\"", l.on_hand);
    ([(axum::http::header::ETAG, etag)], Json(stock_json(sku_id, l))).into_response()
}

/// `GET /api/merchant/skus/{sku_id}/stock`: on hand, reserved by unpaid orders, available, and the
/// version (`ETag`) for a conditional `PUT` (the merchant's own SKUs only; another merchant's is 404).
async fn stock(
    State(s): State<AppState>,
    me: MerchantAuth,
    Path(sku): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let level = s.market.market.inventory().merchant_stock(&me.0, &sku).await?;
    Ok(stock_answer(&sku, &level))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AdjustBody {
    delta: i64,
}

/// `POST /api/merchant/skus/{sku_id}/stock/adjust` `{"delta": n}`: a relative change (goods received,
/// breakage), applied atomically, so it never overwrites concurrent sales the way an absolute set can.
async fn adjust_stock(
    State(s): State<AppState>,
    me: MerchantAuth,
    Path(sku): Path<String>,
    Body(b): Body<AdjustBody>,
) -> Result<axum::response::Response, ApiError> {
    let level = s.market.market.inventory().adjust_stock(&me.0, &sku, b.delta).await?;
    Ok(stock_answer(&sku, &level))
}

/// `PUT /api/merchant/skus/{sku_id}/stock` `{"on_hand": n}` with `If-Match: "<version>"` (from `GET`):
/// 412 `version_mismatch` when a sale or an adjustment came in between, 428 without `If-Match`
/// (`If-Match: *` sets blindly, for a stocktake that must win).
async fn set_stock(
    State(s): State<AppState>,
    me: MerchantAuth,
    Path(sku): Path<String>,
    headers: axum::http::HeaderMap,
    Body(b): Body<StockBody>,
) -> Result<axum::response::Response, ApiError> {
    let m = &s.market.market;
    let if_match = headers.get(axum::http::header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::trim);
    let level = match if_match {
        None => {
            let mut e = ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "send If-Match with the stock version from GET (or If-Match: * to overwrite)",
            );
            e.kind = "precondition_required";
            return Err(e);
        }
        Some("*") => m.inventory().set_stock(&me.0, &sku, b.on_hand).await?,
        Some(tag) => {
            let expected = tag
                .trim_start_matches("W/")
                .trim_matches('"')
                .parse::<i64>()
                .map_err(|_| MarketError::Invalid(format!("If-Match {tag:?} is not a stock version")))?;
            m.inventory().set_stock_if(&me.0, &sku, expected, b.on_hand).await?
        }
    };
    Ok(stock_answer(&sku, &level))
}

async fn merchant_orders(State(s): State<AppState>, me: MerchantAuth, Params(p): Params<PageParams>) -> Answer {
    let status = p.status.as_deref().map(str::parse::<OrderStatus>).transpose()?;
    ok(s.market.market.orders().merchant_orders(&me.0, status, p.cursor.as_deref(), p.limit.unwrap_or(50)).await?)
}

async fn ship(
    State(s): State<AppState>,
    me: MerchantAuth,
    Path(id): Path<String>,
    Json(mut r): Json<ShipRequest>,
) -> Answer {
    let m = &s.market.market;
    // SF Express needs a (masked) contact: the buyer's bound phone unless the merchant gave one.
    if r.receiver_phone.is_none() && r.express_company == wxshop::mp::shipping::SF_EXPRESS {
        r.receiver_phone = s.profiles.phone_of(&m.orders().order(&id).await?.order.buyer_openid);
    }
    ok(m.orders().ship(&me.0, &id, r).await?)
}
