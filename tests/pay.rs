//! WeChat Pay v3 against the in-process emulator: signing formats, verification rules, key modes,
//! notifications and every call family.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use wxshop::Error;
use wxshop::crypto::pay::{self as paycrypto, ApiV3Key, MerchantKey, PayPublicKey};
use wxshop::emulator::pay::{
    DEFAULT_APIV3_KEY, DEFAULT_MCHID, DEFAULT_MERCHANT_KEY_PEM, DEFAULT_MERCHANT_SERIAL, PUBLIC_KEY_ID, SignMode,
};
use wxshop::emulator::{DEFAULT_APPID, Emulator, EmulatorHandle};
use wxshop::pay::bills::{AccountType, BillTable, TradeBillType};
use wxshop::pay::keys::RefreshPolicy;
use wxshop::pay::notify::{NotifyService, sign_body, sign_notification};
use wxshop::pay::profitsharing::{AddReceiver, CreateOrder, CreateReturn, OrderReceiver};
use wxshop::pay::refunds::{CreateRefund, RefundStatus};
use wxshop::pay::transactions::{JsapiPrepay, TradeState};
use wxshop::pay::{Notification, NotificationResource, PayClient, PayConfig};

const NOTIFY_URL_PATH: &str = "/wx/pay/notify";

fn openid(emu: &EmulatorHandle, user: &str) -> String {
    emu.openid_of(DEFAULT_APPID, user)
}

/// A notify endpoint backed by `NotifyService`: records what it processed, and fails the first
/// `fail_first` callbacks.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Notification>>>,
    calls: Arc<AtomicUsize>,
}

async fn receiver(pay: PayClient, fail_first: usize) -> Receiver {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (seen2, calls2) = (seen.clone(), calls.clone());
    let svc = NotifyService::new(pay, move |n: Notification| {
        let (seen, calls) = (seen2.clone(), calls2.clone());
        async move {
            if calls.fetch_add(1, Ordering::SeqCst) < fail_first {
                return Err(Error::Store("database unavailable".into()));
            }
            seen.lock().unwrap().push(n);
            Ok(())
        }
    });
    let app = svc.router(NOTIFY_URL_PATH);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url: format!("http://{addr}{NOTIFY_URL_PATH}"), seen, calls }
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached in 5 s");
}

async fn paid_order(emu: &EmulatorHandle, pay: &PayClient, no: &str, total: i64, url: &str, sharing: bool) -> String {
    let req =
        JsapiPrepay::new(DEFAULT_APPID, "Oolong tea", no, url, total, openid(emu, "alice")).profit_sharing(sharing);
    pay.transactions().jsapi(req).await.unwrap();
    emu.cashier_pay(DEFAULT_MCHID, no).await.unwrap()
}

