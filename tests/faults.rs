//! Fault injection through the emulator: 5xx, timeouts, connection resets, `-1` busy, 45009
//! quota, slow and out-of-order notifications, a failing push endpoint. Each test is one rule:
//! retries stay bounded, side effects happen once, and the caller gets a typed error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::Request as AxumRequest;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use reqwest::Method;
use serde_json::json;
use wxshop::emulator::mp::message::PushConfig;
use wxshop::emulator::pay::{DEFAULT_MCHID, default_pay_config};
use wxshop::emulator::{DEFAULT_APPID, DEFAULT_SECRET, Emulator, EmulatorHandle, Fault};
use wxshop::http::{Body, Host, HttpConfig, Request, RetryPolicy};
use wxshop::mp::link::{Expiry, GenerateScheme};
use wxshop::mp::message::{SubscribeData, SubscribeMessage};
use wxshop::pay::notify::NotifyService;
use wxshop::pay::refunds::{CreateRefund, RefundStatus};
use wxshop::pay::transactions::{JsapiPrepay, TradeState};
use wxshop::pay::{Notification, NotificationResource, PayClient};
use wxshop::push::axum::{PushEndpoint, handler_fn};
use wxshop::push::{Format, Incoming, Message, Mode, Reply, Verifier};
use wxshop::{AppConfig, Client, ErrCode, Error};

const RETRIES: u32 = 3;

fn fault(path: &str, count: u32) -> Fault {
    Fault { path: path.into(), count, errcode: None, status: None, reset: false, delay_ms: None, after: false }
}

/// Three retries with millisecond backoff, and `timeout` per attempt.
fn fast(timeout: Duration) -> HttpConfig {
    HttpConfig {
        timeout,
        retry: RetryPolicy {
            max_retries: RETRIES,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        client: None,
    }
}

fn pay_client(emu: &EmulatorHandle, timeout: Duration) -> PayClient {
    let state = emu.state().clone();
    PayClient::builder(default_pay_config().unwrap())
        .endpoints(emu.endpoints())
        .clock(Arc::new(move || state.now()))
        .http_config(fast(timeout))
        .build()
        .unwrap()
}

fn mp_client(emu: &EmulatorHandle) -> Client {
    Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET))
        .endpoints(emu.endpoints())
        .http_config(fast(Duration::from_secs(5)))
        .build()
        .unwrap()
}

async fn prepay(emu: &EmulatorHandle, pay: &PayClient, no: &str, total: i64, notify_url: &str) {
    let openid = emu.openid_of(DEFAULT_APPID, "alice");
    pay.transactions()
        .jsapi(JsapiPrepay::new(DEFAULT_APPID, "Oolong tea", no, notify_url, total, openid))
        .await
        .unwrap();
}

async fn paid(emu: &EmulatorHandle, pay: &PayClient, no: &str, total: i64, notify_url: &str) {
    prepay(emu, pay, no, total, notify_url).await;
    emu.cashier_pay(DEFAULT_MCHID, no).await.unwrap();
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not reached in 10 s");
}

async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

// ---------------------------------------------------------------------------------------------
// WeChat Pay API calls

const QUERY_PATH: &str = "/v3/pay/transactions/out-trade-no/ORDER_FAULT_Q1";
const REFUNDS_PATH: &str = "/v3/refund/domestic/refunds";

#[tokio::test]
async fn pay_5xx_and_resets_on_a_keyed_call_are_retried_and_succeed() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = pay_client(&emu, Duration::from_secs(5));
    paid(&emu, &pay, "ORDER_FAULT_Q1", 500, "http://127.0.0.1:9/notify").await;
    emu.inject(Fault { status: Some(500), ..fault(QUERY_PATH, 1) });
    emu.inject(Fault { reset: true, ..fault(QUERY_PATH, 1) });
    emu.inject(Fault { status: Some(503), ..fault(QUERY_PATH, 1) });
    let t = pay.transactions().query_by_out_trade_no("ORDER_FAULT_Q1").await.unwrap();
    assert_eq!(t.trade_state, TradeState::Success);
    assert_eq!(t.out_trade_no, "ORDER_FAULT_Q1");
    assert_eq!(emu.calls(QUERY_PATH), 1 + RETRIES as u64);
}

