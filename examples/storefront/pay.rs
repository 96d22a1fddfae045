//! Payment: `POST /api/orders` (a minimal in-memory order until the marketplace lands),
//! `GET /api/orders/{id}`, `POST /api/orders/{id}/pay` (the `wx.requestPayment` parameters), and
//! `POST /wx/pay/notify` (WeChat Pay's notifications: verified, decrypted, deduplicated, then the
//! order is marked paid — after checking the amount, as WeChat asks).
//!
//! In emulator mode the pay client is the emulator's default merchant. Against real WeChat Pay,
//! set `WXSHOP_MCHID`, `WXSHOP_MCH_SERIAL`, `WXSHOP_MCH_KEY_FILE` (apiclient_key.pem),
//! `WXSHOP_APIV3_KEY`, `WXSHOP_PAY_PUBLIC_KEY_ID` and `WXSHOP_PAY_PUBLIC_KEY_FILE` (pub_key.pem), and
//! `WXSHOP_NOTIFY_URL` (the public https URL of `/wx/pay/notify`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wxshop::pay::notify::NotifyService;
use wxshop::pay::transactions::JsapiPrepay;
use wxshop::pay::{Notification, NotificationResource, PayClient, PayConfig};

use crate::AppState;
use crate::api::{ApiError, Buyer};
use crate::demo::Demo;

/// An order as this example keeps it (the marketplace's orders replace it).
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: String,
    pub openid: String,
    pub description: String,
    pub total: i64,
    pub status: &'static str,
    pub transaction_id: Option<String>,
}

/// Orders by id.
#[derive(Default)]
pub struct Orders {
    map: Mutex<HashMap<String, Order>>,
    seq: AtomicU64,
}

impl Orders {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Order>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks an order paid, once, if the notification's amount is the order's.
    fn mark_paid(
        &self,
        out_trade_no: &str,
        total: Option<i64>,
        transaction_id: Option<String>,
    ) -> wxshop::Result<Order> {
        let mut map = self.lock();
        let order = map
            .get_mut(out_trade_no)
            .ok_or_else(|| wxshop::Error::InvalidRequest(format!("unknown order {out_trade_no}")))?;
        if total != Some(order.total) {
            return Err(wxshop::Error::InvalidRequest(format!(
                "order {out_trade_no}: paid {total:?} fen but the order is {} fen",
                order.total
            )));
        }
        if order.status == "CREATED" {
            order.status = "PAID";
            order.transaction_id = transaction_id;
        }
        Ok(order.clone())
    }
}

/// The pay client: the emulator's merchant, or one from the environment.
pub fn pay_client(emulator: Option<&wxshop::emulator::EmulatorHandle>) -> wxshop::Result<Option<PayClient>> {
    if let Some(emu) = emulator {
        return emu.pay_client().map(Some);
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(mchid), Some(serial), Some(key_file), Some(apiv3)) =
        (var("WXSHOP_MCHID"), var("WXSHOP_MCH_SERIAL"), var("WXSHOP_MCH_KEY_FILE"), var("WXSHOP_APIV3_KEY"))
    else {
        println!("WeChat Pay is off: set WXSHOP_MCHID, WXSHOP_MCH_SERIAL, WXSHOP_MCH_KEY_FILE and WXSHOP_APIV3_KEY");
        return Ok(None);
    };
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| wxshop::Error::Config(format!("cannot read {path}: {e}")))
    };
    let mut config = PayConfig::from_pem(&mchid, &serial, &read(&key_file)?, &apiv3)?;
    if let (Some(id), Some(file)) = (var("WXSHOP_PAY_PUBLIC_KEY_ID"), var("WXSHOP_PAY_PUBLIC_KEY_FILE")) {
        config = config.with_public_key_pem(id, &read(&file)?)?;
    }
    PayClient::builder(config).build().map(Some)
}

/// The notification service: marks the order paid (after checking the amount) and records it as
/// a paid shop order, which credits the buyer's promoter and makes it shippable (`shipping.rs`).
pub fn notify_service(pay: PayClient, state: AppState) -> NotifyService {
    NotifyService::new(pay, move |n: Notification| {
        let state = state.clone();
        async move {
            // Checkout payments belong to the marketplace; the rest are this module's orders.
            if state.market.on_pay_notification(&n).await? {
                return Ok(());
            }
            match n.resource {
                NotificationResource::Transaction(t) if t.is_paid() => {
                    let order = state.pay_orders.mark_paid(&t.out_trade_no, t.total(), t.transaction_id.clone())?;
                    crate::shipping::record_paid_order(
                        &state,
                        &order.id,
                        order.transaction_id.as_deref().unwrap_or_default(),
                        &order.openid,
                        order.total,
                        &order.description,
                    );
                    Ok(())
                }
                // Refunds and other events: acknowledge (a real shop updates its after-sales here).
                _ => Ok(()),
            }
        }
    })
}