#[test]
fn signed_messages_match_the_published_vectors() {
    let v = &common::vectors()["pay_v3_formats"];
    let r = &v["request_message_example"];
    let msg = paycrypto::request_message(
        r["method"].as_str().unwrap(),
        r["url"].as_str().unwrap(),
        r["timestamp"].as_str().unwrap(),
        r["nonce"].as_str().unwrap(),
        r["body"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(msg, r["message"].as_str().unwrap().as_bytes());
    let p = &v["pay_sign_message_example"];
    let msg = paycrypto::pay_sign_message(
        p["appId"].as_str().unwrap(),
        p["timeStamp"].as_str().unwrap(),
        p["nonceStr"].as_str().unwrap(),
        p["package"].as_str().unwrap(),
    );
    assert_eq!(msg, p["message"].as_str().unwrap().as_bytes());
}

#[test]
fn authorization_header_signs_the_exact_message() {
    let key = MerchantKey::generate().unwrap();
    let header = paycrypto::sign_request(
        &key,
        "1900009191",
        "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
        "GET",
        "/v3/certificates",
        "1554208460",
        "593BEC0C930BF1AFEB40B4A08C8FB242",
        b"",
    )
    .unwrap();
    let f = paycrypto::parse_authorization(&header).unwrap();
    assert!(header.starts_with(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1900009191\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",signature=\""
    ));
    assert!(header.ends_with(",timestamp=\"1554208460\",serial_no=\"1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C\""));
    key.public_key()
        .verify(b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n", &f.signature)
        .unwrap();
    // Deterministic PKCS#1 v1.5: the same message signs to the same bytes.
    assert_eq!(
        key.sign(b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n").unwrap(),
        f.signature
    );
}

#[tokio::test]
async fn request_payment_params_verify_with_the_merchant_key() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let params = pay
        .transactions()
        .jsapi_request_payment(JsapiPrepay::new(DEFAULT_APPID, "Tea", "ORDER_RP_1", "http://127.0.0.1:1/n", 100, "o1"))
        .await
        .unwrap();
    assert_eq!(params.sign_type, "RSA");
    assert!(params.package.starts_with("prepay_id=wx"));
    assert_eq!(params.nonce_str.len(), 32);
    let msg = paycrypto::pay_sign_message(DEFAULT_APPID, &params.time_stamp, &params.nonce_str, &params.package);
    MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap().public_key().verify(&msg, &params.pay_sign).unwrap();
    let json = serde_json::to_value(&params).unwrap();
    assert_eq!(json["signType"], "RSA");
    assert!(json.get("paySign").is_some() && json.get("timeStamp").is_some() && json.get("nonceStr").is_some());
}

#[tokio::test]
async fn payment_flow_prepay_pay_notify_query_refund() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let rx = receiver(pay.clone(), 0).await;
    let alice = openid(&emu, "alice");
    let req = JsapiPrepay::new(DEFAULT_APPID, "Oolong tea", "ORDER_FLOW_1", &rx.url, 1999, &alice)
        .attach("table=7")
        .time_expire(chrono::Utc::now() + chrono::Duration::minutes(30));
    let prepay = pay.transactions().jsapi(req.clone()).await.unwrap();
    // Same out_trade_no, same fields: the same prepay_id (idempotent).
    assert_eq!(pay.transactions().jsapi(req.clone()).await.unwrap().prepay_id, prepay.prepay_id);
    // Same out_trade_no, different fields: WeChat's 201 duplicate.
    let mut changed = req.clone();
    changed.amount.total = 1;
    let e = pay.transactions().jsapi(changed).await.unwrap_err();
    assert_eq!(e.pay_code(), Some("INVALID_REQUEST"));

    let tx = pay.transactions().query_by_out_trade_no("ORDER_FLOW_1").await.unwrap();
    assert_eq!(tx.trade_state, TradeState::NotPay);
    assert_eq!(tx.transaction_id, None);

    let txn = emu.cashier_pay(DEFAULT_MCHID, "ORDER_FLOW_1").await.unwrap();
    wait_for(|| rx.seen.lock().unwrap().len() == 1).await;
    let n = rx.seen.lock().unwrap()[0].clone();
    assert_eq!(n.event_type, "TRANSACTION.SUCCESS");
    assert_eq!(n.summary, "支付成功");
    match &n.resource {
        NotificationResource::Transaction(t) => {
            assert!(t.is_paid());
            assert_eq!(t.out_trade_no, "ORDER_FLOW_1");
            assert_eq!(t.transaction_id.as_deref(), Some(txn.as_str()));
            assert_eq!(t.total(), Some(1999));
            assert_eq!(t.attach.as_deref(), Some("table=7"));
            assert_eq!(t.payer.as_ref().and_then(|p| p.openid.as_deref()), Some(alice.as_str()));
        }
        other => panic!("{other:?}"),
    }
    let by_id = pay.transactions().query_by_id(&txn).await.unwrap();
    assert_eq!(by_id.trade_state, TradeState::Success);
    assert_eq!(by_id.amount.as_ref().and_then(|a| a.payer_total), Some(1999));
    // Paid orders cannot be prepaid again or closed.
    assert_eq!(pay.transactions().jsapi(req).await.unwrap_err().pay_code(), Some("ORDERPAID"));
    assert_eq!(pay.transactions().close("ORDER_FLOW_1").await.unwrap_err().pay_code(), Some("ORDERPAID"));

    // Refunds: checked locally first, then by the emulator.
    let over = CreateRefund::by_out_trade_no("ORDER_FLOW_1", "REFUND_FLOW_0", 2000, 1999);
    assert!(matches!(pay.refunds().create(over).await, Err(Error::InvalidRequest(_))));
    let r = pay
        .refunds()
        .create(CreateRefund::by_out_trade_no("ORDER_FLOW_1", "REFUND_FLOW_1", 999, 1999).notify_url(&rx.url))
        .await
        .unwrap();
    assert_eq!(r.status, RefundStatus::Processing);
    assert_eq!(r.amount.refund, 999);
    let again = CreateRefund::by_out_trade_no("ORDER_FLOW_1", "REFUND_FLOW_1", 999, 1999).notify_url(&rx.url);
    assert_eq!(pay.refunds().create(again).await.unwrap().refund_id, r.refund_id);
    // The emulator checks what is left: 1999 − 999 = 1000.
    let e = pay.refunds().create(CreateRefund::by_out_trade_no("ORDER_FLOW_1", "REFUND_FLOW_2", 1001, 1999)).await;
    assert_eq!(e.unwrap_err().pay_code(), Some("INVALID_REQUEST"));
    let q = pay.refunds().query("REFUND_FLOW_1").await.unwrap();
    assert_eq!(q.status, RefundStatus::Success);
    wait_for(|| rx.seen.lock().unwrap().len() == 2).await;
    match &rx.seen.lock().unwrap()[1].resource {
        NotificationResource::Refund(r) => {
            assert_eq!(r.refund_status, RefundStatus::Success);
            assert_eq!(r.out_refund_no, "REFUND_FLOW_1");
            assert_eq!(r.amount.refund, 999);
            assert_eq!(r.mchid.as_deref(), Some(DEFAULT_MCHID));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pay.transactions().query_by_out_trade_no("ORDER_FLOW_1").await.unwrap().trade_state, TradeState::Refund);
}

#[tokio::test]
async fn close_makes_the_order_unpayable() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    pay.transactions()
        .jsapi(JsapiPrepay::new(DEFAULT_APPID, "Tea", "ORDER_CLOSE_1", "http://127.0.0.1:1/n", 100, "o1"))
        .await
        .unwrap();
    pay.transactions().close("ORDER_CLOSE_1").await.unwrap();
    assert_eq!(
        pay.transactions().query_by_out_trade_no("ORDER_CLOSE_1").await.unwrap().trade_state,
        TradeState::Closed
    );
    assert!(emu.cashier_pay(DEFAULT_MCHID, "ORDER_CLOSE_1").await.is_err());
    let e = pay.transactions().query_by_out_trade_no("ORDER_NOPE_1").await.unwrap_err();
    assert!(matches!(e, Error::PayApi { status: 404, ref code, .. } if code == "ORDER_NOT_EXIST"));
}

/// A signed `POST` of any JSON, as a merchant's hand-written client would send it.
async fn post_raw(pay: &PayClient, path: &str, body: serde_json::Value) -> Error {
    let req = wxshop::http::Request::new(reqwest::Method::POST, wxshop::http::Host::Pay, path)
        .body(wxshop::http::Body::json(&body).unwrap());
    pay.send(&req).await.unwrap_err()
}

fn param_error(e: &Error) -> (String, String) {
    match e {
        Error::PayApi { status: 400, code, message, detail } if code == "PARAM_ERROR" => (
            message.clone(),
            detail.as_ref().map(|d| d["field"].as_str().unwrap_or("").to_string()).unwrap_or_default(),
        ),
        other => panic!("not a PARAM_ERROR: {other:?}"),
    }
}

#[tokio::test]
async fn a_field_of_the_wrong_type_answers_as_a_missing_one() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let order = |patch: serde_json::Value| {
        let mut v = serde_json::json!({
            "appid": DEFAULT_APPID, "mchid": DEFAULT_MCHID, "description": "Tea", "out_trade_no": "ORDER_TYPE_1",
            "notify_url": "http://127.0.0.1:1/n", "amount": { "total": 100 }, "payer": { "openid": "o1" }
        });
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    const JSAPI: &str = "/v3/pay/transactions/jsapi";
    let e = post_raw(&pay, JSAPI, order(serde_json::json!({ "payer": "o1" }))).await;
    assert_eq!(
        param_error(&e),
        (
            "输入源“/body/payer/openid”映射到值字段“payer.openid”必填性规则校验失败，此字段为必填项".into(),
            "payer.openid".into()
        )
    );
    let e = post_raw(&pay, JSAPI, order(serde_json::json!({ "description": 7 }))).await;
    assert_eq!(
        param_error(&e),
        (
            "输入源“/body/description”映射到值字段“description”必填性规则校验失败，此字段为必填项".into(),
            "description".into()
        )
    );
    let e = post_raw(&pay, JSAPI, order(serde_json::json!({ "appid": "" }))).await;
    assert_eq!(param_error(&e).1, "appid");
    let e = post_raw(&pay, JSAPI, order(serde_json::json!({ "amount": { "total": "100" } }))).await;
    assert_eq!(param_error(&e), ("amount.total 必须为正整数（分）".into(), "amount.total".into()));
    let e = post_raw(&pay, JSAPI, order(serde_json::json!({ "amount": [100] }))).await;
    assert_eq!(param_error(&e).1, "amount.total");
    // A body that is not an object at all.
    let e = post_raw(&pay, JSAPI, serde_json::json!([1, 2])).await;
    assert!(
        matches!(e, Error::PayApi { status: 400, ref message, .. } if message == "请求体不是合法的JSON对象"),
        "{e:?}"
    );
    // A combined payment's sub-order that is not an object reads as one without fields.
    let e = post_raw(
        &pay,
        "/v3/combine-transactions/jsapi",
        serde_json::json!({
            "combine_appid": DEFAULT_APPID, "combine_mchid": DEFAULT_MCHID, "combine_out_trade_no": "COMBINE_TYPE_1",
            "combine_payer_info": { "openid": "o1" }, "notify_url": "http://127.0.0.1:1/n",
            "sub_orders": [ "x", { "mchid": DEFAULT_MCHID, "out_trade_no": "SUB_TYPE_2", "attach": "a",
                                   "description": "d", "amount": { "total_amount": 1 } } ]
        }),
    )
    .await;
    assert_eq!(param_error(&e), ("子单须包含 mchid、out_trade_no、amount.total_amount".into(), "sub_orders".into()));
    // The same request with every field right is accepted, and a repeat with the same parameters is too.
    let ok = order(serde_json::json!({}));
    let req = wxshop::http::Request::new(reqwest::Method::POST, wxshop::http::Host::Pay, JSAPI)
        .body(wxshop::http::Body::json(&ok).unwrap());
    let first: serde_json::Value = pay.send_json(&req).await.unwrap();
    let again: serde_json::Value = pay.send_json(&req).await.unwrap();
    assert_eq!(first["prepay_id"], again["prepay_id"]);
    let mut changed = ok.clone();
    changed["description"] = "Green tea".into();
    let e = post_raw(&pay, JSAPI, changed).await;
    assert!(matches!(e, Error::PayApi { status: 400, ref code, .. } if code == "INVALID_REQUEST"), "{e:?}");
}

#[tokio::test]
async fn a_wrong_merchant_signature_is_401_sign_error() {
    let emu = Emulator::start_default().await.unwrap();
    // The merchant signs with a key the emulator does not know for this mchid.
    let config =
        PayConfig::new(DEFAULT_MCHID, DEFAULT_MERCHANT_SERIAL, MerchantKey::generate().unwrap(), DEFAULT_APIV3_KEY)
            .unwrap()
            .with_public_key(PUBLIC_KEY_ID, wxshop::emulator::pay::platform_public_key_signer().1.public_key())
            .unwrap();
    let pay = emu.pay_client_with(config).unwrap();
    let e = pay.transactions().query_by_out_trade_no("ORDER_X_001").await.unwrap_err();
    assert!(matches!(e, Error::PayApi { status: 401, ref code, .. } if code == "SIGN_ERROR"), "{e:?}");
    // A wrong serial_no too.
    let config = PayConfig::from_pem(DEFAULT_MCHID, "ABCDEF", DEFAULT_MERCHANT_KEY_PEM, DEFAULT_APIV3_KEY)
        .unwrap()
        .with_public_key(PUBLIC_KEY_ID, wxshop::emulator::pay::platform_public_key_signer().1.public_key())
        .unwrap();
    let e = emu.pay_client_with(config).unwrap().transactions().query_by_out_trade_no("ORDER_X_001").await.unwrap_err();
    assert_eq!(e.pay_code(), Some("SIGN_ERROR"));
}

#[tokio::test]
async fn response_rejections_are_typed() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    // SIGNTEST probe.
    emu.send_signtest_probes(1);
    let e = pay.transactions().query_by_out_trade_no("ORDER_X_001").await.unwrap_err();
    assert!(matches!(e, Error::Signature(ref m) if m.contains("SIGNTEST")), "{e:?}");
    // Stale timestamp (the emulator's answers 301 s old).
    emu.set_pay_timestamp_skew(-301);
    let e = pay.transactions().query_by_out_trade_no("ORDER_X_001").await.unwrap_err();
    assert!(matches!(e, Error::StaleTimestamp { window_secs: 300, .. }), "{e:?}");
    emu.set_pay_timestamp_skew(0);
    // Unknown serial: a public-key-only client meets a certificate signature, and does not download.
    emu.set_pay_mode(SignMode::Certificate);
    let e = pay.transactions().query_by_out_trade_no("ORDER_X_001").await.unwrap_err();
    assert!(matches!(e, Error::UnknownSerial { .. }), "{e:?}");
    assert_eq!(emu.calls("/v3/certificates"), 0);
    // Back to the public key: an ordinary typed 404.
    emu.set_pay_mode(SignMode::PublicKey);
    let e = pay.transactions().query_by_out_trade_no("ORDER_X_001").await.unwrap_err();
    assert!(matches!(e, Error::PayApi { status: 404, .. }), "{e:?}");
}

#[tokio::test]
async fn public_key_only_mode_never_calls_certificates() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let rx = receiver(pay.clone(), 0).await;
    paid_order(&emu, &pay, "ORDER_PK_1", 500, &rx.url, false).await;
    pay.transactions().query_by_out_trade_no("ORDER_PK_1").await.unwrap();
    pay.refunds().create(CreateRefund::by_out_trade_no("ORDER_PK_1", "R_PK_1", 100, 500)).await.unwrap();
    wait_for(|| rx.seen.lock().unwrap().len() == 2).await;
    assert!(!pay.refresh_certificates().await.unwrap());
    assert_eq!(emu.calls("/v3/certificates"), 0);
}

