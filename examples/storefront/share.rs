//! Sharing and referral attribution: `GET /api/share?product=…`, `POST /api/referral`,
//! `GET /api/referral`.
//!
//! A signed-in buyer who shares becomes a promoter: `/api/share` signs a referral token (promoter,
//! campaign, product, 30 days) and returns a URL Link and an unlimited wxacode carrying it, plus
//! the share path for `onShareAppMessage`. Links and codes are cached per (promoter, product,
//! campaign) while they have more than a day left, so repeated shares spend no quota.
//!
//! A buyer who arrives through any of them posts the token (the code's `scene`, or the `ref`
//! query parameter) to `/api/referral`; the server verifies it and records the attribution,
//! first-touch or last-touch (`STOREFRONT_ATTRIBUTION=first|last`, default last), for 30 days.
//! Orders paid within that window credit the promoter ([`ShareState::attribution_for`]).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
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
/// How long an arrival keeps crediting its promoter.
const ATTRIBUTION_DAYS: i64 = 30;

/// Which arrival gets the credit when a buyer comes through several promoters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionPolicy {
    /// The first promoter keeps the buyer for the window.
    FirstTouch,
    /// The latest promoter takes over.
    LastTouch,
}

/// Who brought a buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub promoter: u64,
    pub campaign: u64,
    pub product: Option<u64>,
    pub attributed_at: DateTime<Utc>,
}

#[derive(Clone)]
struct CachedShare {
    token: String,
    url_link: String,
    png: Vec<u8>,
    expires_at: DateTime<Utc>,
}

/// Referral key, policy, promoter ids and attributions (a real server keeps the last three in its
/// database).
pub struct ShareState {
    key: ReferralKey,
    policy: AttributionPolicy,
    promoters: Mutex<HashMap<String, u64>>,
    attributions: Mutex<HashMap<String, Attribution>>,
    cache: Mutex<HashMap<(u64, u64, u64), CachedShare>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ShareState {
    /// From `STOREFRONT_REFERRAL_SECRET` (16+ bytes; a random one per run when unset, so tokens do
    /// not survive a restart) and `STOREFRONT_ATTRIBUTION`.
    pub fn from_env() -> wxshop::Result<Self> {
        let secret = match std::env::var("STOREFRONT_REFERRAL_SECRET") {
            Ok(s) if !s.is_empty() => s.into_bytes(),
            _ => rand::random::<[u8; 32]>().to_vec(),
        };
        let policy = match std::env::var("STOREFRONT_ATTRIBUTION").as_deref() {
            Ok("first") => AttributionPolicy::FirstTouch,
            Ok("last") | Err(_) => AttributionPolicy::LastTouch,
            Ok(other) => {
                return Err(wxshop::Error::Config(format!("STOREFRONT_ATTRIBUTION is {other:?}: use first or last")));
            }
        };
        Ok(ShareState {
            key: ReferralKey::new(secret)?,
            policy,
            promoters: Mutex::default(),
            attributions: Mutex::default(),
            cache: Mutex::default(),
        })
    }

    /// The promoter id of a buyer (numeric, so it fits a 32-character scene).
    pub fn promoter_id(&self, openid: &str) -> u64 {
        let mut p = lock(&self.promoters);
        let next = p.len() as u64 + 1;
        *p.entry(openid.to_string()).or_insert(next)
    }

    /// Who gets the credit for an order `openid` pays now, if anyone.
    pub fn attribution_for(&self, openid: &str, now: DateTime<Utc>) -> Option<Attribution> {
        lock(&self.attributions)
            .get(openid)
            .filter(|a| now < a.attributed_at + Duration::days(ATTRIBUTION_DAYS))
            .cloned()
    }

    /// Records an arrival under the policy; returns whether it took the credit.
    fn attribute(&self, openid: &str, a: Attribution) -> bool {
        let mut all = lock(&self.attributions);
        let live =
            all.get(openid).is_some_and(|old| a.attributed_at < old.attributed_at + Duration::days(ATTRIBUTION_DAYS));
        if self.policy == AttributionPolicy::FirstTouch && live {
            return false;
        }
        all.insert(openid.to_string(), a);
        true
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/share", get(share)).route("/api/referral", get(my_referral).post(arrive))
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
    let promoter = share.promoter_id(&buyer.openid);
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

/// The buyer arrived through a share: verify the token and record the attribution.
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
    let now = Utc::now();
    let r = s.share.key.verify(token, now).map_err(wxshop::Error::from)?;
    let me = s.share.promoter_id(&buyer.openid);
    let (attributed, reason) = if r.promoter == me {
        (false, "self-referral")
    } else {
        let a = Attribution { promoter: r.promoter, campaign: r.campaign, product: r.product, attributed_at: now };
        if s.share.attribute(&buyer.openid, a) {
            (true, "attributed")
        } else {
            (false, "an earlier promoter keeps the buyer")
        }
    };
    Ok(Json(serde_json::json!({
        "attributed": attributed,
        "reason": reason,
        "policy": s.share.policy,
        "promoter": r.promoter,
        "campaign": r.campaign,
        "product": r.product,
    })))
}

/// Who currently gets the credit for this buyer's orders.
async fn my_referral(State(s): State<AppState>, buyer: Buyer) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "attribution": s.share.attribution_for(&buyer.openid, Utc::now()) }))
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
    Ok(format!("promoter {} got {link} and a {}-byte code at {}", r["promoter"], png.len(), path.display()))
}

/// Demo: a friend opens the shared link and is attributed to the promoter; a forged token is refused.
pub async fn demo_arrive(d: &mut Demo) -> Result<String, String> {
    let link = d.shared_link.clone().ok_or("share first")?;
    d.sign_in("bob").await?;
    let opened = d.emulator_post("/__emulator/links/open", serde_json::json!({ "link": link, "user": "bob" })).await?;
    let query = opened["query"].as_str().ok_or("the link opened no query")?.to_string();
    let r = d.post("/api/referral", serde_json::json!({ "query": query })).await?;
    if r["attributed"] != true || r["promoter"].as_u64() != d.promoter {
        return Err(format!("bob was not attributed to the promoter: {r}"));
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
        "bob opened {} and is credited to promoter {}; a forged token was refused",
        opened["path"], r["promoter"]
    ))
}
