//! Sharing and referral: `GET /api/share?product=…`, `POST /api/referral`.
//!
//! A signed-in buyer who shares becomes a promoter: `/api/share` signs a referral token (promoter,
//! campaign, product, 30 days; the promoter is the market's numeric id,
//! [`Market::promoter_id`](wxshop::market::Market::promoter_id), kept in its store so the token outlives
//! a restart) and returns a URL Link and an unlimited wxacode carrying it, plus
//! the share path for `onShareAppMessage`. Links and codes are cached per (promoter, product,
//! campaign) while they have more than a day left, so repeated shares spend no quota.
//!
//! A buyer who arrives through any of them posts the token (the code's `scene`, or the `ref`
//! query parameter) to `/api/referral`; the server verifies it and records the click in the market
//! ([`Market::record_click`](wxshop::market::Market::record_click)): buyer, promoter (by openid: the
//! promoter is paid by WeChat Pay profit sharing to that openid), token. Attribution is the market's:
//! when one of the buyer's orders is paid, settlement credits the click its governance config picks
//! (`promoter.touch` first or last, within `promoter.window_days`; `PUT /admin/governance/config`), and
//! the promoter fee is shared out of the settled order. `STOREFRONT_ATTRIBUTION=first|last`, when set,
//! is written to that config at startup ([`apply_attribution_env`]).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use wxshop::market::Market;
use wxshop::market::governance::settlement::Touch;
use wxshop::mp::link::{Expiry, GenerateUrlLink};
use wxshop::mp::referral::{Referral, ReferralKey, token_from_query};
use wxshop::mp::wxacode::GetUnlimitedCode;

use crate::AppState;
use crate::api::{ApiError, Buyer};
use crate::demo::Demo;

/// The product page every share opens.
pub const PRODUCT_PAGE: &str = "pages/product/index";
/// How long a share (token, link) lasts: WeChat's longest link validity.
const SHARE_DAYS: i64 = 30;

/// Maps `STOREFRONT_ATTRIBUTION` (`first` or `last`), when set, onto the market's promoter policy.
pub async fn apply_attribution_env(m: &Market) -> wxshop::Result<()> {
    let touch = match std::env::var("STOREFRONT_ATTRIBUTION").as_deref() {
        Err(_) | Ok("") => return Ok(()),
        Ok("first") => Touch::First,
        Ok("last") => Touch::Last,
        Ok(other) => {
            return Err(wxshop::Error::Config(format!("STOREFRONT_ATTRIBUTION is {other:?}: use first or last")));
        }
    };
    let mut cfg = m.governance_config().await?;
    if cfg.promoter.touch != touch {
        cfg.promoter.touch = touch;
        m.set_governance_config(&cfg).await?;
    }
    Ok(())
}

#[derive(Clone)]
struct CachedShare {
    token: String,
    url_link: String,
    png: Vec<u8>,
    expires_at: DateTime<Utc>,
}

