//! Compensation paid to buyers through WeChat Pay merchant transfers (商家转账).
//!
//! A penalty or a decided dispute owes a buyer money; the market asks WeChat Pay for a transfer bill,
//! which waits for the buyer to confirm it in the mini program:
//! `wx.requestMerchantTransfer({mchId, appId, package})` with the parameters this module answers.
//! `MCHTRANSFER.BILL.FINISHED` arrives at `/wx/pay/notify` (market.rs hands it to the market), and
//! the market's reconcile loop queries bills whose notification got lost.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/compensations` | the signed-in buyer's compensations: status, transfer state, and when waiting `request_merchant_transfer` = `{mchId, appId, package}` |
//! | `POST /admin/governance/compensations/{id}/reissue` | platform: pay a failed compensation again (a new transfer bill; idempotent) |

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use wxshop::market::CompensationView;
use wxshop::market::governance::GovError;

use crate::AppState;
use crate::api::ApiError;
use crate::api::Buyer;
use crate::demo::Demo;
use crate::governance::Platform;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/compensations", get(mine))
        .route("/admin/governance/compensations/{id}/reissue", post(reissue))
}

/// A compensation as the buyer's mini program needs it.
fn view_json(s: &AppState, v: &CompensationView) -> Value {
    let c = &v.compensation;
    let mut out = json!({
        "id": c.id,
        "amount": c.amount,
        "status": c.status,
        "reference": c.reference,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    });
    if let Some(t) = &v.transfer {
        out["transfer"] = json!({
            "out_bill_no": t.out_bill_no,
            "transfer_bill_no": t.transfer_bill_no,
            "state": t.state,
            "fail_reason": t.fail_reason,
            "attempt": t.attempt,
        });
        if let (true, Some(pkg), Some(pay)) = (t.awaits_buyer(), &t.package_info, &s.pay) {
            out["request_merchant_transfer"] =
                json!({ "mchId": pay.mchid(), "appId": s.client.appid(), "package": pkg });
        }
    }
    out
}

async fn mine(State(s): State<AppState>, b: Buyer) -> Result<Json<Value>, ApiError> {
    let list = s.market.market.buyer_compensations(&b.openid).await?;
    Ok(Json(json!({ "items": list.iter().map(|v| view_json(&s, v)).collect::<Vec<_>>() })))
}

async fn reissue(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let v = s.market.market.reissue_compensation(&id).await?;
    Ok(Json(view_json(&s, &v)))
}

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
                    &[("authorization", format!("Bearer {}", d.state.admin_token))],
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
    Err(GovError::Invalid(format!("compensation {id} was not paid within 5 s")).to_string())
}
