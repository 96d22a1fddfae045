//! wxshop beside its peer SDKs, on the same inputs, in alternating rounds in one process pinned to
//! one core. `wxshop-peers` prints the table; `wxshop-peers push-ns` prints only wxshop's
//! time per 1 KB secure-mode push (for `run_wechatpy.sh`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wxshop::crypto::pay::ApiV3Key;
use wxshop::emulator::pay::{DEFAULT_APIV3_KEY, default_pay_config, platform_public_key_signer};
use wxshop::pay::PayClient;
use wxshop::pay::notify::sign_notification;
use wxshop::push::{Format, Mode, Verifier};

const ROUND: Duration = Duration::from_millis(100);
const ROUNDS: usize = 7;

fn pin_to_one_core() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("could not pin to core 0; timing unpinned");
        }
    }
}

fn rate(f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < ROUND {
        for _ in 0..32 {
            f();
        }
        n += 32;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates the subjects round by round (each first in turn); the median round of each.
fn race(subjects: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut rates = vec![Vec::new(); subjects.len()];
    for r in 0..ROUNDS {
        for i in 0..subjects.len() {
            let j = (i + r) % subjects.len();
            rates[j].push(rate(subjects[j]));
        }
    }
    rates.into_iter().map(median).collect()
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../tests/vectors/official.json")).expect("vectors")
}

fn output_of<F: std::future::Future<Output = Result<T, E>>, T, E>(_: F) -> Option<T> {
    None
}

/// encryptedData (wx.getUserInfo, the official vector).
fn wxa(rows: &mut Vec<(String, f64, String)>) {
    let v = vectors();
    let v = &v["wxa_encrypted_data"];
    let s = |k: &str| v[k].as_str().expect(k).to_string();
    let (appid, key, iv, data) = (s("appid"), s("session_key"), s("iv"), s("encrypted_data"));
    // wechat-minapp's Credential is only named through `User::login`'s output; build it from JSON.
    #[allow(unused_mut)]
    let mut cred = None;
    #[allow(unreachable_code, unused_assignments)]
    if false {
        let _user: &wechat_minapp::user::User = unreachable!();
        cred = output_of(_user.login(""));
    }
    let cred =
        cred.unwrap_or_else(|| serde_json::from_value(json!({"openid": "o", "session_key": key})).expect("credential"));
    let rates = race(&mut [
        &mut || {
            black_box(wxshop::crypto::wxa::decrypt_user_info(&appid, &key, &iv, black_box(&data)).expect("wxshop"));
        },
        &mut || {
            black_box(cred.decrypt(black_box(&data), &iv).expect("wechat-minapp"));
        },
    ]);
    rows.push(("encryptedData: wxshop (watermark.appid checked)".into(), rates[0], String::new()));
    rows.push((
        "encryptedData: wechat-minapp =3.4.3 Credential::decrypt (no watermark check)".into(),
        rates[1],
        format!("wxshop {:.2}×", rates[0] / rates[1]),
    ));
}

/// A payment notification: verify + decrypt + typed resource.
fn pay(rows: &mut Vec<(String, f64, String)>) {
    let (serial, wechat) = platform_public_key_signer();
    let apiv3 = ApiV3Key::new(DEFAULT_APIV3_KEY).expect("apiv3");
    let resource = json!({
        "appid": "wx_emulator_app", "mchid": "1230000109", "out_trade_no": "SF202406110001",
        "transaction_id": "4200002024061100000000001", "trade_type": "JSAPI", "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "", "success_time": "2024-06-11T10:00:00+08:00",
        "payer": { "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
        "amount": { "total": 6800, "payer_total": 6800, "currency": "CNY", "payer_currency": "CNY" }
    });
    let plaintext = serde_json::to_vec(&resource).expect("json");
    let n =
        sign_notification(&wechat, serial, &apiv3, "TRANSACTION.SUCCESS", &plaintext, chrono::Utc::now().timestamp())
            .expect("notification");
    let client = PayClient::builder(default_pay_config().expect("config")).build().expect("client");
    let h = |k: &str| n.headers[k].to_str().expect("header").to_string();
    let (ts, nonce, sig, ser) =
        (h("wechatpay-timestamp"), h("wechatpay-nonce"), h("wechatpay-signature"), h("wechatpay-serial"));
    let spki = pem::encode(&pem::Pem::new("PUBLIC KEY", wechat.public_key().spki_der().to_vec()));
    let verifier =
        wxpay_rs::auth::Sha256RsaVerifier::new_with_public_keys(vec![], vec![(serial.to_string(), spki.into_bytes())])
            .expect("wxpay-rs verifier");
    let config = wxpay_rs::NotifyConfig {
        api_v3_key: DEFAULT_APIV3_KEY.into(),
        cert_serial_number: serial.into(),
        platform_certificate: vec![],
    };
    let handler = wxpay_rs::notify::NotifyHandler::new(config, Arc::new(verifier)).expect("wxpay-rs handler");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let rates = race(&mut [
        &mut || {
            black_box(
                rt.block_on(client.verify_and_decrypt(black_box(&n.headers), black_box(&n.body))).expect("wxshop"),
            );
        },
        &mut || {
            let headers =
                wxpay_rs::notify::NotifyHeaders { timestamp: &ts, nonce: &nonce, serial: &ser, signature: &sig };
            let verified = rt.block_on(handler.verify_and_parse(headers, black_box(&n.body))).expect("wxpay-rs verify");
            black_box(rt.block_on(handler.handle_verified_payment_notify(&verified)).expect("wxpay-rs decrypt"));
        },
    ]);
    rows.push(("pay notification: wxshop verify_and_decrypt (every check on)".into(), rates[0], String::new()));
    rows.push((
        "pay notification: wxpay-rs =2.1.0 verify_and_parse + handle_verified_payment_notify".into(),
        rates[1],
        format!("wxshop {:.2}×", rates[0] / rates[1]),
    ));
}

/// The 1 KB secure-mode XML push of the report, and its opener.
fn push_fixture() -> (Verifier, wxshop::push::SignedPush) {
    let v = Verifier::with_aes_key("bench-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx2c2769f8efd9abc2")
        .expect("verifier");
    let content = "您好，请问我的订单什么时候发货？Order WX20240501-0042, two boxes of jasmine tea. ".repeat(8);
    let fields = json!({
        "ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        "CreateTime": 1409735668, "MsgType": "text", "Content": content, "MsgId": 6054768590064713728u64
    });
    let p = v
        .sign_push(Mode::Secure, Format::Xml, fields.as_object().expect("object"), "1409735669", "1320562132")
        .expect("sign");
    (v, p)
}

fn main() {
    pin_to_one_core();
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "push-ns" {
        let (v, p) = push_fixture();
        let r = median(
            (0..ROUNDS)
                .map(|_| {
                    rate(&mut || {
                        black_box(v.open_at(black_box(&p.query), black_box(p.body.as_bytes()), 0).expect("open"));
                    })
                })
                .collect(),
        );
        println!("{:.1}", 1e9 / r);
        return;
    }
    if mode == "push-fixture" {
        // The query and body, for the Python peer to time on the same bytes.
        let (_, p) = push_fixture();
        println!("{}", json!({"query": p.query.to_query_string(), "body": p.body}));
        return;
    }
    let mut rows = Vec::new();
    wxa(&mut rows);
    pay(&mut rows);
    println!("| subject | ops/s | ratio |\n|---|---:|---|");
    for (name, r, ratio) in rows {
        println!("| {name} | {r:.0} | {ratio} |");
    }
}
