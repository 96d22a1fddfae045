//! WeChat Pay: the pay client and `POST /wx/pay/notify` (WeChat Pay's notifications: verified,
//! decrypted, deduplicated, then handed to the market, which checks the amount against the payment,
//! as WeChat asks). Orders, their `wx.requestPayment` parameters and refunds are the market's
//! (`market.rs`: `POST /api/checkout`, `GET /api/checkout/{group_id}`).
//!
//! Every verified notification is answered 2xx once it is recorded, whatever its business outcome: a
//! wrong amount is held for review, a second payment of a paid checkout is refunded, a refund made in
//! the merchant platform is applied to the order, the ledger and the settlement; each is a recorded
//! anomaly on the platform's routes (`Authorization: Bearer <platform key>`):
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/anomalies?status=&cursor=&limit=` · `GET /admin/anomalies/{id}` | anomalies, oldest first |
//! | `POST /admin/anomalies/{id}/refund` `{note}` · `/dismiss` `{note}` | send a held payment back, or accept it |
//! | `POST /admin/reconcile/trade-bill` `{date}` | reconcile a day's trade bill (also run daily by the timer loop) |
//!
//! In emulator mode the pay client is the emulator's default merchant. Against real WeChat Pay,
//! set `WXSHOP_MCHID`, `WXSHOP_MCH_SERIAL`, `WXSHOP_MCH_KEY_FILE` (apiclient_key.pem),
//! `WXSHOP_APIV3_KEY`, `WXSHOP_PAY_PUBLIC_KEY_ID` and `WXSHOP_PAY_PUBLIC_KEY_FILE` (pub_key.pem), and
//! `WXSHOP_NOTIFY_URL` (the public https URL of `/wx/pay/notify`).

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::post;
use serde::Deserialize;
use wxshop::market::anomaly::AnomalyStatus;
use wxshop::pay::notify::NotifyService;
use wxshop::pay::{Notification, PayClient, PayConfig};

use crate::AppState;
use crate::access::Platform;
use crate::api::{Answer, Body, Params, ok};
use crate::routes::{Auth, Routes, doc};

/// The pay client: the emulator's merchant, or one from the environment.
pub fn pay_client(emulator: Option<&wxshop::emulator::EmulatorHandle>) -> wxshop::Result<Option<PayClient>> {
    if let Some(emu) = emulator {
        return emu.pay_client().map(Some);
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(mchid), Some(serial), Some(key_file), Some(apiv3)) =
        (var("WXSHOP_MCHID"), var("WXSHOP_MCH_SERIAL"), var("WXSHOP_MCH_KEY_FILE"), var("WXSHOP_APIV3_KEY"))
    else {
        println!("WeChat Pay is off: set WXSHOP_MCHID, WXSHOP_MCH_SERIAL, WXSHOP_MCH_KEY_FILE and WXSHOP_APIV3_KEY");
        return Ok(None);
    };
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| wxshop::Error::Config(format!("cannot read {path}: {e}")))
    };
    let mut config = PayConfig::from_pem(&mchid, &serial, &read(&key_file)?, &apiv3)?;
    if let (Some(id), Some(file)) = (var("WXSHOP_PAY_PUBLIC_KEY_ID"), var("WXSHOP_PAY_PUBLIC_KEY_FILE")) {
        config = config.with_public_key_pem(id, &read(&file)?)?;
    }
    PayClient::builder(config).build().map(Some)
}

/// The notification service: every verified notification goes to the market — sale payments
/// (JSAPI, partner, combined), deposit pay-ins, refunds (order refunds and deposit exit refunds) and
/// merchant-transfer bills (compensation); see [`Payments::handle_pay_notification`](crate::market::handles::Payments::handle_pay_notification).
/// What the market does not know (another system's payment on the same merchant id) is acknowledged.
pub fn notify_service(pay: PayClient, state: AppState) -> NotifyService {
    NotifyService::new(pay, move |n: Notification| {
        let state = state.clone();
        async move {
            if !state.market.market.payments().handle_pay_notification(&n).await? {
                tracing::info!(id = %n.id, event = %n.event_type, "pay notification for nothing the market knows");
            }
            Ok(())
        }
    })
}

pub fn routes(state: &AppState) -> Routes {
    let mut r = Routes::new("pay")
        .get(
            "/admin/anomalies",
            anomalies,
            doc("Money events the market did not ask for, oldest first", Auth::Platform).query::<AnomalyParams>(),
        )
        .get("/admin/anomalies/{id}", anomaly, doc("One payment anomaly", Auth::Platform))
        .post(
            "/admin/anomalies/{id}/refund",
            refund_anomaly,
            doc("Send a held anomaly's money back", Auth::Platform).body::<NoteBody>(),
        )
        .post(
            "/admin/anomalies/{id}/dismiss",
            dismiss_anomaly,
            doc("Accept a held anomaly as it is, with a note", Auth::Platform).body::<NoteBody>(),
        )
        .post(
            "/admin/reconcile/trade-bill",
            reconcile_bill,
            doc("Reconcile one day's WeChat Pay trade bill", Auth::Platform).body::<BillBody>(),
        );
    if let Some(pay) = &state.pay {
        let svc = notify_service(pay.clone(), state.clone());
        r = r.service(
            "/wx/pay/notify",
            post(wxshop::pay::notify::handle).with_state(svc),
            vec![(Method::POST, doc("WeChat Pay's notifications: payments, refunds, transfers", Auth::WeChatPay))],
        );
    }
    r
}

#[derive(Deserialize, utoipa::IntoParams)]
struct AnomalyParams {
    #[param(value_type = Option<String>)]
    status: Option<AnomalyStatus>,
    #[serde(alias = "after")]
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /admin/anomalies?status=Held&cursor=&limit=`: money events the market did not ask for (a wrong
/// amount held for review, a double payment being refunded, a refund made outside the market).
async fn anomalies(State(s): State<AppState>, _: Platform, Params(p): Params<AnomalyParams>) -> Answer {
    ok(s.market.market.payments().anomalies(p.status, p.cursor.as_deref(), p.limit.unwrap_or(50)).await?)
}

async fn anomaly(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Answer {
    ok(s.market.market.payments().anomaly(&id).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NoteBody {
    note: String,
}

/// `POST /admin/anomalies/{id}/refund` `{note}`: send the money of a held anomaly back.
async fn refund_anomaly(
    State(s): State<AppState>,
    _: Platform,
    Path(id): Path<String>,
    Body(b): Body<NoteBody>,
) -> Answer {
    ok(s.market.market.payments().refund_anomaly(&id, &b.note).await?)
}

/// `POST /admin/anomalies/{id}/dismiss` `{note}`: accept it as it is (settled outside the market).
async fn dismiss_anomaly(
    State(s): State<AppState>,
    _: Platform,
    Path(id): Path<String>,
    Body(b): Body<NoteBody>,
) -> Answer {
    ok(s.market.market.payments().dismiss_anomaly(&id, &b.note).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BillBody {
    /// The bill's day (Beijing time), `YYYY-MM-DD`; WeChat Pay has it from 10:00 the next day.
    #[schema(value_type = String)]
    date: chrono::NaiveDate,
}

/// `POST /admin/reconcile/trade-bill` `{date}`: reconciles one day's trade bill (the timer loop does it
/// daily for the day before): what lost notifications hid is applied once.
async fn reconcile_bill(State(s): State<AppState>, _: Platform, Body(b): Body<BillBody>) -> Answer {
    ok(s.market.market.payments().reconcile_trade_bill(b.date).await?)
}
