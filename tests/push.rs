//! Message push and outbound messages: WeChat's published vectors, round trips from the
//! emulator's push sender into a push endpoint in every mode and format, typed rejections, the
//! emulator's messaging rules, and a property test that no input panics.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use proptest::prelude::*;
use serde_json::{Value, json};
use wxshop::crypto::msgcrypt::{MsgCrypt, decode_aes_key};
use wxshop::emulator::mp::message::{Delivery, PushConfig, gh_id};
use wxshop::emulator::{DEFAULT_APPID, Emulator, EmulatorHandle};
use wxshop::mp::message::{CustomerServiceMessage, SubscribeData, SubscribeMessage, TypingCommand};
use wxshop::mp::security::{MediaChecks, MediaType, Scene};
use wxshop::push::axum::{PushEndpoint, handler_fn};
use wxshop::push::{Format, Incoming, Message, Mode, PushQuery, Reply, Verifier};
use wxshop::{CryptoKind, ErrCode, Error};

const TOKEN: &str = "push-test-token";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

// ---------------------------------------------------------------------------------------------
// Published vectors

#[test]
fn url_verification_vector_echoes_exactly() {
    let v = &common::vectors()["push_url_verification"];
    let q = PushQuery {
        signature: Some(v["signature"].as_str().unwrap().into()),
        timestamp: Some(v["timestamp"].as_str().unwrap().into()),
        nonce: Some(v["nonce"].as_str().unwrap().into()),
        echostr: Some(v["echostr"].as_str().unwrap().into()),
        ..Default::default()
    };
    let verifier = Verifier::new(v["token"].as_str().unwrap());
    assert_eq!(verifier.verify_url_at(&q, 0).unwrap(), "4375120948345356249");
    let mut wrong = q.clone();
    wrong.nonce = Some("1514711493".into());
    assert!(matches!(verifier.verify_url_at(&wrong, 0), Err(Error::Signature(_))));
}

#[test]
fn plaintext_push_vector_opens_to_its_exact_fields() {
    let v = &common::vectors()["push_plaintext_signature"];
    let q = PushQuery {
        signature: Some(v["signature"].as_str().unwrap().into()),
        timestamp: Some(v["timestamp"].as_str().unwrap().into()),
        nonce: Some(v["nonce"].as_str().unwrap().into()),
        ..Default::default()
    };
    let body = v["body"].as_str().unwrap();
    let push = Verifier::new(v["token"].as_str().unwrap()).open_at(&q, body.as_bytes(), 0).unwrap();
    assert_eq!((push.mode, push.format), (Mode::Plaintext, Format::Json));
    assert_eq!(push.to_user_name, "gh_97417a04a28d");
    assert_eq!(push.from_user_name, "o9AgO5Kd5ggOC-bXrbNODIiE3bGY");
    assert_eq!(push.create_time, 1714037059);
    assert_eq!(push.plaintext, body.as_bytes());
    assert_eq!(
        push.message,
        Message::Unknown {
            msg_type: "event".into(),
            event: Some("debug_demo".into()),
            raw: serde_json::from_str(body).unwrap()
        }
    );
    assert_eq!(push.dedupe_key(), "event:o9AgO5Kd5ggOC-bXrbNODIiE3bGY:1714037059:debug_demo:");
    // The signature covers the query only; another token fails it.
    assert!(matches!(Verifier::new("AAAAB").open_at(&q, body.as_bytes(), 0), Err(Error::Signature(_))));
}

#[test]
fn encrypt_known_answer_is_exact() {
    let v = &common::vectors()["msgcrypt_encrypt_known_answer"];
    let crypt =
        MsgCrypt::new("pamtest", v["encoding_aes_key"].as_str().unwrap(), v["appid"].as_str().unwrap()).unwrap();
    let random: [u8; 16] = v["random"].as_str().unwrap().as_bytes().try_into().unwrap();
    let encrypt = crypt.encrypt_with_random(&random, v["plaintext"].as_str().unwrap().as_bytes());
    assert_eq!(encrypt, v["encrypt"].as_str().unwrap());
    assert_eq!(crypt.decrypt(&encrypt).unwrap(), v["plaintext"].as_str().unwrap().as_bytes());
}

