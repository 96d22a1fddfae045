//! Merchant transfers (商家转账): create, query, cancel, and the user's confirm/decline (mirrors
//! `crate::pay::transfers`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Authed, Body, Int, List, PayError, Text, found, reply, required};
use super::notify::queue_notification;
use super::{PayState, TransferRec};
use crate::emulator::{Shared, lock};
use crate::pay::transactions::wechat_time;

/// `POST /v3/fund-app/mch-transfer/transfer-bills`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct TransferRequest {
    appid: Text,
    out_bill_no: Text,
    transfer_scene_id: Text,
    openid: Text,
    /// RSA-OAEP ciphertext under the platform key `Wechatpay-Serial` names.
    user_name: Text,
    transfer_amount: Int,
    transfer_remark: Text,
    notify_url: Text,
    transfer_scene_report_infos: List<ReportInfo>,
}

/// One of `transfer_scene_report_infos`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ReportInfo {
    info_type: Text,
    info_content: Text,
}

/// The reports a transfer scene requires (scene 1000 现金营销: 活动名称 and 奖励说明).
fn required_reports(scene: &str) -> &'static [&'static str] {
    match scene {
        "1000" => &["活动名称", "奖励说明"],
        _ => &[],
    }
}

fn transfer_created_json(t: &TransferRec) -> Value {
    let mut v = json!({
        "out_bill_no": t.out_bill_no,
        "transfer_bill_no": t.transfer_bill_no,
        "create_time": wechat_time(t.created),
        "state": t.state,
    });
    if t.state == "WAIT_USER_CONFIRM" {
        v["package_info"] = t.package_info.clone().into();
    }
    if let Some(r) = &t.fail_reason {
        v["fail_reason"] = r.clone().into();
    }
    v
}

fn transfer_json(p: &PayState, t: &TransferRec) -> Value {
    let mut v = json!({
        "mch_id": t.mchid,
        "out_bill_no": t.out_bill_no,
        "transfer_bill_no": t.transfer_bill_no,
        "appid": t.appid,
        "state": t.state,
        "transfer_amount": t.amount,
        "transfer_remark": t.remark,
        "openid": t.openid,
        "create_time": wechat_time(t.created),
        "update_time": wechat_time(t.updated),
    });
    if let Some(r) = &t.fail_reason {
        v["fail_reason"] = r.clone().into();
    }
    // WeChat returns the name encrypted with the merchant's public key.
    if let Some(n) = &t.user_name
        && let Some(ct) = p.merchants.get(&t.mchid).and_then(|m| m.public_key.encrypt_oaep(n).ok())
    {
        v["user_name"] = ct.into();
    }
    v
}

fn transfer_notice_json(t: &TransferRec) -> Value {
    let mut v = json!({
        "out_bill_no": t.out_bill_no,
        "transfer_bill_no": t.transfer_bill_no,
        "state": t.state,
        "mch_id": t.mchid,
        "transfer_amount": t.amount,
        "openid": t.openid,
        "create_time": wechat_time(t.created),
        "update_time": wechat_time(t.updated),
    });
    if let Some(r) = &t.fail_reason {
        v["fail_reason"] = r.clone().into();
    }
    v
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/fund-app/mch-transfer/transfer-bills", post(transfer_create))
        .route("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}", get(transfer_query_out))
        .route("/v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/{transfer_bill_no}", get(transfer_query_wx))
        .route("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}/cancel", post(transfer_cancel))
        .route("/__emulator/pay/transfers", get(ctl_transfers))
        .route("/__emulator/pay/transfers/{mchid}/{out_bill_no}/{action}", post(ctl_transfer_action))
}

