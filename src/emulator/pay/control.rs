//! The cashier page and the control API: what the user does in WeChat (pay, fail, refund from the
//! merchant platform) and the emulator's own knobs.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::combine::combine_json;
use super::keys::rotate;
use super::notify::{deliver_once, queue_notification};
use super::refunds::refund_notice_json;
use super::transactions::transaction_json;
use super::{CASHIER_HTML, Kind, Merchant, PUBLIC_KEY_ID, PayState, REFUND_DAYS, RefundRec, SignMode};
use crate::crypto::pay::{ApiV3Key, PayPublicKey};
use crate::emulator::{EmulatorState, Shared, lock};
use crate::error::{Error, Result};
use crate::pay::transactions::wechat_time;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(cashier))
        .route("/__emulator/pay/merchants", post(ctl_merchant))
        .route("/__emulator/pay/mode", post(ctl_mode))
        .route("/__emulator/pay/rotate", post(ctl_rotate))
        .route("/__emulator/pay/keys", get(ctl_keys))
        .route("/__emulator/pay/config", post(ctl_config))
        .route("/__emulator/pay/orders", get(ctl_orders))
        .route("/__emulator/pay/orders/{mchid}/{out_trade_no}/{action}", post(ctl_order_action))
        .route("/__emulator/pay/notifications", get(ctl_notifications))
        .route("/__emulator/pay/notifications/{id}/redeliver", post(ctl_redeliver))
        .route("/__emulator/pay/log", get(ctl_log))
}

pub(super) async fn cashier() -> Html<&'static str> {
    Html(CASHIER_HTML)
}

// ---------------------------------------------------------------------------------------------
// The cashier's actions (what the user does in WeChat) and the control API
// ---------------------------------------------------------------------------------------------

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": msg }))).into_response()
}

/// The user pays; `Ok(transaction_id)`.
pub(super) fn pay_order(s: &Shared, mchid: &str, out_trade_no: &str) -> std::result::Result<String, String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let key = (mchid.to_string(), out_trade_no.to_string());
    let order = p.orders.get(&key).cloned().ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    let keys = match &order.kind {
        Kind::Combine { combine_out_trade_no } => p
            .combines
            .get(&(order.notify_mchid.clone(), combine_out_trade_no.clone()))
            .map(|c| c.subs.clone())
            .unwrap_or_else(|| vec![key.clone()]),
        _ => vec![key.clone()],
    };
    for k in &keys {
        let o = p.orders.get(k).ok_or("sub-order missing")?;
        if !matches!(o.state.as_str(), "NOTPAY" | "PAYERROR" | "USERPAYING") {
            return Err(format!("order {} is {}, not payable", o.out_trade_no, o.state));
        }
        if o.time_expire.is_some_and(|t| t < now) {
            return Err(format!(
                "order {} expired at {}",
                o.out_trade_no,
                o.time_expire.map(|t| t.to_rfc3339()).unwrap_or_default()
            ));
        }
    }
    let mut txn_of_key = String::new();
    for k in &keys {
        let n = p.next();
        let txn = format!("42000{}{:011}", now.format("%Y%m%d"), n);
        if let Some(o) = p.orders.get_mut(k) {
            o.state = "SUCCESS".into();
            o.transaction_id = Some(txn.clone());
            o.success_time = Some(now);
        }
        p.by_txn.insert(txn.clone(), k.clone());
        if *k == key {
            txn_of_key = txn;
        }
    }
    let (resource, url, notify_mchid) = match &order.kind {
        Kind::Combine { combine_out_trade_no } => {
            let c = p.combines.get(&(order.notify_mchid.clone(), combine_out_trade_no.clone())).cloned();
            match c {
                Some(c) => (combine_json(&p, &c), c.notify_url.clone(), c.mchid.clone()),
                None => return Err("combined order missing".into()),
            }
        }
        _ => {
            let o = p.orders.get(&key).ok_or("order missing")?;
            (transaction_json(o), o.notify_url.clone(), o.notify_mchid.clone())
        }
    };
    p.push_log(now, "cashier", format!("pay {out_trade_no}"), 200, format!("transaction_id {txn_of_key}"));
    // Every JSAPI payment comes under shipping-info management (发货信息管理), waiting to ship.
    let shippable: Vec<crate::emulator::mp::shipping::PaidTransaction> = keys
        .iter()
        .filter_map(|k| p.orders.get(k))
        .map(|o| {
            let (mchid, sub) = match &o.kind {
                Kind::Partner { sp_mchid, .. } => (sp_mchid.clone(), Some(o.owner.clone())),
                _ => (o.owner.clone(), None),
            };
            let mut tx =
                crate::emulator::mp::shipping::PaidTransaction::new(mchid, &o.out_trade_no, &o.openid, o.total)
                    .transaction_id(o.transaction_id.clone().unwrap_or_default())
                    .appid(&o.appid)
                    .description(&o.description);
            tx.sub_mchid = sub;
            tx
        })
        .collect();
    drop(p);
    for tx in shippable {
        if let Err(e) = crate::emulator::mp::shipping::register_paid_transaction(s, tx) {
            tracing::warn!(error = %e, "could not put a payment under shipping management");
        }
    }
    s.bump("pay.paid");
    queue_notification(s, &notify_mchid, &url, "TRANSACTION.SUCCESS", out_trade_no, &resource);
    Ok(txn_of_key)
}