#[test]
fn decrypt_known_answer_is_exact_directly_and_through_the_verifier() {
    let v = &common::vectors()["msgcrypt_decrypt_known_answer"];
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    let crypt = MsgCrypt::new(s("token"), &s("encoding_aes_key"), s("appid")).unwrap();
    let plain = crypt.decrypt_verified(&s("msg_signature"), &s("timestamp"), &s("nonce"), &s("encrypt")).unwrap();
    assert_eq!(String::from_utf8(plain).unwrap(), s("plaintext"));

    let verifier = Verifier::with_aes_key(s("token"), &s("encoding_aes_key"), s("appid")).unwrap();
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        s("encrypt")
    );
    let q = PushQuery {
        timestamp: Some(s("timestamp")),
        nonce: Some(s("nonce")),
        encrypt_type: Some("aes".into()),
        msg_signature: Some(s("msg_signature")),
        ..Default::default()
    };
    let push = verifier.open_at(&q, body.as_bytes(), 0).unwrap();
    assert_eq!((push.mode, push.format), (Mode::Secure, Format::Xml));
    assert_eq!(push.message, Message::Text { content: "abcdteT".into(), msg_id: "6054768590064713728".into() });
    assert_eq!(push.from_user_name, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
    assert_eq!(push.create_time, 1409735668);
    assert_eq!(push.plaintext, s("plaintext").as_bytes());
    // The same envelope in JSON.
    let json_body = json!({"ToUserName": "gh_10f6c3c3ac5a", "Encrypt": s("encrypt")}).to_string();
    assert_eq!(verifier.open_at(&q, json_body.as_bytes(), 0).unwrap().message, push.message);
}

// ---------------------------------------------------------------------------------------------
// Typed rejections

fn vector_crypt() -> (MsgCrypt, Value) {
    let v = common::vectors()["msgcrypt_decrypt_known_answer"].clone();
    let crypt = MsgCrypt::new(
        v["token"].as_str().unwrap(),
        v["encoding_aes_key"].as_str().unwrap(),
        v["appid"].as_str().unwrap(),
    )
    .unwrap();
    (crypt, v)
}

fn kind(r: wxshop::Result<Vec<u8>>) -> CryptoKind {
    match r {
        Err(Error::Crypto { kind, .. }) => kind,
        other => panic!("expected a crypto error, got {other:?}"),
    }
}

/// Encrypts an arbitrary frame with the vector key (no padding added).
fn raw_encrypt(frame: &[u8]) -> String {
    let key = decode_aes_key(AES_KEY).unwrap();
    let iv: [u8; 16] = key[..16].try_into().unwrap();
    let mut buf = frame.to_vec();
    let n = buf.len();
    let ct = cbc::Encryptor::<Aes256>::new((&*key).into(), (&iv).into())
        .encrypt_padded::<NoPadding>(&mut buf, n)
        .unwrap()
        .to_vec();
    STANDARD.encode(ct)
}

fn frame(len_field: u32, msg: &[u8], appid: &[u8], pad: &[u8]) -> Vec<u8> {
    let mut f = b"0123456789abcdef".to_vec();
    f.extend_from_slice(&len_field.to_be_bytes());
    f.extend_from_slice(msg);
    f.extend_from_slice(appid);
    f.extend_from_slice(pad);
    f
}

#[test]
fn wrong_signature_is_a_signature_error() {
    let (crypt, v) = vector_crypt();
    let r = crypt.decrypt_verified(
        "5d197aaffba7e9b25a30732f161a50dee96bd5fb",
        v["timestamp"].as_str().unwrap(),
        v["nonce"].as_str().unwrap(),
        v["encrypt"].as_str().unwrap(),
    );
    assert!(matches!(r, Err(Error::Signature(_))), "{r:?}");
}

fn signature_message<T: std::fmt::Debug>(r: wxshop::Result<T>) -> String {
    match r {
        Err(Error::Signature(m)) => m,
        other => panic!("expected a signature error, got {other:?}"),
    }
}

#[test]
fn an_uppercase_msg_signature_is_refused_on_the_published_vector() {
    // WeChat signs in lowercase hex and wechatpy compares exactly: the published vector's own
    // digest in uppercase is refused, directly and through the verifier.
    let (crypt, v) = vector_crypt();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    let upper = s("msg_signature").to_uppercase();
    assert_ne!(upper, s("msg_signature"));
    let expected = "msg_signature is uppercase hex; WeChat signs in lowercase hex";
    assert_eq!(
        signature_message(crypt.decrypt_verified(&upper, &s("timestamp"), &s("nonce"), &s("encrypt"))),
        expected
    );

    let verifier = Verifier::with_aes_key(s("token"), &s("encoding_aes_key"), s("appid")).unwrap();
    let body = format!("<xml><Encrypt><![CDATA[{}]]></Encrypt></xml>", s("encrypt"));
    let mut q = PushQuery {
        timestamp: Some(s("timestamp")),
        nonce: Some(s("nonce")),
        encrypt_type: Some("aes".into()),
        msg_signature: Some(s("msg_signature")),
        ..Default::default()
    };
    assert!(verifier.open_at(&q, body.as_bytes(), 0).is_ok());
    q.msg_signature = Some(upper);
    assert_eq!(signature_message(verifier.open_at(&q, body.as_bytes(), 0)), expected);
}

