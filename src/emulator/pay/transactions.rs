//! Direct JSAPI payments: prepay, query by id or out_trade_no, close (mirrors `crate::pay::transactions`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::extract::{
    Any, Authed, Body, Flag, Int, Obj, PayError, Q, Text, found, insert_opt, reply, required, valid_no,
};
use super::{Kind, Order};
use crate::emulator::{Shared, lock};
use crate::pay::transactions::wechat_time;

/// The order fields direct and partner prepay share (and a combined payment's sub-orders, but for
/// their amount).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OrderFields {
    pub(super) description: Text,
    pub(super) out_trade_no: Text,
    pub(super) attach: Text,
    pub(super) notify_url: Text,
    pub(super) time_expire: Text,
    pub(super) amount: Obj<OrderAmount>,
    pub(super) settle_info: Obj<SettleInfo>,
    pub(super) scene_info: Any,
}

/// `amount` of a prepay.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OrderAmount {
    total: Int,
    currency: Text,
}

/// `settle_info` of a prepay.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SettleInfo {
    profit_sharing: Flag,
}

impl OrderFields {
    fn total(&self) -> Option<i64> {
        self.amount.as_ref().and_then(|a| *a.total)
    }
}

/// `POST /v3/pay/transactions/jsapi`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct JsapiRequest {
    appid: Text,
    mchid: Text,
    payer: Obj<JsapiPayer>,
    #[serde(flatten)]
    order: OrderFields,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JsapiPayer {
    openid: Text,
}

/// `POST …/out-trade-no/{out_trade_no}/close`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CloseRequest {
    mchid: Text,
}

fn state_desc(state: &str) -> &'static str {
    match state {
        "SUCCESS" => "支付成功",
        "NOTPAY" => "订单未支付",
        "CLOSED" => "订单已关闭",
        "REFUND" => "转入退款",
        "PAYERROR" => "支付失败",
        "USERPAYING" => "用户支付中",
        _ => "",
    }
}

pub(super) fn transaction_json(o: &Order) -> Value {
    let mut m = Map::new();
    match &o.kind {
        Kind::Direct | Kind::Combine { .. } => {
            m.insert("appid".into(), o.appid.clone().into());
            m.insert("mchid".into(), o.owner.clone().into());
        }
        Kind::Partner { sp_appid, sp_mchid, sub_appid } => {
            m.insert("sp_appid".into(), sp_appid.clone().into());
            m.insert("sp_mchid".into(), sp_mchid.clone().into());
            insert_opt(&mut m, "sub_appid", sub_appid.clone().map(Value::from));
            m.insert("sub_mchid".into(), o.owner.clone().into());
        }
    }
    m.insert("out_trade_no".into(), o.out_trade_no.clone().into());
    insert_opt(&mut m, "transaction_id", o.transaction_id.clone().map(Value::from));
    m.insert("trade_type".into(), "JSAPI".into());
    m.insert("trade_state".into(), o.state.clone().into());
    m.insert("trade_state_desc".into(), state_desc(&o.state).into());
    let paid = o.success_time.is_some();
    if paid {
        m.insert("bank_type".into(), "OTHERS".into());
    }
    insert_opt(&mut m, "attach", o.attach.clone().map(Value::from));
    insert_opt(&mut m, "success_time", o.success_time.map(|t| wechat_time(t).into()));
    m.insert("payer".into(), o.payer.clone());
    let mut amount = json!({ "total": o.total, "currency": "CNY", "payer_currency": "CNY" });
    if paid {
        amount["payer_total"] = o.total.into();
    }
    m.insert("amount".into(), amount);
    insert_opt(
        &mut m,
        "scene_info",
        o.scene_info.as_ref().and_then(|s| s.get("device_id")).map(|d| json!({ "device_id": d })),
    );
    if paid {
        m.insert("promotion_detail".into(), json!([]));
    }
    Value::Object(m)
}

