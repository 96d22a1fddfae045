//! Combined payments (合单支付): prepay, query, close (mirrors `crate::pay::combine`).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::extract::{Any, Authed, Body, Int, List, Obj, PayError, Text, found, insert_opt, reply, required, valid_no};
use super::transactions::{OrderFields, order_skeleton};
use super::{CombineOrder, Kind, Order, PayState};
use crate::emulator::{Shared, lock};
use crate::pay::transactions::wechat_time;

/// `POST /v3/combine-transactions/jsapi`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CombineJsapiRequest {
    combine_appid: Text,
    combine_mchid: Text,
    combine_out_trade_no: Text,
    combine_payer_info: Obj<CombinePayer>,
    notify_url: Text,
    sub_orders: List<SubOrder>,
    scene_info: Any,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CombinePayer {
    openid: Text,
}

/// One of `sub_orders`: a sub-merchant's order, its amount as `total_amount`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SubOrder {
    mchid: Text,
    amount: Obj<SubOrderAmount>,
    #[serde(flatten)]
    order: OrderFields,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SubOrderAmount {
    total_amount: Int,
}

/// `POST /v3/combine-transactions/out-trade-no/{no}/close`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CombineCloseRequest {
    combine_appid: Text,
}

pub(super) fn combine_json(p: &PayState, c: &CombineOrder) -> Value {
    let subs: Vec<Value> = c
        .subs
        .iter()
        .filter_map(|k| p.orders.get(k))
        .map(|o| {
            let mut m = Map::new();
            m.insert("mchid".into(), o.owner.clone().into());
            m.insert("trade_type".into(), "JSAPI".into());
            m.insert("trade_state".into(), o.state.clone().into());
            if o.success_time.is_some() {
                m.insert("bank_type".into(), "OTHERS".into());
            }
            m.insert("attach".into(), o.attach.clone().unwrap_or_default().into());
            insert_opt(&mut m, "success_time", o.success_time.map(|t| wechat_time(t).into()));
            insert_opt(&mut m, "transaction_id", o.transaction_id.clone().map(Value::from));
            m.insert("out_trade_no".into(), o.out_trade_no.clone().into());
            let mut amount = json!({ "total_amount": o.total, "currency": "CNY" });
            if o.success_time.is_some() {
                amount["payer_amount"] = o.total.into();
                amount["payer_currency"] = "CNY".into();
            }
            m.insert("amount".into(), amount);
            Value::Object(m)
        })
        .collect();
    let mut v = json!({
        "combine_appid": c.appid,
        "combine_mchid": c.mchid,
        "combine_out_trade_no": c.out_trade_no,
        "sub_orders": subs,
        "combine_payer_info": { "openid": c.openid },
    });
    if let Some(sc) = &c.scene_info {
        v["scene_info"] = sc.clone();
    }
    v
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/combine-transactions/jsapi", post(combine_jsapi))
        .route("/v3/combine-transactions/out-trade-no/{no}", get(combine_query))
        .route("/v3/combine-transactions/out-trade-no/{no}/close", post(combine_close))
}

