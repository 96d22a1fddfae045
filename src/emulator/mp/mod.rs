//! The mini-program side of the emulator, laid out like [`crate::mp`]: one module per API family,
//! each with its routes, its state and its control calls.
//!
//! | module | WeChat APIs | SDK family |
//! |---|---|---|
//! | [`auth`] | `cgi-bin/token`, `stable_token`, `jscode2session`, session keys, phone numbers, paid unionid | [`crate::mp::auth`], [`crate::mp::session`] |
//! | [`link`] | URL Scheme, URL Link, Short Link, their quotas | [`crate::mp::link`] |
//! | [`wxacode`] | `getwxacode`, `getwxacodeunlimit`, `createwxaqrcode` | [`crate::mp::wxacode`] |
//! | [`message`] | subscribe and customer-service messages, typing, media upload, message push | [`crate::mp::message`], [`crate::push`] |
//! | [`security`] | `msg_sec_check`, `media_check_async` | [`crate::mp::security`] |
//! | [`shipping`] | 发货信息管理 (`wxa/sec/order/*`) and its events | [`crate::mp::shipping`] |
//!
//! Every business call is checked the way WeChat checks it, in WeChat's order: first the
//! `access_token` (the `Authorized` extractor), then the body (`WxJson`); a handler answers `WxError`
//! with `?`.

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{Shared, lock, wx_error};

pub mod auth;
pub mod link;
pub mod message;
pub mod security;
pub mod shipping;
pub mod wxacode;

/// WeChat's error answer, `{errcode, errmsg}` with HTTP 200 as WeChat sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WxError {
    errcode: i64,
    errmsg: Cow<'static, str>,
}

impl WxError {
    /// `errcode` with WeChat's `errmsg` (the answer adds a request id).
    pub(crate) fn new(errcode: i64, errmsg: impl Into<Cow<'static, str>>) -> Self {
        WxError { errcode, errmsg: errmsg.into() }
    }
}

impl From<(i64, &'static str)> for WxError {
    fn from((errcode, errmsg): (i64, &'static str)) -> Self {
        WxError::new(errcode, errmsg)
    }
}

impl IntoResponse for WxError {
    fn into_response(self) -> Response {
        wx_error(self.errcode, &self.errmsg)
    }
}

/// What a mini-program handler answers: a response, or WeChat's error.
pub(crate) type WxResult<T = Response> = Result<T, WxError>;

/// A success envelope `{errcode: 0, errmsg: "ok"}` merged with `fields`.
pub(crate) fn wx_ok(fields: serde_json::Value) -> WxResult {
    Ok(super::wx_ok(fields))
}

/// The app whose `access_token` query parameter WeChat accepts: 41001 when it is missing, 40001
/// when it is unknown or superseded, 42001 when it has expired.
pub(crate) struct Authorized(pub(crate) String);

impl FromRequestParts<Shared> for Authorized {
    type Rejection = WxError;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> WxResult<Self> {
        // The last value wins, as the query map every handler reads answers.
        let token = parts
            .uri
            .query()
            .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k == "access_token").last())
            .map(|(_, v)| v.into_owned());
        let now = s.now();
        let appid = lock(&s.mp).check_token(token.as_deref(), now)?;
        Ok(Authorized(appid))
    }
}

/// A JSON body decoded into `T` the way WeChat rejects bad ones: 44002 when empty, 47001 when it
/// does not decode into `T`.
pub(crate) struct WxJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Shared> for WxJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, s: &Shared) -> Result<Self, Response> {
        let body = Bytes::from_request(req, s).await.map_err(IntoResponse::into_response)?;
        decode(&body).map(WxJson).map_err(IntoResponse::into_response)
    }
}

/// [`WxJson`]'s decoding.
fn decode<T: DeserializeOwned>(body: &[u8]) -> WxResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(WxError::new(44002, "empty post data"));
    }
    serde_json::from_slice(body).map_err(|_| WxError::new(47001, "data format error"))
}

/// Every mini-program route.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .merge(auth::routes())
        .merge(link::routes())
        .merge(wxacode::routes())
        .merge(message::routes())
        .merge(security::routes())
        .merge(shipping::routes())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::emulator::{DEFAULT_APPID, DEFAULT_SECRET, Emulator};

    async fn post(url: &str, body: &'static str) -> Value {
        reqwest::Client::new().post(url).body(body).send().await.unwrap().json().await.unwrap()
    }

    fn code_and_msg(v: &Value) -> (i64, String) {
        let msg = v["errmsg"].as_str().unwrap_or("");
        (v["errcode"].as_i64().unwrap_or(0), msg.split(" rid: ").next().unwrap_or("").to_string())
    }

    #[tokio::test]
    async fn the_token_is_checked_before_the_body_and_each_failure_has_wechats_errcode() {
        let emu = Emulator::start_default().await.unwrap();
        let base = emu.base_url();
        let send = format!("{base}/cgi-bin/message/subscribe/send");
        assert_eq!(code_and_msg(&post(&send, "").await), (41001, "access_token missing".into()));
        let bad = format!("{send}?access_token=nope");
        assert_eq!(
            code_and_msg(&post(&bad, "{").await),
            (40001, "invalid credential, access_token is invalid or not latest".into())
        );
        let token: Value = reqwest::Client::new()
            .post(format!("{base}/cgi-bin/stable_token"))
            .json(&json!({"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap();
        // A repeated access_token: the last one counts, as the query map reads it.
        let good = format!("{send}?access_token=nope&access_token={token}");
        assert_eq!(code_and_msg(&post(&good, " \n").await), (44002, "empty post data".into()));
        assert_eq!(code_and_msg(&post(&good, "{").await), (47001, "data format error".into()));
        assert_eq!(code_and_msg(&post(&good, "[]").await), (47001, "data format error".into()));
        assert_eq!(code_and_msg(&post(&good, r#"{"touser":"x"}"#).await), (40003, "invalid openid".into()));
    }
}
