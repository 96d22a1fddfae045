//! Service-provider (partner) JSAPI payments: prepay, query, close (mirrors `crate::pay::partner`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use super::Kind;
use super::extract::{Q, param_err, parse_json, str_field};
use super::transactions::{check_order_fields, close_order, find_order_reply, order_skeleton, upsert_order};
use crate::emulator::{Shared, lock};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/pay/partner/transactions/jsapi", post(partner_jsapi))
        .route("/v3/pay/partner/transactions/id/{transaction_id}", get(partner_query_by_id))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}", get(partner_query_by_out_trade_no))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close", post(partner_close))
}

async fn partner_jsapi(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    const W: &str = "POST /v3/pay/partner/transactions/jsapi";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sp_appid = need_str!(&s, W, v, "sp_appid");
    let sp_mchid = need_str!(&s, W, v, "sp_mchid");
    let sub_mchid = need_str!(&s, W, v, "sub_mchid");
    need_str!(&s, W, v, "description");
    need_str!(&s, W, v, "out_trade_no");
    need_str!(&s, W, v, "notify_url");
    if sp_mchid != mchid {
        return param_err(&s, W, "sp_mchid", "sp_mchid 与请求头中的商户号不一致");
    }
    if let Err(r) = check_order_fields(&s, W, &v) {
        return r;
    }
    let sub_appid = str_field(&v, &["sub_appid"]).map(str::to_string);
    let (payer, openid, appid) = match (str_field(&v, &["payer", "sp_openid"]), str_field(&v, &["payer", "sub_openid"]))
    {
        (Some(o), None) => (json!({ "sp_openid": o }), o.to_string(), sp_appid.clone()),
        (None, Some(o)) if sub_appid.is_some() => {
            (json!({ "sub_openid": o }), o.to_string(), sub_appid.clone().unwrap_or_default())
        }
        (None, Some(_)) => return param_err(&s, W, "sub_appid", "传入sub_openid时sub_appid必填"),
        _ => return param_err(&s, W, "payer", "payer.sp_openid 与 payer.sub_openid 须且仅须填写一个"),
    };
    let key = (sub_mchid.clone(), str_field(&v, &["out_trade_no"]).unwrap_or("").to_string());
    let kind = Kind::Partner { sp_appid, sp_mchid, sub_appid };
    let order = order_skeleton(&v, sub_mchid, mchid, kind, appid, payer, openid);
    upsert_order(&s, W, key, order)
}

async fn partner_query_by_id(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/pay/partner/transactions/id/{transaction_id}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    if q.get("sp_mchid") != Some(&mchid) || !q.contains_key("sub_mchid") {
        return param_err(&s, W, "sp_mchid", "sp_mchid 与 sub_mchid 必填");
    }
    let sub = q.get("sub_mchid").cloned().unwrap_or_default();
    let key = lock(&s.pay).by_txn.get(&id).cloned().filter(|k| k.0 == sub);
    find_order_reply(&s, W, key, Some(&mchid))
}

async fn partner_query_by_out_trade_no(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/pay/partner/transactions/out-trade-no/{out_trade_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let Some(sub) = q.get("sub_mchid").filter(|_| q.get("sp_mchid") == Some(&mchid)) else {
        return param_err(&s, W, "sp_mchid", "sp_mchid 与 sub_mchid 必填");
    };
    find_order_reply(&s, W, Some((sub.clone(), no)), Some(&mchid))
}

async fn partner_close(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sub = need_str!(&s, W, v, "sub_mchid");
    if str_field(&v, &["sp_mchid"]) != Some(mchid.as_str()) {
        return param_err(&s, W, "sp_mchid", "sp_mchid 必填且须与请求头一致");
    }
    close_order(&s, W, (sub, no), Some(&mchid))
}
