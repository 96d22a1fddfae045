//! Profit sharing: receivers, orders, unfreeze, returns, amounts (mirrors `crate::pay::profitsharing`).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Authed, Body, Flag, Int, List, PayError, Q, Text, found, reply, required};
use super::{PayState, ReturnRec, SHARING_DAYS, Sharing};
use crate::emulator::{Shared, lock};
use crate::pay::transactions::wechat_time;

/// `POST /v3/profitsharing/receivers/add` and `/delete`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ReceiverRequest {
    sub_mchid: Text,
    appid: Text,
    #[serde(rename = "type")]
    kind: Text,
    account: Text,
    /// RSA-OAEP ciphertext under the platform key `Wechatpay-Serial` names.
    name: Text,
    relation_type: Text,
    custom_relation: Text,
}

/// `POST /v3/profitsharing/orders`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SharingRequest {
    sub_mchid: Text,
    transaction_id: Text,
    out_order_no: Text,
    receivers: List<SharingReceiver>,
    unfreeze_unsplit: Flag,
}

/// One of a sharing order's `receivers`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SharingReceiver {
    #[serde(rename = "type")]
    kind: Text,
    account: Text,
    name: Text,
    amount: Int,
    description: Text,
}

/// `POST /v3/profitsharing/orders/unfreeze`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct UnfreezeRequest {
    sub_mchid: Text,
    transaction_id: Text,
    out_order_no: Text,
    description: Text,
}

/// `POST /v3/profitsharing/return-orders`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ReturnRequest {
    sub_mchid: Text,
    order_id: Text,
    out_order_no: Text,
    out_return_no: Text,
    return_mchid: Text,
    amount: Int,
    description: Text,
}

/// Decrypts an OAEP field with the platform key named by `Wechatpay-Serial`.
fn decrypt_sensitive(s: &Shared, headers: &HeaderMap, ct: &str) -> std::result::Result<String, PayError> {
    let Some(serial) = headers.get("wechatpay-serial").and_then(|v| v.to_str().ok()) else {
        return Err(PayError::param("Wechatpay-Serial", "请求包含敏感信息时，HTTP头Wechatpay-Serial必填"));
    };
    let Some(key) = lock(&s.pay).private_key_for(serial) else {
        return Err(PayError::param("Wechatpay-Serial", "Wechatpay-Serial 不是有效的平台证书序列号或微信支付公钥ID"));
    };
    key.decrypt_oaep(ct)
        .map(|z| z.to_string())
        .map_err(|_| PayError::param("name", "敏感信息解密失败，请使用Wechatpay-Serial对应的公钥以RSAES-OAEP加密"))
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/profitsharing/receivers/add", post(receivers_add))
        .route("/v3/profitsharing/receivers/delete", post(receivers_delete))
        .route("/v3/profitsharing/orders", post(sharing_create))
        .route("/v3/profitsharing/orders/unfreeze", post(sharing_unfreeze))
        .route("/v3/profitsharing/orders/{out_order_no}", get(sharing_query))
        .route("/v3/profitsharing/return-orders", post(return_create))
        .route("/v3/profitsharing/return-orders/{out_return_no}", get(return_query))
        .route("/v3/profitsharing/transactions/{transaction_id}/amounts", get(sharing_amounts))
}

async fn receivers_add(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, .. } = m.json::<ReceiverRequest>()?;
    let Authed { mchid, what, headers, .. } = m;
    required(req.appid.as_deref(), "appid")?;
    let kind = required(req.kind.as_deref(), "type")?.to_string();
    let account = required(req.account.as_deref(), "account")?.to_string();
    let relation = required(req.relation_type.as_deref(), "relation_type")?;
    if !matches!(kind.as_str(), "MERCHANT_ID" | "PERSONAL_OPENID" | "PERSONAL_SUB_OPENID") {
        return Err(PayError::param("type", "type 取值错误"));
    }
    let name = match &req.name.0 {
        Some(ct) => Some(decrypt_sensitive(&s, &headers, ct)?),
        None if kind == "MERCHANT_ID" => return Err(PayError::param("name", "分账接收方类型为MERCHANT_ID时name必填")),
        None => None,
    };
    let owner = req.sub_mchid.clone().unwrap_or(mchid);
    let mut stored = json!({ "type": kind, "account": account, "relation_type": relation });
    if let Some(c) = &req.custom_relation.0 {
        stored["custom_relation"] = c.clone().into();
    }
    let mut answer = stored.clone();
    if let Some(n) = &name {
        stored["name_plain"] = n.clone().into();
        answer["name"] = req.name.clone().unwrap_or_default().into();
    }
    lock(&s.pay).receivers.insert((owner, kind, account), stored);
    Ok(reply(&s, &what, 200, Some(answer)))
}

