//! The `--demo` steps of `governance.rs`: each drives the routes over HTTP like a client would.

use crate::demo::Demo;
use serde_json::{Value, json};
use wxshop::market::Money;
use wxshop::market::governance::aftersale::CaseKind;

fn key_of(d: &Demo, name: &str) -> Result<(String, String), String> {
    d.merchant_key(name)
}

pub(crate) async fn as_merchant(
    d: &Demo,
    name: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let (_, key) = key_of(d, name)?;
    d.call(method, path, body, &[("x-merchant-key", key)], false).await
}

pub(crate) async fn as_platform(
    d: &Demo,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let token = d.admin_token();
    d.call(method, path, body, &[("authorization", format!("Bearer {token}"))], true).await
}

/// Demo: the platform asks ¥100 of deposit per merchant; Leaf & Co pays it in through WeChat Pay.
pub async fn demo_deposit(d: &mut Demo) -> Result<String, String> {
    let mut cfg = as_platform(d, reqwest::Method::GET, "/admin/governance/config", None).await?;
    cfg["deposit"]["requirement"] = json!({ "kind": "fixed", "fen": 10_000 });
    as_platform(d, reqwest::Method::PUT, "/admin/governance/config", Some(cfg)).await?;
    let before = as_merchant(d, "Leaf & Co", reqwest::Method::GET, "/api/merchant/deposit", None).await?;
    let prepay = as_merchant(
        d,
        "Leaf & Co",
        reqwest::Method::POST,
        "/api/merchant/deposit/pay",
        Some(json!({ "amount": 10_000, "idempotency_key": "demo-deposit-1", "payer_openid": "o-leaf-owner" })),
    )
    .await?;
    // The merchant pays in the emulator's cashier; the payment notification credits the deposit.
    let out_trade_no = prepay["out_trade_no"].as_str().ok_or_else(|| format!("no out_trade_no: {prepay}"))?;
    let emu = d.state.emulator.clone().ok_or("the demo pays in the emulator's cashier")?;
    let mchid = d.state.pay.as_ref().ok_or("WeChat Pay is not configured")?.mchid().to_string();
    emu.cashier_pay(&mchid, out_trade_no).await.map_err(|e| e.to_string())?;
    let mut paid = Value::Null;
    for _ in 0..100 {
        paid = as_merchant(d, "Leaf & Co", reqwest::Method::GET, "/api/merchant/deposit", None).await?;
        if paid["account"]["status"] == "funded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if before["account"]["status"] != "unfunded" || paid["account"]["status"] != "funded" {
        return Err(format!("expected unfunded then funded: {before} / {paid}"));
    }
    Ok(format!(
        "required {}, paid in through WeChat Pay ({out_trade_no}), status funded",
        Money::fen(paid["account"]["required"].as_i64().unwrap_or(0))
    ))
}

