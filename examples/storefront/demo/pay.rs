//! The `--demo` steps of `pay.rs`: money events the market did not ask for are recorded, not dropped.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::demo::Demo;
use crate::demo::governance::as_platform;

/// Demo: a validly signed notification with the wrong amount is acknowledged (2xx) and held for
/// review; the buyer then pays; the merchant refunds part of it in WeChat Pay's merchant platform, and
/// the market applies that refund to the payment, the settlement and the ledger.
pub async fn demo_anomalies(d: &mut Demo) -> Result<String, String> {
    let emu = d.state.emulator.clone().ok_or("the demo needs the emulator")?;
    let mchid = d.state.pay.as_ref().ok_or("WeChat Pay is not configured")?.mchid().to_string();
    let sku = crate::demo::market::first_sku_of(d, "Leaf & Co").await?;
    d.sign_in("carol").await?;
    let co = d
        .post("/api/checkout", json!({ "idempotency_key": "demo-anomaly", "lines": [{ "sku_id": sku, "qty": 1 }] }))
        .await?;
    let group = co["group"]["id"].as_str().ok_or("no group")?.to_string();
    let total = co["group"]["total"].as_i64().ok_or("no total")?;
    // WeChat Pay says 1 fen was paid: signed, so it must be answered 2xx and recorded.
    let resource = json!({
        "appid": d.state.client.appid(), "mchid": mchid, "out_trade_no": group,
        "transaction_id": "4200000000000000000000000001", "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "success_time": "2026-12-03T10:00:00+08:00", "payer": { "openid": "o-carol" },
        "amount": { "total": 1, "payer_total": 1, "currency": "CNY" }
    });
    let notify_url = format!("{}/wx/pay/notify", d.base);
    let status = wxshop::emulator::pay::trigger(&notify_url, "TRANSACTION.SUCCESS", &resource)
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("a signed wrong-amount notification got HTTP {status}"));
    }
    let held = as_platform(d, Method::GET, "/admin/anomalies?status=Held", None).await?;
    let anomaly = find(&held, "AmountMismatch", &group).ok_or_else(|| format!("no held anomaly: {held}"))?;
    let view = d.get(&format!("/api/checkout/{group}")).await?;
    if view["group"]["status"] != "AwaitingPayment" {
        return Err(format!("a wrong amount paid the checkout: {}", view["group"]));
    }
    let id = anomaly["id"].as_str().unwrap_or_default().to_string();
    let dismissed = as_platform(
        d,
        Method::POST,
        &format!("/admin/anomalies/{id}/dismiss"),
        Some(json!({ "note": "test notification from the acquirer" })),
    )
    .await?;
    if dismissed["status"] != "Dismissed" {
        return Err(format!("not dismissed: {dismissed}"));
    }
    // The buyer pays for real, then the merchant refunds ¥10 in the merchant platform.
    emu.cashier_pay(&mchid, &group).await.map_err(|e| e.to_string())?;
    wait_for(d, &group, |v| v["payment"]["status"] == "Paid").await?;
    emu.cashier_refund(&mchid, &group, Some(1000)).await.map_err(|e| e.to_string())?;
    let v = wait_for(d, &group, |v| v["payment"]["refunded"] == 1000).await?;
    let all = as_platform(d, Method::GET, "/admin/anomalies", None).await?;
    let applied = find(&all, "ExternalRefund", &group).ok_or_else(|| format!("no external refund: {all}"))?;
    if applied["status"] != "Applied" {
        return Err(format!("the external refund was not applied: {applied}"));
    }
    let audit = as_platform(d, Method::GET, "/admin/governance/ledger/audit", None).await?;
    if audit["clean"] != true {
        return Err(format!("ledger audit: {audit}"));
    }
    Ok(format!(
        "a signed 1-fen notification for a ¥{:.2} checkout: 2xx, held, dismissed with a note; paid, then ¥10.00 \
         refunded in the merchant platform: applied ({}), payment {}; ledger audit clean",
        total as f64 / 100.0,
        applied["refund_id"].as_str().unwrap_or("?"),
        v["payment"]["status"].as_str().unwrap_or("?")
    ))
}

fn find<'a>(page: &'a Value, kind: &str, group: &str) -> Option<&'a Value> {
    page["items"].as_array()?.iter().find(|a| a["kind"] == kind && a["group_id"] == group)
}

async fn wait_for(d: &Demo, group: &str, done: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = d.get(&format!("/api/checkout/{group}")).await?;
        if done(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("timed out waiting on checkout {group}: {}", last["payment"]))
}