fn cert_config() -> PayConfig {
    PayConfig::from_pem(DEFAULT_MCHID, DEFAULT_MERCHANT_SERIAL, DEFAULT_MERCHANT_KEY_PEM, DEFAULT_APIV3_KEY).unwrap()
}

#[tokio::test]
async fn certificate_rotation_refreshes_once_and_keeps_working() {
    let emu = Emulator::start_default().await.unwrap();
    emu.set_pay_mode(SignMode::Certificate);
    let policy = RefreshPolicy { min_interval: Duration::from_millis(300), ..RefreshPolicy::default() };
    let pay = wxshop::pay::PayClient::builder(cert_config())
        .endpoints(emu.endpoints())
        .refresh_policy(policy)
        .build()
        .unwrap();
    pay.transactions()
        .jsapi(JsapiPrepay::new(DEFAULT_APPID, "Tea", "ORDER_ROT_1", "http://127.0.0.1:1/n", 100, "o1"))
        .await
        .unwrap();
    assert_eq!(emu.calls("/v3/certificates"), 1);
    let first = pay.verifier().certificates();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].serial_no(), emu.platform_certificates()[0].serial_no());
    pay.transactions().query_by_out_trade_no("ORDER_ROT_1").await.unwrap();
    assert_eq!(emu.calls("/v3/certificates"), 1);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let new_serial = emu.rotate_platform_certificate().unwrap();
    // Several calls at once meet the unknown serial: one download serves them all.
    let (a, b, c) = tokio::join!(
        pay.transactions().query_by_out_trade_no("ORDER_ROT_1"),
        pay.transactions().query_by_out_trade_no("ORDER_ROT_1"),
        pay.transactions().query_by_out_trade_no("ORDER_ROT_1"),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    assert_eq!(emu.calls("/v3/certificates"), 2);
    assert!(pay.verifier().knows(&new_serial));
    for _ in 0..3 {
        pay.transactions().query_by_out_trade_no("ORDER_ROT_1").await.unwrap();
    }
    assert_eq!(emu.calls("/v3/certificates"), 2);
    // Within the interval, an unknown serial (say, in a forged notification) triggers no download.
    let forger = MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap();
    let body = br#"{"id":"EV-1"}"#;
    let headers =
        sign_body(&forger, "7ABCDEF0123456789ABCDEF0123456789ABCDEF0", body, emu.state().now().timestamp()).unwrap();
    let e = pay.verify_signed(&headers, body).await.unwrap_err();
    assert!(matches!(e, Error::UnknownSerial { ref serial, .. } if serial.starts_with("7ABC")), "{e:?}");
    assert!(!pay.refresh_certificates().await.unwrap());
    assert_eq!(emu.calls("/v3/certificates"), 2);
}

#[tokio::test]
async fn a_new_merchant_without_certificates_gets_a_clear_error() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client_with(cert_config()).unwrap();
    // It tries /v3/certificates (404 for new merchants), then names the missing public key.
    let e = pay.transactions().query_by_out_trade_no("ORDER_X_001").await.unwrap_err();
    assert!(
        matches!(e, Error::UnknownSerial { ref serial, ref hint } if serial == PUBLIC_KEY_ID && hint.contains("with_public_key")),
        "{e:?}"
    );
    assert_eq!(emu.calls("/v3/certificates"), 1);
    let e = pay.download_certificates().await.unwrap_err();
    assert!(matches!(e, Error::Config(ref m) if m.contains("404") && m.contains("with_public_key")), "{e:?}");
}