pub fn routes(state: &AppState) -> Router<AppState> {
    let mut r = Router::new()
        .route("/api/orders", post(create))
        .route("/api/orders/{id}", get(show))
        .route("/api/orders/{id}/pay", post(pay));
    if let Some(pay) = &state.pay {
        let svc = notify_service(pay.clone(), state.clone());
        r = r.route("/wx/pay/notify", post(wxshop::pay::notify::handle).with_state(svc));
    }
    r
}

#[derive(Deserialize)]
struct NewOrder {
    description: String,
    total: i64,
}

async fn create(State(s): State<AppState>, buyer: Buyer, Json(b): Json<NewOrder>) -> Result<Json<Order>, ApiError> {
    if b.total <= 0 || b.description.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "description and a positive total (fen) are required"));
    }
    let n = s.pay_orders.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("SF{}{n:04}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let order = Order {
        id: id.clone(),
        openid: buyer.openid,
        description: b.description,
        total: b.total,
        status: "CREATED",
        transaction_id: None,
    };
    s.pay_orders.lock().insert(id, order.clone());
    Ok(Json(order))
}

async fn show(State(s): State<AppState>, buyer: Buyer, Path(id): Path<String>) -> Result<Json<Order>, ApiError> {
    let order = s.pay_orders.lock().get(&id).cloned().filter(|o| o.openid == buyer.openid);
    order.map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such order"))
}

/// Prepays the order and answers what the mini-program passes to `wx.requestPayment`.
async fn pay(
    State(s): State<AppState>,
    buyer: Buyer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<wxshop::pay::RequestPayment>, ApiError> {
    let pay =
        s.pay.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "WeChat Pay is not configured"))?;
    let order = s.pay_orders.lock().get(&id).cloned().filter(|o| o.openid == buyer.openid);
    let order = order.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such order"))?;
    if order.status != "CREATED" {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("order is {}", order.status)));
    }
    let notify_url = match std::env::var("WXSHOP_NOTIFY_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:3000");
            format!("http://{host}/wx/pay/notify")
        }
    };
    let req = JsapiPrepay::new(s.client.appid(), &order.description, &order.id, notify_url, order.total, &buyer.openid)
        .time_expire(chrono::Utc::now() + chrono::Duration::minutes(30));
    Ok(Json(pay.transactions().jsapi_request_payment(req).await?))
}

/// Demo: order, get the wx.requestPayment parameters, pay in the emulator's cashier, see it paid
/// (and recorded as a shippable shop order).
pub async fn demo_pay(d: &mut Demo) -> Result<String, String> {
    let order = d.post("/api/orders", serde_json::json!({ "description": "Oolong tea 250 g", "total": 6800 })).await?;
    let id = order["id"].as_str().ok_or("no order id")?.to_string();
    let params = d.post(&format!("/api/orders/{id}/pay"), serde_json::json!({})).await?;
    if params["signType"] != "RSA" || !params["package"].as_str().unwrap_or("").starts_with("prepay_id=") {
        return Err(format!("unexpected wx.requestPayment parameters: {params}"));
    }
    // The buyer taps Pay: the cashier's Pay action, through the emulator's control API.
    let mchid = d.state.pay.as_ref().ok_or("WeChat Pay is not configured")?.mchid().to_string();
    d.emulator_post(&format!("/__emulator/pay/orders/{mchid}/{id}/pay"), serde_json::json!({})).await?;
    for _ in 0..100 {
        let o = d.get(&format!("/api/orders/{id}")).await?;
        if o["status"] == "PAID" {
            let shop = d.admin_get(&format!("/admin/orders/{id}")).await?;
            if shop["order"]["transaction_id"] != o["transaction_id"] || shop["wechat"]["order_state"] != 1 {
                return Err(format!("the paid order is not recorded for shipping: {shop}"));
            }
            return Ok(format!("order {id} paid, transaction {}", o["transaction_id"].as_str().unwrap_or("?")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!("order {id} was not marked paid within 5 s"))
}
