//! `wxshop pay …` and `wxshop trigger …`, run as a process, exactly per CLI.md.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use wxshop::crypto::pay::{self as paycrypto, ApiV3Key, MerchantKey};
use wxshop::emulator::pay::{
    DEFAULT_APIV3_KEY, DEFAULT_MERCHANT_KEY_PEM, PUBLIC_KEY_ID, platform_public_key_signer, test_certificate,
};
use wxshop::pay::notify::sign_notification;

fn wxshop(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxshop"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn temp_file(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("wxshop-cli-pay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(s.ends_with('\n') && !s.ends_with("\n\n"), "exactly one trailing newline: {s:?}");
    s
}

#[test]
fn sign_prints_the_authorization_header() {
    let key_path = temp_file("merchant.pem", DEFAULT_MERCHANT_KEY_PEM);
    let body = br#"{"mchid":"1900009191"}"#;
    let out = wxshop(
        &[
            "pay",
            "sign",
            "--mchid",
            "1900009191",
            "--serial",
            "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
            "--key",
            &key_path,
            "--method",
            "POST",
            "--url",
            "/v3/pay/transactions/jsapi?x=1",
            "--timestamp",
            "1554208460",
            "--nonce",
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        ],
        body,
    );
    let key = MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap();
    let expected = paycrypto::sign_request(
        &key,
        "1900009191",
        "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
        "POST",
        "/v3/pay/transactions/jsapi?x=1",
        "1554208460",
        "593BEC0C930BF1AFEB40B4A08C8FB242",
        body,
    )
    .unwrap();
    assert_eq!(ok(&out), format!("{expected}\n"));
    // A PKCS#1 key is refused with exit 1 and one line on stderr.
    let pkcs1 = temp_file("pkcs1.pem", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n");
    let out = wxshop(
        &[
            "pay",
            "sign",
            "--mchid",
            "1",
            "--serial",
            "2",
            "--key",
            &pkcs1,
            "--method",
            "GET",
            "--url",
            "/",
            "--timestamp",
            "1",
            "--nonce",
            "n",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("PKCS#1") && err.trim_end().lines().count() == 1, "{err}");
    // A missing flag is a usage error.
    assert_eq!(wxshop(&["pay", "sign", "--mchid", "1"], b"").status.code(), Some(2));
}

#[test]
fn pay_sign_matches_the_library() {
    let key_path = temp_file("merchant2.pem", DEFAULT_MERCHANT_KEY_PEM);
    let out = wxshop(
        &[
            "pay",
            "pay-sign",
            "--appid",
            "wx8888888888888888",
            "--timestamp",
            "1414561699",
            "--nonce",
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "--package",
            "prepay_id=wx201410272009395522657a690389285100",
            "--key",
            &key_path,
        ],
        b"",
    );
    let key = MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap();
    let msg = b"wx8888888888888888\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx201410272009395522657a690389285100\n";
    assert_eq!(ok(&out), format!("{}\n", key.sign(msg).unwrap()));
}

#[test]
fn verify_notify_prints_the_plaintext_and_rejects_the_rest() {
    let (id, wechat) = platform_public_key_signer();
    let pub_path = temp_file("pub_key.pem", &wechat.public_key().to_pem());
    let resource = r#"{"out_trade_no":"ORDER_CLI_1","trade_state":"SUCCESS","note":"支付"}"#;
    let now = 1_700_000_000;
    let n = sign_notification(
        &wechat,
        id,
        &ApiV3Key::new(DEFAULT_APIV3_KEY).unwrap(),
        "TRANSACTION.SUCCESS",
        resource.as_bytes(),
        now,
    )
    .unwrap();
    let h = |k: &str| n.headers[k].to_str().unwrap().to_string();
    let (ts, nonce, sig) = (h("wechatpay-timestamp"), h("wechatpay-nonce"), h("wechatpay-signature"));
    let run = |serial: &str, sig: &str, now: &str, body: &[u8], extra: &[&str]| {
        let mut args = vec![
            "pay",
            "verify-notify",
            "--public-key",
            &pub_path,
            "--public-key-id",
            PUBLIC_KEY_ID,
            "--apiv3-key",
            DEFAULT_APIV3_KEY,
            "--timestamp",
            &ts,
            "--nonce",
            &nonce,
            "--signature",
            sig,
            "--serial",
            serial,
            "--now",
            now,
        ];
        args.extend_from_slice(extra);
        wxshop(&args, body)
    };
    assert_eq!(ok(&run(PUBLIC_KEY_ID, &sig, "1700000100", &n.body, &[])), format!("{resource}\n"));
    for (serial, sig, now, extra) in [
        ("PUB_KEY_ID_OTHER", sig.clone(), "1700000100", vec![]), // unknown serial
        (PUBLIC_KEY_ID, format!("WECHATPAY/SIGNTEST/{sig}"), "1700000100", vec![]), // probe
        (PUBLIC_KEY_ID, sig.clone(), "1700000300", vec![]),      // stale
        (PUBLIC_KEY_ID, sig.clone(), "1700000100", vec!["--signature-type", "WECHATPAY2-SM2-WITH-SM3"]),
    ] {
        let out = run(serial, &sig, now, &n.body, &extra);
        assert_eq!(out.status.code(), Some(1), "{serial} {now} {extra:?}");
        assert!(out.stdout.is_empty());
    }
    let mut tampered = n.body.clone();
    tampered[5] ^= 1;
    assert_eq!(run(PUBLIC_KEY_ID, &sig, "1700000100", &tampered, &[]).status.code(), Some(1));
    // --public-key without its id is a usage error.
    let out = wxshop(
        &[
            "pay",
            "verify-notify",
            "--public-key",
            &pub_path,
            "--apiv3-key",
            DEFAULT_APIV3_KEY,
            "--timestamp",
            "1",
            "--nonce",
            "n",
            "--signature",
            "s",
            "--serial",
            "x",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn verify_notify_with_a_platform_certificate() {
    let key = MerchantKey::generate().unwrap();
    let cert = test_certificate(&key, "cli test").unwrap();
    let cert_path = temp_file("platform_cert.pem", cert.pem());
    let now = chrono::Utc::now().timestamp();
    let n = sign_notification(
        &key,
        cert.serial_no(),
        &ApiV3Key::new(DEFAULT_APIV3_KEY).unwrap(),
        "REFUND.SUCCESS",
        b"{\"refund_status\":\"SUCCESS\"}",
        now,
    )
    .unwrap();
    let h = |k: &str| n.headers[k].to_str().unwrap().to_string();
    let out = wxshop(
        &[
            "pay",
            "verify-notify",
            "--cert",
            &cert_path,
            "--apiv3-key",
            DEFAULT_APIV3_KEY,
            "--timestamp",
            &h("wechatpay-timestamp"),
            "--nonce",
            &h("wechatpay-nonce"),
            "--signature",
            &h("wechatpay-signature"),
            "--serial",
            cert.serial_no(),
        ],
        &n.body,
    );
    assert_eq!(ok(&out), "{\"refund_status\":\"SUCCESS\"}\n");
    // The wrong APIv3 key fails the AES-GCM tag.
    let out = wxshop(
        &[
            "pay",
            "verify-notify",
            "--cert",
            &cert_path,
            "--apiv3-key",
            "ffffffffffffffffffffffffffffffff",
            "--timestamp",
            &h("wechatpay-timestamp"),
            "--nonce",
            &h("wechatpay-nonce"),
            "--signature",
            &h("wechatpay-signature"),
            "--serial",
            cert.serial_no(),
        ],
        &n.body,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tag"));
}

#[test]
fn decrypt_field_round_trips() {
    let key_path = temp_file("merchant3.pem", DEFAULT_MERCHANT_KEY_PEM);
    let key = MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap();
    let ct = key.public_key().encrypt_oaep("13800138000").unwrap();
    assert_eq!(
        ok(&wxshop(&["pay", "decrypt-field", "--key", &key_path], format!("{ct}\n").as_bytes())),
        "13800138000\n"
    );
    assert_eq!(wxshop(&["pay", "decrypt-field", "--key", &key_path], b"not base64!").status.code(), Some(1));
}

#[tokio::test]
async fn trigger_sends_a_notification_the_default_config_accepts() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    let pay = wxshop::pay::PayClient::builder(wxshop::emulator::pay::default_pay_config().unwrap()).build().unwrap();
    let svc = wxshop::pay::notify::NotifyService::new(pay, move |n: wxshop::pay::Notification| {
        let seen = seen2.clone();
        async move {
            if let wxshop::pay::NotificationResource::Transaction(t) = n.resource {
                seen.lock().unwrap().push(t.out_trade_no);
            }
            Ok(())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wx/pay/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, svc.router("/wx/pay/notify")).await.unwrap() });
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        wxshop(&["trigger", "payment.success", "--to", &u, "--out-trade-no", "ORDER_TRIGGER_1"], b"")
    })
    .await
    .unwrap();
    assert_eq!(ok(&out), "TRANSACTION.SUCCESS ORDER_TRIGGER_1 → HTTP 204\n");
    assert_eq!(*seen.lock().unwrap(), vec!["ORDER_TRIGGER_1".to_string()]);
    let out =
        tokio::task::spawn_blocking(move || wxshop(&["trigger", "refund.success", "--to", &url], b"")).await.unwrap();
    assert!(ok(&out).starts_with("REFUND.SUCCESS TRIGGER"));
    assert_eq!(wxshop(&["trigger", "payment.failed", "--to", "http://127.0.0.1:1/"], b"").status.code(), Some(2));
}
