//! Payment, refund and transfer notifications: queued, signed, delivered with WeChat's redelivery
//! schedule (mirrors `crate::pay::notify`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::Method;
use serde_json::Value;

use super::{Delivery, NOTIFY_SCHEDULE_SECS};
use crate::emulator::{EmulatorState, Shared, lock};
use crate::error::Error;
use crate::http::{Body, Host, Request};
use crate::pay::notify::sign_notification_with_id;

// ---------------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------------

pub(super) fn queue_notification(
    s: &Shared,
    mchid: &str,
    url: &str,
    event_type: &str,
    out_trade_no: &str,
    resource: &Value,
) {
    let id = format!("EV-{}", uuid::Uuid::new_v4().simple());
    let plaintext = serde_json::to_vec(resource).unwrap_or_default();
    lock(&s.pay).deliveries.push(Delivery {
        id: id.clone(),
        event_type: event_type.into(),
        url: url.into(),
        out_trade_no: out_trade_no.into(),
        attempts: 0,
        delivered: false,
        last_status: None,
        mchid: mchid.into(),
        plaintext,
    });
    let weak = Arc::downgrade(s);
    tokio::spawn(deliver_with_retries(weak, id));
}

async fn deliver_with_retries(weak: Weak<EmulatorState>, id: String) {
    for attempt in 0..=NOTIFY_SCHEDULE_SECS.len() {
        if attempt > 0 {
            let factor = match weak.upgrade() {
                Some(s) => lock(&s.pay).time_factor,
                None => return,
            };
            let secs = NOTIFY_SCHEDULE_SECS[attempt - 1] as f64 / factor.max(1e-6);
            tokio::time::sleep(Duration::from_secs_f64(secs.min(86_400.0))).await;
        }
        let Some(s) = weak.upgrade() else { return };
        if lock(&s.pay).deliveries.iter().any(|d| d.id == id && d.delivered) {
            return;
        }
        if deliver_once(&s, &id).await {
            return;
        }
    }
}

/// One delivery attempt; true on a 2xx answer.
pub(super) async fn deliver_once(s: &Shared, id: &str) -> bool {
    let prepared = {
        let mut p = lock(&s.pay);
        let Some(d) = p.deliveries.iter().find(|d| d.id == id).cloned() else { return false };
        let Some(apiv3) = p.merchants.get(&d.mchid).map(|m| m.apiv3.clone()) else { return false };
        let (serial, key) = p.signer(false);
        let ts = s.now().timestamp() + p.skew_secs;
        p.http().ok().map(|http| (d, apiv3, serial, key, ts, http))
    };
    let Some((d, apiv3, serial, key, ts, http)) = prepared else { return false };
    let Ok(n) = sign_notification_with_id(&d.id, &key, &serial, &apiv3, &d.event_type, &d.plaintext, ts) else {
        return false;
    };
    let mut req = Request::new(Method::POST, Host::Absolute, d.url.clone())
        .body(Body::Raw { content_type: "application/json".into(), bytes: n.body.into() });
    for (k, v) in n.headers.iter() {
        if k != "content-type" {
            req = req.header(k.clone(), v.clone());
        }
    }
    let status = match http.execute(&req, None).await {
        Ok(r) => r.status,
        Err(Error::HttpStatus { status, .. }) | Err(Error::PayApi { status, .. }) => status,
        Err(_) => 0,
    };
    let ok = (200..300).contains(&status);
    let now = s.now();
    let mut p = lock(&s.pay);
    if let Some(dd) = p.deliveries.iter_mut().find(|x| x.id == id) {
        dd.attempts += 1;
        dd.last_status = Some(status);
        dd.delivered |= ok;
    }
    let attempts = p.deliveries.iter().find(|x| x.id == id).map(|x| x.attempts).unwrap_or(0);
    p.push_log(
        now,
        "notify",
        format!("{} {} → {}", d.event_type, d.out_trade_no, d.url),
        status,
        format!("id {} attempt {attempts}", d.id),
    );
    drop(p);
    s.bump(if ok { "pay.notify.delivered" } else { "pay.notify.failed" });
    ok
}