#[test]
fn an_uppercase_signature_is_refused_in_url_verification_and_plaintext_mode() {
    let expected = "signature is uppercase hex; WeChat signs in lowercase hex";
    let v = &common::vectors()["push_url_verification"];
    let mut q = PushQuery {
        signature: Some(v["signature"].as_str().unwrap().to_uppercase()),
        timestamp: Some(v["timestamp"].as_str().unwrap().into()),
        nonce: Some(v["nonce"].as_str().unwrap().into()),
        echostr: Some(v["echostr"].as_str().unwrap().into()),
        ..Default::default()
    };
    let verifier = Verifier::new(v["token"].as_str().unwrap());
    assert_eq!(signature_message(verifier.verify_url_at(&q, 0)), expected);
    q.signature = Some(v["signature"].as_str().unwrap().into());
    assert_eq!(verifier.verify_url_at(&q, 0).unwrap(), "4375120948345356249");

    let v = &common::vectors()["push_plaintext_signature"];
    let q = PushQuery {
        signature: Some(v["signature"].as_str().unwrap().to_uppercase()),
        timestamp: Some(v["timestamp"].as_str().unwrap().into()),
        nonce: Some(v["nonce"].as_str().unwrap().into()),
        ..Default::default()
    };
    let body = v["body"].as_str().unwrap().as_bytes();
    assert_eq!(signature_message(Verifier::new(v["token"].as_str().unwrap()).open_at(&q, body, 0)), expected);
}

#[test]
fn wrong_appid_is_rejected() {
    let v = &common::vectors()["msgcrypt_decrypt_known_answer"];
    let other = MsgCrypt::new(v["token"].as_str().unwrap(), AES_KEY, "wx0000000000000000").unwrap();
    assert_eq!(kind(other.decrypt(v["encrypt"].as_str().unwrap())), CryptoKind::AppidMismatch);
}

#[test]
fn tampered_ciphertext_is_rejected_even_with_a_recomputed_signature() {
    let (crypt, v) = vector_crypt();
    let mut ct = STANDARD.decode(v["encrypt"].as_str().unwrap()).unwrap();
    // Flip the byte that CBC xors into the last plaintext byte: the pad byte.
    let n = ct.len();
    ct[n - 17] ^= 0x01;
    let tampered = STANDARD.encode(&ct);
    let sig = crypt.signature("1", "n", &tampered);
    assert_eq!(kind(crypt.decrypt_verified(&sig, "1", "n", &tampered)), CryptoKind::Padding);
}

#[test]
fn bad_padding_is_a_padding_error() {
    let crypt = MsgCrypt::new(TOKEN, AES_KEY, "wxapp").unwrap();
    // 16 + 4 + 7 + 5 = 32, then a block ending in 0x05 preceded by other bytes.
    let mut pad = [0x07u8; 32];
    pad[31] = 0x05;
    assert_eq!(kind(crypt.decrypt(&raw_encrypt(&frame(7, b"message", b"wxapp", &pad)))), CryptoKind::Padding);
    assert_eq!(kind(crypt.decrypt(&raw_encrypt(&frame(7, b"message", b"wxapp", &[0; 32])))), CryptoKind::Padding);
}

#[test]
fn truncated_base64_is_a_base64_or_length_error() {
    let (crypt, v) = vector_crypt();
    let e = v["encrypt"].as_str().unwrap();
    assert_eq!(kind(crypt.decrypt(&e[..e.len() - 1])), CryptoKind::Base64);
    // Truncated on a 4-character boundary it decodes, but no longer to whole blocks.
    assert_eq!(kind(crypt.decrypt(&e[..e.len() - 4])), CryptoKind::Length);
}

#[test]
fn a_length_field_past_the_end_is_a_length_error() {
    let crypt = MsgCrypt::new(TOKEN, AES_KEY, "wxapp").unwrap();
    let f = frame(u32::MAX, b"message", b"wxapp", &[32; 32]);
    assert_eq!(kind(crypt.decrypt(&raw_encrypt(&f))), CryptoKind::Length);
}

// ---------------------------------------------------------------------------------------------
// Round trips: emulator push sender → push endpoint

struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Incoming>>>,
}

/// A push endpoint on 127.0.0.1 that records what it receives and replies `reply`; it fails the
/// first `fail_first` pushes with a store error.
async fn receiver(verifier: Verifier, reply: Reply, fail_first: usize) -> Receiver {
    let seen: Arc<Mutex<Vec<Incoming>>> = Arc::default();
    let failures = Arc::new(Mutex::new(fail_first));
    let s = seen.clone();
    let endpoint = PushEndpoint::new(
        verifier.clone(),
        handler_fn(move |p: Incoming| {
            let (s, failures, reply) = (s.clone(), failures.clone(), reply.clone());
            async move {
                {
                    let mut f = failures.lock().unwrap();
                    if *f > 0 {
                        *f -= 1;
                        return Err(Error::Store("database unavailable".into()));
                    }
                }
                s.lock().unwrap().push(p);
                Ok(reply)
            }
        }),
    );
    let app = axum::Router::new().route("/wx/push", endpoint.method_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url: format!("http://{addr}/wx/push"), seen }
}

