//! Shared pieces of the HTTP API: errors as JSON and the signed-in buyer extractor.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// An error answered as `{"error": "...", "code": ...}` with a fitting status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub code: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), code: None }
    }
}

impl From<wxshop::Error> for ApiError {
    fn from(e: wxshop::Error) -> Self {
        use wxshop::Error as E;
        let status = match &e {
            E::Api { errcode, .. } if errcode.code() == 40029 || errcode.code() == 40163 => StatusCode::BAD_REQUEST,
            E::Api { .. } | E::PayApi { .. } | E::Transport { .. } | E::HttpStatus { .. } => StatusCode::BAD_GATEWAY,
            E::InvalidRequest(_) | E::Crypto { .. } | E::Decode { .. } => StatusCode::BAD_REQUEST,
            E::Signature(_) | E::StaleTimestamp { .. } | E::UnknownSerial { .. } => StatusCode::UNAUTHORIZED,
            E::Market { code: "not_found", .. } => StatusCode::NOT_FOUND,
            E::Market { code: "invalid", .. } => StatusCode::BAD_REQUEST,
            E::Market { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, code: e.errcode().map(|c| c.code()), message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message, "code": self.code }))).into_response()
    }
}

/// The signed-in buyer, from `Authorization: Bearer <session_token>`.
pub struct Buyer {
    pub openid: String,
    pub unionid: Option<String>,
}

impl FromRequestParts<AppState> for Buyer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "sign in first: Authorization: Bearer <token>"))?;
        let session = state
            .sessions
            .get(token)
            .await?
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "session expired or unknown: sign in again"))?;
        Ok(Buyer { openid: session.openid, unionid: session.unionid })
    }
}
