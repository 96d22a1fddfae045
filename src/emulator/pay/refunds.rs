//! Domestic refunds: create and query (mirrors `crate::pay::refunds`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Authed, Body, Int, Obj, PayError, Q, Text, found, reply, required, valid_no};
use super::notify::queue_notification;
use super::{Kind, REFUND_DAYS, RefundRec};
use crate::emulator::{Shared, lock};
use crate::pay::transactions::wechat_time;

fn refund_json(r: &RefundRec) -> Value {
    let mut v = json!({
        "refund_id": r.refund_id,
        "out_refund_no": r.out_refund_no,
        "transaction_id": r.transaction_id,
        "out_trade_no": r.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": wechat_time(r.created),
        "status": r.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": r.total, "refund": r.refund, "from": [], "payer_total": r.total, "payer_refund": r.refund,
            "settlement_refund": r.refund, "settlement_total": r.total, "discount_refund": 0, "currency": "CNY",
            "refund_fee": 0
        },
        "promotion_detail": []
    });
    if let Some(t) = r.success_time {
        v["success_time"] = wechat_time(t).into();
    }
    v
}

pub(super) fn refund_notice_json(r: &RefundRec) -> Value {
    let mut v = json!({
        "out_trade_no": r.out_trade_no,
        "transaction_id": r.transaction_id,
        "out_refund_no": r.out_refund_no,
        "refund_id": r.refund_id,
        "refund_status": r.status,
        "user_received_account": "支付用户零钱",
        "amount": { "total": r.total, "refund": r.refund, "payer_total": r.total, "payer_refund": r.refund },
    });
    match &r.sp_mchid {
        Some(sp) => {
            v["sp_mchid"] = sp.clone().into();
            v["sub_mchid"] = r.order.0.clone().into();
        }
        None => v["mchid"] = r.order.0.clone().into(),
    }
    if let Some(t) = r.success_time {
        v["success_time"] = wechat_time(t).into();
    }
    v
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RefundRequest {
    sub_mchid: Text,
    transaction_id: Text,
    out_trade_no: Text,
    out_refund_no: Text,
    notify_url: Text,
    amount: Obj<RefundAmount>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefundAmount {
    refund: Int,
    total: Int,
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/refund/domestic/refunds", post(create_refund))
        .route("/v3/refund/domestic/refunds/{out_refund_no}", get(query_refund))
}

async fn create_refund(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, raw } = m.json::<RefundRequest>()?;
    let Authed { mchid, what, .. } = m;
    let out_refund_no = required(req.out_refund_no.as_deref(), "out_refund_no")?.to_string();
    if !valid_no(&out_refund_no, 1, 64) {
        return Err(PayError::param("out_refund_no", "out_refund_no 格式错误"));
    }
    let amount = req.amount.as_ref();
    let (Some(refund), Some(total)) = (amount.and_then(|a| *a.refund), amount.and_then(|a| *a.total)) else {
        return Err(PayError::param("amount", "amount.refund 与 amount.total 必填"));
    };
    if refund <= 0 || total <= 0 {
        return Err(PayError::param("amount", "退款金额须为正整数"));
    }
    let sub = req.sub_mchid.clone();
    let owner = sub.clone().unwrap_or_else(|| mchid.clone());
    let rkey = (owner.clone(), out_refund_no.clone());
    let now = s.now();
    let mut p = lock(&s.pay);
    if let Some(r) = p.refunds.get(&rkey) {
        let (same, json) = (r.request == raw, refund_json(r));
        drop(p);
        return if same {
            Ok(reply(&s, &what, 200, Some(json)))
        } else {
            Err(PayError::new(400, "INVALID_REQUEST", "商户退款单号重复且参数不一致"))
        };
    }
    let okey = match (req.transaction_id.as_deref(), req.out_trade_no.as_deref()) {
        (Some(t), None) => p.by_txn.get(t).cloned(),
        (None, Some(o)) => Some((owner.clone(), o.to_string())),
        _ => {
            return Err(PayError::param("out_trade_no", "transaction_id 与 out_trade_no 须且仅须填写一个"));
        }
    };
    let Some(okey) = okey.filter(|k| k.0 == owner) else {
        return Err(PayError::new(404, "RESOURCE_NOT_EXISTS", "订单不存在"));
    };
    let Some(o) = p.orders.get_mut(&okey) else {
        return Err(PayError::new(404, "RESOURCE_NOT_EXISTS", "订单不存在"));
    };
    let auth_ok = match &o.kind {
        Kind::Partner { sp_mchid, .. } => sub.is_some() && *sp_mchid == mchid,
        _ => sub.is_none(),
    };
    if !auth_ok {
        return Err(PayError::new(404, "RESOURCE_NOT_EXISTS", "订单不存在"));
    }
    if !matches!(o.state.as_str(), "SUCCESS" | "REFUND") {
        return Err(PayError::new(400, "INVALID_REQUEST", "订单未支付，不能退款"));
    }
    if total != o.total {
        return Err(PayError::param("amount.total", "订单金额与原订单不一致"));
    }
    // WeChat refunds only within a year of payment (支付成功时间 + 365 天).
    if o.success_time.is_some_and(|t| now > t + chrono::Duration::days(REFUND_DAYS)) {
        return Err(PayError::new(400, "INVALID_REQUEST", "交易时间超过一年的订单无法提交退款"));
    }
    if refund > o.total - o.refunded {
        return Err(PayError::new(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额"));
    }
    o.refunded += refund;
    o.state = "REFUND".into();
    let (txn, out_trade_no, notify_fallback, notify_mchid) = (
        o.transaction_id.clone().unwrap_or_default(),
        o.out_trade_no.clone(),
        o.notify_url.clone(),
        o.notify_mchid.clone(),
    );
    let sp_mchid = match &o.kind {
        Kind::Partner { sp_mchid, .. } => Some(sp_mchid.clone()),
        _ => None,
    };
    let n = p.next();
    let mut rec = RefundRec {
        order: okey,
        notify_mchid: notify_mchid.clone(),
        sp_mchid,
        out_refund_no,
        refund_id: format!("50300{}{:010}", now.format("%Y%m%d%H%M"), n),
        transaction_id: txn,
        out_trade_no: out_trade_no.clone(),
        total,
        refund,
        status: "PROCESSING".into(),
        created: now,
        success_time: None,
        request: raw,
    };
    let answer = refund_json(&rec);
    // WeChat accepts (PROCESSING) then settles; the emulator settles at once and notifies.
    rec.status = "SUCCESS".into();
    rec.success_time = Some(now);
    let notice = refund_notice_json(&rec);
    p.refunds.insert(rkey, rec);
    drop(p);
    let url = req.notify_url.0.unwrap_or(notify_fallback);
    queue_notification(&s, &notify_mchid, &url, "REFUND.SUCCESS", &out_trade_no, &notice);
    s.bump("pay.refund");
    Ok(reply(&s, &what, 200, Some(answer)))
}

async fn query_refund(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    m: Authed,
) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let owner = q.get("sub_mchid").cloned().unwrap_or_else(|| mchid.clone());
    let p = lock(&s.pay);
    let v = p.refunds.get(&(owner, no)).filter(|r| r.notify_mchid == mchid).map(refund_json);
    drop(p);
    let v = found(v, "RESOURCE_NOT_EXISTS", "退款单不存在")?;
    Ok(reply(&s, &what, 200, Some(v)))
}
