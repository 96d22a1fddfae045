//! Merchant transfers (商家转账 transfer bills) against the in-process emulator: the bill the user
//! confirms, idempotency, WeChat's rejections (locally and by the emulator), the payee's encrypted
//! name, cancellation, and the MCHTRANSFER.BILL.FINISHED notification.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use wxshop::Error;
use wxshop::crypto::pay::ApiV3Key;
use wxshop::emulator::pay::{DEFAULT_APIV3_KEY, DEFAULT_MCHID};
use wxshop::emulator::{DEFAULT_APPID, Emulator, EmulatorHandle};
use wxshop::http::{Body, Host, Request};
use wxshop::pay::notify::{NotifyService, sign_body, sign_notification};
use wxshop::pay::transfers::{CreateTransferBill, TransferState};
use wxshop::pay::{Notification, NotificationResource, PayClient};

const NOTIFY_PATH: &str = "/wx/pay/notify";
const BILLS: &str = "/v3/fund-app/mch-transfer/transfer-bills";

/// A notify endpoint that records what it processed.
async fn receiver(pay: PayClient) -> (String, Arc<Mutex<Vec<Notification>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let svc = NotifyService::new(pay, move |n: Notification| {
        let seen = seen2.clone();
        async move {
            seen.lock().unwrap().push(n);
            Ok(())
        }
    });
    let app = svc.router(NOTIFY_PATH);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}{NOTIFY_PATH}"), seen)
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

fn bill(emu: &EmulatorHandle, no: &str, fen: i64) -> CreateTransferBill {
    CreateTransferBill::new(DEFAULT_APPID, no, "1000", emu.openid_of(DEFAULT_APPID, "alice"), fen, "售后赔付")
        .report("活动名称", "售后赔付")
        .report("奖励说明", "商家延迟发货赔付")
}

/// Sends a body as is (past the local checks), to see what the emulator answers.
async fn raw_create(pay: &PayClient, body: serde_json::Value) -> Error {
    let req = Request::new(Method::POST, Host::Pay, BILLS).body(Body::json(&body).unwrap());
    pay.send_json::<serde_json::Value>(&req).await.unwrap_err()
}

fn pay_code(e: &Error) -> (u16, String) {
    match e {
        Error::PayApi { status, code, .. } => (*status, code.clone()),
        other => panic!("not a WeChat Pay error: {other:?}"),
    }
}

fn resource(n: &Notification) -> wxshop::pay::transfers::TransferBillNotice {
    match &n.resource {
        NotificationResource::TransferBill(t) => t.clone(),
        other => panic!("not a transfer bill notification: {other:?}"),
    }
}

#[tokio::test]
async fn a_bill_waits_for_the_user_who_confirms_it_and_the_result_is_notified() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let (url, seen) = receiver(pay.clone()).await;
    let created = pay.transfers().create(bill(&emu, "COMP1001", 330).notify_url(&url)).await.unwrap();
    assert_eq!((created.out_bill_no.as_str(), &created.state), ("COMP1001", &TransferState::WaitUserConfirm));
    assert_eq!(created.transfer_bill_no.len(), 33);
    assert!(created.package_info.as_deref().is_some_and(|p| p.starts_with("ABBQO+oYAAAB")));
    assert_eq!(created.fail_reason, None);
    let q = pay.transfers().query_by_out_bill_no("COMP1001").await.unwrap();
    assert_eq!(
        (
            q.mch_id.as_str(),
            q.appid.as_str(),
            &q.state,
            q.transfer_amount,
            q.transfer_remark.as_str(),
            q.user_name.clone()
        ),
        (DEFAULT_MCHID, DEFAULT_APPID, &TransferState::WaitUserConfirm, 330, "售后赔付", None)
    );
    assert_eq!(q.openid, emu.openid_of(DEFAULT_APPID, "alice"));
    let by_wx = pay.transfers().query_by_transfer_bill_no(&created.transfer_bill_no).await.unwrap();
    assert_eq!(by_wx, q);

    emu.transfer_confirm(DEFAULT_MCHID, "COMP1001").await.unwrap();
    wait_for(|| seen.lock().unwrap().len() == 1).await;
    let n = seen.lock().unwrap()[0].clone();
    assert_eq!((n.event_type.as_str(), n.resource_type.as_str()), ("MCHTRANSFER.BILL.FINISHED", "encrypt-resource"));
    let r = resource(&n);
    assert_eq!(
        (r.out_bill_no.as_str(), r.transfer_bill_no.as_str(), &r.state, r.mch_id.as_str(), r.transfer_amount),
        ("COMP1001", created.transfer_bill_no.as_str(), &TransferState::Success, DEFAULT_MCHID, 330)
    );
    assert_eq!(r.fail_reason, None);
    let q = pay.transfers().query_by_out_bill_no("COMP1001").await.unwrap();
    assert_eq!(q.state, TransferState::Success);
    // A bill the user already confirmed cannot be confirmed again, nor cancelled.
    assert!(emu.transfer_confirm(DEFAULT_MCHID, "COMP1001").await.is_err());
    let e = pay.transfers().cancel("COMP1001").await.unwrap_err();
    assert_eq!(pay_code(&e), (400, "INVALID_REQUEST".into()));
    let unknown = pay.transfers().query_by_out_bill_no("NOSUCHBILL").await.unwrap_err();
    assert_eq!(pay_code(&unknown), (404, "NOT_FOUND".into()));
}

