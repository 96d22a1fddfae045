//! Orders and shipping: `POST /admin/orders/{id}/ship`, `GET /admin/orders/{id}`.
//!
//! Under WeChat's trade management a payment stays frozen until its shipping info is uploaded, so
//! the merchant's "ship" button uploads it. The first call ships; a second call while the order is
//! shipped and unconfirmed is WeChat's one correction (checked with WeChat first); after that the
//! shipping info is final. Admin routes take `Authorization: Bearer <STOREFRONT_ADMIN_TOKEN>`.
//!
//! Orders enter through [`record_paid_order`], which the payment-notify handler calls when a
//! JSAPI payment succeeds; it also credits the promoter who brought the buyer (see `share.rs`).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use wxshop::mp::shipping::{Contact, LogisticsType, OrderKey, OrderRef, OrderState, ShippingItem, UploadShippingInfo};

use crate::AppState;
use crate::api::ApiError;
use crate::demo::Demo;

/// A paid order of this shop.
#[derive(Debug, Clone, Serialize)]
pub struct ShopOrder {
    pub id: String,
    pub transaction_id: String,
    pub openid: String,
    pub amount: i64,
    pub description: String,
    /// The promoter credited for this order (paid out once it settles).
    pub promoter: Option<u64>,
}

/// Orders by id (a real server keeps them in its database).
#[derive(Default)]
pub struct Orders {
    by_id: Mutex<HashMap<String, ShopOrder>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a paid order and credits the buyer's promoter, if one brought them. Idempotent: a
/// repeated notification for the same order changes nothing.
pub fn record_paid_order(
    state: &AppState,
    id: &str,
    transaction_id: &str,
    openid: &str,
    amount: i64,
    description: &str,
) -> ShopOrder {
    let mut orders = lock(&state.orders.by_id);
    if let Some(existing) = orders.get(id) {
        return existing.clone();
    }
    let promoter = state.share.attribution_for(openid, Utc::now()).map(|a| a.promoter);
    let order = ShopOrder {
        id: id.to_string(),
        transaction_id: transaction_id.to_string(),
        openid: openid.to_string(),
        amount,
        description: description.to_string(),
        promoter,
    };
    orders.insert(id.to_string(), order.clone());
    order
}

/// The merchant, from `Authorization: Bearer <admin token>` (compared in constant time).
pub struct Merchant;

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if wxshop::crypto::sig::ct_eq(given.as_bytes(), state.admin_token.as_bytes()) {
            Ok(Merchant)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "merchant routes need Authorization: Bearer <STOREFRONT_ADMIN_TOKEN>",
            ))
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/orders/{id}/ship", post(ship)).route("/admin/orders/{id}", get(order))
}

#[derive(Deserialize)]
struct ShipBody {
    /// 1 express, 2 same-city, 3 virtual, 4 self-pickup.
    logistics_type: i64,
    tracking_no: Option<String>,
    express_company: Option<String>,
    /// Defaults to the order's description.
    item_desc: Option<String>,
    /// For SF Express: the receiver's phone (sent masked). Defaults to the buyer's bound phone.
    receiver_phone: Option<String>,
}

async fn ship(
    State(s): State<AppState>,
    _m: Merchant,
    Path(id): Path<String>,
    Json(b): Json<ShipBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let order = lock(&s.orders.by_id)
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no order {id}")))?;
    let desc = b.item_desc.unwrap_or_else(|| order.description.clone());
    let logistics = LogisticsType::from_code(b.logistics_type);
    let mut item = match logistics {
        LogisticsType::Express => ShippingItem::express(
            b.tracking_no.unwrap_or_default(),
            b.express_company.clone().unwrap_or_default(),
            desc,
        ),
        _ => ShippingItem::described(desc),
    };
    if b.express_company.as_deref() == Some(wxshop::mp::shipping::SF_EXPRESS) {
        let phone = b.receiver_phone.or_else(|| s.profiles.phone_of(&order.openid)).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "SF Express needs the receiver's phone (receiver_phone)")
        })?;
        item = item.contact(Contact::receiver_phone(&phone));
    }
    let key = OrderKey::transaction_id(&order.transaction_id);
    let req = UploadShippingInfo::unified(key.clone(), &order.openid, logistics, item);
    let shipping = s.client.shipping();
    let current = shipping.get_order(&key.to_ref()).await?;
    let corrected = current.order_state == OrderState::Shipped;
    if corrected {
        shipping.correct_shipping_info(&req).await?;
    } else {
        shipping.upload_shipping_info(&req).await?;
    }
    let now = shipping.get_order(&key.to_ref()).await?;
    Ok(Json(serde_json::json!({
        "order": id,
        "transaction_id": order.transaction_id,
        "corrected": corrected,
        "order_state": now.order_state.code(),
        "finish_shipping_count": now.shipping.map_or(0, |sh| sh.finish_shipping_count),
    })))
}

async fn order(
    State(s): State<AppState>,
    _m: Merchant,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let order = lock(&s.orders.by_id)
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no order {id}")))?;
    let wechat = s.client.shipping().get_order(&OrderRef::transaction_id(&order.transaction_id)).await?;
    Ok(Json(serde_json::json!({ "order": order, "wechat": wechat })))
}

/// Demo: the referred buyer pays (the emulator stands in for WeChat Pay) and the order credits
/// the promoter.
pub async fn demo_pay(d: &mut Demo) -> Result<String, String> {
    let me = d.get("/api/me").await?;
    let openid = me["openid"].as_str().ok_or("sign in first")?.to_string();
    let r = d
        .emulator_post(
            "/__emulator/shipping/transactions",
            serde_json::json!({ "appid": d.state.client.appid(), "mchid": "1900000109", "out_trade_no": "SO-1001",
                                "openid": openid, "amount": 3900, "description": "Blue mug ×1" }),
        )
        .await?;
    let tx = r["transaction_id"].as_str().ok_or("no transaction_id")?;
    let order = record_paid_order(&d.state, "SO-1001", tx, &openid, 3900, "Blue mug ×1");
    match (order.promoter, d.promoter) {
        (Some(p), Some(expected)) if p == expected => Ok(format!("order SO-1001 paid ({tx}), promoter {p} credited")),
        other => Err(format!("the order did not credit the promoter: {other:?}")),
    }
}

/// Demo: the merchant ships the order with SF Express, then corrects the tracking number once.
pub async fn demo_ship(d: &mut Demo) -> Result<String, String> {
    let body = serde_json::json!({ "logistics_type": 1, "tracking_no": "SF1000000001", "express_company": "SF",
                                   "receiver_phone": "13800138000" });
    let r = d.admin_post("/admin/orders/SO-1001/ship", body).await?;
    if r["order_state"] != 2 || r["corrected"] != false {
        return Err(format!("the order is not shipped: {r}"));
    }
    let fix = serde_json::json!({ "logistics_type": 1, "tracking_no": "SF1000000002", "express_company": "SF",
                                  "receiver_phone": "13800138000" });
    let r = d.admin_post("/admin/orders/SO-1001/ship", fix.clone()).await?;
    if r["corrected"] != true || r["finish_shipping_count"] != 2 {
        return Err(format!("the correction did not apply: {r}"));
    }
    match d.admin_post("/admin/orders/SO-1001/ship", fix).await {
        Err(e) if e.contains("HTTP 400") => {}
        other => return Err(format!("a second correction was not refused: {other:?}")),
    }
    Ok("shipped with SF Express (receiver phone sent masked), corrected once, a second correction refused".into())
}