#[tokio::test]
async fn pay_faults_beyond_the_retry_budget_surface_the_last_typed_error() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = pay_client(&emu, Duration::from_secs(5));
    paid(&emu, &pay, "ORDER_FAULT_Q1", 500, "http://127.0.0.1:9/notify").await;
    emu.inject(Fault { status: Some(500), ..fault(QUERY_PATH, 1 + RETRIES) });
    match pay.transactions().query_by_out_trade_no("ORDER_FAULT_Q1").await {
        Err(Error::PayApi { status: 500, code, .. }) => assert_eq!(code, "SYSTEM_ERROR"),
        other => panic!("{other:?}"),
    }
    assert_eq!(emu.calls(QUERY_PATH), 1 + RETRIES as u64);
    assert!(pay.transactions().query_by_out_trade_no("ORDER_FAULT_Q1").await.unwrap().is_paid());
}

#[tokio::test]
async fn a_refund_whose_answers_are_lost_is_retried_with_its_key_and_created_once() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = pay_client(&emu, Duration::from_secs(5));
    paid(&emu, &pay, "ORDER_FAULT_R1", 1000, "http://127.0.0.1:9/notify").await;
    // The first attempt refunds, then its answer is a 502; the second refunds nothing new and its
    // connection drops; the third answers.
    emu.inject(Fault { status: Some(502), after: true, ..fault(REFUNDS_PATH, 1) });
    emu.inject(Fault { reset: true, after: true, ..fault(REFUNDS_PATH, 1) });
    let r = pay.refunds().create(CreateRefund::by_out_trade_no("ORDER_FAULT_R1", "REFUND_FAULT_R1", 300, 1000)).await;
    let r = r.unwrap();
    assert_eq!((r.out_refund_no.as_str(), r.out_trade_no.as_str()), ("REFUND_FAULT_R1", "ORDER_FAULT_R1"));
    assert_eq!(emu.calls(REFUNDS_PATH), 3);
    assert_eq!(emu.counter("pay.refund"), 1, "one refund despite three attempts");
    let refunds: Vec<_> = emu.notifications().into_iter().filter(|d| d.event_type == "REFUND.SUCCESS").collect();
    assert_eq!(refunds.len(), 1);
    // 700 fen are still refundable: a second refund of 701 is refused by WeChat's amount rule.
    let again = pay.refunds().create(CreateRefund::by_out_trade_no("ORDER_FAULT_R1", "REFUND_FAULT_R2", 701, 1000));
    match again.await {
        Err(Error::PayApi { status: 400, code, .. }) => assert_eq!(code, "INVALID_REQUEST"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pay.refunds().query("REFUND_FAULT_R1").await.unwrap().status, RefundStatus::Success);
    assert_eq!(emu.counter("pay.refund"), 1);
}

#[tokio::test]
async fn pay_5xx_and_resets_on_a_non_idempotent_call_are_not_retried() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = pay_client(&emu, Duration::from_secs(5));
    let openid = emu.openid_of(DEFAULT_APPID, "alice");
    let mut prepay = JsapiPrepay::new(DEFAULT_APPID, "Tea", "ORDER_FAULT_N1", "http://127.0.0.1:9/n", 100, openid);
    prepay.mchid = DEFAULT_MCHID.into();
    let path = "/v3/pay/transactions/jsapi";
    let req = Request::new(Method::POST, Host::Pay, path).body(Body::json(&prepay).unwrap()).idempotent(false);

    emu.inject(Fault { status: Some(500), ..fault(path, 1) });
    match pay.send(&req).await {
        Err(Error::PayApi { status: 500, code, .. }) => assert_eq!(code, "SYSTEM_ERROR"),
        other => panic!("{other:?}"),
    }
    assert_eq!(emu.calls(path), 1);

    emu.inject(Fault { reset: true, ..fault(path, 1) });
    let err = pay.send(&req).await.unwrap_err();
    assert!(matches!(&err, Error::Transport { endpoint, .. } if endpoint == path), "{err:?}");
    assert!(err.is_retryable(), "the caller may retry it knowingly: {err:?}");
    assert_eq!(emu.calls(path), 2);
    assert_eq!(emu.counter("pay.prepay"), 0);
}