#[tokio::test]
async fn the_same_out_bill_no_is_the_same_bill_and_other_parameters_are_invalid_request() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let first = pay.transfers().create(bill(&emu, "COMP2001", 500)).await.unwrap();
    let again = pay.transfers().create(bill(&emu, "COMP2001", 500)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(emu.counter("pay.transfer"), 1);
    let e = pay.transfers().create(bill(&emu, "COMP2001", 501)).await.unwrap_err();
    assert_eq!(pay_code(&e), (400, "INVALID_REQUEST".into()));
    let mut other_scene = bill(&emu, "COMP2001", 500);
    other_scene.transfer_remark = "另一笔".into();
    assert_eq!(pay_code(&pay.transfers().create(other_scene).await.unwrap_err()), (400, "INVALID_REQUEST".into()));
    assert_eq!(emu.transfer_state(DEFAULT_MCHID, "COMP2001").as_deref(), Some("WAIT_USER_CONFIRM"));
}

#[tokio::test]
async fn what_wechat_rejects_is_rejected_locally_and_by_the_emulator() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    // Locally, before any call.
    for (no, fen) in [("COMP_1", 100), ("C".repeat(33).as_str(), 100), ("COMP3001", 9)] {
        let e = pay.transfers().create(bill(&emu, no, fen)).await.unwrap_err();
        assert!(matches!(e, Error::InvalidRequest(_)), "{no} {fen}: {e:?}");
    }
    assert!(matches!(pay.transfers().query_by_out_bill_no("a-b").await, Err(Error::InvalidRequest(_))));
    assert_eq!(emu.calls(BILLS), 0, "nothing was sent");

    // By the emulator, when sent anyway.
    let alice = emu.openid_of(DEFAULT_APPID, "alice");
    let good = serde_json::json!({
        "appid": DEFAULT_APPID, "out_bill_no": "COMP3002", "transfer_scene_id": "1000", "openid": alice,
        "transfer_amount": 100, "transfer_remark": "售后赔付",
        "transfer_scene_report_infos": [{"info_type": "活动名称", "info_content": "售后赔付"},
                                        {"info_type": "奖励说明", "info_content": "延迟发货"}]
    });
    let with = |k: &str, v: serde_json::Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases = [
        ("out_bill_no", with("out_bill_no", "COMP_3002".into())),
        ("out_bill_no", with("out_bill_no", "C".repeat(33).into())),
        ("transfer_amount", with("transfer_amount", 9.into())),
        ("transfer_remark", with("transfer_remark", "赔".repeat(33).into())),
        ("transfer_scene_report_infos", with("transfer_scene_report_infos", serde_json::json!([]))),
        (
            "transfer_scene_report_infos",
            with("transfer_scene_report_infos", serde_json::json!([{"info_type": "活动名称", "info_content": "x"}])),
        ),
        ("openid", with("openid", emu.openid_of("wxotherapp0000001", "alice").into())),
        ("user_name", with("transfer_amount", 200_000.into())),
    ];
    for (field, body) in cases {
        let e = raw_create(&pay, body).await;
        match &e {
            Error::PayApi { status: 400, code, detail: Some(d), .. } if code == "PARAM_ERROR" => {
                assert_eq!(d["field"], field, "{e:?}");
            }
            other => panic!("{field}: expected PARAM_ERROR, got {other:?}"),
        }
    }
    // The untouched body is accepted.
    let req = Request::new(Method::POST, Host::Pay, BILLS).body(Body::json(&good).unwrap());
    let ok: serde_json::Value = pay.send_json(&req).await.unwrap();
    assert_eq!(ok["state"], "WAIT_USER_CONFIRM");
}

