//! WeChat Pay: the pay client and `POST /wx/pay/notify` (WeChat Pay's notifications: verified,
//! decrypted, deduplicated, then handed to the market, which checks the amount against the payment,
//! as WeChat asks). Orders, their `wx.requestPayment` parameters and refunds are the market's
//! (`market.rs`: `POST /api/checkout`, `GET /api/checkout/{group_id}`).
//!
//! In emulator mode the pay client is the emulator's default merchant. Against real WeChat Pay,
//! set `WXSHOP_MCHID`, `WXSHOP_MCH_SERIAL`, `WXSHOP_MCH_KEY_FILE` (apiclient_key.pem),
//! `WXSHOP_APIV3_KEY`, `WXSHOP_PAY_PUBLIC_KEY_ID` and `WXSHOP_PAY_PUBLIC_KEY_FILE` (pub_key.pem), and
//! `WXSHOP_NOTIFY_URL` (the public https URL of `/wx/pay/notify`).

use axum::http::Method;
use axum::routing::post;
use wxshop::pay::notify::NotifyService;
use wxshop::pay::{Notification, PayClient, PayConfig};

use crate::AppState;
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
/// merchant-transfer bills (compensation); see [`wxshop::market::Market::handle_pay_notification`].
/// What the market does not know (another system's payment on the same merchant id) is acknowledged.
pub fn notify_service(pay: PayClient, state: AppState) -> NotifyService {
    NotifyService::new(pay, move |n: Notification| {
        let state = state.clone();
        async move {
            if !state.market.market.handle_pay_notification(&n).await? {
                tracing::info!(id = %n.id, event = %n.event_type, "pay notification for nothing the market knows");
            }
            Ok(())
        }
    })
}

pub fn routes(state: &AppState) -> Routes {
    let mut r = Routes::new("pay");
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
