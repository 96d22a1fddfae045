//! Shared pieces of the HTTP API: the one error mapping (every route answers the same JSON shape) and the
//! signed-in buyer extractor.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use wxshop::market::MarketError;

use crate::AppState;

/// The storefront's one error: every route answers `{"error": "...", "kind": "...", "code": ...}` with a
/// fitting status. `kind` is a stable machine-readable class (the market's and governance's error codes,
/// or `unauthorized`, `upstream`, …); `code` is WeChat's errcode when WeChat answered one; an out-of-stock
/// checkout adds `shortages`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub code: Option<i64>,
    /// Fields added to the body (e.g. `shortages`).
    pub extra: Option<serde_json::Value>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            s if s.is_client_error() => "invalid",
            _ => "internal",
        };
        ApiError { status, kind, message: message.into(), code: None, extra: None, retry_after: None }
    }

    fn with_kind(status: StatusCode, kind: &'static str, message: String) -> Self {
        ApiError { status, kind, message, code: None, extra: None, retry_after: None }
    }
}

/// The status of a market error, by its class.
fn market_status(e: &MarketError) -> StatusCode {
    use wxshop::market::ErrorKind as K;
    match e.kind() {
        K::NotFound => StatusCode::NOT_FOUND,
        K::Invalid => StatusCode::BAD_REQUEST,
        K::Unauthorized => StatusCode::UNAUTHORIZED,
        K::Forbidden => StatusCode::FORBIDDEN,
        K::Limit => StatusCode::UNPROCESSABLE_ENTITY,
        K::Stale => StatusCode::PRECONDITION_FAILED,
        K::Busy => StatusCode::SERVICE_UNAVAILABLE,
        K::Upstream => StatusCode::BAD_GATEWAY,
        K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    }
}

impl From<MarketError> for ApiError {
    fn from(e: MarketError) -> Self {
        let mut err = ApiError::with_kind(market_status(&e), e.code(), e.to_string());
        if let MarketError::OutOfStock { shortages } = &e {
            err.extra = Some(serde_json::json!({ "shortages": shortages }));
        }
        err
    }
}

impl From<wxshop::Error> for ApiError {
    fn from(e: wxshop::Error) -> Self {
        use wxshop::Error as E;
        let (status, kind) = match &e {
            E::Api { errcode, .. } if errcode.code() == 40029 || errcode.code() == 40163 => {
                (StatusCode::BAD_REQUEST, "invalid_code")
            }
            E::Api { .. } | E::PayApi { .. } => (StatusCode::BAD_GATEWAY, "upstream"),
            E::Transport { .. } | E::HttpStatus { .. } => (StatusCode::BAD_GATEWAY, "upstream_unavailable"),
            E::InvalidRequest(_) | E::Crypto { .. } | E::Decode { .. } => (StatusCode::BAD_REQUEST, "invalid"),
            E::Signature(_) | E::StaleTimestamp { .. } | E::UnknownSerial { .. } => {
                (StatusCode::UNAUTHORIZED, "bad_signature")
            }
            E::Market { code: "not_found", .. } => (StatusCode::NOT_FOUND, "not_found"),
            E::Market { code: "invalid", .. } => (StatusCode::BAD_REQUEST, "invalid"),
            E::Market { code: "unauthorized", .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            E::Market { code, .. } => (StatusCode::CONFLICT, *code),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            kind,
            code: e.errcode().map(|c| c.code()),
            message: e.to_string(),
            extra: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message, "kind": self.kind, "code": self.code });
        if let Some(serde_json::Value::Object(extra)) = self.extra {
            body.as_object_mut().expect("an object").extend(extra);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// What a JSON route answers.
pub type Answer = Result<Json<serde_json::Value>, ApiError>;

/// `v` as the route's JSON answer (a value that cannot be serialized is the server's fault: 500).
pub fn ok(v: impl serde::Serialize) -> Answer {
    serde_json::to_value(v).map(Json).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A JSON request body; a body that is not JSON, or not of the route's shape, is answered with the one
/// error shape (400, kind `invalid`) instead of axum's plain-text rejection.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => {
                Err(ApiError::with_kind(StatusCode::BAD_REQUEST, "invalid", format!("request body: {}", e.body_text())))
            }
        }
    }
}

/// Query parameters; a malformed one (a number that is not a number, say) is answered with the one error
/// shape (400, kind `invalid`).
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::with_kind(StatusCode::BAD_REQUEST, "invalid", format!("query: {}", e.body_text()))),
        }
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