#[tokio::test]
async fn from_2000_yuan_the_payee_name_is_encrypted_and_decrypts_at_both_ends() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let e = pay.transfers().create(bill(&emu, "COMP4001", 200_000)).await.unwrap_err();
    assert!(e.to_string().contains("user_name (the payee's real name) is required"), "{e}");
    let created = pay.transfers().create(bill(&emu, "COMP4001", 200_000).user_name("张三")).await.unwrap();
    assert_eq!(created.state, TransferState::WaitUserConfirm);
    // A retry encrypts again (OAEP is randomized) and is still the same bill; another name is not.
    let again = pay.transfers().create(bill(&emu, "COMP4001", 200_000).user_name("张三")).await.unwrap();
    assert_eq!(again.transfer_bill_no, created.transfer_bill_no);
    let e = pay.transfers().create(bill(&emu, "COMP4001", 200_000).user_name("李四")).await.unwrap_err();
    assert_eq!(pay_code(&e), (400, "INVALID_REQUEST".into()));
    // WeChat answers the name encrypted with the merchant's key.
    let q = pay.transfers().query_by_out_bill_no("COMP4001").await.unwrap();
    let ct = q.user_name.clone().expect("user_name");
    assert_ne!(ct, "张三");
    assert_eq!(pay.decrypt_sensitive(&ct).unwrap().as_str(), "张三");
    assert!(!format!("{q:?}").contains(&ct), "Debug redacts the name");
    // The request carried Wechatpay-Serial; without it, or with garbage, the emulator refuses.
    let mut body = serde_json::to_value(bill(&emu, "COMP4002", 200_000)).unwrap();
    body["user_name"] = "bm90IGEgY2lwaGVydGV4dA==".into();
    let e = raw_create(&pay, body.clone()).await;
    assert!(
        matches!(&e, Error::PayApi { code, detail: Some(d), .. } if code == "PARAM_ERROR" && d["field"] == "Wechatpay-Serial"),
        "{e:?}"
    );
    let enc = pay.encryptor().await.unwrap();
    let req = enc.tag(Request::new(Method::POST, Host::Pay, BILLS).body(Body::json(&body).unwrap())).unwrap();
    let e = pay.send_json::<serde_json::Value>(&req).await.unwrap_err();
    assert!(
        matches!(&e, Error::PayApi { code, detail: Some(d), .. } if code == "PARAM_ERROR" && d["field"] == "user_name"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_waiting_bill_is_cancelled_once_and_a_declined_one_fails_with_its_reason() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let (url, seen) = receiver(pay.clone()).await;
    let created = pay.transfers().create(bill(&emu, "COMP5001", 1000).notify_url(&url)).await.unwrap();
    let c = pay.transfers().cancel("COMP5001").await.unwrap();
    assert_eq!(
        (c.out_bill_no.as_str(), c.transfer_bill_no.as_str(), &c.state),
        ("COMP5001", created.transfer_bill_no.as_str(), &TransferState::Cancelled)
    );
    assert_eq!(pay.transfers().cancel("COMP5001").await.unwrap(), c, "cancelling again answers the same");
    assert_eq!(pay.transfers().query_by_out_bill_no("COMP5001").await.unwrap().state, TransferState::Cancelled);
    assert!(emu.transfer_confirm(DEFAULT_MCHID, "COMP5001").await.is_err(), "a cancelled bill cannot be confirmed");
    assert_eq!(pay_code(&pay.transfers().cancel("NOSUCHBILL").await.unwrap_err()), (404, "NOT_FOUND".into()));

    pay.transfers().create(bill(&emu, "COMP5002", 1000).notify_url(&url)).await.unwrap();
    emu.transfer_decline(DEFAULT_MCHID, "COMP5002", None).await.unwrap();
    wait_for(|| seen.lock().unwrap().len() == 2).await;
    let mut got: Vec<_> = seen.lock().unwrap().iter().map(resource).collect();
    got.sort_by(|a, b| a.out_bill_no.cmp(&b.out_bill_no));
    assert_eq!(
        (got[0].out_bill_no.as_str(), &got[0].state, got[0].fail_reason.as_deref()),
        ("COMP5001", &TransferState::Cancelled, None)
    );
    assert_eq!(
        (got[1].out_bill_no.as_str(), &got[1].state, got[1].fail_reason.as_deref()),
        ("COMP5002", &TransferState::Fail, Some("PAYEE_ACCOUNT_ABNORMAL"))
    );
    let q = pay.transfers().query_by_out_bill_no("COMP5002").await.unwrap();
    assert_eq!((q.state, q.fail_reason.as_deref()), (TransferState::Fail, Some("PAYEE_ACCOUNT_ABNORMAL")));
}

#[tokio::test]
async fn a_transfer_notification_verifies_and_decrypts_and_a_forged_one_is_rejected() {
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();
    let (serial, wechat) = wxshop::emulator::pay::platform_public_key_signer();
    let apiv3 = ApiV3Key::new(DEFAULT_APIV3_KEY).unwrap();
    let plaintext = br#"{"out_bill_no":"COMP6001","transfer_bill_no":"1330000071100999991182020050700019480001","state":"FAIL","mch_id":"1230000109","transfer_amount":330,"openid":"o1","fail_reason":"PAYEE_ACCOUNT_ABNORMAL","create_time":"2025-01-01T10:00:00+08:00","update_time":"2025-01-01T10:05:00+08:00"}"#;
    let now = pay.now().timestamp();
    let n = sign_notification(&wechat, serial, &apiv3, "MCHTRANSFER.BILL.FINISHED", plaintext, now).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&n.body).unwrap();
    assert_eq!(
        (&body["resource"]["original_type"], &body["resource"]["associated_data"]),
        (&serde_json::json!("mch_payment"), &serde_json::json!("mch_payment"))
    );
    let got = pay.verify_and_decrypt(&n.headers, &n.body).await.unwrap();
    let r = resource(&got);
    assert_eq!(
        (r.out_bill_no.as_str(), &r.state, r.transfer_amount, r.fail_reason.as_deref()),
        ("COMP6001", &TransferState::Fail, 330, Some("PAYEE_ACCOUNT_ABNORMAL"))
    );
    assert_eq!(got.plaintext, plaintext.to_vec());
    // Signed by someone else, with the emulator's key id: rejected before decryption.
    let forger = wxshop::crypto::pay::MerchantKey::generate().unwrap();
    let forged = sign_notification(&forger, serial, &apiv3, "MCHTRANSFER.BILL.FINISHED", plaintext, now).unwrap();
    assert!(matches!(pay.verify_and_decrypt(&forged.headers, &forged.body).await, Err(Error::Signature(_))));
    // A genuine body with one byte changed: rejected.
    let mut tampered = n.body.clone();
    let i = tampered.iter().position(|b| *b == b'"').unwrap();
    tampered.insert(i, b' ');
    assert!(matches!(pay.verify_and_decrypt(&n.headers, &tampered).await, Err(Error::Signature(_))));
    // Signed right over a resource that is not a transfer bill: a typed error, no panic.
    let bad = sign_notification(&wechat, serial, &apiv3, "MCHTRANSFER.BILL.FINISHED", br#"{"state":1}"#, now).unwrap();
    assert!(matches!(
        pay.verify_and_decrypt(&bad.headers, &bad.body).await,
        Err(Error::Crypto { kind: wxshop::error::CryptoKind::Plaintext, .. })
    ));
    let headers = sign_body(&wechat, serial, b"{}", now).unwrap();
    assert!(pay.verify_and_decrypt(&headers, b"{}").await.is_err());
}
