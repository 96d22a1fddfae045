//! What every `/v3/…` handler shares: signed, logged answers in WeChat's `{code, message}` error
//! shape, the merchant `Authorization` check, and reading fields of a JSON body.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::crypto::pay::{self as paycrypto, normalize_serial};
use crate::emulator::{EmulatorState, lock};
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

pub(super) fn reply(s: &EmulatorState, what: &str, status: u16, body: Option<Value>) -> Response {
    reply_with(s, what, status, body, false)
}

pub(super) fn err(s: &EmulatorState, what: &str, status: u16, code: &str, message: &str) -> Response {
    reply(s, what, status, Some(json!({ "code": code, "message": message })))
}

pub(super) fn param_err(s: &EmulatorState, what: &str, field: &str, message: &str) -> Response {
    reply(
        s,
        what,
        400,
        Some(json!({ "code": "PARAM_ERROR", "message": message, "detail": { "field": field, "location": "body" } })),
    )
}

/// Verifies the merchant's `Authorization` exactly as WeChat Pay does; `Ok(mchid)`.
pub(super) fn authenticate(
    s: &EmulatorState,
    what: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<String, Response> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(err(s, what, 401, "SIGN_ERROR", "Authorization header missing"));
    };
    let Some(f) = paycrypto::parse_authorization(auth) else {
        return Err(err(
            s,
            what,
            401,
            "SIGN_ERROR",
            "Authorization is not WECHATPAY2-SHA256-RSA2048 mchid=\"…\",nonce_str=\"…\",signature=\"…\",timestamp=\"…\",serial_no=\"…\"",
        ));
    };
    let (key, serial) = match lock(&s.pay).merchants.get(&f.mchid) {
        Some(m) => (m.public_key.clone(), m.serial.clone()),
        None => {
            return Err(err(s, what, 400, "MCH_NOT_EXISTS", "商户号不存在 (register the merchant with the emulator)"));
        }
    };
    if normalize_serial(&f.serial_no) != normalize_serial(&serial) {
        return Err(err(
            s,
            what,
            401,
            "SIGN_ERROR",
            "serial_no is not the merchant API certificate serial registered for this mchid",
        ));
    }
    if paycrypto::check_timestamp(&f.timestamp, s.now().timestamp(), 300).is_err() {
        return Err(err(s, what, 401, "SIGN_ERROR", "请求的时间戳已过期 (timestamp more than 5 minutes off)"));
    }
    let pq = uri.path_and_query().map(|x| x.as_str()).unwrap_or(uri.path());
    let message = paycrypto::request_message(method.as_str(), pq, &f.timestamp, &f.nonce_str, body);
    if key.verify(&message, &f.signature).is_err() {
        return Err(err(s, what, 401, "SIGN_ERROR", "错误的签名，验签失败"));
    }
    Ok(f.mchid)
}

pub(super) fn parse_json(s: &EmulatorState, what: &str, body: &[u8]) -> std::result::Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(err(s, what, 400, "PARAM_ERROR", "请求体不是合法的JSON对象")),
    }
}

pub(super) fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

pub(super) fn int_field(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_i64()
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