/// Referral key and the share cache. Promoter ids are the market's ([`Market::promoter_id`]), kept
/// in its store, so tokens naming them outlive a restart and mean the same on every instance.
pub struct ShareState {
    key: ReferralKey,
    cache: Mutex<HashMap<(u64, u64, u64), CachedShare>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ShareState {
    /// From `STOREFRONT_REFERRAL_SECRET` (16+ bytes; a random one per run when unset, so tokens do
    /// not survive a restart: set it, and the same on every instance, in production).
    pub fn from_env() -> wxshop::Result<Self> {
        let secret = match std::env::var("STOREFRONT_REFERRAL_SECRET") {
            Ok(s) if !s.is_empty() => s.into_bytes(),
            _ => rand::random::<[u8; 32]>().to_vec(),
        };
        Ok(ShareState { key: ReferralKey::new(secret)?, cache: Mutex::default() })
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/share", get(share)).route("/api/referral", post(arrive))
}

#[derive(Deserialize)]
struct ShareQuery {
    product: u64,
    #[serde(default = "default_campaign")]
    campaign: u64,
}

fn default_campaign() -> u64 {
    1
}

/// A URL Link and a wxacode PNG (base64) carrying the signed-in buyer's referral for a product.
async fn share(
    State(s): State<AppState>,
    buyer: Buyer,
    Query(q): Query<ShareQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let share = &s.share;
    // Numeric, so the token fits a 32-character scene; durable, so the token outlives a restart.
    let promoter = s.market.market.promoter_id(&buyer.openid).await.map_err(wxshop::Error::from)?;
    let now = Utc::now();
    let cache_key = (promoter, q.product, q.campaign);
    let cached = lock(&share.cache).get(&cache_key).filter(|c| c.expires_at - now > Duration::days(1)).cloned();
    let c = match cached {
        Some(c) => c,
        None => {
            let referral = Referral::new(promoter, q.campaign).product(q.product);
            let token = share.key.sign_for(referral, now, Duration::days(SHARE_DAYS)).map_err(wxshop::Error::from)?;
            let link = GenerateUrlLink::new(Expiry::days(SHARE_DAYS as u32)).path(PRODUCT_PAGE).query(format!(
                "id={}&{}",
                q.product,
                token.query()
            ));
            let url_link = s.client.links().generate_url_link(&link).await?;
            // check_path(false): the code works before the page is published (WeChat caps such pages).
            let code = GetUnlimitedCode::new(token.scene()).page(PRODUCT_PAGE).check_path(false);
            let png = s.client.wxacode().get_unlimited(&code).await?;
            let c = CachedShare {
                token: token.to_string(),
                url_link,
                png: png.bytes.to_vec(),
                expires_at: now + Duration::days(SHARE_DAYS),
            };
            lock(&share.cache).insert(cache_key, c.clone());
            c
        }
    };
    Ok(Json(serde_json::json!({
        "promoter": promoter,
        "token": c.token,
        "url_link": c.url_link,
        "share_path": format!("{PRODUCT_PAGE}?id={}&ref={}", q.product, c.token),
        "wxacode_png_base64": STANDARD.encode(&c.png),
        "expires_at": c.expires_at.to_rfc3339(),
    })))
}

#[derive(Deserialize)]
struct ArriveBody {
    /// The wxacode scene (`options.scene`, URI-decoded).
    scene: Option<String>,
    /// Or the page's query string (`id=42&ref=…`).
    query: Option<String>,
}

/// The buyer arrived through a share: verify the token and record the click in the market.
async fn arrive(
    State(s): State<AppState>,
    buyer: Buyer,
    Json(b): Json<ArriveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = match (&b.scene, &b.query) {
        (Some(scene), _) => scene.as_str(),
        (None, Some(q)) => token_from_query(q)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "the query carries no ref parameter"))?,
        (None, None) => return Err(ApiError::new(StatusCode::BAD_REQUEST, "send scene or query")),
    };
    let r = s.share.key.verify(token, Utc::now()).map_err(wxshop::Error::from)?;
    let promoter = s
        .market
        .market
        .promoter_openid(r.promoter)
        .await
        .map_err(wxshop::Error::from)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown promoter {}", r.promoter)))?;
    let recorded = if promoter == buyer.openid {
        false // self-referral
    } else {
        s.market.market.record_click(&buyer.openid, &promoter, token).await.map_err(wxshop::Error::from)?;
        true
    };
    let policy = s.market.market.governance_config().await.map_err(wxshop::Error::from)?.promoter;
    Ok(Json(serde_json::json!({
        "recorded": recorded,
        "reason": if recorded { "click recorded" } else { "self-referral" },
        "promoter": r.promoter,
        "campaign": r.campaign,
        "product": r.product,
        "attribution": { "touch": policy.touch, "window_days": policy.window_days, "bps": policy.bps },
    })))
}

/// Demo: the signed-in buyer shares product 42 and gets a URL Link and a code.
pub async fn demo_share(d: &mut Demo) -> Result<String, String> {
    let r = d.get("/api/share?product=42").await?;
    let link = r["url_link"].as_str().ok_or("no url_link")?;
    if !link.starts_with("https://wxaurl.cn/") {
        return Err(format!("not a URL Link: {link}"));
    }
    let png = STANDARD.decode(r["wxacode_png_base64"].as_str().ok_or("no code")?).map_err(|e| e.to_string())?;
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err("the code is not a PNG".into());
    }
    let path = std::env::temp_dir().join("wxshop-storefront-share.png");
    std::fs::write(&path, &png).map_err(|e| e.to_string())?;
    // Sharing again reuses the cached link: no second link is generated.
    let again = d.get("/api/share?product=42").await?;
    if again["url_link"] != r["url_link"] {
        return Err("a repeated share generated a new link".into());
    }
    d.shared_link = Some(link.to_string());
    d.promoter = r["promoter"].as_u64();
    d.promoter_openid = d.get("/api/me").await?["openid"].as_str().map(str::to_string);
    Ok(format!("promoter {} got {link} and a {}-byte code at {}", r["promoter"], png.len(), path.display()))
}

