//! The `--demo` steps of `compensation.rs`: each drives the routes over HTTP like a client would.

use crate::demo::Demo;
use serde_json::json;
use wxshop::market::MarketError;

/// Demo: the buyer sees the compensation of the late shipment waiting, confirms the transfer in
/// WeChat (the emulator's control API stands in for `wx.requestMerchantTransfer`), and the
/// `MCHTRANSFER.BILL.FINISHED` notification pays it.
pub async fn demo_compensation(d: &mut Demo) -> Result<String, String> {
    let mut waiting = None;
    for _ in 0..100 {
        let list = d.get("/api/compensations").await?;
        waiting = list["items"].as_array().and_then(|a| a.iter().find(|c| c["status"] == "requested").cloned());
        if waiting.as_ref().is_some_and(|c| c.get("request_merchant_transfer").is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let c = waiting.ok_or("no compensation waiting for the buyer")?;
    let params = c.get("request_merchant_transfer").cloned().ok_or_else(|| format!("no transfer to confirm: {c}"))?;
    let (id, mchid) = (c["id"].as_str().unwrap_or_default().to_string(), params["mchId"].as_str().unwrap_or_default());
    let out_bill_no = c["transfer"]["out_bill_no"].as_str().ok_or("no out_bill_no")?.to_string();
    if params["appId"] != d.state.client.appid() || params["package"].as_str().is_none_or(str::is_empty) {
        return Err(format!("unexpected wx.requestMerchantTransfer parameters: {params}"));
    }
    // The buyer taps 确认收款 in wx.requestMerchantTransfer.
    d.emulator_post(&format!("/__emulator/pay/transfers/{mchid}/{out_bill_no}/confirm"), json!({})).await?;
    for _ in 0..100 {
        let list = d.get("/api/compensations").await?;
        let now = list["items"].as_array().and_then(|a| a.iter().find(|x| x["id"] == id.as_str()).cloned());
        if let Some(paid) = now.filter(|x| x["status"] == "succeeded") {
            if paid["transfer"]["state"] != "SUCCESS" {
                return Err(format!("paid but the transfer is not SUCCESS: {paid}"));
            }
            let audit = d
                .call(
                    reqwest::Method::GET,
                    "/admin/governance/ledger/audit",
                    None,
                    &[("authorization", format!("Bearer {}", d.admin_token()))],
                    true,
                )
                .await?;
            if audit["clean"] != true {
                return Err(format!("ledger audit after the compensation: {audit}"));
            }
            return Ok(format!(
                "{} paid to the buyer by transfer bill {} (state SUCCESS); ledger clean",
                wxshop::market::Money::fen(paid["amount"].as_i64().unwrap_or_default()),
                paid["transfer"]["transfer_bill_no"].as_str().unwrap_or("?")
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(MarketError::Invalid(format!("compensation {id} was not paid within 5 s")).to_string())
}