/// Demo: an order nobody ships; 49 hours later it is a late-shipment penalty and the buyer is
/// compensated out of the deposit.
pub async fn demo_late_shipment(d: &mut Demo) -> Result<String, String> {
    let (leaf, _) = key_of(d, "Leaf & Co")?;
    let page = d.get(&format!("/api/products?merchant={leaf}&limit=1")).await?;
    let pid = page["items"][0]["id"].as_str().ok_or("no product")?.to_string();
    let p = d.get(&format!("/api/products/{pid}")).await?;
    let sku = p["skus"][0]["id"].as_str().ok_or("no sku")?.to_string();
    let co = d
        .post("/api/checkout", json!({ "idempotency_key": "demo-late-1", "lines": [{ "sku_id": sku, "qty": 1 }] }))
        .await?;
    let group = co["group"]["id"].as_str().ok_or("no group")?.to_string();
    let first = co["orders"][0]["id"].as_str().ok_or("no order")?.to_string();
    // The buyer pays in the emulator's cashier; the notification marks the order paid.
    let emu = d.state.emulator.clone().ok_or("the demo pays in the emulator's cashier")?;
    let mchid = d.state.pay.as_ref().ok_or("WeChat Pay is not configured")?.mchid().to_string();
    // A one-merchant checkout is one JSAPI payment of the group; a combined one is paid by any sub-order.
    let out_trade_no = if co["payment"]["mode"] == "Combine" { first } else { group.clone() };
    emu.cashier_pay(&mchid, &out_trade_no).await.map_err(|e| e.to_string())?;
    for _ in 0..100 {
        if d.get(&format!("/api/checkout/{group}")).await?["group"]["status"] == "Paid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = as_merchant(d, "Leaf & Co", reqwest::Method::GET, "/api/merchant/penalties", None).await?;
    let run =
        as_platform(d, reqwest::Method::POST, "/admin/governance/timers/run", Some(json!({ "advance_hours": 49 })))
            .await?;
    let log = as_merchant(d, "Leaf & Co", reqwest::Method::GET, "/api/merchant/penalties", None).await?;
    let rec = log["records"].as_array().and_then(|r| r.iter().find(|r| r["rule_code"] == "late_shipment")).cloned();
    let rec = rec.ok_or_else(|| format!("no late-shipment penalty (before {before}, run {run}): {log}"))?;
    let dep = as_merchant(d, "Leaf & Co", reqwest::Method::GET, "/api/merchant/deposit", None).await?;
    let balance = dep["balance"].as_i64().unwrap_or(0);
    if balance >= 10_000 {
        return Err(format!("the deposit was not deducted: {dep}"));
    }
    d.late_penalty = rec["id"].as_str().map(str::to_string);
    Ok(format!(
        "penalty {} (minusScore {}, status {}); deposit {} → {} ({}), {} compensation owed to the buyer",
        rec["rule_code"].as_str().unwrap_or("?"),
        rec["minusScore"],
        rec["status"],
        Money::fen(10_000),
        Money::fen(balance),
        dep["account"]["status"].as_str().unwrap_or("?"),
        Money::fen(10_000 - balance)
    ))
}

/// Demo: the merchant appeals; the platform upholds; deposit and score come back.
pub async fn demo_appeal(d: &mut Demo) -> Result<String, String> {
    let pid = d.late_penalty.clone().ok_or("no penalty")?;
    as_merchant(
        d,
        "Leaf & Co",
        reqwest::Method::POST,
        &format!("/api/merchant/penalties/{pid}/appeal"),
        Some(json!({ "reason": "快递停运，已报备" })),
    )
    .await?;
    let p = as_platform(
        d,
        reqwest::Method::POST,
        &format!("/admin/governance/penalties/{pid}/appeal"),
        Some(json!({ "upheld": true, "note": "承运商原因" })),
    )
    .await?;
    let dep = as_merchant(d, "Leaf & Co", reqwest::Method::GET, "/api/merchant/deposit", None).await?;
    if p["status"] != "appeal_upheld" || dep["balance"] != 10_000 || dep["account"]["status"] != "funded" {
        return Err(format!("not restored: {p} / {dep}"));
    }
    Ok(format!("appeal upheld; deposit back to {} and funded", Money::fen(10_000)))
}

/// Demo: the buyer returns part of a received order; the merchant approves and confirms the parcel;
/// WeChat Pay refunds.
pub async fn demo_return(d: &mut Demo) -> Result<String, String> {
    let (leaf, _) = key_of(d, "Leaf & Co")?;
    let mine = d.get("/api/market/orders").await?;
    let order = mine["items"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["status"] == "Received" && o["merchant_id"] == leaf.as_str()))
        .cloned()
        .ok_or_else(|| format!("no received Leaf & Co order: {mine}"))?;
    let oid = order["id"].as_str().ok_or("no id")?.to_string();
    let c = d
        .post(
            "/api/aftersales",
            json!({ "order_id": oid, "line_no": 1, "kind": CaseKind::ReturnRefund, "amount": 8_800, "reason": "包装破损" }),
        )
        .await?;
    let cid = c["id"].as_str().ok_or("no case id")?.to_string();
    as_merchant(d, "Leaf & Co", reqwest::Method::POST, &format!("/api/merchant/aftersales/{cid}/approve"), None)
        .await?;
    d.post(&format!("/api/aftersales/{cid}/return"), json!({ "company": "SF", "number": "SF1234567890" })).await?;
    as_merchant(d, "Leaf & Co", reqwest::Method::POST, &format!("/api/merchant/aftersales/{cid}/received"), None)
        .await?;
    // The refund is requested by the outbox consumer and concluded by WeChat Pay's REFUND.SUCCESS
    // notification; both are asynchronous, so wait for the case to settle (up to 10 s).
    let mut c = Value::Null;
    for _ in 0..200 {
        as_platform(d, reqwest::Method::POST, "/admin/governance/timers/run", Some(json!({ "advance_hours": 0 })))
            .await?;
        c = d.get(&format!("/api/aftersales/{cid}")).await?;
        if c["state"] == "refunded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if c["state"] != "refunded" {
        return Err(format!("the case is not refunded: {c}"));
    }
    let path: Vec<&str> =
        c["history"].as_array().map_or(vec![], |h| h.iter().filter_map(|t| t["to"].as_str()).collect());
    Ok(format!("{} refunded: {}", Money::fen(8_800), path.join(" → ")))
}