/// Demo: a friend opens the shared link; the click is recorded in the market; a forged token is refused.
pub async fn demo_arrive(d: &mut Demo) -> Result<String, String> {
    let link = d.shared_link.clone().ok_or("share first")?;
    d.sign_in("bob").await?;
    let opened = d.emulator_post("/__emulator/links/open", serde_json::json!({ "link": link, "user": "bob" })).await?;
    let query = opened["query"].as_str().ok_or("the link opened no query")?.to_string();
    let r = d.post("/api/referral", serde_json::json!({ "query": query })).await?;
    if r["recorded"] != true || r["promoter"].as_u64() != d.promoter {
        return Err(format!("bob's click was not recorded for the promoter: {r}"));
    }
    // Change one character in the middle of the token (its expiry and ids): the signature no
    // longer matches.
    let token = token_from_query(&query).ok_or("no ref")?;
    let mut chars: Vec<char> = token.chars().collect();
    chars[6] = if chars[6] == 'A' { 'B' } else { 'A' };
    let forged: String = chars.into_iter().collect();
    match d.post("/api/referral", serde_json::json!({ "scene": forged })).await {
        Err(e) if e.contains("HTTP 401") => {}
        other => return Err(format!("a forged token was not refused: {other:?}")),
    }
    Ok(format!(
        "bob opened {}; his click for promoter {} is in the market ({} touch, {} days); a forged token was refused",
        opened["path"],
        r["promoter"],
        r["attribution"]["touch"].as_str().unwrap_or("?"),
        r["attribution"]["window_days"]
    ))
}

/// The merchant whose product the referred friend buys in the demo.
pub const REFERRED_MERCHANT: &str = "Leaf & Co";