async fn transfer_create(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, raw } = m.json::<TransferRequest>()?;
    let Authed { mchid, what, headers, .. } = m;
    let appid = required(req.appid.as_deref(), "appid")?.to_string();
    let out_bill_no = required(req.out_bill_no.as_deref(), "out_bill_no")?.to_string();
    let scene = required(req.transfer_scene_id.as_deref(), "transfer_scene_id")?;
    let openid = required(req.openid.as_deref(), "openid")?.to_string();
    let remark = required(req.transfer_remark.as_deref(), "transfer_remark")?.to_string();
    if out_bill_no.len() > 32 || !out_bill_no.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(PayError::param("out_bill_no", "out_bill_no 须为1-32位数字、大小写字母"));
    }
    let Some(amount) = *req.transfer_amount else {
        return Err(PayError::param("transfer_amount", "transfer_amount 必填，单位为分"));
    };
    if amount < 10 {
        return Err(PayError::param("transfer_amount", "转账金额不能低于0.1元 (transfer_amount >= 10)"));
    }
    if remark.chars().count() > 32 {
        return Err(PayError::param("transfer_remark", "transfer_remark 不能超过32个字符"));
    }
    let reports = &req.transfer_scene_report_infos;
    let valid_reports =
        !reports.is_empty() && reports.iter().all(|r| r.info_type.is_some() && r.info_content.is_some());
    if !valid_reports {
        return Err(PayError::param(
            "transfer_scene_report_infos",
            "transfer_scene_report_infos 必填，且每项须含 info_type 与 info_content",
        ));
    }
    for need in required_reports(scene) {
        if !reports.iter().any(|r| r.info_type.as_deref() == Some(*need)) {
            return Err(PayError::param("transfer_scene_report_infos", format!("转账场景 {scene} 须报备“{need}”")));
        }
    }
    if let Some(u) = &req.notify_url.0
        && url::Url::parse(u).map(|u| u.query().is_some() || !u.scheme().starts_with("http")).unwrap_or(true)
    {
        return Err(PayError::param("notify_url", "notify_url 需为不带参数的http(s)地址"));
    }
    let bound = lock(&s.pay).merchants.get(&mchid).map(|m| m.appids.is_empty() || m.appids.contains(&appid));
    if bound != Some(true) {
        return Err(PayError::param("appid", "appid和mch_id不匹配"));
    }
    if !lock(&s.mp).openid_in_app(&appid, &openid) {
        return Err(PayError::param("openid", "openid与appid不匹配"));
    }
    let user_name = match &req.user_name.0 {
        Some(ct) => {
            let Some(serial) = headers.get("wechatpay-serial").and_then(|h| h.to_str().ok()) else {
                return Err(PayError::param("Wechatpay-Serial", "请求包含敏感信息时，HTTP头Wechatpay-Serial必填"));
            };
            let Some(key) = lock(&s.pay).private_key_for(serial) else {
                return Err(PayError::param(
                    "Wechatpay-Serial",
                    "Wechatpay-Serial 不是有效的平台证书序列号或微信支付公钥ID",
                ));
            };
            match key.decrypt_oaep(ct) {
                Ok(n) if !n.trim().is_empty() => Some(n.to_string()),
                _ => {
                    return Err(PayError::param(
                        "user_name",
                        "user_name 解密失败，请使用Wechatpay-Serial对应的公钥以RSAES-OAEP加密",
                    ));
                }
            }
        }
        None => None,
    };
    if amount >= 200_000 && user_name.is_none() {
        return Err(PayError::param("user_name", "转账金额>=2000元时，收款用户姓名必填"));
    }
    let mut request = raw;
    if let Some(n) = &user_name {
        request["user_name"] = n.clone().into();
    }
    let now = s.now();
    let key = (mchid.clone(), out_bill_no.clone());
    let mut p = lock(&s.pay);
    if let Some(t) = p.transfers.get(&key) {
        let (same, answer) = (t.request == request, transfer_created_json(t));
        drop(p);
        return if same {
            Ok(reply(&s, &what, 200, Some(answer)))
        } else {
            Err(PayError::new(
                400,
                "INVALID_REQUEST",
                "商户单号重复且参数不一致 (same out_bill_no with different parameters)",
            ))
        };
    }
    let n = p.next();
    let t = TransferRec {
        mchid: mchid.clone(),
        appid,
        out_bill_no: out_bill_no.clone(),
        transfer_bill_no: format!("1330000{}{:012}", now.format("%Y%m%d%H%M%S"), n),
        openid,
        user_name,
        amount,
        remark,
        notify_url: req.notify_url.clone(),
        state: "WAIT_USER_CONFIRM".into(),
        fail_reason: None,
        package_info: format!("ABBQO+oYAAABAAAAAAAk{}", uuid::Uuid::new_v4().simple()),
        created: now,
        updated: now,
        request,
    };
    let answer = transfer_created_json(&t);
    p.transfer_seq.push(key.clone());
    p.transfers.insert(key, t);
    drop(p);
    s.bump("pay.transfer");
    Ok(reply(&s, &what, 200, Some(answer)))
}

async fn transfer_query_out(State(s): State<Shared>, Path(no): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let p = lock(&s.pay);
    let v = p.transfers.get(&(mchid, no)).map(|t| transfer_json(&p, t));
    drop(p);
    let v = found(v, "NOT_FOUND", "记录不存在")?;
    Ok(reply(&s, &what, 200, Some(v)))
}