async fn receivers_delete(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, .. } = m.json::<ReceiverRequest>()?;
    let Authed { mchid, what, .. } = m;
    let kind = required(req.kind.as_deref(), "type")?.to_string();
    let account = required(req.account.as_deref(), "account")?.to_string();
    let owner = req.sub_mchid.0.unwrap_or(mchid);
    lock(&s.pay).receivers.remove(&(owner, kind.clone(), account.clone()));
    Ok(reply(&s, &what, 200, Some(json!({ "type": kind, "account": account }))))
}

fn sharing_json(sh: &Sharing) -> Value {
    let receivers: Vec<Value> = sh
        .receivers
        .iter()
        .enumerate()
        .map(|(i, (kind, account, amount, desc))| {
            json!({
                "amount": amount, "description": desc, "type": kind, "account": account, "result": "SUCCESS",
                "detail_id": format!("3600{}{:04}", &sh.order_id[4..], i),
                "create_time": wechat_time(sh.created), "finish_time": wechat_time(sh.created)
            })
        })
        .collect();
    let mut v = json!({
        "transaction_id": sh.transaction_id, "out_order_no": sh.out_order_no, "order_id": sh.order_id,
        "state": "FINISHED", "receivers": receivers,
    });
    if let Some(sub) = &sh.sub_mchid {
        v["sub_mchid"] = sub.clone().into();
    }
    v
}

/// What may still be shared: 30% of the order (WeChat's default maximum ratio) minus what was shared.
fn sharing_cap(p: &PayState, transaction_id: &str, total: i64) -> i64 {
    let shared: i64 = p
        .sharing
        .values()
        .filter(|sh| sh.transaction_id == transaction_id)
        .flat_map(|sh| sh.receivers.iter().map(|r| r.2))
        .sum();
    total * 30 / 100 - shared
}