/// Demo: the friend checks a market product out and pays in the emulator's cashier; the order's
/// settlement attributes it to the promoter whose link brought him.
pub async fn demo_referred_purchase(d: &mut Demo) -> Result<String, String> {
    use crate::governance::as_platform;
    let promoter = d.promoter_openid.clone().ok_or("share first")?;
    let merchant = d.state.market.seeded.iter().find(|(n, _)| n == REFERRED_MERCHANT).map(|(_, id)| id.clone());
    let merchant = merchant.ok_or("not seeded")?;
    let page = d.get(&format!("/api/products?merchant={merchant}&limit=1")).await?;
    let pid = page["items"][0]["id"].as_str().ok_or("no product")?.to_string();
    let p = d.get(&format!("/api/products/{pid}")).await?;
    let sku = p["skus"][0]["id"].as_str().ok_or("no sku")?.to_string();
    let body = serde_json::json!({ "idempotency_key": "demo-referred-1", "lines": [{ "sku_id": sku, "qty": 1 }] });
    let co = d.post("/api/checkout", body).await?;
    let group = co["group"]["id"].as_str().ok_or("no group")?.to_string();
    let oid = co["orders"][0]["id"].as_str().ok_or("no order")?.to_string();
    // The friend taps Pay in the cashier: a one-merchant checkout is one JSAPI payment of the group.
    let emu = d.state.emulator.clone().ok_or("the demo pays in the emulator's cashier")?;
    let mchid = d.state.pay.as_ref().ok_or("WeChat Pay is not configured")?.mchid().to_string();
    let out_trade_no = if co["payment"]["mode"] == "Combine" { oid.clone() } else { group.clone() };
    let txn = emu.cashier_pay(&mchid, &out_trade_no).await.map_err(|e| e.to_string())?;
    // The notification marks it paid; the market's outbox then opens the settlement (both async).
    let mut view = Err(String::new());
    for _ in 0..200 {
        view = as_platform(d, reqwest::Method::GET, &format!("/admin/governance/settlements/{oid}"), None).await;
        if view.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let view = view.map_err(|e| format!("no settlement for {oid}: {e}"))?;
    let line = &view["settlement"]["lines"][0];
    if line["promoter"]["promoter_id"] != promoter.as_str() || view["attribution"]["promoter_id"] != promoter.as_str() {
        return Err(format!("the settlement does not name the promoter {promoter}: {view}"));
    }
    d.referred_order = Some(oid.clone());
    Ok(format!(
        "order {} ({} from {REFERRED_MERCHANT}) paid in the cashier ({txn}); its settlement attributes it to \
         promoter {promoter} at {} bps",
        &oid[..12],
        wxshop::market::Money::fen(co["group"]["total"].as_i64().unwrap_or(0)),
        line["promoter"]["bps"]
    ))
}

/// Demo: the parcel is scanned and received; when the after-sale window closes the settlement is
/// released and WeChat Pay shares the promoter's fee to the promoter's openid (the gateway adds the
/// promoter as a personal receiver first, as WeChat requires).
pub async fn demo_promoter_share(d: &mut Demo) -> Result<String, String> {
    use crate::governance::as_platform;
    let oid = d.referred_order.clone().ok_or("no referred order")?;
    let promoter = d.promoter_openid.clone().ok_or("share first")?;
    let scan = format!("/admin/governance/orders/{oid}/carrier-scan");
    as_platform(d, reqwest::Method::POST, &scan, Some(serde_json::json!({}))).await?;
    let got = d.post(&format!("/api/market/orders/{oid}/receive"), serde_json::json!({})).await?;
    if got["order"]["status"] != "Received" {
        return Err(format!("receipt not confirmed: {got}"));
    }
    // Eight days on, the 7-day after-sale window has closed: release and profit sharing are async.
    let run = serde_json::json!({ "advance_hours": 8 * 24 });
    let mut view = serde_json::Value::Null;
    for _ in 0..200 {
        as_platform(d, reqwest::Method::POST, "/admin/governance/timers/run", Some(run.clone())).await?;
        view = as_platform(d, reqwest::Method::GET, &format!("/admin/governance/settlements/{oid}"), None).await?;
        if view["profit_share"]["status"] == "finished" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if view["settlement"]["state"] != "released" || view["profit_share"]["status"] != "finished" {
        return Err(format!("the settlement was not shared out: {view}"));
    }
    // What WeChat Pay itself says: the promoter's fee went to the promoter's openid.
    let pay = d.state.pay.clone().ok_or("WeChat Pay is not configured")?;
    let out_order_no = view["profit_share"]["request"]["out_order_no"].as_str().ok_or("no out_order_no")?;
    let txn = view["settlement"]["transaction_id"].as_str().ok_or("no transaction id")?;
    let wx = pay.profit_sharing().query_order(out_order_no, txn, None).await.map_err(|e| e.to_string())?;
    let a = &view["settlement"]["amounts"];
    let fee = a["promoter_fee"].as_i64().unwrap_or(-1);
    let shared: Vec<(&str, &str, i64)> =
        wx.receivers.iter().map(|r| (r.kind.as_str(), r.account.as_str(), r.amount)).collect();
    if shared != [("PERSONAL_OPENID", promoter.as_str(), fee)] || view["attribution"]["state"] != "paid" {
        return Err(format!("WeChat Pay shared {shared:?}, expected the promoter fee {fee} to {promoter}: {view}"));
    }
    let audit = as_platform(d, reqwest::Method::GET, "/admin/governance/ledger/audit", None).await?;
    if audit["clean"] != true {
        return Err(format!("ledger audit: {audit}"));
    }
    let fen = |k: &str| wxshop::market::Money::fen(a[k].as_i64().unwrap_or(0));
    Ok(format!(
        "{} settled: promoter fee {} shared to PERSONAL_OPENID {promoter} (分账 {}), commission {} kept by the \
         platform, {} to the merchant; ledger audit clean",
        fen("gross"),
        fen("promoter_fee"),
        wx.state,
        fen("commission"),
        fen("net")
    ))
}
