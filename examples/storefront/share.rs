//! Sharing and referral: `GET /api/share?product=…`, `POST /api/referral`.
//!
//! A signed-in buyer who shares becomes a promoter: `/api/share` signs a referral token (promoter,
//! campaign, product, 30 days; the promoter is the market's numeric id,
//! [`market.governance().settlements().promoter_id`](wxshop::market::handles::Settlements::promoter_id), kept in its store so the token outlives
//! a restart) and returns a URL Link and an unlimited wxacode carrying it, plus
//! the share path for `onShareAppMessage`. Links and codes are cached per (promoter, product,
//! campaign) while they have more than a day left, so repeated shares spend no quota.
//!
//! A buyer who arrives through any of them posts the token (the code's `scene`, or the `ref`
//! query parameter) to `/api/referral`; the server verifies it and records the click in the market
//! ([`market.governance().settlements().record_click`](wxshop::market::handles::Settlements::record_click)): buyer, promoter (by openid: the
//! promoter is paid by WeChat Pay profit sharing to that openid), token. Attribution is the market's:
//! when one of the buyer's orders is paid, settlement credits the click its governance config picks
//! (`promoter.touch` first or last, within `promoter.window_days`; `PUT /admin/governance/config`), and
//! the promoter fee is shared out of the settled order. `STOREFRONT_ATTRIBUTION=first|last`, when set,
//! is written to that config at startup ([`apply_attribution_env`]).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
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
use crate::api::{Body, Params};
use crate::routes::{Auth, Routes, doc};

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
    let mut cfg = m.governance().governance_config().await?;
    if cfg.promoter.touch != touch {
        cfg.promoter.touch = touch;
        m.governance().set_governance_config(&cfg).await?;
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

/// Referral key and the share cache. Promoter ids are the market's ([`Settlements::promoter_id`](crate::market::handles::Settlements::promoter_id)), kept
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

pub fn routes() -> Routes {
    Routes::new("share")
        .get(
            "/api/share",
            share,
            doc("Share a product: a signed referral as URL Link, wxacode and share path", Auth::Buyer)
                .query::<ShareQuery>(),
        )
        .post(
            "/api/referral",
            arrive,
            doc("Arrive through a share: verify the referral and record the click", Auth::Buyer).body::<ArriveBody>(),
        )
}

#[derive(Deserialize, utoipa::IntoParams)]
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
    Params(q): Params<ShareQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let share = &s.share;
    // Numeric, so the token fits a 32-character scene; durable, so the token outlives a restart.
    let promoter =
        s.market.market.governance().settlements().promoter_id(&buyer.openid).await.map_err(wxshop::Error::from)?;
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

#[derive(Deserialize, utoipa::ToSchema)]
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
    Body(b): Body<ArriveBody>,
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
        .governance()
        .settlements()
        .promoter_openid(r.promoter)
        .await
        .map_err(wxshop::Error::from)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown promoter {}", r.promoter)))?;
    let recorded = if promoter == buyer.openid {
        false // self-referral
    } else {
        s.market
            .market
            .governance()
            .settlements()
            .record_click(&buyer.openid, &promoter, token)
            .await
            .map_err(wxshop::Error::from)?;
        true
    };
    let policy = s.market.market.governance().governance_config().await.map_err(wxshop::Error::from)?.promoter;
    Ok(Json(serde_json::json!({
        "recorded": recorded,
        "reason": if recorded { "click recorded" } else { "self-referral" },
        "promoter": r.promoter,
        "campaign": r.campaign,
        "product": r.product,
        "attribution": { "touch": policy.touch, "window_days": policy.window_days, "bps": policy.bps },
    })))
}
