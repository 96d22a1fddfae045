//! Service-provider (partner) JSAPI payments: prepay, query, close (mirrors `crate::pay::partner`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Authed, Body, Obj, PayError, Q, Text, required};
use super::transactions::{
    OrderFields, check_order_fields, close_order, find_order_reply, order_skeleton, upsert_order,
};
use super::{Kind, Order};
use crate::emulator::{Shared, lock};

/// `POST /v3/pay/partner/transactions/jsapi`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PartnerJsapiRequest {
    sp_appid: Text,
    sp_mchid: Text,
    sub_appid: Text,
    sub_mchid: Text,
    payer: Obj<PartnerPayer>,
    #[serde(flatten)]
    order: OrderFields,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PartnerPayer {
    sp_openid: Text,
    sub_openid: Text,
}

/// `POST /v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PartnerCloseRequest {
    sp_mchid: Text,
    sub_mchid: Text,
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/pay/partner/transactions/jsapi", post(partner_jsapi))
        .route("/v3/pay/partner/transactions/id/{transaction_id}", get(partner_query_by_id))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}", get(partner_query_by_out_trade_no))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close", post(partner_close))
}

async fn partner_jsapi(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, raw } = m.json::<PartnerJsapiRequest>()?;
    let Authed { mchid, what, .. } = m;
    let sp_appid = required(req.sp_appid.as_deref(), "sp_appid")?.to_string();
    let sp_mchid = required(req.sp_mchid.as_deref(), "sp_mchid")?.to_string();
    let sub_mchid = required(req.sub_mchid.as_deref(), "sub_mchid")?.to_string();
    required(req.order.description.as_deref(), "description")?;
    let out_trade_no = required(req.order.out_trade_no.as_deref(), "out_trade_no")?.to_string();
    required(req.order.notify_url.as_deref(), "notify_url")?;
    if sp_mchid != mchid {
        return Err(PayError::param("sp_mchid", "sp_mchid 与请求头中的商户号不一致"));
    }
    check_order_fields(&req.order)?;
    let sub_appid = req.sub_appid.clone();
    let payer = req.payer.as_ref();
    let (payer, openid, appid) =
        match (payer.and_then(|p| p.sp_openid.as_deref()), payer.and_then(|p| p.sub_openid.as_deref())) {
            (Some(o), None) => (json!({ "sp_openid": o }), o.to_string(), sp_appid.clone()),
            (None, Some(o)) if sub_appid.is_some() => {
                (json!({ "sub_openid": o }), o.to_string(), sub_appid.clone().unwrap_or_default())
            }
            (None, Some(_)) => return Err(PayError::param("sub_appid", "传入sub_openid时sub_appid必填")),
            _ => return Err(PayError::param("payer", "payer.sp_openid 与 payer.sub_openid 须且仅须填写一个")),
        };
    let key = (sub_mchid.clone(), out_trade_no);
    let kind = Kind::Partner { sp_appid, sp_mchid, sub_appid };
    let order = Order { request: raw, ..order_skeleton(&req.order, sub_mchid, mchid, kind, appid, payer, openid) };
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
    let Body { req, .. } = m.json::<PartnerCloseRequest>()?;
    let Authed { mchid, what, .. } = m;
    let sub = required(req.sub_mchid.as_deref(), "sub_mchid")?.to_string();
    if req.sp_mchid.as_deref() != Some(mchid.as_str()) {
        return Err(PayError::param("sp_mchid", "sp_mchid 必填且须与请求头一致"));
    }
    close_order(&s, &what, (sub, no), Some(&mchid))
}
