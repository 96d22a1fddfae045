//! Access tokens against the emulator: single-flight, replay on token errors, retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wxshop::emulator::{DEFAULT_APPID, DEFAULT_SECRET, Emulator, Fault};
use wxshop::http::{HttpConfig, Request, RetryPolicy};
use wxshop::{AppConfig, Client, ErrCode, Error, TokenMode};

fn fault(path: &str, count: u32) -> Fault {
    Fault { path: path.into(), count, errcode: None, status: None, reset: false, delay_ms: None, after: false }
}

fn fast_retries() -> HttpConfig {
    HttpConfig {
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_callers_cause_exactly_one_issuance() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.access_token().await.map(|t| secrecy::ExposeSecret::expose_secret(&t).to_string())
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(emu.counter("token.issued"), 1);
    assert_eq!(emu.calls("/cgi-bin/stable_token"), 1);
}

#[tokio::test]
async fn classic_mode_uses_cgi_bin_token() {
    let emu = Emulator::start_default().await.unwrap();
    let client = Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET).token_mode(TokenMode::Classic))
        .endpoints(emu.endpoints())
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    client.access_token().await.unwrap();
    assert_eq!(emu.calls("/cgi-bin/token"), 1);
    assert_eq!(emu.calls("/cgi-bin/stable_token"), 0);
}

#[tokio::test]
async fn wrong_secret_is_40125_with_a_hint() {
    let emu = Emulator::start_default().await.unwrap();
    let client = Client::builder(AppConfig::new(DEFAULT_APPID, "wrong")).endpoints(emu.endpoints()).build().unwrap();
    let err = client.access_token().await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidAppSecret));
    assert!(err.to_string().contains("check AppConfig.secret"), "{err}");
    assert!(matches!(&err, Error::Api { rid: Some(_), .. }), "rid kept: {err:?}");
}

#[tokio::test]
async fn token_error_once_refreshes_once_and_replays_once() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let first = client.access_token().await.unwrap();
    let openid = emu.openid_of(DEFAULT_APPID, "bob");
    emu.inject(Fault { errcode: Some(40001), ..fault("/wxa/getpaidunionid", 1) });
    // The replayed call reaches the real handler, which answers its own (non-token) error.
    let err = client
        .auth()
        .paid_unionid(&openid, &wxshop::mp::auth::PaidOrder::TransactionId("4200000001".into()))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::Unknown(89300)));
    assert_eq!(emu.calls("/wxa/getpaidunionid"), 2, "one call and exactly one replay");
    assert_eq!(emu.counter("token.issued"), 2, "one refresh after the rejection");
    let second = client.access_token().await.unwrap();
    assert_ne!(secrecy::ExposeSecret::expose_secret(&first), secrecy::ExposeSecret::expose_secret(&second));
}

#[tokio::test]
async fn token_error_on_every_call_replays_exactly_once_then_fails() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    emu.inject(Fault { errcode: Some(40001), ..fault("/wxa/getpaidunionid", 100) });
    let err = client
        .auth()
        .paid_unionid("o1", &wxshop::mp::auth::PaidOrder::TransactionId("4200000001".into()))
        .await
        .unwrap_err();
    assert!(err.is_token_invalid());
    assert_eq!(err.errcode(), Some(ErrCode::InvalidCredential));
    assert_eq!(emu.calls("/wxa/getpaidunionid"), 2);
}

#[tokio::test]
async fn forced_refresh_is_not_repeated_within_30_seconds() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    emu.inject(Fault { errcode: Some(42001), ..fault("/wxa/getpaidunionid", 100) });
    for _ in 0..3 {
        let _ = client.auth().paid_unionid("o1", &wxshop::mp::auth::PaidOrder::TransactionId("42".into())).await;
    }
    // First fetch plus one forced refresh; later rejections within 30 s may not force again.
    assert_eq!(emu.counter("token.issued"), 2);
}

#[tokio::test]
async fn system_busy_twice_succeeds_on_the_third_attempt() {
    let emu = Emulator::start_default().await.unwrap();
    let client = Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET))
        .endpoints(emu.endpoints())
        .http_config(fast_retries())
        .build()
        .unwrap();
    emu.inject(Fault { errcode: Some(-1), ..fault("/cgi-bin/stable_token", 2) });
    let started = Instant::now();
    client.access_token().await.unwrap();
    let policy = client.http().retry_policy();
    assert_eq!(emu.calls("/cgi-bin/stable_token"), 3);
    // Each backoff sleeps at least half its bound: the retries really backed off.
    assert!(started.elapsed() >= policy.backoff_bound(1) / 2 + policy.backoff_bound(2) / 2);
}

#[tokio::test]
async fn transport_resets_and_5xx_are_retried_on_idempotent_calls() {
    let emu = Emulator::start_default().await.unwrap();
    let client = Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET))
        .endpoints(emu.endpoints())
        .http_config(fast_retries())
        .build()
        .unwrap();
    emu.inject(Fault { reset: true, ..fault("/cgi-bin/stable_token", 1) });
    emu.inject(Fault { status: Some(503), ..fault("/cgi-bin/stable_token", 1) });
    client.access_token().await.unwrap();
    assert_eq!(emu.calls("/cgi-bin/stable_token"), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let emu = Emulator::start_default().await.unwrap();
    let client = Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET))
        .endpoints(emu.endpoints())
        .http_config(fast_retries())
        .build()
        .unwrap();
    emu.inject(Fault { errcode: Some(-1), ..fault("/cgi-bin/stable_token", 100) });
    let err = client.access_token().await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::SystemBusy));
    assert_eq!(emu.calls("/cgi-bin/stable_token"), 4, "one attempt plus max_retries = 3");
}

#[tokio::test]
async fn quota_errors_are_not_retried() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    emu.inject(Fault { errcode: Some(45009), ..fault("/cgi-bin/stable_token", 1) });
    let err = client.access_token().await.unwrap_err();
    assert!(err.is_quota());
    assert_eq!(emu.calls("/cgi-bin/stable_token"), 1);
}

#[tokio::test]
async fn many_appids_in_one_process_share_one_store() {
    let emu = Emulator::start_default().await.unwrap();
    let store: Arc<dyn wxshop::token::TokenStore> = Arc::new(wxshop::token::MemoryTokenStore::new());
    emu.add_app(&AppConfig::new("wx_second", "s2"));
    let a = Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET))
        .endpoints(emu.endpoints())
        .token_store(store.clone())
        .build()
        .unwrap();
    let b = Client::builder(AppConfig::new("wx_second", "s2"))
        .endpoints(emu.endpoints())
        .token_store(store)
        .build()
        .unwrap();
    let ta = a.access_token().await.unwrap();
    let tb = b.access_token().await.unwrap();
    assert_ne!(secrecy::ExposeSecret::expose_secret(&ta), secrecy::ExposeSecret::expose_secret(&tb));
    assert_eq!(emu.counter("token.issued"), 2);
}

#[tokio::test]
async fn requests_without_a_token_are_rejected_like_wechat() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let err = client.call_without_token::<serde_json::Value>(&Request::mp_get("/wxa/checksession")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::Unknown(41001)));
}