async fn combine_jsapi(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, raw } = m.json::<CombineJsapiRequest>()?;
    let Authed { mchid, what, .. } = m;
    let appid = required(req.combine_appid.as_deref(), "combine_appid")?.to_string();
    let cmchid = required(req.combine_mchid.as_deref(), "combine_mchid")?;
    let cno = required(req.combine_out_trade_no.as_deref(), "combine_out_trade_no")?.to_string();
    let openid =
        required(req.combine_payer_info.as_ref().and_then(|p| p.openid.as_deref()), "combine_payer_info.openid")?
            .to_string();
    let notify_url = required(req.notify_url.as_deref(), "notify_url")?.to_string();
    if cmchid != mchid {
        return Err(PayError::param("combine_mchid", "combine_mchid 与请求头中的商户号不一致"));
    }
    if !(2..=50).contains(&req.sub_orders.len()) {
        return Err(PayError::param("sub_orders", "子单数量须为2-50"));
    }
    let mut orders = Vec::new();
    for (i, sub) in req.sub_orders.iter().enumerate() {
        let total = sub.amount.as_ref().and_then(|a| *a.total_amount);
        let (Some(m), Some(no), Some(total)) = (sub.mchid.as_deref(), sub.order.out_trade_no.as_deref(), total) else {
            return Err(PayError::param("sub_orders", "子单须包含 mchid、out_trade_no、amount.total_amount"));
        };
        if !valid_no(no, 6, 32) || total <= 0 || sub.order.attach.is_none() || sub.order.description.is_none() {
            return Err(PayError::param("sub_orders", "子单字段不合法"));
        }
        let kind = Kind::Combine { combine_out_trade_no: cno.clone() };
        let payer = json!({ "openid": openid.clone() });
        let o = Order {
            total,
            notify_url: notify_url.clone(),
            request: json!({ "combine": cno, "sub": raw["sub_orders"][i] }),
            ..order_skeleton(&sub.order, m.to_string(), mchid.clone(), kind, appid.clone(), payer, openid.clone())
        };
        orders.push(((m.to_string(), no.to_string()), o));
    }
    let now = s.now();
    let mut p = lock(&s.pay);
    let ckey = (mchid.clone(), cno.clone());
    if let Some(c) = p.combines.get(&ckey) {
        let same = c.request == raw;
        let paid = c.subs.iter().any(|k| p.orders.get(k).is_some_and(|o| o.state != "NOTPAY"));
        let prepay = c.prepay_id.clone();
        drop(p);
        return match (same, paid) {
            (_, true) => Err(PayError::new(400, "ORDERPAID", "该合单已支付或已关闭")),
            (true, false) => Ok(reply(&s, &what, 200, Some(json!({ "prepay_id": prepay })))),
            (false, false) => Err(PayError::new(400, "INVALID_REQUEST", "201 合单商户订单号重复")),
        };
    }
    if orders.iter().any(|(k, _)| p.orders.contains_key(k)) {
        return Err(PayError::new(400, "INVALID_REQUEST", "201 子单商户订单号重复"));
    }
    let n = p.next();
    let prepay = format!("wx{}{:012}", now.format("%d%H%M%S"), n);
    let mut subs_keys = Vec::new();
    for (k, mut o) in orders {
        o.prepay_id = prepay.clone();
        o.created = now;
        subs_keys.push(k.clone());
        p.order_seq.push(k.clone());
        p.orders.insert(k, o);
    }
    p.combines.insert(
        ckey,
        CombineOrder {
            appid,
            mchid,
            out_trade_no: cno,
            notify_url,
            openid,
            prepay_id: prepay.clone(),
            subs: subs_keys,
            scene_info: req.scene_info.0,
            request: raw,
        },
    );
    drop(p);
    Ok(reply(&s, &what, 200, Some(json!({ "prepay_id": prepay }))))
}

async fn combine_query(State(s): State<Shared>, Path(no): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let p = lock(&s.pay);
    let v = p.combines.get(&(mchid, no)).map(|c| combine_json(&p, c));
    drop(p);
    let v = found(v, "ORDER_NOT_EXIST", "合单不存在")?;
    Ok(reply(&s, &what, 200, Some(v)))
}

async fn combine_close(State(s): State<Shared>, Path(no): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Body { req, .. } = m.json::<CombineCloseRequest>()?;
    let Authed { mchid, what, .. } = m;
    let appid = required(req.combine_appid.as_deref(), "combine_appid")?;
    let mut p = lock(&s.pay);
    let Some(c) = p.combines.get(&(mchid, no)).cloned() else {
        return Err(PayError::new(404, "ORDER_NOT_EXIST", "合单不存在"));
    };
    if c.appid != appid {
        return Err(PayError::param("combine_appid", "combine_appid 不一致"));
    }
    if c.subs.iter().any(|k| p.orders.get(k).is_some_and(|o| matches!(o.state.as_str(), "SUCCESS" | "REFUND"))) {
        return Err(PayError::new(400, "ORDERPAID", "订单已支付，不能关单"));
    }
    for k in &c.subs {
        if let Some(o) = p.orders.get_mut(k) {
            o.state = "CLOSED".into();
        }
    }
    drop(p);
    Ok(reply(&s, &what, 204, None))
}