async fn sharing_create(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, raw } = m.json::<SharingRequest>()?;
    let Authed { mchid, what, headers, .. } = m;
    let txn = required(req.transaction_id.as_deref(), "transaction_id")?.to_string();
    let out_order_no = required(req.out_order_no.as_deref(), "out_order_no")?.to_string();
    let Some(unfreeze) = *req.unfreeze_unsplit else {
        return Err(PayError::param("unfreeze_unsplit", "unfreeze_unsplit 必填"));
    };
    let sub = req.sub_mchid.clone();
    let owner = sub.clone().unwrap_or_else(|| mchid.clone());
    if req.receivers.is_empty() || req.receivers.len() > 50 {
        return Err(PayError::param("receivers", "分账接收方列表须为1-50个"));
    }
    let mut receivers = Vec::new();
    for r in req.receivers.iter() {
        let (Some(kind), Some(account), Some(amount), Some(desc)) =
            (&r.kind.0, &r.account.0, *r.amount, &r.description.0)
        else {
            return Err(PayError::param("receivers", "接收方须包含 type、account、amount、description"));
        };
        if amount <= 0 {
            return Err(PayError::param("receivers.amount", "分账金额须为正整数"));
        }
        if let Some(ct) = &r.name.0 {
            decrypt_sensitive(&s, &headers, ct)?;
        }
        receivers.push((kind.clone(), account.clone(), amount, desc.clone()));
    }
    let now = s.now();
    let mut p = lock(&s.pay);
    let skey = (owner.clone(), out_order_no.clone());
    if let Some(sh) = p.sharing.get(&skey) {
        let (same, json) = (sh.request == raw, sharing_json(sh));
        drop(p);
        return if same {
            Ok(reply(&s, &what, 200, Some(json)))
        } else {
            Err(PayError::new(400, "INVALID_REQUEST", "商户分账单号重复"))
        };
    }
    let order = p.by_txn.get(&txn).and_then(|k| p.orders.get(k)).filter(|o| o.owner == owner).cloned();
    let Some(order) = order else {
        return Err(PayError::new(404, "RESOURCE_NOT_EXISTS", "订单不存在"));
    };
    if !order.profit_sharing {
        return Err(PayError::new(400, "INVALID_REQUEST", "该订单不是分账订单 (settle_info.profit_sharing 未设置)"));
    }
    if p.unfrozen.get(&txn).copied().unwrap_or(false) {
        return Err(PayError::new(400, "INVALID_REQUEST", "订单剩余资金已解冻，不能再分账"));
    }
    // The backstop: 180 days after payment WeChat unfreezes what was not shared to the payee.
    if order.success_time.is_some_and(|t| now > t + chrono::Duration::days(SHARING_DAYS)) {
        p.unfrozen.insert(txn.clone(), true);
        return Err(PayError::new(
            400,
            "INVALID_REQUEST",
            "订单已超过分账期限（支付成功后 180 天），剩余资金已自动解冻",
        ));
    }
    if let Some((k, a, _, _)) =
        receivers.iter().find(|(k, a, _, _)| !p.receivers.contains_key(&(owner.clone(), k.clone(), a.clone())))
    {
        let msg = format!("分账接收方 {k} {a} 未添加");
        return Err(PayError::new(400, "INVALID_REQUEST", &msg));
    }
    let wanted: i64 = receivers.iter().map(|r| r.2).sum();
    let cap = sharing_cap(&p, &txn, order.total);
    if wanted > cap {
        let msg = format!("分账金额超出最大分账比例 30%：本次 {wanted} 分，剩余可分 {} 分", cap.max(0));
        return Err(PayError::new(400, "INVALID_REQUEST", &msg));
    }
    let n = p.next();
    let sh = Sharing {
        transaction_id: txn.clone(),
        out_order_no,
        order_id: format!("3008{}{:010}", now.format("%Y%m%d%H%M"), n),
        sub_mchid: sub,
        receivers,
        created: now,
        request: raw,
    };
    let json = sharing_json(&sh);
    p.sharing.insert(skey, sh);
    if unfreeze {
        p.unfrozen.insert(txn, true);
    }
    drop(p);
    s.bump("pay.profitsharing");
    Ok(reply(&s, &what, 200, Some(json)))
}

async fn sharing_query(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    m: Authed,
) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let Some(txn) = q.get("transaction_id") else {
        return Err(PayError::param("transaction_id", "transaction_id 必填"));
    };
    let owner = q.get("sub_mchid").cloned().unwrap_or(mchid);
    let v = lock(&s.pay).sharing.get(&(owner, no)).filter(|sh| &sh.transaction_id == txn).map(sharing_json);
    let v = found(v, "RESOURCE_NOT_EXISTS", "分账单不存在")?;
    Ok(reply(&s, &what, 200, Some(v)))
}

async fn sharing_unfreeze(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, raw } = m.json::<UnfreezeRequest>()?;
    let Authed { mchid, what, .. } = m;
    let txn = required(req.transaction_id.as_deref(), "transaction_id")?.to_string();
    let out_order_no = required(req.out_order_no.as_deref(), "out_order_no")?.to_string();
    required(req.description.as_deref(), "description")?;
    let sub = req.sub_mchid.clone();
    let owner = sub.clone().unwrap_or(mchid);
    let now = s.now();
    let mut p = lock(&s.pay);
    let skey = (owner.clone(), out_order_no.clone());
    if let Some(sh) = p.sharing.get(&skey) {
        let json = sharing_json(sh);
        drop(p);
        return Ok(reply(&s, &what, 200, Some(json)));
    }
    let order =
        p.by_txn.get(&txn).and_then(|k| p.orders.get(k)).filter(|o| o.owner == owner && o.profit_sharing).cloned();
    if order.is_none() {
        return Err(PayError::new(404, "RESOURCE_NOT_EXISTS", "分账订单不存在"));
    }
    if p.unfrozen.get(&txn).copied().unwrap_or(false) {
        return Err(PayError::new(400, "INVALID_REQUEST", "订单剩余资金已解冻"));
    }
    let n = p.next();
    let sh = Sharing {
        transaction_id: txn.clone(),
        out_order_no,
        order_id: format!("3008{}{:010}", now.format("%Y%m%d%H%M"), n),
        sub_mchid: sub,
        receivers: Vec::new(),
        created: now,
        request: raw,
    };
    let json = sharing_json(&sh);
    p.sharing.insert(skey, sh);
    p.unfrozen.insert(txn, true);
    drop(p);
    Ok(reply(&s, &what, 200, Some(json)))
}