/// Checks the order fields common to direct and partner prepay; `Err` is the answer.
pub(super) fn check_order_fields(o: &OrderFields) -> std::result::Result<(), PayError> {
    if !valid_no(o.out_trade_no.as_deref().unwrap_or(""), 6, 32) {
        return Err(PayError::param("out_trade_no", "out_trade_no 须为6-32位数字、大小写字母_-|*@"));
    }
    if o.total().is_none_or(|t| t <= 0) {
        return Err(PayError::param("amount.total", "amount.total 必须为正整数（分）"));
    }
    if let Some(c) = o.amount.as_ref().and_then(|a| a.currency.as_deref())
        && c != "CNY"
    {
        return Err(PayError::param("amount.currency", "currency 仅支持 CNY"));
    }
    let url = o.notify_url.as_deref().unwrap_or("");
    if url::Url::parse(url).map(|u| u.query().is_some() || !u.scheme().starts_with("http")).unwrap_or(true) {
        return Err(PayError::param("notify_url", "notify_url 需为不带参数的http(s)地址"));
    }
    if let Some(t) = &o.time_expire.0
        && DateTime::parse_from_rfc3339(t).is_err()
    {
        return Err(PayError::param("time_expire", "time_expire 格式须为rfc3339"));
    }
    if o.attach.as_ref().is_some_and(|a| a.len() > 128) {
        return Err(PayError::param("attach", "attach 长度不能超过128"));
    }
    Ok(())
}

/// Stores a new order, or answers the prepay_id of the same one (WeChat's idempotency by
/// out_trade_no), or the error for a different one.
pub(super) fn upsert_order(
    s: &Shared,
    what: &str,
    key: (String, String),
    mut order: Order,
) -> Result<Response, PayError> {
    let now = s.now();
    let mut p = lock(&s.pay);
    if let Some(existing) = p.orders.get(&key) {
        let (state, same, prepay) =
            (existing.state.clone(), existing.request == order.request, existing.prepay_id.clone());
        drop(p);
        return match state.as_str() {
            "SUCCESS" | "REFUND" => Err(PayError::new(400, "ORDERPAID", "该订单已支付")),
            "CLOSED" => Err(PayError::new(400, "ORDER_CLOSED", "当前订单已关闭，请重新下单")),
            _ if same => Ok(reply(s, what, 200, Some(json!({ "prepay_id": prepay })))),
            _ => Err(PayError::new(
                400,
                "INVALID_REQUEST",
                "201 商户订单号重复 (same out_trade_no with different parameters)",
            )),
        };
    }
    let n = p.next();
    order.prepay_id = format!("wx{}{:012}", now.format("%d%H%M%S"), n);
    order.created = now;
    let prepay = order.prepay_id.clone();
    p.order_seq.push(key.clone());
    p.orders.insert(key, order);
    drop(p);
    s.bump("pay.prepay");
    Ok(reply(s, what, 200, Some(json!({ "prepay_id": prepay }))))
}

/// A new order of `fields`, its `request` (the object as sent, for the idempotency check) still
/// to be filled in.
pub(super) fn order_skeleton(
    fields: &OrderFields,
    owner: String,
    notify_mchid: String,
    kind: Kind,
    appid: String,
    payer: Value,
    openid: String,
) -> Order {
    Order {
        owner,
        notify_mchid,
        kind,
        appid,
        out_trade_no: fields.out_trade_no.clone().unwrap_or_default(),
        description: fields.description.clone().unwrap_or_default(),
        attach: fields.attach.clone(),
        notify_url: fields.notify_url.clone().unwrap_or_default(),
        total: fields.total().unwrap_or(0),
        payer,
        openid,
        prepay_id: String::new(),
        transaction_id: None,
        state: "NOTPAY".into(),
        created: Utc::now(),
        success_time: None,
        time_expire: fields.time_expire.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        profit_sharing: fields.settle_info.as_ref().and_then(|s| *s.profit_sharing).unwrap_or(false),
        refunded: 0,
        request: Value::Null,
        scene_info: fields.scene_info.clone(),
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/pay/transactions/jsapi", post(jsapi))
        .route("/v3/pay/transactions/id/{transaction_id}", get(query_by_id))
        .route("/v3/pay/transactions/out-trade-no/{out_trade_no}", get(query_by_out_trade_no))
        .route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close", post(close))
}

pub(super) async fn jsapi(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, raw } = m.json::<JsapiRequest>()?;
    let Authed { mchid, what, .. } = m;
    let appid = required(req.appid.as_deref(), "appid")?.to_string();
    let body_mchid = required(req.mchid.as_deref(), "mchid")?;
    required(req.order.description.as_deref(), "description")?;
    let out_trade_no = required(req.order.out_trade_no.as_deref(), "out_trade_no")?.to_string();
    required(req.order.notify_url.as_deref(), "notify_url")?;
    let openid = required(req.payer.as_ref().and_then(|p| p.openid.as_deref()), "payer.openid")?.to_string();
    if body_mchid != mchid {
        return Err(PayError::param("mchid", "mchid 与请求头中的商户号不一致"));
    }
    check_order_fields(&req.order)?;
    let bound = lock(&s.pay).merchants.get(&mchid).map(|m| m.appids.is_empty() || m.appids.contains(&appid));
    if bound != Some(true) {
        return Err(PayError::param("appid", "appid和mch_id不匹配"));
    }
    let key = (mchid.clone(), out_trade_no);
    let payer = json!({ "openid": openid.clone() });
    let order =
        Order { request: raw, ..order_skeleton(&req.order, mchid.clone(), mchid, Kind::Direct, appid, payer, openid) };
    upsert_order(&s, &what, key, order)
}

