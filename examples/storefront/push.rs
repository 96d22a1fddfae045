//! Message push and outbound messages: `GET/POST /wx/push` (WeChat's callback),
//! `POST /api/messages/subscribe` (notify the signed-in buyer), `GET /api/messages/inbox`.
//!
//! Customer messages are acknowledged at once and answered with a customer-service message from
//! a background task (WeChat wants an answer within 5 s; the reply API can be slower), subscribe
//! consents and content-check verdicts are recorded, and WeChat's retries are deduplicated by
//! the endpoint. Replays are refused: a push whose `timestamp` is more than 5 minutes from now gets
//! 401, and an exact replay of one already processed is acknowledged without being processed again,
//! remembered in the market's database (so on every instance and after a restart).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use wxshop::mp::message::{CustomerServiceMessage, SubscribeData, SubscribeMessage};
use wxshop::mp::security::MediaChecks;
use wxshop::push::axum::{PushEndpoint, handler_fn};
use wxshop::push::{Incoming, Message, Reply, Verifier};

use crate::AppState;
use crate::api::{ApiError, Buyer};
use crate::routes::{Auth, Routes, doc};

/// The push settings of the emulator's console (a real server reads `WXSHOP_PUSH_TOKEN` and
/// `WXSHOP_PUSH_AES_KEY`, the Token and EncodingAESKey of 消息推送配置).
pub const EMULATOR_PUSH_TOKEN: &str = "storefront-push-token";
/// The emulator's EncodingAESKey (43 characters).
pub const EMULATOR_PUSH_AES_KEY: &str = "wxshopStorefrontEmulatorPushKey0123456789AB";
/// The "order shipped" subscribe-message template.
pub const ORDER_SHIPPED_TEMPLATE: &str = "EMU_TPL_ORDER_SHIPPED";
/// Its keys.
pub const ORDER_SHIPPED_KEYS: &[&str] = &["character_string1", "thing2", "amount3", "date4", "phrase5"];

/// How far a push's `timestamp` may be from now.
pub const PUSH_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// What the push callback learned (a real server keeps it in its database).
#[derive(Default)]
pub struct Inbox {
    /// Customer messages: (openid, text).
    pub messages: Mutex<Vec<(String, String)>>,
    /// Accepted subscribe templates by openid.
    pub consents: Mutex<HashMap<String, Vec<String>>>,
    /// Content-check verdicts, joined by trace_id.
    pub media_checks: MediaChecks,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The verifier for this app's pushes.
pub fn verifier(appid: &str) -> wxshop::Result<Verifier> {
    let token = std::env::var("WXSHOP_PUSH_TOKEN").unwrap_or_else(|_| EMULATOR_PUSH_TOKEN.into());
    let key = std::env::var("WXSHOP_PUSH_AES_KEY").unwrap_or_else(|_| EMULATOR_PUSH_AES_KEY.into());
    Verifier::with_aes_key(token, &key, appid)
}

async fn on_push(state: AppState, push: Incoming) -> wxshop::Result<Reply> {
    let inbox = &state.inbox;
    match &push.message {
        Message::Text { content, .. } => {
            lock(&inbox.messages).push((push.from_user_name.clone(), content.clone()));
            let client = state.client.clone();
            let to = push.from_user_name.clone();
            let answer = format!("Thanks! We received \u{201c}{content}\u{201d} and will reply shortly.");
            tokio::spawn(async move {
                if let Err(e) = client.messages().send_custom(&to, &CustomerServiceMessage::text(answer)).await {
                    tracing::warn!(error = %e, "customer-service answer failed");
                }
            });
        }
        Message::SubscribePopup(items) => {
            let mut consents = lock(&inbox.consents);
            let mine = consents.entry(push.from_user_name.clone()).or_default();
            mine.extend(items.iter().filter(|i| i.status.accepted()).map(|i| i.template_id.clone()));
        }
        Message::MediaCheck(result) => {
            inbox.media_checks.complete(result.clone());
        }
        other => tracing::info!(msg_type = %push.msg_type, event = ?push.event, "push received: {other:?}"),
    }
    Ok(Reply::Success)
}

pub fn routes(state: &AppState) -> Routes {
    let verifier = match verifier(state.client.appid()) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "push is disabled: fix WXSHOP_PUSH_TOKEN / WXSHOP_PUSH_AES_KEY");
            return Routes::new("push");
        }
    };
    let s = state.clone();
    // Replays: a push signed more than PUSH_WINDOW ago is refused, and one already processed is
    // remembered in the market's database (every instance, across restarts) for longer than that.
    let verifier = verifier.timestamp_window(PUSH_WINDOW);
    let endpoint = PushEndpoint::new(verifier, handler_fn(move |push| on_push(s.clone(), push)))
        .dedupe(std::sync::Arc::new(state.market.market.ops().claims("push")))
        .dedupe_ttl(3 * PUSH_WINDOW);
    Routes::new("push")
        .service(
            "/wx/push",
            endpoint.method_router(),
            vec![
                (Method::GET, doc("WeChat verifies the push URL (echostr)", Auth::WeChatPush)),
                (Method::POST, doc("WeChat pushes messages and events", Auth::WeChatPush)),
            ],
        )
        .post(
            "/api/messages/subscribe",
            notify_shipped,
            doc("Send the buyer the order-shipped subscribe message", Auth::Buyer),
        )
        .get("/api/messages/inbox", inbox, doc("What the push callback learned about the buyer", Auth::Buyer))
}

/// Sends the signed-in buyer the "order shipped" subscribe message (needs their consent).
async fn notify_shipped(State(s): State<AppState>, buyer: Buyer) -> Result<Json<serde_json::Value>, ApiError> {
    let data = SubscribeData::new()
        .set("character_string1", "WX20240501-0042")
        .set("thing2", "Jasmine tea, 2 boxes")
        .set("amount3", "¥128.00")
        .set("date4", "2024年5月1日 15:01")
        .set("phrase5", "已发货");
    let msg = SubscribeMessage::new(&buyer.openid, ORDER_SHIPPED_TEMPLATE, data).page("pages/order/detail?id=42");
    match s.client.messages().send_subscribe(&msg).await {
        // Not a gateway failure: the mini-program should call wx.requestSubscribeMessage again.
        Err(e) if e.errcode() == Some(wxshop::ErrCode::UserRefused) => {
            let mut err = ApiError::new(axum::http::StatusCode::FORBIDDEN, e.to_string());
            err.code = Some(43101);
            return Err(err);
        }
        other => other?,
    }
    Ok(Json(serde_json::json!({ "sent": true, "template_id": ORDER_SHIPPED_TEMPLATE })))
}

async fn inbox(State(s): State<AppState>, buyer: Buyer) -> Json<serde_json::Value> {
    let messages: Vec<String> =
        lock(&s.inbox.messages).iter().filter(|(o, _)| *o == buyer.openid).map(|(_, t)| t.clone()).collect();
    let consents = lock(&s.inbox.consents).get(&buyer.openid).cloned().unwrap_or_default();
    Json(serde_json::json!({ "messages": messages, "consents": consents }))
}
