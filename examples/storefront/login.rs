//! Login and profile: `POST /api/login`, `POST /api/me/phone`, `GET /api/me`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::api::Body;
use crate::api::{ApiError, Buyer};
use crate::routes::{Auth, Routes, doc};

/// Phone numbers by openid (a real server keeps them in its database).
#[derive(Default)]
pub struct Profiles {
    phones: Mutex<HashMap<String, String>>,
}

impl Profiles {
    /// The phone number a buyer bound, if any.
    pub fn phone_of(&self, openid: &str) -> Option<String> {
        self.phones.lock().unwrap_or_else(|p| p.into_inner()).get(openid).cloned()
    }
}

pub fn routes() -> Routes {
    Routes::new("login")
        .post("/api/login", login, doc("Exchange a wx.login code for a session token", Auth::Public).body::<CodeBody>())
        .post(
            "/api/me/phone",
            phone,
            doc("Bind the phone number of a getPhoneNumber code", Auth::Buyer).body::<CodeBody>(),
        )
        .get("/api/me", me, doc("The signed-in buyer", Auth::Buyer))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CodeBody {
    code: String,
}

/// Exchanges a `wx.login` code for an opaque session token. The session_key stays here.
async fn login(State(s): State<AppState>, Body(b): Body<CodeBody>) -> Result<Json<serde_json::Value>, ApiError> {
    let (token, session) = s.sessions.login(&b.code).await?;
    Ok(Json(serde_json::json!({ "session_token": token.expose(), "openid": session.openid })))
}

/// Exchanges a getPhoneNumber code and remembers the number.
async fn phone(
    State(s): State<AppState>,
    buyer: Buyer,
    Body(b): Body<CodeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let info = s.client.auth().phone_number(&b.code).await?;
    s.profiles.phones.lock().unwrap_or_else(|p| p.into_inner()).insert(buyer.openid, info.phone_number.clone());
    Ok(Json(serde_json::json!({ "phone_number": info.phone_number, "country_code": info.country_code })))
}

async fn me(State(s): State<AppState>, buyer: Buyer) -> Json<serde_json::Value> {
    let phone = s.profiles.phones.lock().unwrap_or_else(|p| p.into_inner()).get(&buyer.openid).cloned();
    Json(serde_json::json!({ "openid": buyer.openid, "unionid": buyer.unionid, "phone_number": phone }))
}