fn fail_order(s: &Shared, mchid: &str, out_trade_no: &str) -> std::result::Result<(), String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let o = p
        .orders
        .get_mut(&(mchid.to_string(), out_trade_no.to_string()))
        .ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    if o.state != "NOTPAY" && o.state != "USERPAYING" {
        return Err(format!("order is {}, cannot fail", o.state));
    }
    o.state = "PAYERROR".into();
    p.push_log(now, "cashier", format!("fail {out_trade_no}"), 200, "PAYERROR (no notification, like WeChat)".into());
    Ok(())
}

/// Moves a paid order's payment `days` into the past (the emulator's clock also signs every request,
/// so time limits on one order — the one-year refund window — are tested by ageing the order instead).
pub(super) fn age_order(
    s: &Shared,
    mchid: &str,
    out_trade_no: &str,
    days: i64,
) -> std::result::Result<DateTime<Utc>, String> {
    if days <= 0 {
        return Err("days must be positive".into());
    }
    let mut p = lock(&s.pay);
    let o = p
        .orders
        .get_mut(&(mchid.to_string(), out_trade_no.to_string()))
        .ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    let t = o.success_time.ok_or_else(|| format!("order {out_trade_no} is not paid"))?;
    let aged = t - chrono::Duration::days(days);
    o.success_time = Some(aged);
    Ok(aged)
}

/// The merchant refunds from the merchant platform; `Ok(out_refund_no)`.
pub(super) fn refund_order(
    s: &Shared,
    mchid: &str,
    out_trade_no: &str,
    amount: Option<i64>,
) -> std::result::Result<String, String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let okey = (mchid.to_string(), out_trade_no.to_string());
    let n = p.next();
    let o = p.orders.get_mut(&okey).ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    if !matches!(o.state.as_str(), "SUCCESS" | "REFUND") {
        return Err(format!("order is {}, not paid", o.state));
    }
    if o.success_time.is_some_and(|t| now > t + chrono::Duration::days(REFUND_DAYS)) {
        return Err(format!("order {out_trade_no} was paid more than {REFUND_DAYS} days ago: no refund"));
    }
    let refundable = o.total - o.refunded;
    let refund = amount.unwrap_or(refundable);
    if refund <= 0 || refund > refundable {
        return Err(format!("refund must be 1..={refundable} fen"));
    }
    o.refunded += refund;
    o.state = "REFUND".into();
    let sp_mchid = match &o.kind {
        Kind::Partner { sp_mchid, .. } => Some(sp_mchid.clone()),
        _ => None,
    };
    let rec = RefundRec {
        order: okey.clone(),
        notify_mchid: o.notify_mchid.clone(),
        sp_mchid,
        out_refund_no: format!("EMUREFUND{n}"),
        refund_id: format!("50300{}{:010}", now.format("%Y%m%d%H%M"), n),
        transaction_id: o.transaction_id.clone().unwrap_or_default(),
        out_trade_no: o.out_trade_no.clone(),
        total: o.total,
        refund,
        status: "SUCCESS".into(),
        created: now,
        success_time: Some(now),
        request: Value::Null,
    };
    let (url, nm) = (o.notify_url.clone(), o.notify_mchid.clone());
    let notice = refund_notice_json(&rec);
    let no = rec.out_refund_no.clone();
    p.refunds.insert((okey.0, no.clone()), rec);
    p.push_log(now, "cashier", format!("refund {out_trade_no}"), 200, format!("{refund} fen as {no}"));
    drop(p);
    queue_notification(s, &nm, &url, "REFUND.SUCCESS", out_trade_no, &notice);
    Ok(no)
}

#[derive(Deserialize)]
struct MerchantBody {
    mchid: String,
    serial_no: String,
    public_key: String,
    apiv3_key: String,
    #[serde(default)]
    appids: Vec<String>,
}

async fn ctl_merchant(State(s): State<Shared>, axum::Json(b): axum::Json<MerchantBody>) -> Response {
    match register(&s, &b.mchid, &b.serial_no, &b.public_key, &b.apiv3_key, b.appids) {
        Ok(()) => axum::Json(json!({ "ok": true })).into_response(),
        Err(e) => bad(&e.to_string()),
    }
}

pub(super) fn register(
    s: &EmulatorState,
    mchid: &str,
    serial: &str,
    public_key_pem: &str,
    apiv3: &str,
    appids: Vec<String>,
) -> Result<()> {
    let m = Merchant {
        serial: serial.to_string(),
        public_key: PayPublicKey::from_pem(public_key_pem)?,
        apiv3: ApiV3Key::new(apiv3)?,
        appids,
    };
    if mchid.is_empty() || serial.is_empty() {
        return Err(Error::Config("mchid and serial_no are required".into()));
    }
    lock(&s.pay).merchants.insert(mchid.to_string(), m);
    Ok(())
}

