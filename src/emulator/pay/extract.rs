//! What every `/v3/…` handler shares: signed, logged answers in WeChat's `{code, message}` error
//! shape, the merchant `Authorization` check, and reading fields of a JSON body.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::crypto::pay::{self as paycrypto, normalize_serial};
use crate::emulator::{EmulatorState, Shared, lock};
use crate::pay::notify::sign_body;

// ---------------------------------------------------------------------------------------------
// Answers: signed, logged
// ---------------------------------------------------------------------------------------------

fn sign_headers(s: &EmulatorState, bytes: &[u8], force_certificate: bool) -> HeaderMap {
    let (serial, key, ts, probe) = {
        let mut p = lock(&s.pay);
        let (serial, key) = p.signer(force_certificate);
        let probe = p.probes > 0;
        if probe {
            p.probes -= 1;
        }
        (serial, key, s.now().timestamp() + p.skew_secs, probe)
    };
    let mut h = sign_body(&key, &serial, bytes, ts).unwrap_or_default();
    if probe && let Some(sig) = h.get("wechatpay-signature").and_then(|v| v.to_str().ok()).map(str::to_string) {
        let probe = format!("{}{sig}", paycrypto::SIGNTEST_PREFIX);
        if let Ok(v) = HeaderValue::from_str(&probe) {
            h.insert("wechatpay-signature", v);
        }
    }
    if bytes.is_empty() {
        h.remove("content-type");
    }
    h
}

/// A signed, logged answer: `body` signed with the platform key the mode picks (a platform
/// certificate whatever the mode with `force_certificate`).
pub(super) fn reply_with(
    s: &EmulatorState,
    what: &str,
    status: u16,
    body: Option<Value>,
    force_certificate: bool,
) -> Response {
    let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap_or_default()).unwrap_or_default();
    let mut headers = sign_headers(s, &bytes, force_certificate);
    let rid = format!("08{:016X}", rand::random::<u64>());
    if let Ok(v) = HeaderValue::from_str(&rid) {
        headers.insert("request-id", v);
    }
    let detail = body
        .as_ref()
        .and_then(|b| {
            b.get("code").and_then(Value::as_str).map(|c| format!("{c}: {}", b["message"].as_str().unwrap_or("")))
        })
        .unwrap_or_default();
    let now = s.now();
    lock(&s.pay).push_log(now, "api", what.to_string(), status, detail);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, bytes).into_response()
}

/// [`reply_with`] the key the mode picks.
pub(super) fn reply(s: &EmulatorState, what: &str, status: u16, body: Option<Value>) -> Response {
    reply_with(s, what, status, body, false)
}

/// WeChat Pay's error answer: an HTTP status and the `{code, message, detail?}` body. Handlers and
/// [`Authed`] return it with `?`; [`sign_errors`] signs and logs it like every other answer.
#[derive(Debug, Clone)]
pub(super) struct PayError {
    status: u16,
    body: Value,
}

impl PayError {
    /// `status` with WeChat's `code` and `message`.
    pub(super) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        PayError { status, body: json!({ "code": code, "message": message.into() }) }
    }

    /// `400 PARAM_ERROR` about one field of the body.
    pub(super) fn param(field: &str, message: impl Into<String>) -> Self {
        let body = json!({ "code": "PARAM_ERROR", "message": message.into(), "detail": { "field": field, "location": "body" } });
        PayError { status: 400, body }
    }
}

impl IntoResponse for PayError {
    /// An unsigned placeholder that [`sign_errors`] replaces with the signed answer.
    fn into_response(self) -> Response {
        let mut r = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response();
        r.extensions_mut().insert(self);
        r
    }
}

/// The call as the log names it: `METHOD /route/{param}`.
fn what_of(req: &Request) -> String {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or(req.uri().path());
    format!("{} {route}", req.method())
}

/// Signs and logs every [`PayError`] a route answers, with the emulator's platform key.
pub(super) async fn sign_errors(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let what = what_of(&req);
    let mut resp = next.run(req).await;
    match resp.extensions_mut().remove::<PayError>() {
        Some(e) => reply(&s, &what, e.status, Some(e.body)),
        None => resp,
    }
}

/// A `/v3/…` request whose `Authorization` (`WECHATPAY2-SHA256-RSA2048 mchid=…,signature=…`)
/// verified exactly as WeChat Pay checks it: the registered merchant, its certificate serial, a
/// timestamp within 5 minutes and the RSA signature over method, path, timestamp, nonce and body.
pub(super) struct Authed {
    /// The merchant that signed the request.
    pub(super) mchid: String,
    /// The call as the log names it: `METHOD /route/{param}`.
    pub(super) what: String,
    /// The request's headers (`Wechatpay-Serial`, `Host`).
    pub(super) headers: HeaderMap,
    /// The body that was signed (a GET signs none).
    pub(super) body: Bytes,
}

impl FromRequest<Shared> for Authed {
    type Rejection = Response;

    async fn from_request(req: Request, s: &Shared) -> std::result::Result<Self, Response> {
        let what = what_of(&req);
        let (method, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers().clone());
        let body = if method == Method::GET {
            Bytes::new()
        } else {
            Bytes::from_request(req, s).await.map_err(IntoResponse::into_response)?
        };
        let mchid = authenticate(s, &method, &uri, &headers, &body).map_err(IntoResponse::into_response)?;
        Ok(Authed { mchid, what, headers, body })
    }
}

