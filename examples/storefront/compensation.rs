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

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use wxshop::market::CompensationView;

use crate::AppState;
use crate::access::Platform;
use crate::api::ApiError;
use crate::api::Buyer;
use crate::routes::{Auth, Routes, doc};

pub fn routes() -> Routes {
    Routes::new("compensation")
        .get("/api/compensations", mine, doc("The signed-in buyer's compensations", Auth::Buyer))
        .post(
            "/admin/governance/compensations/{id}/reissue",
            reissue,
            doc("Pay a failed compensation again (a new transfer bill)", Auth::Platform),
        )
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
    let list = s.market.market.governance().transfers().buyer_compensations(&b.openid).await?;
    Ok(Json(json!({ "items": list.iter().map(|v| view_json(&s, v)).collect::<Vec<_>>() })))
}

async fn reissue(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let v = s.market.market.governance().transfers().reissue_compensation(&id).await?;
    Ok(Json(view_json(&s, &v)))
}