fn push_config(url: &str, mode: Mode, format: Format) -> PushConfig {
    PushConfig {
        appid: DEFAULT_APPID.into(),
        url: url.into(),
        token: TOKEN.into(),
        encoding_aes_key: mode.encrypted().then(|| AES_KEY.to_string()),
        mode,
        format,
        retries: 3,
    }
}

fn verifier_for(mode: Mode) -> Verifier {
    if mode.encrypted() { Verifier::with_aes_key(TOKEN, AES_KEY, DEFAULT_APPID).unwrap() } else { Verifier::new(TOKEN) }
}

#[tokio::test]
async fn every_mode_and_format_round_trips_from_the_emulator() {
    let emu = Emulator::start_default().await.unwrap();
    let alice = emu.openid_of(DEFAULT_APPID, "alice");
    for mode in [Mode::Plaintext, Mode::Compatible, Mode::Secure] {
        for format in [Format::Xml, Format::Json] {
            let rx = receiver(verifier_for(mode), Reply::Success, 0).await;
            emu.configure_push(push_config(&rx.url, mode, format)).unwrap();
            let content = format!("hello <{mode:?}/{format:?}> & ]]> 你好");
            let d = emu
                .send_push(DEFAULT_APPID, json!({"FromUserName": alice, "MsgType": "text", "Content": content}))
                .await
                .unwrap();
            assert!(d.ok(), "{mode:?} {format:?}: {d:?}");
            assert_eq!((d.attempts, d.reply.as_str()), (1, "success"));
            let seen = rx.seen.lock().unwrap();
            assert_eq!(seen.len(), 1, "{mode:?} {format:?}");
            let p = &seen[0];
            assert_eq!((p.mode, p.format), (mode, format));
            assert_eq!(p.from_user_name, alice);
            assert_eq!(p.to_user_name, gh_id(DEFAULT_APPID));
            match &p.message {
                Message::Text { content: got, msg_id } => {
                    assert_eq!(got, &content);
                    assert_eq!(p.dedupe_key(), format!("msg:{msg_id}"));
                }
                other => panic!("{other:?}"),
            }
            // The query carries what WeChat sends.
            let q = PushQuery::parse(&d.query);
            assert_eq!(q.openid.as_deref(), Some(alice.as_str()));
            assert_eq!(q.encrypt_type.is_some(), mode.encrypted());
            assert_eq!(q.msg_signature.is_some(), mode.encrypted());
            // Secure bodies hold ciphertext only; compatible ones the clear fields as well.
            assert_eq!(d.body.contains("Content"), mode != Mode::Secure, "{}", d.body);
        }
    }
}