/// Verifies the merchant's `Authorization` exactly as WeChat Pay does; `Ok(mchid)`.
fn authenticate(
    s: &EmulatorState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<String, PayError> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(PayError::new(401, "SIGN_ERROR", "Authorization header missing"));
    };
    let Some(f) = paycrypto::parse_authorization(auth) else {
        return Err(PayError::new(
            401,
            "SIGN_ERROR",
            "Authorization is not WECHATPAY2-SHA256-RSA2048 mchid=\"…\",nonce_str=\"…\",signature=\"…\",timestamp=\"…\",serial_no=\"…\"",
        ));
    };
    let (key, serial) = match lock(&s.pay).merchants.get(&f.mchid) {
        Some(m) => (m.public_key.clone(), m.serial.clone()),
        None => {
            return Err(PayError::new(400, "MCH_NOT_EXISTS", "商户号不存在 (register the merchant with the emulator)"));
        }
    };
    if normalize_serial(&f.serial_no) != normalize_serial(&serial) {
        return Err(PayError::new(
            401,
            "SIGN_ERROR",
            "serial_no is not the merchant API certificate serial registered for this mchid",
        ));
    }
    if paycrypto::check_timestamp(&f.timestamp, s.now().timestamp(), 300).is_err() {
        return Err(PayError::new(401, "SIGN_ERROR", "请求的时间戳已过期 (timestamp more than 5 minutes off)"));
    }
    let pq = uri.path_and_query().map(|x| x.as_str()).unwrap_or(uri.path());
    let message = paycrypto::request_message(method.as_str(), pq, &f.timestamp, &f.nonce_str, body);
    if key.verify(&message, &f.signature).is_err() {
        return Err(PayError::new(401, "SIGN_ERROR", "错误的签名，验签失败"));
    }
    Ok(f.mchid)
}

impl Authed {
    /// The body as the typed request `T`, with the JSON object it was read from.
    pub(super) fn json<T: DeserializeOwned>(&self) -> std::result::Result<Body<T>, PayError> {
        let not_object = || PayError::new(400, "PARAM_ERROR", "请求体不是合法的JSON对象");
        let raw: Value = serde_json::from_slice(&self.body).map_err(|_| not_object())?;
        if !raw.is_object() {
            return Err(not_object());
        }
        // Every field is read leniently (`Text`, `Int`, …), so an object always reads.
        let req = T::deserialize(&raw).map_err(|_| not_object())?;
        Ok(Body { req, raw })
    }
}

/// A typed request body and the JSON object it was read from: WeChat Pay's idempotency compares a
/// repeated request with the first one parameter for parameter, so the object is kept as sent.
pub(super) struct Body<T> {
    /// The typed fields.
    pub(super) req: T,
    /// The object as sent.
    pub(super) raw: Value,
}

// The field types of the typed request bodies. WeChat Pay answers a field of the wrong JSON type
// (or an empty string) as it answers a missing one, with the `PARAM_ERROR` that names it, so each
// reads such a field as absent instead of failing the whole body; the handler's own check then
// names the field. Each dereferences to the `Option` (or `Vec`) it holds.

macro_rules! lenient_field {
    ($(#[$doc:meta])* $name:ident$(<$t:ident>)?($inner:ty), |$v:ident| $read:expr) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub(super) struct $name$(<$t>)?(pub(super) $inner);

        impl<'de, $($t: DeserializeOwned + Default)?> Deserialize<'de> for $name$(<$t>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let $v = Value::deserialize(d)?;
                Ok($name($read))
            }
        }

        impl$(<$t>)? std::ops::Deref for $name$(<$t>)? {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }
    };
}

lenient_field!(
    /// A non-empty string.
    Text(Option<String>), |v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
);
lenient_field!(
    /// An integer that fits an `i64`.
    Int(Option<i64>), |v| v.as_i64()
);
lenient_field!(
    /// A boolean.
    Flag(Option<bool>), |v| v.as_bool()
);
lenient_field!(
    /// Any value, `null` included (kept as sent, as `scene_info` is).
    Any(Option<Value>), |v| Some(v)
);
lenient_field!(
    /// A nested object, its own fields read leniently; anything else is absent.
    Obj<T>(Option<T>), |v| if v.is_object() { T::deserialize(v).ok() } else { None }
);
lenient_field!(
    /// An array of objects: an item that is not one reads as an object without fields (each of its
    /// required fields then missing), and anything but an array as no items.
    List<T>(Vec<T>), |v| match v {
        Value::Array(items) => items.into_iter().map(|v| T::deserialize(v).unwrap_or_default()).collect(),
        _ => Vec::new(),
    }
);

/// A required field, or WeChat's `400 PARAM_ERROR` naming it (`field` as a dotted path).
pub(super) fn required<'a>(v: Option<&'a str>, field: &str) -> std::result::Result<&'a str, PayError> {
    v.ok_or_else(|| {
        let message =
            format!("输入源“/body/{}”映射到值字段“{field}”必填性规则校验失败，此字段为必填项", field.replace('.', "/"));
        PayError::param(field, message)
    })
}

/// What is found, or `404 code message`: the lookup every query handler starts with.
pub(super) fn found<T>(v: Option<T>, code: &str, message: &str) -> std::result::Result<T, PayError> {
    v.ok_or_else(|| PayError::new(404, code, message))
}

pub(super) fn valid_no(v: &str, min: usize, max: usize) -> bool {
    v.len() >= min && v.len() <= max && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
}

pub(super) fn insert_opt(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.into(), v);
    }
}

pub(super) type Q = Query<HashMap<String, String>>;