/// Demo: the buyer reviews the silk order; the merchant replies; the score shows its components; the
/// ledger audit is clean.
pub async fn demo_review_and_score(d: &mut Demo) -> Result<String, String> {
    let (silk, _) = key_of(d, "Silk Road")?;
    let mine = d.get("/api/market/orders").await?;
    let oid = mine["items"]
        .as_array()
        .and_then(|a| a.iter().find(|o| o["status"] == "Received" && o["merchant_id"] == silk.as_str()))
        .and_then(|o| o["id"].as_str())
        .ok_or_else(|| format!("no received Silk Road order: {mine}"))?
        .to_string();
    let r = d
        .post(
            &format!("/api/market/orders/{oid}/lines/1/review"),
            json!({ "ratings": { "item": 5, "logistics": 4, "service": 5 }, "text": "丝滑" }),
        )
        .await?;
    let rid = r["id"].as_str().ok_or("no review id")?.to_string();
    as_merchant(
        d,
        "Silk Road",
        reqwest::Method::POST,
        &format!("/api/merchant/reviews/{rid}/reply"),
        Some(json!({ "text": "谢谢惠顾" })),
    )
    .await?;
    let score = as_merchant(d, "Silk Road", reqwest::Method::GET, "/api/merchant/score", None).await?;
    let audit = as_platform(d, reqwest::Method::GET, "/admin/governance/ledger/audit", None).await?;
    if audit["clean"] != true {
        return Err(format!("ledger audit: {audit}"));
    }
    let c = &score["components"];
    Ok(format!(
        "score {:.2} (ratings {:.2}, on-time {:.2}, response {:.2}, disputes {:.2}); ledger audit clean",
        score["score"].as_i64().unwrap_or(0) as f64 / 100.0,
        c["ratings"].as_i64().unwrap_or(0) as f64 / 100.0,
        c["on_time"].as_i64().unwrap_or(0) as f64 / 100.0,
        c["response"].as_i64().unwrap_or(0) as f64 / 100.0,
        c["disputes"].as_i64().unwrap_or(0) as f64 / 100.0,
    ))
}