#[tokio::test]
async fn a_pay_timeout_surfaces_transport_after_bounded_retries() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = pay_client(&emu, Duration::from_millis(150));
    paid(&emu, &pay, "ORDER_FAULT_Q1", 500, "http://127.0.0.1:9/notify").await;
    emu.inject(Fault { delay_ms: Some(1000), ..fault(QUERY_PATH, 10) });
    let err = pay.transactions().query_by_out_trade_no("ORDER_FAULT_Q1").await.unwrap_err();
    match &err {
        Error::Transport { endpoint, source } => {
            assert_eq!(endpoint, QUERY_PATH);
            assert!(source.is_timeout(), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(emu.calls(QUERY_PATH), 1 + RETRIES as u64);
}

// ---------------------------------------------------------------------------------------------
// Mini-program APIs

const SUBSCRIBE_PATH: &str = "/cgi-bin/message/subscribe/send";

fn shipped(openid: &str) -> SubscribeMessage {
    SubscribeMessage::new(openid, "TPL_SHIPPED", SubscribeData::new().set("thing1", "Tea"))
}

#[tokio::test]
async fn quota_45009_is_typed_and_never_retried() {
    let emu = Emulator::start_default().await.unwrap();
    let client = mp_client(&emu);
    let scheme = || GenerateScheme::new(Expiry::days(1));
    let openlink = client.links().generate_scheme(&scheme()).await.unwrap();

    for path in ["/wxa/generatescheme", "/wxa/queryscheme", SUBSCRIBE_PATH] {
        emu.inject(Fault { errcode: Some(45009), ..fault(path, 10) });
    }
    let alice = emu.openid_of(DEFAULT_APPID, "alice");
    let errors = [
        client.links().generate_scheme(&scheme()).await.unwrap_err(),
        client.links().query_scheme(&openlink).await.unwrap_err(), // idempotent, and still not retried
        client.messages().send_subscribe(&shipped(&alice)).await.unwrap_err(),
    ];
    for err in &errors {
        assert!(err.is_quota(), "{err:?}");
        assert!(!err.is_retryable(), "{err:?}");
        assert_eq!(err.errcode(), Some(ErrCode::ApiQuotaExceeded));
    }
    assert_eq!(emu.calls("/wxa/generatescheme"), 2);
    assert_eq!(emu.calls("/wxa/queryscheme"), 1);
    assert_eq!(emu.calls(SUBSCRIBE_PATH), 1);
}

#[tokio::test]
async fn busy_minus_one_on_a_non_idempotent_send_is_not_retried() {
    let emu = Emulator::start_default().await.unwrap();
    let client = mp_client(&emu);
    let alice = emu.openid_of(DEFAULT_APPID, "alice");
    emu.register_template(DEFAULT_APPID, "TPL_SHIPPED", &["thing1"]);
    emu.grant_consent(DEFAULT_APPID, &alice, "TPL_SHIPPED");
    emu.grant_consent(DEFAULT_APPID, &alice, "TPL_SHIPPED");
    // WeChat sent the message, then answered -1: a retry would send it twice.
    emu.inject(Fault { errcode: Some(-1), after: true, ..fault(SUBSCRIBE_PATH, 1) });
    let err = client.messages().send_subscribe(&shipped(&alice)).await.unwrap_err();
    assert!(matches!(err, Error::Api { errcode: ErrCode::SystemBusy, .. }), "{err:?}");
    assert!(err.is_retryable(), "busy is transient; only the call's idempotency forbids the retry");
    assert_eq!(emu.calls(SUBSCRIBE_PATH), 1);
    assert_eq!(emu.sent_messages().len(), 1);
    // -1 before anything happened: still one attempt, nothing sent, the consent kept.
    emu.inject(Fault { errcode: Some(-1), ..fault(SUBSCRIBE_PATH, 1) });
    assert_eq!(
        client.messages().send_subscribe(&shipped(&alice)).await.unwrap_err().errcode(),
        Some(ErrCode::SystemBusy)
    );
    assert_eq!(emu.calls(SUBSCRIBE_PATH), 2);
    assert_eq!(emu.sent_messages().len(), 1);
    client.messages().send_subscribe(&shipped(&alice)).await.unwrap();
    assert_eq!(emu.sent_messages().len(), 2);
}

#[tokio::test]
async fn resets_and_5xx_on_idempotent_mp_calls_are_retried() {
    let emu = Emulator::start_default().await.unwrap();
    let client = mp_client(&emu);
    let code = emu.login_code(DEFAULT_APPID, "alice").await.unwrap();
    let login = "/sns/jscode2session";
    emu.inject(Fault { reset: true, ..fault(login, 2) });
    emu.inject(Fault { status: Some(502), ..fault(login, 1) });
    let session = client.auth().code2session(&code).await.unwrap();
    assert_eq!(session.openid, emu.openid_of(DEFAULT_APPID, "alice"));
    assert_eq!(emu.calls(login), 4);

    let openlink = client.links().generate_scheme(&GenerateScheme::new(Expiry::days(1))).await.unwrap();
    emu.inject(Fault { reset: true, ..fault("/wxa/queryscheme", 1) });
    emu.inject(Fault { errcode: Some(-1), ..fault("/wxa/queryscheme", 1) });
    assert_eq!(client.links().query_scheme(&openlink).await.unwrap().appid, DEFAULT_APPID);
    assert_eq!(emu.calls("/wxa/queryscheme"), 3);

    // Four resets exhaust the budget: a typed transport error after exactly 1 + 3 attempts.
    let code = emu.login_code(DEFAULT_APPID, "bob").await.unwrap();
    emu.inject(Fault { reset: true, ..fault(login, 4) });
    let err = client.auth().code2session(&code).await.unwrap_err();
    assert!(matches!(&err, Error::Transport { endpoint, .. } if endpoint == login), "{err:?}");
    assert_eq!(emu.calls(login), 8);
}

// ---------------------------------------------------------------------------------------------
// Payment notifications

/// A merchant notify endpoint: `NotifyService` behind a gateway that answers 503 to
/// `TRANSACTION.SUCCESS` while `hold_payments` is set; the callback sleeps `slow` on its first run.
struct Merchant {
    url: String,
    processed: Arc<Mutex<Vec<Notification>>>,
    runs: Arc<AtomicUsize>,
    hold_payments: Arc<AtomicBool>,
}

async fn merchant(pay: PayClient, slow: Duration) -> Merchant {
    let processed: Arc<Mutex<Vec<Notification>>> = Arc::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let hold_payments = Arc::new(AtomicBool::new(false));
    let (p, r) = (processed.clone(), runs.clone());
    let svc = NotifyService::new(pay, move |n: Notification| {
        let (p, r) = (p.clone(), r.clone());
        async move {
            if r.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(slow).await;
            }
            p.lock().unwrap().push(n);
            Ok(())
        }
    });
    let hold = hold_payments.clone();
    let gateway = move |req: AxumRequest, next: Next| {
        let hold = hold.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let event: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if hold.load(Ordering::SeqCst) && event["event_type"] == "TRANSACTION.SUCCESS" {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            next.run(AxumRequest::from_parts(parts, AxumBody::from(bytes))).await
        }
    };
    let app = svc.router("/wx/pay/notify").layer(middleware::from_fn(gateway));
    let addr = serve(app).await;
    Merchant { url: format!("http://{addr}/wx/pay/notify"), processed, runs, hold_payments }
}

#[tokio::test]
async fn a_merchant_slower_than_the_timeout_gets_the_same_id_again_and_processes_it_once() {
    let emu = Emulator::start_default().await.unwrap();
    emu.set_notify_timeout(Duration::from_millis(100));
    emu.set_notify_time_factor(10.0); // the first redelivery 1.5 s later
    let pay = pay_client(&emu, Duration::from_secs(5));
    let m = merchant(pay.clone(), Duration::from_millis(400)).await;
    paid(&emu, &pay, "ORDER_FAULT_S1", 800, &m.url).await;
    wait_for("redelivered and acknowledged", || emu.notifications().first().is_some_and(|d| d.delivered)).await;
    let d = emu.notifications()[0].clone();
    assert_eq!((d.event_type.as_str(), d.attempts, d.last_status), ("TRANSACTION.SUCCESS", 2, Some(204)));
    assert_eq!(emu.counter("pay.notify.failed"), 1, "the first attempt timed out");
    assert_eq!(emu.counter("pay.notify.delivered"), 1);
    assert_eq!(m.runs.load(Ordering::SeqCst), 1);
    let processed = m.processed.lock().unwrap();
    assert_eq!(processed.len(), 1);
    assert_eq!(processed[0].id, d.id);
}

#[tokio::test]
async fn a_refund_notified_before_its_payment_is_verified_typed_and_each_id_processed_once() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = pay_client(&emu, Duration::from_secs(5));
    let m = merchant(pay.clone(), Duration::ZERO).await;
    m.hold_payments.store(true, Ordering::SeqCst);
    paid(&emu, &pay, "ORDER_FAULT_O1", 1200, &m.url).await;
    wait_for("payment notice refused", || emu.notifications().first().is_some_and(|d| d.attempts == 1)).await;
    assert_eq!(emu.notifications()[0].last_status, Some(503));
    let refund = CreateRefund::by_out_trade_no("ORDER_FAULT_O1", "REFUND_FAULT_O1", 200, 1200).notify_url(&m.url);
    pay.refunds().create(refund).await.unwrap();
    wait_for("refund notice processed", || m.processed.lock().unwrap().len() == 1).await;
    // The payment notice arrives late.
    m.hold_payments.store(false, Ordering::SeqCst);
    let ids: Vec<String> = emu.notifications().iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), 2);
    assert!(emu.redeliver(&ids[0]).await);
    // Then each is redelivered until it has been delivered five times in all.
    for id in &ids {
        while emu.notifications().iter().find(|d| &d.id == id).unwrap().attempts < 5 {
            assert!(emu.redeliver(id).await);
        }
    }
    assert_eq!(m.runs.load(Ordering::SeqCst), 2);
    let processed = m.processed.lock().unwrap();
    let seen: Vec<(&str, &str)> = processed.iter().map(|n| (n.event_type.as_str(), n.id.as_str())).collect();
    assert_eq!(seen, [("REFUND.SUCCESS", ids[1].as_str()), ("TRANSACTION.SUCCESS", ids[0].as_str())]);
    match &processed[0].resource {
        NotificationResource::Refund(r) => {
            assert_eq!((r.out_trade_no.as_str(), r.out_refund_no.as_str()), ("ORDER_FAULT_O1", "REFUND_FAULT_O1"));
            assert_eq!((r.refund_status.clone(), r.amount.refund, r.amount.total), (RefundStatus::Success, 200, 1200));
        }
        other => panic!("{other:?}"),
    }
    match &processed[1].resource {
        NotificationResource::Transaction(t) => {
            assert_eq!((t.out_trade_no.as_str(), t.trade_state.clone()), ("ORDER_FAULT_O1", TradeState::Success));
        }
        other => panic!("{other:?}"),
    }
    let deliveries = emu.notifications();
    assert!(deliveries.iter().all(|d| d.attempts == 5 && d.delivered && d.last_status == Some(204)), "{deliveries:?}");
}

