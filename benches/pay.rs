//! WeChat Pay hot paths, each beside the raw operation of the same crypto library in the same run:
//! - request signing (the `Authorization` header as the client builds it on every attempt) vs a
//!   bare aws-lc-rs RSA-2048 PKCS#1 v1.5 SHA-256 signature of the same message;
//! - notification handling (every check on: signature type, SIGNTEST, 300 s window, key by serial,
//!   RSA signature over the raw body, AES-256-GCM tag, typed parse) vs a bare aws-lc-rs verify of
//!   the pre-built message plus a bare aes-gcm decryption of the pre-decoded ciphertext.

use std::hint::black_box;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reqwest::Method;
use wxshop::crypto::pay::{self as paycrypto, ApiV3Key};
use wxshop::emulator::pay::{
    DEFAULT_APIV3_KEY, DEFAULT_MERCHANT_KEY_PEM, default_pay_config, platform_public_key_signer,
};
use wxshop::http::RequestSigner;
use wxshop::pay::PayClient;
use wxshop::pay::client::MerchantSigner;
use wxshop::pay::notify::sign_notification;

const PATH: &str = "/v3/pay/transactions/jsapi";
const BODY: &str = r#"{"appid":"wx_emulator_app","mchid":"1230000109","description":"Oolong tea 250 g","out_trade_no":"SF202406110001","time_expire":"2024-06-11T10:30:00+08:00","notify_url":"https://shop.example/wx/pay/notify","amount":{"total":6800,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}"#;

fn signing(c: &mut Criterion) {
    let pem = DEFAULT_MERCHANT_KEY_PEM;
    let der = pem::parse(pem).unwrap().into_contents();
    let raw = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let message =
        paycrypto::request_message("POST", PATH, "1718071800", "593BEC0C930BF1AFEB40B4A08C8FB242", BODY.as_bytes());
    let signer = MerchantSigner::new(&default_pay_config().unwrap());
    let mut g = c.benchmark_group("pay_request_signing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_aws_lc_rsa2048_pkcs1_sha256_sign", |b| {
        let mut sig = vec![0u8; raw.public_modulus_len()];
        b.iter(|| {
            raw.sign(&RSA_PKCS1_SHA256, &rng, black_box(&message), &mut sig).unwrap();
            black_box(&sig);
        })
    });
    g.bench_function("wxshop_authorization_header", |b| {
        b.iter(|| black_box(signer.sign(&Method::POST, black_box(PATH), black_box(BODY.as_bytes())).unwrap()))
    });
    g.finish();
}

fn notifications(c: &mut Criterion) {
    let (serial, wechat) = platform_public_key_signer();
    let apiv3 = ApiV3Key::new(DEFAULT_APIV3_KEY).unwrap();
    let resource = serde_json::json!({
        "appid": "wx_emulator_app", "mchid": "1230000109", "out_trade_no": "SF202406110001",
        "transaction_id": "4200002024061100000000001", "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "", "success_time": "2024-06-11T10:00:00+08:00",
        "payer": { "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
        "amount": { "total": 6800, "payer_total": 6800, "currency": "CNY", "payer_currency": "CNY" }
    });
    let plaintext = serde_json::to_vec(&resource).unwrap();
    let now = chrono::Utc::now().timestamp();
    let n = sign_notification(&wechat, serial, &apiv3, "TRANSACTION.SUCCESS", &plaintext, now).unwrap();
    let pay = PayClient::builder(default_pay_config().unwrap()).build().unwrap();
    futures_util::FutureExt::now_or_never(pay.verify_and_decrypt(&n.headers, &n.body)).unwrap().unwrap();

    // The raw baseline's inputs, decoded once outside the loop.
    let h = |k: &str| n.headers[k].to_str().unwrap().to_string();
    let message = paycrypto::response_message(&h("wechatpay-timestamp"), &h("wechatpay-nonce"), &n.body);
    let sig = STANDARD.decode(h("wechatpay-signature")).unwrap();
    let verifier = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, wechat.public_key().spki_der()).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&n.body).unwrap();
    let ct = STANDARD.decode(body["resource"]["ciphertext"].as_str().unwrap()).unwrap();
    let nonce = body["resource"]["nonce"].as_str().unwrap().as_bytes().to_vec();
    let aad = body["resource"]["associated_data"].as_str().unwrap().as_bytes().to_vec();
    let cipher = Aes256Gcm::new_from_slice(DEFAULT_APIV3_KEY.as_bytes()).unwrap();

    let mut g = c.benchmark_group("pay_notification");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_aws_lc_verify_plus_aes256gcm_decrypt", |b| {
        b.iter(|| {
            verifier.verify_sig(black_box(&message), black_box(&sig)).unwrap();
            let nonce = Nonce::try_from(nonce.as_slice()).unwrap();
            black_box(cipher.decrypt(&nonce, Payload { msg: black_box(&ct), aad: &aad }).unwrap())
        })
    });
    // In public-key mode the future completes on its first poll (no certificate refresh can be
    // due), so it is polled directly: a runtime's block_on cost is not the library's.
    g.bench_function("wxshop_verify_decrypt_typed", |b| {
        b.iter(|| {
            let fut = pay.verify_and_decrypt(black_box(&n.headers), black_box(&n.body));
            black_box(futures_util::FutureExt::now_or_never(fut).expect("ready at once").unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, signing, notifications);
criterion_main!(benches);
