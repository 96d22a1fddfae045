//! WeChat shipping-info management (发货信息管理) on market orders, beyond shipping itself.
//!
//! Under WeChat's trade management a payment stays frozen until its shipping info is uploaded, so the
//! market's ship route (`POST /api/merchant/orders/{id}/ship`, `market.rs`) uploads it through
//! [`MpShippingGateway`](wxshop::market::MpShippingGateway); for SF Express the receiver's phone is
//! sent masked (`138****8000`), and defaults to the buyer's bound phone (`login.rs`). This module adds:
//!
//! | route | what |
//! |---|---|
//! | `POST /api/merchant/orders/{id}/shipping/correct` `{replaces?, tracking_no, express_company, receiver_phone?}` | merchant (`X-Merchant-Key`): WeChat's one correction of a shipped, unconfirmed order's waybill; a second is refused (409 `correction_refused`) |
//! | `GET /admin/orders/{id}` | platform (`Authorization: Bearer <STOREFRONT_ADMIN_TOKEN>`): the market order and WeChat's view of its payment (`order_state`, `finish_shipping_count`, parcels) |
//!
//! WeChat reminds the merchant of a payment still unshipped 48 h after payment
//! (`trade_manage_remind_shipping`, pushed to the push URL); the market's own ship deadline turns the
//! same lateness into a late-shipment penalty (`governance.rs`).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use wxshop::market::{MarketError, ShipCorrection};
use wxshop::mp::shipping::{OrderRef, SF_EXPRESS};

use crate::AppState;
use crate::access::MerchantAuth;
use crate::access::Platform;
use crate::api::ApiError;
use crate::routes::{Auth, Routes, doc};

pub fn routes() -> Routes {
    Routes::new("shipping")
        .post(
            "/api/merchant/orders/{id}/shipping/correct",
            correct,
            doc("Correct a shipped order's waybill (WeChat allows one correction)", Auth::Merchant),
        )
        .get("/admin/orders/{id}", order, doc("A market order and WeChat's view of its payment", Auth::Platform))
}

/// WeChat's view of a market order's payment (by its transaction id).
async fn wechat_view(s: &AppState, transaction_id: Option<&str>) -> Result<Value, ApiError> {
    let Some(txn) = transaction_id else { return Ok(Value::Null) };
    let wx = s.client.shipping().get_order(&OrderRef::transaction_id(txn)).await.map_err(MarketError::from)?;
    Ok(serde_json::to_value(wx).map_err(|e| MarketError::Invalid(e.to_string()))?)
}

async fn correct(
    State(s): State<AppState>,
    me: MerchantAuth,
    Path(id): Path<String>,
    Json(mut c): Json<ShipCorrection>,
) -> Result<Json<Value>, ApiError> {
    let m = &s.market.market;
    if c.receiver_phone.is_none() && c.express_company == SF_EXPRESS {
        let buyer = m.orders().order(&id).await?.order.buyer_openid;
        c.receiver_phone = s.profiles.phone_of(&buyer);
    }
    let d = m.orders().correct_shipment(&me.0, &id, c).await?;
    let wechat = wechat_view(&s, d.order.transaction_id.as_deref()).await?;
    Ok(Json(json!({ "order": d, "wechat": wechat })))
}

async fn order(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let d = s.market.market.orders().order(&id).await?;
    let wechat = wechat_view(&s, d.order.transaction_id.as_deref()).await?;
    Ok(Json(json!({ "order": d, "wechat": wechat })))
}