async fn transfer_query_wx(State(s): State<Shared>, Path(no): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let p = lock(&s.pay);
    let v = p.transfers.values().find(|t| t.mchid == mchid && t.transfer_bill_no == no).map(|t| transfer_json(&p, t));
    drop(p);
    let v = found(v, "NOT_FOUND", "记录不存在")?;
    Ok(reply(&s, &what, 200, Some(v)))
}

/// Moves a bill to a final state and queues its MCHTRANSFER.BILL.FINISHED notification.
fn finish_transfer(
    s: &Shared,
    mchid: &str,
    out_bill_no: &str,
    from: &[&str],
    to: &str,
    fail_reason: Option<String>,
) -> std::result::Result<Value, String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let key = (mchid.to_string(), out_bill_no.to_string());
    let t = p.transfers.get_mut(&key).ok_or_else(|| format!("no transfer bill {out_bill_no} of merchant {mchid}"))?;
    if !from.contains(&t.state.as_str()) {
        return Err(format!("transfer bill {out_bill_no} is {}, not {}", t.state, from.join(" or ")));
    }
    t.state = to.into();
    t.fail_reason = fail_reason;
    t.updated = now;
    let (notice, url, answer) = (transfer_notice_json(t), t.notify_url.clone(), transfer_created_json(t));
    p.push_log(now, "transfer", format!("{to} {out_bill_no}"), 200, String::new());
    drop(p);
    if let Some(url) = url {
        queue_notification(s, mchid, &url, "MCHTRANSFER.BILL.FINISHED", out_bill_no, &notice);
    }
    s.bump("pay.transfer.finished");
    Ok(answer)
}

async fn transfer_cancel(State(s): State<Shared>, Path(no): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let state = lock(&s.pay).transfers.get(&(mchid.clone(), no.clone())).map(|t| t.state.clone());
    let answer = |s: &Shared| {
        let p = lock(&s.pay);
        p.transfers.get(&(mchid.clone(), no.clone())).map(|t| {
            json!({ "out_bill_no": t.out_bill_no, "transfer_bill_no": t.transfer_bill_no, "state": t.state,
                    "update_time": wechat_time(t.updated) })
        })
    };
    Ok(match state.as_deref() {
        None => return Err(PayError::new(404, "NOT_FOUND", "记录不存在")),
        Some("CANCELLED") => reply(&s, &what, 200, answer(&s)),
        Some("ACCEPTED" | "PROCESSING" | "WAIT_USER_CONFIRM") => {
            match finish_transfer(&s, &mchid, &no, &["ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM"], "CANCELLED", None)
            {
                Ok(_) => reply(&s, &what, 200, answer(&s)),
                Err(e) => return Err(PayError::new(400, "INVALID_REQUEST", &e)),
            }
        }
        Some(other) => return Err(PayError::new(400, "INVALID_REQUEST", format!("单据状态为{other}，不支持撤销"))),
    })
}

fn transfers_json(p: &PayState) -> Value {
    Value::Array(
        p.transfer_seq
            .iter()
            .rev()
            .filter_map(|k| p.transfers.get(k))
            .map(|t| {
                let mut v = transfer_notice_json(t);
                v["appid"] = t.appid.clone().into();
                v["transfer_remark"] = t.remark.clone().into();
                v["package_info"] = t.package_info.clone().into();
                v
            })
            .collect(),
    )
}

async fn ctl_transfers(State(s): State<Shared>) -> Response {
    axum::Json(transfers_json(&lock(&s.pay))).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TransferActionBody {
    fail_reason: Option<String>,
}

async fn ctl_transfer_action(
    State(s): State<Shared>,
    Path((mchid, no, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let b: TransferActionBody = serde_json::from_slice(&body).unwrap_or_default();
    let r = match action.as_str() {
        "confirm" => confirm_transfer(&s, &mchid, &no),
        "decline" => decline_transfer(&s, &mchid, &no, b.fail_reason),
        other => Err(format!("unknown action {other} (confirm, decline)")),
    };
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({ "error": e }))).into_response(),
    }
}

pub(super) fn confirm_transfer(s: &Shared, mchid: &str, out_bill_no: &str) -> std::result::Result<Value, String> {
    finish_transfer(s, mchid, out_bill_no, &["WAIT_USER_CONFIRM"], "SUCCESS", None)
}

pub(super) fn decline_transfer(
    s: &Shared,
    mchid: &str,
    out_bill_no: &str,
    reason: Option<String>,
) -> std::result::Result<Value, String> {
    let reason = reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "PAYEE_ACCOUNT_ABNORMAL".into());
    finish_transfer(
        s,
        mchid,
        out_bill_no,
        &["ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM", "TRANSFERING"],
        "FAIL",
        Some(reason),
    )
}