/// Demo: a sub-merchant's own order (partner mode, so Silk Road collects the payment, frozen for profit
/// sharing) is shipped, scanned, received; when its after-sale window closes the settlement is released
/// and WeChat Pay shares the commission to the platform and, the buyer having come through a promoter's
/// link (share.rs), the promoter's fee to the promoter (分账), and unfreezes the rest to the merchant.
pub async fn demo_profit_sharing(d: &mut Demo) -> Result<String, String> {
    let (silk, _) = key_of(d, "Silk Road")?;
    let page = d.get(&format!("/api/products?merchant={silk}&limit=1")).await?;
    let pid = page["items"][0]["id"].as_str().ok_or("no product")?.to_string();
    let p = d.get(&format!("/api/products/{pid}")).await?;
    let sku = p["skus"][0]["id"].as_str().ok_or("no sku")?.to_string();
    let co = d
        .post("/api/checkout", json!({ "idempotency_key": "demo-share-1", "lines": [{ "sku_id": sku, "qty": 1 }] }))
        .await?;
    if co["payment"]["mode"] != "Partner" {
        return Err(format!("expected a partner-mode payment to the sub-merchant: {co}"));
    }
    let group = co["group"]["id"].as_str().ok_or("no group")?.to_string();
    let oid = co["orders"][0]["id"].as_str().ok_or("no order")?.to_string();
    let sub_mchid = d.state.market.market.merchants().merchant(&silk).await.map_err(|e| e.to_string())?.sub_mchid;
    let sub_mchid = sub_mchid.ok_or("Silk Road has no sub_mchid")?;
    let emu = d.state.emulator.clone().ok_or("the demo pays in the emulator's cashier")?;
    let pay = d.state.pay.clone().ok_or("WeChat Pay is not configured")?;
    emu.cashier_pay(&sub_mchid, &group).await.map_err(|e| e.to_string())?;
    let mut paid = false;
    for _ in 0..100 {
        if d.get(&format!("/api/checkout/{group}")).await?["group"]["status"] == "Paid" {
            paid = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if !paid {
        return Err(format!("the partner payment of {group} was not notified"));
    }
    let ship = json!({ "tracking_no": format!("YTO{}", &oid[..10]), "express_company": "YTO",
                       "receiver_phone": "13800138000" });
    as_merchant(d, "Silk Road", reqwest::Method::POST, &format!("/api/merchant/orders/{oid}/ship"), Some(ship)).await?;
    as_platform(d, reqwest::Method::POST, &format!("/admin/governance/orders/{oid}/carrier-scan"), Some(json!({})))
        .await?;
    d.post(&format!("/api/market/orders/{oid}/receive"), json!({})).await?;
    // Eight days on, the 7-day after-sale window has closed: the release and the profit-sharing call
    // run asynchronously (outbox, then a gateway call), so wait for the share to finish (up to 10 s).
    let mut view = Value::Null;
    for _ in 0..200 {
        as_platform(d, reqwest::Method::POST, "/admin/governance/timers/run", Some(json!({ "advance_hours": 8 * 24 })))
            .await?;
        view = as_platform(d, reqwest::Method::GET, &format!("/admin/governance/settlements/{oid}"), None).await?;
        if view["profit_share"]["status"] == "finished" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if view["settlement"]["state"] != "released" || view["profit_share"]["status"] != "finished" {
        return Err(format!("the settlement was not shared out: {view}"));
    }
    // What WeChat Pay itself says about the share and what is left frozen.
    let out_order_no = view["profit_share"]["request"]["out_order_no"].as_str().ok_or("no out_order_no")?;
    let txn = view["settlement"]["transaction_id"].as_str().ok_or("no transaction id")?;
    let wx = pay.profit_sharing().query_order(out_order_no, txn, Some(&sub_mchid)).await.map_err(|e| e.to_string())?;
    let left = pay.profit_sharing().remaining(txn).await.map_err(|e| e.to_string())?;
    let shared: Vec<String> =
        wx.receivers.iter().map(|r| format!("{} to {} {}", Money::fen(r.amount), r.kind, r.account)).collect();
    let a = &view["settlement"]["amounts"];
    let commission = a["commission"].as_i64().unwrap_or(-1);
    // The buyer came through a promoter's link within the attribution window (share.rs): the
    // promoter's fee is shared alongside the commission.
    let fee = a["promoter_fee"].as_i64().unwrap_or(-1);
    if wx.receivers.iter().map(|r| r.amount).sum::<i64>() != commission + fee || left.unsplit_amount != 0 {
        return Err(format!(
            "WeChat Pay shared {shared:?} (left {}), expected the commission {commission} and the promoter fee {fee}",
            left.unsplit_amount
        ));
    }
    let audit = as_platform(d, reqwest::Method::GET, "/admin/governance/ledger/audit", None).await?;
    if audit["clean"] != true {
        return Err(format!("ledger audit: {audit}"));
    }
    Ok(format!(
        "{} from sub-merchant {sub_mchid} settled: {} shared ({}, 分账 {}), {} unfrozen to the merchant, {} left frozen; ledger audit clean",
        Money::fen(a["gross"].as_i64().unwrap_or(0)),
        Money::fen(commission + fee),
        shared.join(", "),
        wx.state,
        Money::fen(a["net"].as_i64().unwrap_or(0)),
        Money::fen(left.unsplit_amount),
    ))
}