#[tokio::test]
async fn events_of_each_kind_arrive_typed() {
    let emu = Emulator::start_default().await.unwrap();
    let alice = emu.openid_of(DEFAULT_APPID, "alice");
    let events = [
        json!({"FromUserName": alice, "MsgType": "event", "Event": "user_enter_tempsession", "SessionFrom": "order-7"}),
        json!({"FromUserName": alice, "MsgType": "event", "Event": "subscribe_msg_popup_event",
               "List": [{"TemplateId": "T1", "SubscribeStatusString": "accept", "PopupScene": "0"},
                        {"TemplateId": "T2", "SubscribeStatusString": "reject", "PopupScene": "0"}]}),
        json!({"FromUserName": alice, "MsgType": "event", "Event": "subscribe_msg_change_event",
               "List": [{"TemplateId": "T1", "SubscribeStatusString": "reject"}]}),
        json!({"FromUserName": alice, "MsgType": "event", "Event": "subscribe_msg_sent_event",
               "List": [{"TemplateId": "T1", "MsgID": "1700827132819554304", "ErrorCode": "0", "ErrorStatus": "success"}]}),
        json!({"FromUserName": alice, "MsgType": "event", "Event": "trade_manage_order_settlement",
               "transaction_id": "4200002", "merchant_id": "1900000109", "merchant_trade_no": "o-9",
               "pay_time": 1714000000, "shipped_time": 1714000500, "estimated_settlement_time": 1714900000}),
        json!({"FromUserName": alice, "MsgType": "image", "PicUrl": "http://img", "MediaId": "m1"}),
    ];
    for format in [Format::Xml, Format::Json] {
        // A fresh receiver per format: the same event from the same user in the same second is,
        // by WeChat's dedupe key, a retry.
        let rx = receiver(verifier_for(Mode::Secure), Reply::Success, 0).await;
        emu.configure_push(push_config(&rx.url, Mode::Secure, format)).unwrap();
        for e in &events {
            assert!(emu.send_push(DEFAULT_APPID, e.clone()).await.unwrap().ok());
        }
        let seen = rx.seen.lock().unwrap();
        assert_eq!(seen.len(), 6);
        for (i, p) in seen.iter().enumerate() {
            assert_eq!(p.format, format);
            match (i, &p.message) {
                (0, Message::UserEnterTempsession { session_from }) => assert_eq!(session_from, "order-7"),
                (1, Message::SubscribePopup(items)) => {
                    assert_eq!(items.len(), 2);
                    assert!(items[0].status.accepted() && !items[1].status.accepted());
                    assert_eq!(items[1].template_id, "T2");
                }
                // A one-item List: an object in JSON, a wrapped element in XML — the same either way.
                (2, Message::SubscribeChange(items)) => assert_eq!(items[0].template_id, "T1"),
                (3, Message::SubscribeSent(items)) => {
                    assert_eq!((items[0].msg_id.as_str(), items[0].error_code), ("1700827132819554304", 0))
                }
                (4, Message::TradeOrderSettlement(s)) => {
                    assert_eq!(s.order.merchant_trade_no.as_deref(), Some("o-9"));
                    assert_eq!(s.estimated_settlement_time, Some(1714900000));
                    assert_eq!(s.settlement_time, None);
                }
                (5, Message::Image { media_id, .. }) => assert_eq!(media_id, "m1"),
                (n, other) => panic!("event {n} ({format:?}) came out as {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn retries_are_processed_once_and_failures_are_retried() {
    let emu = Emulator::start_default().await.unwrap();
    let rx = receiver(verifier_for(Mode::Secure), Reply::Success, 1).await;
    emu.configure_push(push_config(&rx.url, Mode::Secure, Format::Json)).unwrap();
    // The handler fails once: 500, WeChat retries, the retry is processed.
    let d = emu
        .send_push(
            DEFAULT_APPID,
            json!({"FromUserName": emu.openid_of(DEFAULT_APPID, "bob"), "MsgType": "text", "Content": "x"}),
        )
        .await
        .unwrap();
    assert_eq!((d.attempts, d.status, d.reply.as_str()), (2, Some(200), "success"));
    assert_eq!(rx.seen.lock().unwrap().len(), 1);
    // The same push delivered three times (lost answers): handled once, acknowledged thrice.
    let body =
        json!({"appid": DEFAULT_APPID, "user": "bob", "repeat": 3, "message": {"MsgType": "text", "Content": "again"}});
    let http = wxshop::http::Http::new(wxshop::Endpoints::default(), Default::default()).unwrap();
    let req = wxshop::http::Request::new(
        reqwest::Method::POST,
        wxshop::http::Host::Absolute,
        format!("{}/__emulator/push/send", emu.base_url()),
    )
    .body(wxshop::http::Body::json(&body).unwrap());
    let resp = http.execute(&req, None).await.unwrap();
    let ds: Vec<Delivery> = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(ds.len(), 3);
    assert!(ds.iter().all(|d| d.ok() && d.reply == "success"));
    assert_eq!(rx.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn encrypted_replies_decrypt_on_wechats_side() {
    let emu = Emulator::start_default().await.unwrap();
    for (mode, format) in [(Mode::Secure, Format::Xml), (Mode::Secure, Format::Json), (Mode::Plaintext, Format::Xml)] {
        let rx = receiver(verifier_for(mode), Reply::TransferCustomerService { kf_account: None }, 0).await;
        emu.configure_push(push_config(&rx.url, mode, format)).unwrap();
        let alice = emu.openid_of(DEFAULT_APPID, "alice");
        let d = emu
            .send_push(DEFAULT_APPID, json!({"FromUserName": alice, "MsgType": "text", "Content": "agent please"}))
            .await
            .unwrap();
        assert!(d.ok(), "{d:?}");
        assert_eq!(d.reply.contains("Encrypt"), mode.encrypted());
        let (_, reply) = wxshop::push::body::parse(d.reply_plaintext.as_deref().unwrap().as_bytes()).unwrap();
        assert_eq!(reply["MsgType"], "transfer_customer_service");
        assert_eq!(reply["ToUserName"], alice.as_str());
        assert_eq!(reply["FromUserName"], gh_id(DEFAULT_APPID).as_str());
    }
}

#[tokio::test]
async fn a_wrong_token_or_key_on_the_merchant_side_is_401() {
    let emu = Emulator::start_default().await.unwrap();
    let rx =
        receiver(Verifier::with_aes_key("another-token", AES_KEY, DEFAULT_APPID).unwrap(), Reply::Success, 0).await;
    emu.configure_push(push_config(&rx.url, Mode::Secure, Format::Xml)).unwrap();
    let d = emu
        .send_push(DEFAULT_APPID, json!({"FromUserName": "o", "MsgType": "text", "Content": "x", "MsgId": 1}))
        .await
        .unwrap();
    assert_eq!((d.status, d.attempts), (Some(401), 1));
    let rx = receiver(Verifier::with_aes_key(TOKEN, AES_KEY, "wx_not_this_app").unwrap(), Reply::Success, 0).await;
    emu.configure_push(push_config(&rx.url, Mode::Secure, Format::Json)).unwrap();
    let d = emu
        .send_push(DEFAULT_APPID, json!({"FromUserName": "o", "MsgType": "text", "Content": "x", "MsgId": 2}))
        .await
        .unwrap();
    assert_eq!(d.status, Some(401));
    assert!(rx.seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Outbound messages against the emulator

async fn emulator() -> (EmulatorHandle, wxshop::Client, String) {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let alice = emu.openid_of(DEFAULT_APPID, "alice");
    (emu, client, alice)
}

fn shipped(openid: &str) -> SubscribeMessage {
    SubscribeMessage::new(
        openid,
        "TPL_SHIPPED",
        SubscribeData::new().set("thing1", "Tea").set("amount2", "¥12.50").set("date3", "2024年5月1日"),
    )
}

#[tokio::test]
async fn subscribe_send_needs_a_template_keys_and_one_consent_per_message() {
    let (emu, client, alice) = emulator().await;
    let m = client.messages();
    let code = |r: wxshop::Result<()>| r.unwrap_err().errcode();
    assert_eq!(code(m.send_subscribe(&shipped(&alice)).await), Some(ErrCode::InvalidTemplateId));
    emu.register_template(DEFAULT_APPID, "TPL_SHIPPED", &["thing1", "amount2", "date3", "phrase4"]);
    // phrase4 is missing: WeChat names the key.
    let err = m.send_subscribe(&shipped(&alice)).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::ArgumentInvalid));
    assert!(err.to_string().contains("data.phrase4.value is empty"), "{err}");
    let full = |o: &str| {
        let mut msg = shipped(o);
        msg.data = msg.data.set("phrase4", "已发货");
        msg
    };
    assert_eq!(code(m.send_subscribe(&full(&alice)).await), Some(ErrCode::UserRefused));
    emu.grant_consent(DEFAULT_APPID, &alice, "TPL_SHIPPED");
    m.send_subscribe(&full(&alice)).await.unwrap();
    // One consent, one message.
    assert_eq!(code(m.send_subscribe(&full(&alice)).await), Some(ErrCode::UserRefused));
    let sent = emu.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].kind, "subscribe");
    assert_eq!(sent[0].body["data"]["phrase4"]["value"], "已发货");
    assert_eq!(code(m.send_subscribe(&full("not-an-openid")).await), Some(ErrCode::InvalidOpenid));
}

#[tokio::test]
async fn invalid_values_are_caught_before_sending_and_consent_is_kept() {
    let (emu, client, alice) = emulator().await;
    emu.register_template(DEFAULT_APPID, "TPL_SHIPPED", &["thing1", "amount2", "date3"]);
    emu.grant_consent(DEFAULT_APPID, &alice, "TPL_SHIPPED");
    let mut msg = shipped(&alice);
    msg.data = msg.data.set("thing1", "a".repeat(21));
    match client.messages().send_subscribe(&msg).await {
        Err(Error::InvalidRequest(m)) => assert_eq!(m, "data.thing1.value more than 20 characters (21)"),
        other => panic!("{other:?}"),
    }
    assert_eq!(emu.calls("/cgi-bin/message/subscribe/send"), 0);
    client.messages().send_subscribe(&shipped(&alice)).await.unwrap();
}

#[tokio::test]
async fn customer_service_window_count_typing_and_media() {
    let (emu, client, alice) = emulator().await;
    let m = client.messages();
    let text = CustomerServiceMessage::text("hi");
    assert_eq!(m.send_custom(&alice, &text).await.unwrap_err().errcode(), Some(ErrCode::ReplyTimeLimit));
    assert_eq!(
        m.typing(&alice, TypingCommand::Typing).await.unwrap_err().errcode(),
        Some(ErrCode::TypingWithoutRecentMessage)
    );

    // Alice writes (through the push sender): the window opens.
    let rx = receiver(verifier_for(Mode::Secure), Reply::Success, 0).await;
    emu.configure_push(push_config(&rx.url, Mode::Secure, Format::Json)).unwrap();
    emu.send_push(DEFAULT_APPID, json!({"FromUserName": alice, "MsgType": "text", "Content": "help"})).await.unwrap();
    m.typing(&alice, TypingCommand::Typing).await.unwrap();
    assert_eq!(m.typing(&alice, TypingCommand::Typing).await.unwrap_err().errcode(), Some(ErrCode::AlreadyTyping));
    m.typing(&alice, TypingCommand::CancelTyping).await.unwrap();

    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let media = m.upload_temp_media("logo.png", "image/png", png).await.unwrap();
    assert_eq!(media.media_type, "image");
    assert!(media.media_id.starts_with("EMU_MEDIA_"));
    let bad = m.upload_temp_media("x.txt", "text/plain", b"not an image".to_vec()).await.unwrap_err();
    assert_eq!(bad.errcode(), Some(ErrCode::InvalidFileType));

    m.send_custom(&alice, &CustomerServiceMessage::image(&media.media_id)).await.unwrap();
    assert_eq!(
        m.send_custom(&alice, &CustomerServiceMessage::image("EMU_MEDIA_unknown")).await.unwrap_err().errcode(),
        Some(ErrCode::InvalidMediaId)
    );
    m.send_custom(&alice, &CustomerServiceMessage::mini_program_page("Order", "pages/o?id=1", &media.media_id))
        .await
        .unwrap();
    m.send_custom(
        &alice,
        &CustomerServiceMessage::link("Track", "Your parcel", "https://example.com/t", "https://example.com/t.png"),
    )
    .await
    .unwrap();
    m.send_custom(&alice, &text).await.unwrap();
    m.send_custom(&alice, &text).await.unwrap();
    // Five answers per user message.
    assert_eq!(m.send_custom(&alice, &text).await.unwrap_err().errcode(), Some(ErrCode::OutOfResponseLimit));
    let kinds: Vec<String> = emu.sent_messages().into_iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["typing", "typing", "custom", "custom", "custom", "custom", "custom"]);

    // A new message restarts the count; 48 hours later the window is closed.
    emu.send_push(DEFAULT_APPID, json!({"FromUserName": alice, "MsgType": "text", "Content": "again"})).await.unwrap();
    m.send_custom(&alice, &text).await.unwrap();
    emu.state().advance(Duration::from_secs(48 * 3600 + 1));
    assert_eq!(m.send_custom(&alice, &text).await.unwrap_err().errcode(), Some(ErrCode::ReplyTimeLimit));
}

#[tokio::test]
async fn msg_sec_check_verdicts_follow_the_risky_word_list() {
    let (emu, client, alice) = emulator().await;
    emu.set_risky_words(&["赌博"]);
    let s = client.security();
    let pass = s.msg_sec_check(&alice, Scene::Comment, "a nice tea").await.unwrap();
    assert_eq!((pass.result.suggest.as_str(), pass.result.label), ("pass", 100));
    assert!(!pass.trace_id.is_empty());
    let risky = s.msg_sec_check(&alice, Scene::Comment, "来赌博吧").await.unwrap();
    assert!(risky.result.is_risky());
    assert_eq!(risky.result.label, 20006);
    assert_eq!(risky.detail.iter().find_map(|d| d.keyword.clone()).as_deref(), Some("赌博"));
    assert_eq!(
        s.msg_sec_check("", Scene::Comment, "x").await.unwrap_err().to_string(),
        "invalid request: openid is required by msg_sec_check v2"
    );
    // Version 1 semantics: risky text is errcode 87014.
    let v1 = wxshop::http::Request::mp_post("/wxa/msg_sec_check", &json!({"content": "来赌博吧"})).unwrap();
    let err = client.call::<Value>(&v1).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::RiskyContent));
}

#[tokio::test]
async fn media_check_verdict_arrives_by_push_and_joins_by_trace_id() {
    let (emu, client, alice) = emulator().await;
    emu.set_risky_words(&["nsfw"]);
    let checks = Arc::new(MediaChecks::new());
    let c = checks.clone();
    let verifier = verifier_for(Mode::Secure);
    let endpoint = PushEndpoint::new(
        verifier,
        handler_fn(move |p: Incoming| {
            let c = c.clone();
            async move {
                if let Message::MediaCheck(r) = p.message {
                    c.complete(r);
                }
                Ok(Reply::Success)
            }
        }),
    );
    let app = axum::Router::new().route("/wx/push", endpoint.method_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/wx/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    emu.configure_push(push_config(&url, Mode::Secure, Format::Xml)).unwrap();

    let s = client.security();
    let clean =
        s.media_check_async(&alice, Scene::Profile, "https://cdn.example/tea.png", MediaType::Image).await.unwrap();
    let risky =
        s.media_check_async(&alice, Scene::Profile, "https://cdn.example/nsfw.png", MediaType::Image).await.unwrap();
    let r1 = checks.wait(&clean, Duration::from_secs(5)).await.unwrap();
    let r2 = checks.wait(&risky, Duration::from_secs(5)).await.unwrap();
    assert_eq!((r1.trace_id.as_str(), r1.is_risky()), (clean.as_str(), false));
    assert_eq!((r2.trace_id.as_str(), r2.is_risky()), (risky.as_str(), true));
    assert_eq!(r2.result.unwrap().label, 20002);
    assert_eq!(r1.appid, DEFAULT_APPID);
    let bad = s.media_check_async(&alice, Scene::Profile, "ftp://x", MediaType::Image).await.unwrap_err();
    assert!(matches!(bad, Error::InvalidRequest(_)));
}

// ---------------------------------------------------------------------------------------------
// No input panics

fn any_query() -> impl Strategy<Value = PushQuery> {
    let opt = || proptest::option::of("[0-9a-f]{0,40}");
    (opt(), opt(), opt(), proptest::option::of(prop_oneof![Just("aes".to_string()), "[a-z]{0,4}"]), opt()).prop_map(
        |(signature, timestamp, nonce, encrypt_type, msg_signature)| PushQuery {
            signature,
            timestamp,
            nonce,
            encrypt_type,
            msg_signature,
            ..Default::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn open_never_panics_on_any_bytes(q in any_query(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let v = Verifier::with_aes_key(TOKEN, AES_KEY, DEFAULT_APPID).unwrap().accept_plaintext(true);
        let _ = v.open_at(&q, &body, 0);
        let _ = wxshop::push::body::parse(&body);
    }

    #[test]
    fn decrypt_and_parse_never_panic_on_any_ciphertext(ct in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Signed with the right token, so every byte reaches the decryption and parsing checks.
        let v = Verifier::with_aes_key(TOKEN, AES_KEY, DEFAULT_APPID).unwrap();
        let encrypt = STANDARD.encode(&ct);
        let q = PushQuery {
            timestamp: Some("1".into()),
            nonce: Some("n".into()),
            encrypt_type: Some("aes".into()),
            msg_signature: Some(v.crypt().unwrap().signature("1", "n", &encrypt)),
            ..Default::default()
        };
        let body = json!({"ToUserName": "gh", "Encrypt": encrypt}).to_string();
        let r = v.open_at(&q, body.as_bytes(), 0);
        prop_assert!(r.is_err() || ct.len() % 32 == 0);
    }

    #[test]
    fn frames_with_arbitrary_plaintext_never_panic(plain in proptest::collection::vec(any::<u8>(), 0..300), appid_ok in any::<bool>()) {
        // Valid crypto around arbitrary message bytes: parsing must cope with anything.
        let v = Verifier::with_aes_key(TOKEN, AES_KEY, DEFAULT_APPID).unwrap();
        let crypt = MsgCrypt::new(TOKEN, AES_KEY, if appid_ok { DEFAULT_APPID } else { "wx_other" }).unwrap();
        let encrypt = crypt.encrypt(&plain);
        let q = PushQuery {
            timestamp: Some("1".into()),
            nonce: Some("n".into()),
            encrypt_type: Some("aes".into()),
            msg_signature: Some(crypt.signature("1", "n", &encrypt)),
            ..Default::default()
        };
        let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        match v.open_at(&q, body.as_bytes(), 0) {
            Ok(p) => prop_assert_eq!(p.plaintext, plain),
            Err(Error::Crypto { kind: CryptoKind::AppidMismatch, .. }) => prop_assert!(!appid_ok),
            Err(Error::Decode { .. }) => prop_assert!(appid_ok),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[tokio::test]
async fn shipping_events_reach_the_merchants_push_endpoint() {
    use wxshop::emulator::mp::shipping::PaidTransaction;
    use wxshop::mp::shipping::{OrderKey, UploadShippingInfo};
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let rx = receiver(verifier_for(Mode::Secure), Reply::Success, 0).await;
    emu.configure_push(push_config(&rx.url, Mode::Secure, Format::Json)).unwrap();
    let buyer = emu.openid_of(DEFAULT_APPID, "alice");
    let tx = emu
        .register_transaction(
            PaidTransaction::new("1900000109", "o-77", &buyer, 1999).transaction_id("4200000000000000000000000077"),
        )
        .unwrap();
    client
        .shipping()
        .upload_shipping_info(&UploadShippingInfo::virtual_goods(
            OrderKey::out_trade_no("1900000109", "o-77"),
            &buyer,
            "Top-up",
        ))
        .await
        .unwrap();
    emu.confirm_receipt(&tx).unwrap();
    emu.state().advance(Duration::from_secs(86_400));
    assert_eq!(emu.tick_shipping().len(), 1);
    // Delivery is asynchronous, like WeChat's.
    for _ in 0..200 {
        if rx.seen.lock().unwrap().iter().filter(|p| matches!(p.message, Message::TradeOrderSettlement(_))).count() >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = rx.seen.lock().unwrap();
    let settlements: Vec<_> = seen
        .iter()
        .filter_map(|p| match &p.message {
            Message::TradeOrderSettlement(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    // One when shipping completed (with the estimate), one when the funds settled.
    assert_eq!(settlements.len(), 2, "{seen:?}");
    assert_eq!(settlements[0].order.transaction_id.as_deref(), Some(tx.as_str()));
    assert!(settlements[0].estimated_settlement_time.is_some());
    assert_eq!(settlements[0].settlement_time, None);
    assert!(settlements[1].settlement_time.is_some());
}