// ---------------------------------------------------------------------------------------------
// Message push

#[tokio::test]
async fn a_failing_push_endpoint_is_retried_and_the_message_processed_once() {
    const TOKEN: &str = "fault-push-token";
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let emu = Emulator::start_default().await.unwrap();
    let seen: Arc<Mutex<Vec<Incoming>>> = Arc::default();
    let s = seen.clone();
    let verifier = Verifier::with_aes_key(TOKEN, AES_KEY, DEFAULT_APPID).unwrap();
    let endpoint = PushEndpoint::new(
        verifier,
        handler_fn(move |p: Incoming| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(p);
                Ok(Reply::Success)
            }
        }),
    );
    // A gateway in front: the first attempt never reaches the handler (503); the second reaches
    // it, but its answer is replaced by a 502; the third goes through.
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let gateway = move |req: AxumRequest, next: Next| {
        let a = a.clone();
        async move {
            match a.fetch_add(1, Ordering::SeqCst) {
                0 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                1 => {
                    let _lost: Response = next.run(req).await;
                    StatusCode::BAD_GATEWAY.into_response()
                }
                _ => next.run(req).await,
            }
        }
    };
    let app = axum::Router::new().route("/wx/push", endpoint.method_router()).layer(middleware::from_fn(gateway));
    let addr = serve(app).await;
    emu.configure_push(PushConfig {
        appid: DEFAULT_APPID.into(),
        url: format!("http://{addr}/wx/push"),
        token: TOKEN.into(),
        encoding_aes_key: Some(AES_KEY.into()),
        mode: Mode::Secure,
        format: Format::Json,
        retries: 3,
    })
    .unwrap();
    let alice = emu.openid_of(DEFAULT_APPID, "alice");
    let d = emu
        .send_push(DEFAULT_APPID, json!({"FromUserName": alice, "MsgType": "text", "Content": "where is my tea?"}))
        .await
        .unwrap();
    assert_eq!((d.attempts, d.status, d.reply.as_str()), (3, Some(200), "success"));
    assert!(d.ok());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "the retry after the lost answer is recognised by its MsgId");
    match &seen[0].message {
        Message::Text { content, msg_id } => {
            assert_eq!(content, "where is my tea?");
            assert_eq!(seen[0].dedupe_key(), format!("msg:{msg_id}"));
        }
        other => panic!("{other:?}"),
    }
}
