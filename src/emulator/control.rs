//! The control API under `/__emulator/` (see the module docs for the table).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::atomic::Ordering;

use super::{Fault, Shared, lock};
use crate::config::AppConfig;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/__emulator/apps", post(add_app))
        .route("/__emulator/login", post(login))
        .route("/__emulator/phone_code", post(phone_code))
        .route("/__emulator/faults", post(add_fault).delete(clear_faults))
        .route("/__emulator/calls", get(calls))
        .route("/__emulator/counters", get(counters))
        .route("/__emulator/reset_counters", post(reset_counters))
        .route("/__emulator/clock/advance", post(advance))
        .route("/__emulator/token_ttl", post(token_ttl))
        .route("/__emulator/last_body", get(last_body))
}

fn bad(msg: String) -> Response {
    (axum::http::StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": msg }))).into_response()
}

#[derive(Deserialize)]
struct AppBody {
    appid: String,
    secret: String,
}

async fn add_app(State(s): State<Shared>, Json(b): Json<AppBody>) -> Response {
    lock(&s.mp).add_app(&AppConfig::new(b.appid, b.secret));
    Json(serde_json::json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
struct LoginBody {
    appid: String,
    user: String,
}

async fn login(State(s): State<Shared>, Json(b): Json<LoginBody>) -> Response {
    let now = s.now();
    match lock(&s.mp).mint_login_code(&b.appid, &b.user, now) {
        Ok((code, openid)) => Json(serde_json::json!({ "code": code, "openid": openid })).into_response(),
        Err(e) => bad(e.to_string()),
    }
}

#[derive(Deserialize)]
struct PhoneBody {
    appid: String,
    phone: String,
}

async fn phone_code(State(s): State<Shared>, Json(b): Json<PhoneBody>) -> Response {
    let now = s.now();
    match lock(&s.mp).mint_phone_code(&b.appid, &b.phone, now) {
        Ok(code) => Json(serde_json::json!({ "code": code })).into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn add_fault(State(s): State<Shared>, Json(f): Json<Fault>) -> Response {
    if f.errcode.is_none() && f.status.is_none() && !f.reset && f.delay_ms.is_none() {
        return bad("a fault needs errcode, status, reset or delay_ms".into());
    }
    s.inject(f);
    Json(serde_json::json!({ "ok": true })).into_response()
}

async fn clear_faults(State(s): State<Shared>) -> Response {
    lock(&s.faults).clear();
    Json(serde_json::json!({ "ok": true })).into_response()
}

async fn calls(State(s): State<Shared>) -> Response {
    Json(lock(&s.calls).clone()).into_response()
}

async fn counters(State(s): State<Shared>) -> Response {
    Json(lock(&s.counters).clone()).into_response()
}

async fn reset_counters(State(s): State<Shared>) -> Response {
    lock(&s.calls).clear();
    lock(&s.counters).clear();
    Json(serde_json::json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
struct Seconds {
    seconds: u64,
}

async fn advance(State(s): State<Shared>, Json(b): Json<Seconds>) -> Response {
    s.advance(Duration::from_secs(b.seconds));
    Json(serde_json::json!({ "now": s.now().to_rfc3339() })).into_response()
}

async fn token_ttl(State(s): State<Shared>, Json(b): Json<Seconds>) -> Response {
    s.token_ttl_secs.store(b.seconds.max(1) as i64, Ordering::Relaxed);
    Json(serde_json::json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
struct PathQuery {
    path: String,
}

async fn last_body(State(s): State<Shared>, axum::extract::Query(q): axum::extract::Query<PathQuery>) -> Response {
    match s.last_body(&q.path) {
        Some(b) => ([(axum::http::header::CONTENT_TYPE, "application/json")], b).into_response(),
        None => {
            (axum::http::StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no body served on that path" })))
                .into_response()
        }
    }
}