async fn sharing_amounts(State(s): State<Shared>, Path(txn): Path<String>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let p = lock(&s.pay);
    let order = p.by_txn.get(&txn).and_then(|k| p.orders.get(k)).filter(|o| o.notify_mchid == mchid).cloned();
    let Some(order) = order else {
        return Err(PayError::new(404, "RESOURCE_NOT_EXISTS", "订单不存在"));
    };
    let unsplit = if !order.profit_sharing || p.unfrozen.get(&txn).copied().unwrap_or(false) {
        0
    } else {
        let shared: i64 = p
            .sharing
            .values()
            .filter(|sh| sh.transaction_id == txn)
            .flat_map(|sh| sh.receivers.iter().map(|r| r.2))
            .sum();
        order.total - shared
    };
    drop(p);
    Ok(reply(&s, &what, 200, Some(json!({ "transaction_id": txn, "unsplit_amount": unsplit }))))
}

async fn return_create(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Body { req, .. } = m.json::<ReturnRequest>()?;
    let Authed { mchid, what, .. } = m;
    let out_return_no = required(req.out_return_no.as_deref(), "out_return_no")?.to_string();
    let return_mchid = required(req.return_mchid.as_deref(), "return_mchid")?.to_string();
    let description = required(req.description.as_deref(), "description")?.to_string();
    let Some(amount) = req.amount.0.filter(|a| *a > 0) else {
        return Err(PayError::param("amount", "amount 须为正整数"));
    };
    let owner = req.sub_mchid.clone().unwrap_or(mchid);
    let now = s.now();
    let mut p = lock(&s.pay);
    let rkey = (owner.clone(), out_return_no.clone());
    if let Some(r) = p.returns.get(&rkey) {
        let json = r.json.clone();
        drop(p);
        return Ok(reply(&s, &what, 200, Some(json)));
    }
    let sh = match (req.out_order_no.as_deref(), req.order_id.as_deref()) {
        (Some(o), _) => p.sharing.get(&(owner.clone(), o.to_string())).cloned(),
        (None, Some(id)) => p.sharing.values().find(|sh| sh.order_id == id).cloned(),
        _ => None,
    };
    let Some(sh) = sh else {
        return Err(PayError::new(404, "RESOURCE_NOT_EXISTS", "分账单不存在"));
    };
    let shared_to: i64 = sh.receivers.iter().filter(|r| r.0 == "MERCHANT_ID" && r.1 == return_mchid).map(|r| r.2).sum();
    let returned: i64 = p
        .returns
        .values()
        .filter(|r| r.out_order_no == sh.out_order_no && r.return_mchid == return_mchid)
        .map(|r| r.amount)
        .sum();
    if amount > shared_to - returned {
        return Err(PayError::new(400, "INVALID_REQUEST", "回退金额超过该接收方已分得且未回退的金额"));
    }
    let n = p.next();
    let json = json!({
        "order_id": sh.order_id, "out_order_no": sh.out_order_no, "out_return_no": out_return_no,
        "return_id": format!("3008{}{:010}", now.format("%Y%m%d%H%M"), n), "return_mchid": return_mchid,
        "amount": amount, "description": description, "result": "SUCCESS",
        "create_time": wechat_time(now), "finish_time": wechat_time(now),
    });
    p.returns.insert(rkey, ReturnRec { json: json.clone(), amount, out_order_no: sh.out_order_no, return_mchid });
    drop(p);
    Ok(reply(&s, &what, 200, Some(json)))
}

async fn return_query(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    m: Authed,
) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let owner = q.get("sub_mchid").cloned().unwrap_or(mchid);
    let out_order_no = q.get("out_order_no").cloned().unwrap_or_default();
    let v = lock(&s.pay).returns.get(&(owner, no)).filter(|r| r.out_order_no == out_order_no).map(|r| r.json.clone());
    let v = found(v, "RESOURCE_NOT_EXISTS", "回退单不存在")?;
    Ok(reply(&s, &what, 200, Some(v)))
}
