//! Service-provider (partner) JSAPI payments: prepay, query, close (mirrors `crate::pay::partner`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use super::Kind;
use super::extract::{Authed, PayError, Q, parse_json, str_field};
use super::transactions::{check_order_fields, close_order, find_order_reply, order_skeleton, upsert_order};
use crate::emulator::{Shared, lock};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/pay/partner/transactions/jsapi", post(partner_jsapi))
        .route("/v3/pay/partner/transactions/id/{transaction_id}", get(partner_query_by_id))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}", get(partner_query_by_out_trade_no))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close", post(partner_close))
}

async fn partner_jsapi(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, body, .. } = m;
    let v = parse_json(&body)?;
    let sp_appid = need_str!(v, "sp_appid");
    let sp_mchid = need_str!(v, "sp_mchid");
    let sub_mchid = need_str!(v, "sub_mchid");
    need_str!(v, "description");
    need_str!(v, "out_trade_no");
    need_str!(v, "notify_url");
    if sp_mchid != mchid {
        return Err(PayError::param("sp_mchid", "sp_mchid 与请求头中的商户号不一致"));
    }
    check_order_fields(&v)?;
    let sub_appid = str_field(&v, &["sub_appid"]).map(str::to_string);
    let (payer, openid, appid) = match (str_field(&v, &["payer", "sp_openid"]), str_field(&v, &["payer", "sub_openid"]))
    {
        (Some(o), None) => (json!({ "sp_openid": o }), o.to_string(), sp_appid.clone()),
        (None, Some(o)) if sub_appid.is_some() => {
            (json!({ "sub_openid": o }), o.to_string(), sub_appid.clone().unwrap_or_default())
        }
        (None, Some(_)) => return Err(PayError::param("sub_appid", "传入sub_openid时sub_appid必填")),
        _ => return Err(PayError::param("payer", "payer.sp_openid 与 payer.sub_openid 须且仅须填写一个")),
    };
    let key = (sub_mchid.clone(), str_field(&v, &["out_trade_no"]).unwrap_or("").to_string());
    let kind = Kind::Partner { sp_appid, sp_mchid, sub_appid };
    let order = order_skeleton(&v, sub_mchid, mchid, kind, appid, payer, openid);
    upsert_order(&s, &what, key, order)
}

async fn partner_query_by_id(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
    m: Authed,
) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    if q.get("sp_mchid") != Some(&mchid) || !q.contains_key("sub_mchid") {
        return Err(PayError::param("sp_mchid", "sp_mchid 与 sub_mchid 必填"));
    }
    let sub = q.get("sub_mchid").cloned().unwrap_or_default();
    let key = lock(&s.pay).by_txn.get(&id).cloned().filter(|k| k.0 == sub);
    find_order_reply(&s, &what, key, Some(&mchid))
}

async fn partner_query_by_out_trade_no(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    m: Authed,
) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let Some(sub) = q.get("sub_mchid").filter(|_| q.get("sp_mchid") == Some(&mchid)) else {
        return Err(PayError::param("sp_mchid", "sp_mchid 与 sub_mchid 必填"));
    };
    find_order_reply(&s, &what, Some((sub.clone(), no)), Some(&mchid))
}

async fn partner_close(State(s): State<Shared>, Path(no): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, body, .. } = m;
    let v = parse_json(&body)?;
    let sub = need_str!(v, "sub_mchid");
    if str_field(&v, &["sp_mchid"]) != Some(mchid.as_str()) {
        return Err(PayError::param("sp_mchid", "sp_mchid 必填且须与请求头一致"));
    }
    close_order(&s, &what, (sub, no), Some(&mchid))
}