pub(super) fn find_order_reply(
    s: &Shared,
    what: &str,
    key: Option<(String, String)>,
    sp_mchid: Option<&str>,
) -> Result<Response, PayError> {
    let p = lock(&s.pay);
    let order = key.and_then(|k| p.orders.get(&k)).filter(|o| match (&o.kind, sp_mchid) {
        (Kind::Partner { sp_mchid: sp, .. }, Some(x)) => sp == x,
        (Kind::Partner { .. }, None) | (_, Some(_)) => false,
        _ => true,
    });
    let v = order.map(transaction_json);
    drop(p);
    Ok(reply(s, what, 200, Some(found(v, "ORDER_NOT_EXIST", "订单不存在")?)))
}

async fn query_by_id(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
    m: Authed,
) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    if q.get("mchid") != Some(&mchid) {
        return Err(PayError::param("mchid", "mchid 必填且须与请求头一致"));
    }
    let key = lock(&s.pay).by_txn.get(&id).cloned().filter(|k| k.0 == mchid);
    find_order_reply(&s, &what, key, None)
}

async fn query_by_out_trade_no(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    m: Authed,
) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    if q.get("mchid") != Some(&mchid) {
        return Err(PayError::param("mchid", "mchid 必填且须与请求头一致"));
    }
    find_order_reply(&s, &what, Some((mchid, no)), None)
}

pub(super) fn close_order(
    s: &Shared,
    what: &str,
    key: (String, String),
    sp_mchid: Option<&str>,
) -> Result<Response, PayError> {
    let mut p = lock(&s.pay);
    let o = found(p.orders.get_mut(&key), "ORDER_NOT_EXIST", "订单不存在")?;
    let partner_ok = match (&o.kind, sp_mchid) {
        (Kind::Partner { sp_mchid: sp, .. }, Some(x)) => sp == x,
        (Kind::Partner { .. }, None) | (_, Some(_)) => false,
        _ => true,
    };
    if !partner_ok {
        return Err(PayError::new(404, "ORDER_NOT_EXIST", "订单不存在"));
    }
    match o.state.as_str() {
        "SUCCESS" | "REFUND" => Err(PayError::new(400, "ORDERPAID", "订单已支付，不能关单")),
        _ => {
            o.state = "CLOSED".into();
            drop(p);
            Ok(reply(s, what, 204, None))
        }
    }
}

pub(super) async fn close(State(s): State<Shared>, Path(no): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Body { req, .. } = m.json::<CloseRequest>()?;
    let Authed { mchid, what, .. } = m;
    if req.mchid.as_deref() != Some(mchid.as_str()) {
        return Err(PayError::param("mchid", "mchid 必填且须与请求头一致"));
    }
    close_order(&s, &what, (mchid, no), None)
}