#[derive(Deserialize)]
struct ModeBody {
    mode: SignMode,
}

async fn ctl_mode(State(s): State<Shared>, axum::Json(b): axum::Json<ModeBody>) -> Response {
    lock(&s.pay).mode = b.mode;
    axum::Json(json!({ "mode": b.mode })).into_response()
}

async fn ctl_rotate(State(s): State<Shared>) -> Response {
    match rotate(&s) {
        Ok(serial) => axum::Json(json!({ "serial_no": serial })).into_response(),
        Err(e) => bad(&e.to_string()),
    }
}

fn keys_json(p: &PayState) -> Value {
    let certs: Vec<Value> = p
        .certs
        .iter()
        .map(|c| json!({ "serial_no": c.cert.serial_no(), "pem": c.cert.pem(), "not_after": wechat_time(c.cert.not_after()) }))
        .collect();
    json!({
        "public_key_id": PUBLIC_KEY_ID,
        "public_key": p.public_key.public_key().to_pem(),
        "certificates": certs,
        "mode": p.mode,
    })
}

async fn ctl_keys(State(s): State<Shared>) -> Response {
    axum::Json(keys_json(&lock(&s.pay))).into_response()
}

#[derive(Deserialize)]
struct ConfigBody {
    time_factor: Option<f64>,
    timestamp_skew_secs: Option<i64>,
    signtest_probes: Option<u32>,
    notify_timeout_ms: Option<u64>,
}

async fn ctl_config(State(s): State<Shared>, axum::Json(b): axum::Json<ConfigBody>) -> Response {
    let mut p = lock(&s.pay);
    if let Some(f) = b.time_factor.filter(|f| *f > 0.0) {
        p.time_factor = f;
    }
    if let Some(k) = b.timestamp_skew_secs {
        p.skew_secs = k;
    }
    if let Some(n) = b.signtest_probes {
        p.probes = n;
    }
    if let Some(ms) = b.notify_timeout_ms.filter(|ms| *ms > 0) {
        p.set_notify_timeout(Duration::from_millis(ms));
    }
    axum::Json(json!({
        "time_factor": p.time_factor,
        "timestamp_skew_secs": p.skew_secs,
        "signtest_probes": p.probes,
        "notify_timeout_ms": p.notify_timeout.as_millis() as u64,
    }))
    .into_response()
}

fn orders_json(p: &PayState) -> Value {
    let list: Vec<Value> = p
        .order_seq
        .iter()
        .rev()
        .filter_map(|k| p.orders.get(k))
        .map(|o| {
            json!({
                "mchid": o.owner,
                "merchant": o.notify_mchid,
                "kind": match &o.kind { Kind::Direct => "jsapi".to_string(), Kind::Partner { .. } => "partner".to_string(), Kind::Combine { combine_out_trade_no } => format!("combine {combine_out_trade_no}") },
                "appid": o.appid,
                "out_trade_no": o.out_trade_no,
                "description": o.description,
                "total": o.total,
                "refunded": o.refunded,
                "openid": o.openid,
                "state": o.state,
                "transaction_id": o.transaction_id,
                "prepay_id": o.prepay_id,
                "notify_url": o.notify_url,
                "created": wechat_time(o.created),
            })
        })
        .collect();
    Value::Array(list)
}

async fn ctl_orders(State(s): State<Shared>) -> Response {
    axum::Json(orders_json(&lock(&s.pay))).into_response()
}

#[derive(Deserialize, Default)]
struct ActionBody {
    amount: Option<i64>,
    days: Option<i64>,
}

async fn ctl_order_action(
    State(s): State<Shared>,
    Path((mchid, no, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let b: ActionBody = serde_json::from_slice(&body).unwrap_or_default();
    let r = match action.as_str() {
        "pay" => pay_order(&s, &mchid, &no).map(|t| json!({ "transaction_id": t })),
        "fail" => fail_order(&s, &mchid, &no).map(|()| json!({ "state": "PAYERROR" })),
        "refund" => refund_order(&s, &mchid, &no, b.amount).map(|r| json!({ "out_refund_no": r })),
        "age" => age_order(&s, &mchid, &no, b.days.unwrap_or(0)).map(|t| json!({ "success_time": wechat_time(t) })),
        other => Err(format!("unknown action {other} (pay, fail, refund, age)")),
    };
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({ "error": e }))).into_response(),
    }
}

async fn ctl_notifications(State(s): State<Shared>) -> Response {
    axum::Json(lock(&s.pay).deliveries.clone()).into_response()
}

async fn ctl_redeliver(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    if !lock(&s.pay).deliveries.iter().any(|d| d.id == id) {
        return bad("no such notification");
    }
    let ok = deliver_once(&s, &id).await;
    axum::Json(json!({ "delivered": ok })).into_response()
}

async fn ctl_log(State(s): State<Shared>) -> Response {
    axum::Json(lock(&s.pay).log.iter().rev().cloned().collect::<Vec<_>>()).into_response()
}
