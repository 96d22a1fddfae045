//! Login and profile: `POST /api/login`, `POST /api/me/phone`, `GET /api/me`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::AppState;
use crate::api::{ApiError, Buyer};
use crate::demo::Demo;

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

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/login", post(login)).route("/api/me/phone", post(phone)).route("/api/me", get(me))
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

/// Exchanges a `wx.login` code for an opaque session token. The session_key stays here.
async fn login(State(s): State<AppState>, Json(b): Json<CodeBody>) -> Result<Json<serde_json::Value>, ApiError> {
    let (token, session) = s.sessions.login(&b.code).await?;
    Ok(Json(serde_json::json!({ "session_token": token.expose(), "openid": session.openid })))
}

/// Exchanges a getPhoneNumber code and remembers the number.
async fn phone(
    State(s): State<AppState>,
    buyer: Buyer,
    Json(b): Json<CodeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let info = s.client.auth().phone_number(&b.code).await?;
    s.profiles.phones.lock().unwrap_or_else(|p| p.into_inner()).insert(buyer.openid, info.phone_number.clone());
    Ok(Json(serde_json::json!({ "phone_number": info.phone_number, "country_code": info.country_code })))
}

async fn me(State(s): State<AppState>, buyer: Buyer) -> Json<serde_json::Value> {
    let phone = s.profiles.phones.lock().unwrap_or_else(|p| p.into_inner()).get(&buyer.openid).cloned();
    Json(serde_json::json!({ "openid": buyer.openid, "unionid": buyer.unionid, "phone_number": phone }))
}

/// Demo: log in as "alice" with a code from the emulator's wx.login stand-in.
pub async fn demo_login(d: &mut Demo) -> Result<String, String> {
    let code = d.emulator_login_code("alice").await?;
    let r = d.post("/api/login", serde_json::json!({ "code": code })).await?;
    let token = r["session_token"].as_str().ok_or("no session_token")?.to_string();
    d.token = Some(token);
    Ok(format!("signed in as {}", r["openid"].as_str().unwrap_or("?")))
}

/// Demo: bind a phone number through a getPhoneNumber code.
pub async fn demo_phone(d: &mut Demo) -> Result<String, String> {
    let code = d.emulator_phone_code("+8613800138000").await?;
    let r = d.post("/api/me/phone", serde_json::json!({ "code": code })).await?;
    let me = d.get("/api/me").await?;
    if me["phone_number"] != r["phone_number"] {
        return Err(format!("profile does not show the phone number: {me}"));
    }
    Ok(format!("phone {} bound", r["phone_number"].as_str().unwrap_or("?")))
}