#[tokio::test]
async fn migration_mode_accepts_either_key() {
    let emu = Emulator::start_default().await.unwrap();
    emu.set_pay_mode(SignMode::Migration);
    let both = emu
        .pay_client_with(wxshop::emulator::pay::default_pay_config().unwrap().with_platform_certificates(true))
        .unwrap();
    both.transactions()
        .jsapi(JsapiPrepay::new(DEFAULT_APPID, "Tea", "ORDER_MIG_1", "http://127.0.0.1:1/n", 100, "o1"))
        .await
        .unwrap();
    for _ in 0..6 {
        both.transactions().query_by_out_trade_no("ORDER_MIG_1").await.unwrap();
    }
    assert_eq!(emu.calls("/v3/certificates"), 1);
    // A public-key-only client fails on the certificate-signed half, without downloading.
    let pk_only = emu.pay_client().unwrap();
    let mut unknown = 0;
    for _ in 0..4 {
        match pk_only.transactions().query_by_out_trade_no("ORDER_MIG_1").await {
            Ok(_) => {}
            Err(Error::UnknownSerial { .. }) => unknown += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(unknown, 2);
    assert_eq!(emu.calls("/v3/certificates"), 1);
}

#[tokio::test]
async fn a_notification_delivered_five_times_is_processed_once() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let rx = receiver(pay.clone(), 0).await;
    paid_order(&emu, &pay, "ORDER_DUP_1", 300, &rx.url, false).await;
    wait_for(|| emu.notifications().first().is_some_and(|d| d.delivered)).await;
    let id = emu.notifications()[0].id.clone();
    for _ in 0..4 {
        assert!(emu.redeliver(&id).await, "a duplicate is still answered with success");
    }
    let d = emu.notifications()[0].clone();
    assert_eq!(d.attempts, 5);
    assert_eq!(d.last_status, Some(204));
    assert_eq!(rx.calls.load(Ordering::SeqCst), 1);
    assert_eq!(rx.seen.lock().unwrap().len(), 1);
    assert_eq!(rx.seen.lock().unwrap()[0].id, id);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_id() {
    let emu = Emulator::start_default().await.unwrap();
    emu.set_notify_time_factor(1000.0); // 15 s → 15 ms
    let pay = emu.pay_client().unwrap();
    let rx = receiver(pay.clone(), 2).await;
    paid_order(&emu, &pay, "ORDER_RETRY_1", 300, &rx.url, false).await;
    wait_for(|| emu.notifications().first().is_some_and(|d| d.delivered)).await;
    let d = emu.notifications()[0].clone();
    assert_eq!(d.attempts, 3);
    assert_eq!(d.last_status, Some(204));
    assert_eq!(rx.calls.load(Ordering::SeqCst), 3);
    let seen = rx.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, d.id);
}

fn fixture_pay(wechat: &MerchantKey) -> PayClient {
    let config = PayConfig::new(
        "1900009191",
        "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        MerchantKey::generate().unwrap(),
        DEFAULT_APIV3_KEY,
    )
    .unwrap()
    .with_public_key("PUB_KEY_ID_TEST", wechat.public_key())
    .unwrap();
    PayClient::builder(config).build().unwrap()
}

#[tokio::test]
async fn notification_fixtures_decrypt_and_tampering_is_rejected() {
    let wechat = MerchantKey::generate().unwrap();
    let pay = fixture_pay(&wechat);
    let apiv3 = ApiV3Key::new(DEFAULT_APIV3_KEY).unwrap();
    let resource = br#"{"mchid":"1900009191","appid":"wx1","out_trade_no":"ORDER_FIX_1","transaction_id":"4200000001","trade_type":"JSAPI","trade_state":"SUCCESS","trade_state_desc":"ok","success_time":"2024-06-11T10:00:00+08:00","payer":{"openid":"o1"},"amount":{"total":100,"payer_total":100,"currency":"CNY","payer_currency":"CNY"}}"#;
    let now = chrono::Utc::now().timestamp();
    let n = sign_notification(&wechat, "PUB_KEY_ID_TEST", &apiv3, "TRANSACTION.SUCCESS", resource, now).unwrap();
    let got = pay.verify_and_decrypt(&n.headers, &n.body).await.unwrap();
    assert_eq!(got.plaintext, resource.to_vec());
    assert_eq!(got.id, n.id);
    assert!(
        matches!(got.resource, NotificationResource::Transaction(ref t) if t.transaction_id.as_deref() == Some("4200000001"))
    );

    // A body re-serialized by a proxy no longer verifies.
    let reserialized =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&n.body).unwrap()).unwrap();
    assert!(matches!(pay.verify_and_decrypt(&n.headers, &reserialized).await, Err(Error::Signature(_))));
    // Wrong signature (another key).
    let other = MerchantKey::generate().unwrap();
    let forged = sign_body(&other, "PUB_KEY_ID_TEST", &n.body, now).unwrap();
    assert!(matches!(pay.verify_and_decrypt(&forged, &n.body).await, Err(Error::Signature(_))));
    // Unknown serial.
    let unknown = sign_body(&wechat, "PUB_KEY_ID_OTHER", &n.body, now).unwrap();
    assert!(matches!(pay.verify_and_decrypt(&unknown, &n.body).await, Err(Error::UnknownSerial { .. })));
    // Stale timestamp.
    let stale = sign_body(&wechat, "PUB_KEY_ID_TEST", &n.body, now - 300).unwrap();
    assert!(matches!(pay.verify_and_decrypt(&stale, &n.body).await, Err(Error::StaleTimestamp { .. })));
    // SIGNTEST probe.
    let mut probe = n.headers.clone();
    let sig = probe["wechatpay-signature"].to_str().unwrap().to_string();
    probe.insert("wechatpay-signature", format!("WECHATPAY/SIGNTEST/{sig}").parse().unwrap());
    assert!(
        matches!(pay.verify_and_decrypt(&probe, &n.body).await, Err(Error::Signature(m)) if m.contains("SIGNTEST"))
    );
    // Tampered ciphertext and tag, correctly signed (the signature passes, the AES-GCM tag does not).
    let mut v: serde_json::Value = serde_json::from_slice(&n.body).unwrap();
    let ct = v["resource"]["ciphertext"].as_str().unwrap().to_string();
    for at in [0usize, usize::MAX] {
        let mut raw = STANDARD.decode(&ct).unwrap();
        let i = if at == 0 { 0 } else { raw.len() - 1 };
        raw[i] ^= 0x01;
        v["resource"]["ciphertext"] = STANDARD.encode(&raw).into();
        let body = serde_json::to_vec(&v).unwrap();
        let headers = sign_body(&wechat, "PUB_KEY_ID_TEST", &body, now).unwrap();
        let e = pay.verify_and_decrypt(&headers, &body).await.unwrap_err();
        assert!(matches!(e, Error::Crypto { kind: wxshop::CryptoKind::Tag, .. }), "{e:?}");
    }
    // A wrong APIv3 key.
    let other_key = ApiV3Key::new("ffffffffffffffffffffffffffffffff").unwrap();
    let n2 = sign_notification(&wechat, "PUB_KEY_ID_TEST", &other_key, "TRANSACTION.SUCCESS", resource, now).unwrap();
    assert!(matches!(
        pay.verify_and_decrypt(&n2.headers, &n2.body).await,
        Err(Error::Crypto { kind: wxshop::CryptoKind::Tag, .. })
    ));
}

#[tokio::test]
async fn the_handler_answers_wechat_with_status_and_code() {
    let wechat = MerchantKey::generate().unwrap();
    let pay = fixture_pay(&wechat);
    let rx = receiver(pay, 0).await;
    let apiv3 = ApiV3Key::new(DEFAULT_APIV3_KEY).unwrap();
    let resource = br#"{"mchid":"1","out_trade_no":"ORDER_H_1","refund_id":"5","out_refund_no":"R1","transaction_id":"4","refund_status":"SUCCESS","amount":{"total":1,"refund":1,"payer_total":1,"payer_refund":1}}"#;
    let n = sign_notification(
        &wechat,
        "PUB_KEY_ID_TEST",
        &apiv3,
        "REFUND.SUCCESS",
        resource,
        chrono::Utc::now().timestamp(),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let post =
        |headers: reqwest::header::HeaderMap, body: Vec<u8>| http.post(&rx.url).headers(headers).body(body).send();
    let ok = post(n.headers.clone(), n.body.clone()).await.unwrap();
    assert_eq!(ok.status(), 204);
    let dup = post(n.headers.clone(), n.body.clone()).await.unwrap();
    assert_eq!(dup.status(), 204);
    assert_eq!(rx.calls.load(Ordering::SeqCst), 1);
    let mut bad = n.body.clone();
    bad[10] ^= 1;
    let rejected = post(n.headers.clone(), bad).await.unwrap();
    assert_eq!(rejected.status(), 401);
    let body: serde_json::Value = rejected.json().await.unwrap();
    assert_eq!(body["code"], "FAIL");
    assert!(body["message"].as_str().unwrap().contains("signature"));
}

#[tokio::test]
async fn bills_download_gzip_and_check_sha1() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    paid_order(&emu, &pay, "ORDER_BILL_1", 1234, "http://127.0.0.1:1/n", false).await;
    paid_order(&emu, &pay, "ORDER_BILL_2", 766, "http://127.0.0.1:1/n", false).await;
    pay.refunds().create(CreateRefund::by_out_trade_no("ORDER_BILL_2", "R_BILL_2", 66, 766)).await.unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d")
        .to_string();

    let bytes = pay.bills().trade_bill_file(&today, TradeBillType::All).await.unwrap();
    let table = BillTable::parse(std::str::from_utf8(&bytes).unwrap());
    assert_eq!(table.header[0], "交易时间");
    assert_eq!(table.rows.len(), 3);
    assert!(table.rows.iter().any(|r| r[6] == "ORDER_BILL_1" && r[12] == "12.34"));
    assert_eq!(table.summary[0], "3");
    assert_eq!(table.summary[1], "20.00");
    assert_eq!(table.summary[2], "0.66");

    // Uncompressed, and the hash of what was served.
    let info = pay.bills().trade_bill(&today, TradeBillType::Success, false).await.unwrap();
    assert_eq!(info.hash_type, "SHA1");
    let plain = pay.bills().download(&info, false).await.unwrap();
    assert_eq!(wxshop::crypto::sig::sha1_hex(&plain), info.hash_value);
    assert_eq!(BillTable::parse(std::str::from_utf8(&plain).unwrap()).rows.len(), 2);
    // A hash that does not match is refused.
    let mut wrong = info.clone();
    wrong.download_url = pay.bills().trade_bill(&today, TradeBillType::Success, false).await.unwrap().download_url;
    wrong.hash_value = "0000000000000000000000000000000000000000".into();
    let e = pay.bills().download(&wrong, false).await.unwrap_err();
    assert!(matches!(e, Error::Crypto { kind: wxshop::CryptoKind::Tag, .. }), "{e:?}");
    // A download URL on another host gets no signed request.
    let mut elsewhere = info;
    elsewhere.download_url = "https://evil.example/v3/billdownload/file?token=x".into();
    assert!(matches!(pay.bills().download(&elsewhere, false).await, Err(Error::InvalidRequest(_))));

    let flow = pay.bills().fund_flow_bill_file(&today, AccountType::Basic).await.unwrap();
    let table = BillTable::parse(std::str::from_utf8(&flow).unwrap());
    assert_eq!(table.rows.len(), 3);
    assert_eq!(table.summary, vec!["3", "2", "20.00", "1", "0.66"]);
    assert!(matches!(
        pay.bills().trade_bill("2024-13-01", TradeBillType::All, true).await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn profit_sharing_ledger_with_the_30_percent_cap() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let txn = paid_order(&emu, &pay, "ORDER_PS_1", 10_000, "http://127.0.0.1:1/n", true).await;
    let plain = paid_order(&emu, &pay, "ORDER_PS_2", 10_000, "http://127.0.0.1:1/n", false).await;

    // The receiver's name travels OAEP-encrypted with the key named by Wechatpay-Serial.
    let r = pay
        .profit_sharing()
        .add_receiver(AddReceiver::merchant(DEFAULT_APPID, "1900000109", "PARTNER").name("示例平台有限公司"))
        .await
        .unwrap();
    assert_eq!(r.account, "1900000109");
    let name = r.name.unwrap();
    assert_ne!(name, "示例平台有限公司");
    let (_, pk) = wxshop::emulator::pay::platform_public_key_signer();
    assert_eq!(pk.decrypt_oaep(&name).unwrap().as_str(), "示例平台有限公司");

    let unknown =
        CreateOrder::new(DEFAULT_APPID, &txn, "PS_0", false).receiver(OrderReceiver::merchant("1900000999", 100, "x"));
    assert_eq!(pay.profit_sharing().create_order(unknown).await.unwrap_err().pay_code(), Some("INVALID_REQUEST"));
    let not_sharing =
        CreateOrder::new(DEFAULT_APPID, &plain, "PS_00", false).receiver(OrderReceiver::merchant("1900000109", 1, "x"));
    assert_eq!(pay.profit_sharing().create_order(not_sharing).await.unwrap_err().pay_code(), Some("INVALID_REQUEST"));

    let o = pay
        .profit_sharing()
        .create_order(CreateOrder::new(DEFAULT_APPID, &txn, "PS_1", false).receiver(OrderReceiver::merchant(
            "1900000109",
            2000,
            "fee",
        )))
        .await
        .unwrap();
    assert_eq!(o.state.as_str(), "FINISHED");
    assert_eq!(o.receivers[0].amount, 2000);
    assert_eq!(pay.profit_sharing().remaining(&txn).await.unwrap().unsplit_amount, 8000);
    // 30% of 10000 is 3000; 2000 is shared, so 1001 more is over the cap.
    let over = CreateOrder::new(DEFAULT_APPID, &txn, "PS_2", false).receiver(OrderReceiver::merchant(
        "1900000109",
        1001,
        "fee",
    ));
    let e = pay.profit_sharing().create_order(over).await.unwrap_err();
    assert!(matches!(e, Error::PayApi { ref message, .. } if message.contains("30%")), "{e:?}");
    let q = pay.profit_sharing().query_order("PS_1", &txn, None).await.unwrap();
    assert_eq!(q.order_id, o.order_id);

    let ret = pay
        .profit_sharing()
        .create_return(CreateReturn::new("PS_1", "RET_1", "1900000109", 500, "adjust"))
        .await
        .unwrap();
    assert_eq!(ret.result.as_str(), "SUCCESS");
    let too_much = CreateReturn::new("PS_1", "RET_2", "1900000109", 1501, "adjust");
    assert_eq!(pay.profit_sharing().create_return(too_much).await.unwrap_err().pay_code(), Some("INVALID_REQUEST"));
    assert_eq!(pay.profit_sharing().query_return("RET_1", "PS_1", None).await.unwrap().amount, 500);

    pay.profit_sharing().unfreeze(&txn, "PS_END", "done", None).await.unwrap();
    assert_eq!(pay.profit_sharing().remaining(&txn).await.unwrap().unsplit_amount, 0);
    let after =
        CreateOrder::new(DEFAULT_APPID, &txn, "PS_3", false).receiver(OrderReceiver::merchant("1900000109", 1, "x"));
    assert_eq!(pay.profit_sharing().create_order(after).await.unwrap_err().pay_code(), Some("INVALID_REQUEST"));
    pay.profit_sharing().delete_receiver(DEFAULT_APPID, "MERCHANT_ID", "1900000109", None).await.unwrap();
}

#[tokio::test]
async fn partner_payments_carry_sub_mchid() {
    use wxshop::pay::partner::PartnerJsapiPrepay;
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let rx = receiver(pay.clone(), 0).await;
    let req = PartnerJsapiPrepay::new(DEFAULT_APPID, "1900000201", "Cake", "ORDER_SP_1", &rx.url, 800)
        .sub_openid("wx_sub_app", "o-sub-1");
    let params = pay.partner().jsapi_request_payment(req).await.unwrap();
    // Signed for the sub_appid the openid belongs to.
    let msg = paycrypto::pay_sign_message("wx_sub_app", &params.time_stamp, &params.nonce_str, &params.package);
    MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap().public_key().verify(&msg, &params.pay_sign).unwrap();
    let txn = emu.cashier_pay("1900000201", "ORDER_SP_1").await.unwrap();
    wait_for(|| rx.seen.lock().unwrap().len() == 1).await;
    match &rx.seen.lock().unwrap()[0].resource {
        NotificationResource::Transaction(t) => {
            assert_eq!(t.sp_mchid.as_deref(), Some(DEFAULT_MCHID));
            assert_eq!(t.sub_mchid.as_deref(), Some("1900000201"));
            assert_eq!(t.payer.as_ref().and_then(|p| p.sub_openid.as_deref()), Some("o-sub-1"));
        }
        other => panic!("{other:?}"),
    }
    assert!(pay.partner().query_by_out_trade_no("ORDER_SP_1", "1900000201").await.unwrap().is_paid());
    assert!(pay.partner().query_by_id(&txn, "1900000201").await.unwrap().is_paid());
    // The sub-merchant matters.
    assert!(pay.partner().query_by_out_trade_no("ORDER_SP_1", "1900000202").await.is_err());
    assert!(matches!(
        pay.partner().refund(CreateRefund::by_out_trade_no("ORDER_SP_1", "R_SP_1", 100, 800)).await,
        Err(Error::InvalidRequest(_))
    ));
    let r = pay
        .partner()
        .refund(CreateRefund::by_out_trade_no("ORDER_SP_1", "R_SP_1", 100, 800).sub_mchid("1900000201"))
        .await
        .unwrap();
    assert_eq!(r.amount.refund, 100);
    assert_eq!(
        pay.refunds().query_for_sub_merchant("R_SP_1", "1900000201").await.unwrap().status,
        RefundStatus::Success
    );
    let other =
        PartnerJsapiPrepay::new(DEFAULT_APPID, "1900000201", "Cake", "ORDER_SP_2", &rx.url, 800).sp_openid("o-sp");
    pay.partner().jsapi(other).await.unwrap();
    pay.partner().close("ORDER_SP_2", "1900000201").await.unwrap();
    assert_eq!(
        pay.partner().query_by_out_trade_no("ORDER_SP_2", "1900000201").await.unwrap().trade_state,
        TradeState::Closed
    );
}

#[tokio::test]
async fn combined_payments_pay_every_sub_order_at_once() {
    use wxshop::pay::combine::{CombineJsapiPrepay, SubOrder};
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let rx = receiver(pay.clone(), 0).await;
    let req = CombineJsapiPrepay::new(DEFAULT_APPID, "COMBINE_1", "o-c", &rx.url)
        .sub_order(SubOrder::new("1900000301", "ORDER_C_1A", 1000, "Tea", "a"))
        .sub_order(SubOrder::new("1900000302", "ORDER_C_1B", 500, "Cake", "b"));
    pay.combine().jsapi_request_payment(req).await.unwrap();
    let q = pay.combine().query("COMBINE_1").await.unwrap();
    assert_eq!(q.sub_orders.len(), 2);
    assert!(q.sub_orders.iter().all(|s| s.trade_state == TradeState::NotPay));
    emu.cashier_pay("1900000302", "ORDER_C_1B").await.unwrap();
    wait_for(|| rx.seen.lock().unwrap().len() == 1).await;
    match &rx.seen.lock().unwrap()[0].resource {
        NotificationResource::CombineTransaction(c) => {
            assert_eq!(c.combine_out_trade_no, "COMBINE_1");
            assert!(c.sub_orders.iter().all(|s| s.trade_state == TradeState::Success && s.transaction_id.is_some()));
            assert_eq!(c.sub_orders[0].amount.total_amount, 1000);
        }
        other => panic!("{other:?}"),
    }
    let one = CombineJsapiPrepay::new(DEFAULT_APPID, "COMBINE_2", "o-c", &rx.url).sub_order(SubOrder::new(
        "1900000301",
        "ORDER_C_2A",
        1000,
        "Tea",
        "a",
    ));
    assert!(matches!(pay.combine().jsapi(one).await, Err(Error::InvalidRequest(_))));
    let two = CombineJsapiPrepay::new(DEFAULT_APPID, "COMBINE_2", "o-c", &rx.url)
        .sub_order(SubOrder::new("1900000301", "ORDER_C_2A", 1000, "Tea", "a"))
        .sub_order(SubOrder::new("1900000302", "ORDER_C_2B", 10, "Pen", "b"));
    pay.combine().jsapi(two).await.unwrap();
    pay.combine()
        .close(DEFAULT_APPID, "COMBINE_2", &[("1900000301", "ORDER_C_2A"), ("1900000302", "ORDER_C_2B")])
        .await
        .unwrap();
    assert!(
        pay.combine().query("COMBINE_2").await.unwrap().sub_orders.iter().all(|s| s.trade_state == TradeState::Closed)
    );
    assert_eq!(pay.combine().close(DEFAULT_APPID, "COMBINE_1", &[]).await.unwrap_err().pay_code(), Some("ORDERPAID"));
}

#[tokio::test]
async fn paid_unionid_answers_for_the_paying_user_only() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let client = emu.client().unwrap();
    let txn = paid_order(&emu, &pay, "ORDER_UNION_1", 100, "http://127.0.0.1:1/n", false).await;
    let alice = openid(&emu, "alice");
    let bob = openid(&emu, "bob");
    #[derive(Debug, serde::Deserialize)]
    struct Union {
        unionid: String,
    }
    let req = |oid: &str| {
        wxshop::http::Request::mp_get("/wxa/getpaidunionid").query("openid", oid).query("transaction_id", txn.clone())
    };
    let u: Union = client.call(&req(&alice)).await.unwrap();
    assert!(u.unionid.starts_with('u') && u.unionid.len() == 28);
    let e = client.call::<Union>(&req(&bob)).await.unwrap_err();
    assert_eq!(e.errcode().map(|c| c.code()), Some(89300));
}

#[tokio::test]
async fn registered_merchants_sign_with_their_own_keys() {
    let emu = Emulator::start_default().await.unwrap();
    let key = MerchantKey::generate().unwrap();
    let public = key.public_key();
    emu.register_merchant("1900007777", "7777AAAA", &public, "abcdefghijklmnopqrstuvwxyz012345").unwrap();
    let (_, wechat) = wxshop::emulator::pay::platform_public_key_signer();
    let config = PayConfig::new("1900007777", "7777AAAA", key, "abcdefghijklmnopqrstuvwxyz012345")
        .unwrap()
        .with_public_key(PUBLIC_KEY_ID, wechat.public_key())
        .unwrap();
    let pay = emu.pay_client_with(config).unwrap();
    pay.transactions()
        .jsapi(JsapiPrepay::new("wx_any_app", "Tea", "ORDER_REG_1", "http://127.0.0.1:1/n", 100, "o1"))
        .await
        .unwrap();
    assert_eq!(emu.pay_order_state("1900007777", "ORDER_REG_1").as_deref(), Some("NOTPAY"));
    // Its own public key is not WeChat Pay's.
    let cfg =
        PayConfig::new("1900007777", "7777AAAA", MerchantKey::generate().unwrap(), "abcdefghijklmnopqrstuvwxyz012345")
            .unwrap();
    let own = cfg.merchant_key().public_key();
    assert!(matches!(cfg.with_public_key(PUBLIC_KEY_ID, own), Err(Error::Config(_))));
    let _ = PayPublicKey::from_pem(&public.to_pem()).unwrap();
}

#[test]
fn config_debug_redacts_every_key() {
    let config = wxshop::emulator::pay::default_pay_config().unwrap();
    let s = format!("{config:?}");
    assert!(s.contains(DEFAULT_MCHID) && s.contains("[redacted]"));
    assert!(!s.contains(DEFAULT_APIV3_KEY));
    assert!(!s.contains("MII"));
    assert!(!format!("{:?}", config.merchant_key()).contains("MII"));
}

mod parsers_never_panic {
    use proptest::prelude::*;
    use wxshop::crypto::pay::{self as paycrypto, ApiV3Key, MerchantKey, PayPublicKey, PlatformCertificate};
    use wxshop::pay::bills::{BillTable, gunzip};
    use wxshop::pay::keys::{SignatureHeaders, Verifier};
    use wxshop::pay::notify::{decrypt_notification, decrypt_resource};

    fn verifier() -> &'static (Verifier, ApiV3Key) {
        static V: std::sync::OnceLock<(Verifier, ApiV3Key)> = std::sync::OnceLock::new();
        V.get_or_init(|| {
            let v = Verifier::new();
            v.add_public_key("PUB_KEY_ID_1", wxshop::emulator::pay::platform_public_key_signer().1.public_key());
            (v, ApiV3Key::new(super::DEFAULT_APIV3_KEY).unwrap())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn notification_bodies(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (_, key) = verifier();
            let _ = decrypt_notification(key, &body);
            let _ = decrypt_resource(key, &body);
        }

        #[test]
        fn notification_json_shapes(nonce in ".{0,20}", aad in ".{0,20}", ct in "[A-Za-z0-9+/=]{0,200}", alg in "(AEAD_AES_256_GCM|x)") {
            let (_, key) = verifier();
            let body = serde_json::json!({"id": "EV-1", "event_type": "TRANSACTION.SUCCESS",
                "resource": {"algorithm": alg, "ciphertext": ct, "associated_data": aad, "nonce": nonce}});
            prop_assert!(decrypt_notification(key, &serde_json::to_vec(&body).unwrap()).is_err());
        }

        #[test]
        fn transfer_bill_resources(state in "[A-Z_]{0,12}", amount in any::<i64>(), reason in proptest::option::of(".{0,20}"), junk in proptest::collection::vec(any::<u8>(), 0..256), shape in 0u8..3) {
            let (_, key) = verifier();
            let plaintext = match shape {
                0 => serde_json::to_vec(&serde_json::json!({"out_bill_no": "B1", "transfer_bill_no": "T1", "state": state,
                    "mch_id": "1", "transfer_amount": amount, "openid": "o1", "fail_reason": reason,
                    "create_time": "t", "update_time": "t"})).unwrap(),
                1 => serde_json::to_vec(&serde_json::json!({"out_bill_no": amount, "state": state})).unwrap(),
                _ => junk,
            };
            let ct = key.encrypt("fuzznonce123", "mch_payment", &plaintext).unwrap();
            let body = serde_json::json!({"id": "EV-1", "create_time": "t", "event_type": "MCHTRANSFER.BILL.FINISHED",
                "resource_type": "encrypt-resource", "summary": "s",
                "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": ct, "associated_data": "mch_payment",
                             "nonce": "fuzznonce123", "original_type": "mch_payment"}});
            match decrypt_notification(key, &serde_json::to_vec(&body).unwrap()) {
                Ok(n) => {
                    prop_assert_eq!(shape, 0);
                    let is_transfer = matches!(n.resource, wxshop::pay::NotificationResource::TransferBill(ref t)
                        if t.transfer_amount == amount && t.state.as_str() == state);
                    prop_assert!(is_transfer);
                }
                Err(e) => prop_assert!(shape != 0, "{e}"),
            }
        }

        #[test]
        fn signature_headers(serial in ".{0,40}", sig in ".{0,400}", ts in ".{0,12}", nonce in ".{0,40}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let (v, _) = verifier();
            let h = SignatureHeaders { serial: &serial, signature: &sig, timestamp: &ts, nonce: &nonce, signature_type: None };
            prop_assert!(v.verify(&h, &body, 1_700_000_000).is_err());
        }

        #[test]
        fn authorization_headers(s in ".{0,300}") {
            let _ = paycrypto::parse_authorization(&s);
            let _ = paycrypto::parse_authorization(&format!("WECHATPAY2-SHA256-RSA2048 {s}"));
        }

        #[test]
        fn keys_and_certificates(bytes in proptest::collection::vec(any::<u8>(), 0..512), label in "(PRIVATE KEY|RSA PRIVATE KEY|CERTIFICATE|PUBLIC KEY|X)") {
            let text = pem::encode(&pem::Pem::new(label, bytes.clone()));
            prop_assert!(MerchantKey::from_pem(&text).is_err());
            prop_assert!(PayPublicKey::from_pem(&text).is_err());
            prop_assert!(PlatformCertificate::from_pem(&text).is_err());
            prop_assert!(PlatformCertificate::from_der(&bytes).is_err());
            let _ = MerchantKey::from_pem(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn bills(text in ".{0,400}", bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = BillTable::parse(&text);
            let _ = gunzip(&bytes);
        }
    }
}

#[tokio::test]
async fn certificates_expiring_soon_are_refreshed_and_expired_ones_refused() {
    use wxshop::emulator::pay::test_certificate_valid;
    use wxshop::pay::keys::{SignatureHeaders, Verifier};
    let now = chrono::Utc::now();
    let key = MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap();
    let long = test_certificate_valid(&key, "long", now - chrono::Duration::days(1), now + chrono::Duration::days(400))
        .unwrap();
    let soon = test_certificate_valid(&key, "soon", now - chrono::Duration::days(1), now + chrono::Duration::hours(2))
        .unwrap();
    let gone =
        test_certificate_valid(&key, "gone", now - chrono::Duration::days(9), now - chrono::Duration::days(1)).unwrap();
    assert_eq!(soon.not_after().timestamp(), (now + chrono::Duration::hours(2)).timestamp());
    let policy = RefreshPolicy { min_interval: Duration::ZERO, ..RefreshPolicy::default() };

    let v = Verifier::with_mode(true, policy);
    assert!(v.refresh_due(now).await, "nothing held yet");
    assert!(v.refresh_with(now, || async { Ok(vec![long.clone()]) }).await.unwrap());
    assert!(!v.refresh_due(now).await, "fresh download, newest certificate far from expiry");
    let v = Verifier::with_mode(true, policy);
    assert!(v.refresh_with(now, || async { Ok(vec![soon.clone()]) }).await.unwrap());
    assert!(v.refresh_due(now).await, "the newest certificate expires within a day");
    // Expired certificates are dropped on install and never verify.
    assert_eq!(v.add_certificates([gone.clone()], now), 1);
    assert!(!v.knows(gone.serial_no()));
    let v = Verifier::with_mode(false, policy);
    v.add_certificates([soon.clone()], now - chrono::Duration::days(2));
    let body = b"{}";
    let ts = (now + chrono::Duration::hours(3)).timestamp();
    let h = sign_body(&key, soon.serial_no(), body, ts).unwrap();
    let e = v.verify(&SignatureHeaders::from_headers(&h).unwrap(), body, ts).unwrap_err();
    assert!(matches!(e, Error::Signature(ref m) if m.contains("not valid now")), "{e:?}");
}

#[tokio::test]
async fn transient_failures_are_retried_for_keyed_calls() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    emu.inject(wxshop::emulator::Fault {
        path: "/v3/pay/transactions/jsapi".into(),
        count: 2,
        errcode: None,
        status: Some(500),
        reset: false,
        delay_ms: None,
        after: false,
    });
    pay.transactions()
        .jsapi(JsapiPrepay::new(DEFAULT_APPID, "Tea", "ORDER_RETRY_2", "http://127.0.0.1:1/n", 100, "o1"))
        .await
        .unwrap();
    assert_eq!(emu.calls("/v3/pay/transactions/jsapi"), 3);
    assert_eq!(emu.pay_order_state(DEFAULT_MCHID, "ORDER_RETRY_2").as_deref(), Some("NOTPAY"));
}

#[tokio::test]
async fn the_pay_control_api_over_http() {
    let emu = Emulator::start_default().await.unwrap();
    let http = reqwest::Client::new();
    let base = emu.base_url();
    let post = |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).json(&body).send();
    let key = MerchantKey::generate().unwrap();
    let r = post(
        "/__emulator/pay/merchants",
        serde_json::json!({"mchid": "1900008888", "serial_no": "8888BBBB", "public_key": key.public_key().to_pem(),
            "apiv3_key": "abcdefghijklmnopqrstuvwxyz012345", "appids": ["wx_a"]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let bad = post(
        "/__emulator/pay/merchants",
        serde_json::json!({"mchid": "1", "serial_no": "2", "public_key": "x", "apiv3_key": "short"}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let r: serde_json::Value =
        post("/__emulator/pay/mode", serde_json::json!({"mode": "migration"})).await.unwrap().json().await.unwrap();
    assert_eq!(r["mode"], "migration");
    let rotated: serde_json::Value =
        post("/__emulator/pay/rotate", serde_json::json!({})).await.unwrap().json().await.unwrap();
    let keys: serde_json::Value =
        http.get(format!("{base}/__emulator/pay/keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(keys["public_key_id"], PUBLIC_KEY_ID);
    assert_eq!(keys["mode"], "migration");
    assert_eq!(keys["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(keys["certificates"][1]["serial_no"], rotated["serial_no"]);
    assert_eq!(
        PayPublicKey::from_pem(keys["public_key"].as_str().unwrap()).unwrap(),
        wxshop::emulator::pay::platform_public_key_signer().1.public_key()
    );
    let cfg: serde_json::Value =
        post("/__emulator/pay/config", serde_json::json!({"time_factor": 500.0, "signtest_probes": 0}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(cfg["time_factor"], 500.0);

    // The registered merchant pays through the cashier actions over HTTP.
    let (_, wechat) = wxshop::emulator::pay::platform_public_key_signer();
    let config = PayConfig::new("1900008888", "8888BBBB", key, "abcdefghijklmnopqrstuvwxyz012345")
        .unwrap()
        .with_public_key(PUBLIC_KEY_ID, wechat.public_key())
        .unwrap()
        .with_platform_certificates(true);
    let pay = emu.pay_client_with(config).unwrap();
    assert_eq!(
        pay.transactions()
            .jsapi(JsapiPrepay::new("wx_b", "Tea", "ORDER_HTTP_1", "http://127.0.0.1:1/n", 100, "o1"))
            .await
            .unwrap_err()
            .pay_code(),
        Some("PARAM_ERROR")
    );
    pay.transactions()
        .jsapi(JsapiPrepay::new("wx_a", "Tea", "ORDER_HTTP_1", "http://127.0.0.1:1/n", 100, "o1"))
        .await
        .unwrap();
    let fail = post("/__emulator/pay/orders/1900008888/ORDER_HTTP_1/fail", serde_json::json!({})).await.unwrap();
    assert_eq!(fail.status(), 200);
    assert_eq!(
        pay.transactions().query_by_out_trade_no("ORDER_HTTP_1").await.unwrap().trade_state,
        TradeState::PayError
    );
    let paid: serde_json::Value = post("/__emulator/pay/orders/1900008888/ORDER_HTTP_1/pay", serde_json::json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(paid["transaction_id"].as_str().unwrap().starts_with("42000"));
    let again = post("/__emulator/pay/orders/1900008888/ORDER_HTTP_1/pay", serde_json::json!({})).await.unwrap();
    assert_eq!(again.status(), 409);
    let refunded: serde_json::Value =
        post("/__emulator/pay/orders/1900008888/ORDER_HTTP_1/refund", serde_json::json!({"amount": 40}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(refunded["out_refund_no"].as_str().unwrap().starts_with("EMUREFUND"));
    let orders: serde_json::Value =
        http.get(format!("{base}/__emulator/pay/orders")).send().await.unwrap().json().await.unwrap();
    assert_eq!(orders[0]["state"], "REFUND");
    assert_eq!(orders[0]["refunded"], 40);
    let notes: serde_json::Value =
        http.get(format!("{base}/__emulator/pay/notifications")).send().await.unwrap().json().await.unwrap();
    let events: Vec<&str> = notes.as_array().unwrap().iter().map(|n| n["event_type"].as_str().unwrap()).collect();
    assert_eq!(events, vec!["TRANSACTION.SUCCESS", "REFUND.SUCCESS"]);
    let log: serde_json::Value =
        http.get(format!("{base}/__emulator/pay/log")).send().await.unwrap().json().await.unwrap();
    assert!(log.as_array().unwrap().iter().any(|e| e["kind"] == "cashier" && e["what"] == "pay ORDER_HTTP_1"));
    let page = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("WeChat Pay cashier") && !page.contains("<script src"));
}

#[tokio::test]
async fn a_payment_comes_under_shipping_management() {
    use wxshop::mp::shipping::{OrderRef, OrderState};
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let txn = paid_order(&emu, &pay, "ORDER_SHIP_1", 2500, "http://127.0.0.1:1/n", false).await;
    let order = emu.client().unwrap().shipping().get_order(&OrderRef::transaction_id(&txn)).await.unwrap();
    assert_eq!(order.order_state, OrderState::Unshipped);
}

#[tokio::test]
async fn refunds_close_365_days_after_payment() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    for (no, days) in [("ORDER_AGE_364", 364), ("ORDER_AGE_366", 366)] {
        pay.transactions()
            .jsapi(JsapiPrepay::new(DEFAULT_APPID, "Tea", no, "http://127.0.0.1:1/n", 500, "o1"))
            .await
            .unwrap();
        emu.cashier_pay(DEFAULT_MCHID, no).await.unwrap();
        emu.age_order(DEFAULT_MCHID, no, days).await.unwrap();
    }
    // 364 days after payment: still refundable.
    let r = pay.refunds().create(CreateRefund::by_out_trade_no("ORDER_AGE_364", "REFUND_AGE_364", 500, 500)).await;
    assert_eq!(r.unwrap().amount.refund, 500);
    // 366 days: WeChat refuses, by API and from the merchant platform alike.
    let e = pay.refunds().create(CreateRefund::by_out_trade_no("ORDER_AGE_366", "REFUND_AGE_366", 500, 500)).await;
    let e = e.unwrap_err();
    assert!(
        matches!(&e, Error::PayApi { status: 400, code, message, .. }
            if code == "INVALID_REQUEST" && message == "交易时间超过一年的订单无法提交退款"),
        "{e:?}"
    );
    assert!(emu.cashier_refund(DEFAULT_MCHID, "ORDER_AGE_366", None).await.is_err());
    // Ageing needs a paid order.
    assert!(emu.age_order(DEFAULT_MCHID, "ORDER_NOPE_9", 1).await.is_err());
}

#[tokio::test]
async fn profit_sharing_closes_180_days_after_payment() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let young = paid_order(&emu, &pay, "ORDER_PS_179", 10_000, "http://127.0.0.1:1/n", true).await;
    let old = paid_order(&emu, &pay, "ORDER_PS_181", 10_000, "http://127.0.0.1:1/n", true).await;
    emu.age_order(DEFAULT_MCHID, "ORDER_PS_179", 179).await.unwrap();
    emu.age_order(DEFAULT_MCHID, "ORDER_PS_181", 181).await.unwrap();
    pay.profit_sharing()
        .add_receiver(AddReceiver::merchant(DEFAULT_APPID, "1900000109", "PARTNER").name("示例平台有限公司"))
        .await
        .unwrap();
    let share = |txn: &str, no: &str| {
        CreateOrder::new(DEFAULT_APPID, txn, no, false).receiver(OrderReceiver::merchant("1900000109", 1000, "fee"))
    };
    let o = pay.profit_sharing().create_order(share(&young, "PS_179")).await.unwrap();
    assert_eq!((o.state.as_str(), o.receivers[0].amount), ("FINISHED", 1000));
    let e = pay.profit_sharing().create_order(share(&old, "PS_181")).await.unwrap_err();
    assert!(
        matches!(&e, Error::PayApi { status: 400, code, message, .. }
            if code == "INVALID_REQUEST" && message.contains("180")),
        "{e:?}"
    );
}
