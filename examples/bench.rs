//! The benchmark report: every hot path beside its raw baseline, measured in the same run.
//!
//! `cargo run --release --example bench -- --json` prints one JSON object: per figure its value,
//! its baseline, their ratio and the unit. Without `--json` it prints a table. Subject and baseline
//! are measured alternately, in rounds, and each keeps its median round, so a noisy neighbour
//! slows both rather than one. `--quick` shortens the rounds (for CI smoke runs).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::{Aes128, Aes256};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use reqwest::Method;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use wxshop::crypto::msgcrypt::decode_aes_key;
use wxshop::crypto::pay::{self as paycrypto, ApiV3Key};
use wxshop::emulator::pay::{
    DEFAULT_APIV3_KEY, DEFAULT_MERCHANT_KEY_PEM, default_pay_config, platform_public_key_signer,
};
use wxshop::http::RequestSigner;
use wxshop::pay::PayClient;
use wxshop::pay::client::MerchantSigner;
use wxshop::pay::notify::sign_notification;
use wxshop::push::{Format, Mode, Reply, Verifier};

/// One figure of the report.
struct Figure {
    name: &'static str,
    unit: &'static str,
    value: f64,
    baseline_name: &'static str,
    baseline: f64,
    /// For rates: value / baseline (1.0 = as fast as the raw operation). For latencies: baseline / value.
    ratio: f64,
    note: String,
    /// Latency figures: the p99 of value and of baseline, in `unit`.
    p99: Option<(f64, f64)>,
}

struct Bench {
    round: Duration,
    rounds: usize,
    /// `--subject-only`: skip the baselines (a perf profile of wxshop's side alone; ratios are then meaningless).
    subject_only: bool,
}

impl Bench {
    /// Operations per second of `f`, over one round.
    fn rate(&self, f: &mut dyn FnMut()) -> f64 {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < self.round {
            for _ in 0..16 {
                f();
            }
            n += 16;
        }
        n as f64 / started.elapsed().as_secs_f64()
    }

    /// Median rates of subject and baseline, measured alternately.
    fn pair(&self, subject: &mut dyn FnMut(), baseline: &mut dyn FnMut()) -> (f64, f64) {
        let (mut s, mut b) = (Vec::new(), Vec::new());
        for _ in 0..self.rounds {
            b.push(if self.subject_only { f64::NAN } else { self.rate(baseline) });
            s.push(self.rate(subject));
        }
        (median(&mut s), median(&mut b))
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn rate_figure(name: &'static str, baseline_name: &'static str, (value, baseline): (f64, f64), note: &str) -> Figure {
    Figure {
        name,
        unit: "ops/s",
        value,
        baseline_name,
        baseline,
        ratio: value / baseline,
        note: note.into(),
        p99: None,
    }
}

fn sha1_sorted_raw(parts: &mut [&str]) -> [u8; 20] {
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts.iter() {
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

fn push_figures(b: &Bench, run: &dyn Fn(&str) -> bool, out: &mut Vec<Figure>) {
    const TOKEN: &str = "bench-token";
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx2c2769f8efd9abc2";
    let v = Verifier::with_aes_key(TOKEN, AES_KEY, APPID).expect("verifier");
    let content = "您好，请问我的订单什么时候发货？Order WX20240501-0042, two boxes of jasmine tea. ".repeat(8);
    let fields = json!({
        "ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        "CreateTime": 1409735668, "MsgType": "text", "Content": content, "MsgId": 6054768590064713728u64
    });
    let p = v
        .sign_push(Mode::Secure, Format::Xml, fields.as_object().expect("object"), "1409735669", "1320562132")
        .expect("sign");
    let parsed = wxshop::push::body::parse_xml(p.body.as_bytes()).expect("xml");
    let encrypt = parsed["Encrypt"].as_str().expect("Encrypt").to_string();
    let ct = STANDARD.decode(&encrypt).expect("base64");
    let key = decode_aes_key(AES_KEY).expect("key");
    let iv: [u8; 16] = key[..16].try_into().expect("iv");
    if run("push_open") {
        let pair = b.pair(
            &mut || {
                black_box(v.open_at(black_box(&p.query), black_box(p.body.as_bytes()), 0).expect("open"));
            },
            &mut || {
                let sig = sha1_sorted_raw(&mut [TOKEN, "1409735669", "1320562132", black_box(&encrypt)]);
                let mut buf = black_box(&ct).clone();
                cbc::Decryptor::<Aes256>::new((&*key).into(), (&iv).into())
                    .decrypt_padded::<NoPadding>(&mut buf)
                    .expect("cbc");
                black_box((sig, buf));
            },
        );
        out.push(rate_figure(
            "push_decrypt_parse_1kb",
            "raw_sha1_aes256cbc",
            pair,
            "verify + base64 + decrypt + checks + XML parse + typing",
        ));
    }
    if !run("push_reply") {
        return;
    }

    let push = v.open_at(&p.query, p.body.as_bytes(), 0).expect("open");
    let sample =
        v.reply_with(&push, &Reply::TransferCustomerService { kf_account: None }, "1409735670", "n1").expect("reply");
    let plain_len = v.open_reply(sample.body.as_bytes()).expect("reply opens").len();
    let frame = vec![7u8; (16 + 4 + plain_len + APPID.len()).div_ceil(32) * 32];
    let pair = b.pair(
        &mut || {
            black_box(
                v.reply_with(
                    black_box(&push),
                    &Reply::TransferCustomerService { kf_account: None },
                    "1409735670",
                    "n1",
                )
                .expect("reply"),
            );
        },
        &mut || {
            let mut buf = black_box(&frame).clone();
            let n = buf.len();
            let ct = cbc::Encryptor::<Aes256>::new((&*key).into(), (&iv).into())
                .encrypt_padded::<NoPadding>(&mut buf, n)
                .expect("cbc")
                .to_vec();
            let enc = STANDARD.encode(&ct);
            black_box(sha1_sorted_raw(&mut [TOKEN, "1409735670", "n1", &enc]));
        },
    );
    out.push(rate_figure(
        "push_reply_encrypt",
        "raw_aes256cbc_base64_sha1",
        pair,
        "render + encrypt + sign + envelope",
    ));
}

fn wxa_figure(b: &Bench, out: &mut Vec<Figure>) {
    let vectors: Value = serde_json::from_str(include_str!("../tests/vectors/official.json")).expect("vectors");
    let v = &vectors["wxa_encrypted_data"];
    let (appid, key, iv, data) = (
        v["appid"].as_str().expect("appid"),
        v["session_key"].as_str().expect("key"),
        v["iv"].as_str().expect("iv"),
        v["encrypted_data"].as_str().expect("data"),
    );
    let pair = b.pair(
        &mut || {
            black_box(wxshop::crypto::wxa::decrypt_user_info(appid, key, iv, black_box(data)).expect("decrypt"));
        },
        &mut || {
            let k: [u8; 16] = STANDARD.decode(key).expect("k").try_into().expect("16");
            let i: [u8; 16] = STANDARD.decode(iv).expect("i").try_into().expect("16");
            let ct = STANDARD.decode(black_box(data)).expect("ct");
            black_box(
                cbc::Decryptor::<Aes128>::new(&k.into(), &i.into()).decrypt_padded_vec::<Pkcs7>(&ct).expect("cbc"),
            );
        },
    );
    out.push(rate_figure(
        "wxa_encrypted_data_decrypt",
        "raw_base64_aes128cbc",
        pair,
        "decrypt + watermark.appid check + typed decode (wxshop ÷ wechat-minapp 3.4.3, which skips the check: benches/peers)",
    ));
}

fn pay_figures(b: &Bench, run: &dyn Fn(&str) -> bool, out: &mut Vec<Figure>) {
    const PATH: &str = "/v3/pay/transactions/jsapi";
    const BODY: &str = r#"{"appid":"wx_emulator_app","mchid":"1230000109","description":"Oolong tea 250 g","out_trade_no":"SF202406110001","notify_url":"https://shop.example/wx/pay/notify","amount":{"total":6800,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}"#;
    let der = pem::parse(DEFAULT_MERCHANT_KEY_PEM).expect("pem").into_contents();
    let raw = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).expect("key");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let message =
        paycrypto::request_message("POST", PATH, "1718071800", "593BEC0C930BF1AFEB40B4A08C8FB242", BODY.as_bytes());
    let signer = MerchantSigner::new(&default_pay_config().expect("config"));
    let mut sig = vec![0u8; raw.public_modulus_len()];
    if run("pay_sign") {
        let pair = b.pair(
            &mut || {
                black_box(signer.sign(&Method::POST, black_box(PATH), black_box(BODY.as_bytes())).expect("sign"));
            },
            &mut || {
                raw.sign(&RSA_PKCS1_SHA256, &rng, black_box(&message), &mut sig).expect("sign");
                black_box(&sig);
            },
        );
        out.push(rate_figure("pay_request_signing", "raw_aws_lc_rsa2048_sign", pair, "goal ≥ 0.95 of raw"));
    }
    if !run("pay_notify") {
        return;
    }

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
    let now = chrono::Utc::now().timestamp();
    let n = sign_notification(&wechat, serial, &apiv3, "TRANSACTION.SUCCESS", &plaintext, now).expect("notification");
    let pay = PayClient::builder(default_pay_config().expect("config")).build().expect("client");
    let h = |k: &str| n.headers[k].to_str().expect("header").to_string();
    let message = paycrypto::response_message(&h("wechatpay-timestamp"), &h("wechatpay-nonce"), &n.body);
    let sig = STANDARD.decode(h("wechatpay-signature")).expect("sig");
    let verifier = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, wechat.public_key().spki_der()).expect("key");
    let body: Value = serde_json::from_slice(&n.body).expect("body");
    let ct = STANDARD.decode(body["resource"]["ciphertext"].as_str().expect("ct")).expect("ct");
    let nonce = body["resource"]["nonce"].as_str().expect("nonce").as_bytes().to_vec();
    let aad = body["resource"]["associated_data"].as_str().expect("aad").as_bytes().to_vec();
    let cipher = Aes256Gcm::new_from_slice(DEFAULT_APIV3_KEY.as_bytes()).expect("gcm");
    let pair = b.pair(
        &mut || {
            let fut = pay.verify_and_decrypt(black_box(&n.headers), black_box(&n.body));
            black_box(futures_util::FutureExt::now_or_never(fut).expect("ready").expect("verified"));
        },
        &mut || {
            verifier.verify_sig(black_box(&message), black_box(&sig)).expect("verify");
            let nonce = Nonce::try_from(nonce.as_slice()).expect("nonce");
            black_box(cipher.decrypt(&nonce, Payload { msg: black_box(&ct), aad: &aad }).expect("decrypt"));
        },
    );
    out.push(rate_figure(
        "pay_notification_verify_decrypt",
        "raw_rsa_verify_aes256gcm",
        pair,
        "every check on; goal ≥ 0.92 of raw (the baseline verifies with a key parsed once, as wxshop does)",
    ));
}

fn token_figure(b: &Bench, rt: &tokio::runtime::Runtime, out: &mut Vec<Figure>) {
    let emu = rt.block_on(wxshop::emulator::Emulator::start_default()).expect("emulator");
    let client = emu.client().expect("client");
    rt.block_on(client.access_token()).expect("token");
    let floor = std::sync::RwLock::new(secrecy::SecretString::from("x".repeat(136)));
    let pair = b.pair(
        &mut || {
            let fut = client.access_token();
            black_box(futures_util::FutureExt::now_or_never(fut).expect("cached").expect("token"));
        },
        &mut || {
            black_box(floor.read().expect("lock").clone());
        },
    );
    out.push(rate_figure("cached_access_token", "raw_rwlock_read_clone", pair, "goal: under 1 µs"));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let subject_only = args.iter().any(|a| a == "--subject-only");
    let b = if quick {
        Bench { round: Duration::from_millis(60), rounds: 3, subject_only }
    } else {
        Bench { round: Duration::from_millis(300), rounds: 5, subject_only }
    };
    // `--only push|push_open|push_reply|wxa|pay|pay_sign|pay_notify|token|market`: one group of
    // figures, or one figure of a group (profiling one path with perf).
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(String::as_str);
    let run = |group: &str| {
        only.is_none_or(|o| o == group || group.starts_with(&format!("{o}_")) || o.starts_with(&format!("{group}_")))
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut figures = Vec::new();
    if run("push") {
        push_figures(&b, &run, &mut figures);
    }
    if run("wxa") {
        wxa_figure(&b, &mut figures);
    }
    if run("pay") {
        pay_figures(&b, &run, &mut figures);
    }
    if run("token") {
        token_figure(&b, &rt, &mut figures);
    }
    if run("market") {
        market::figures(&b, &rt, quick, &mut figures);
    }

    if json_out {
        let mut obj = serde_json::Map::new();
        for f in &figures {
            let mut fig = json!({ "value": f.value, "unit": f.unit, "baseline_name": f.baseline_name, "baseline": f.baseline, "ratio": f.ratio, "note": f.note });
            if let Some((p99, baseline_p99)) = f.p99 {
                fig["p99"] = json!(p99);
                fig["baseline_p99"] = json!(baseline_p99);
            }
            obj.insert(f.name.to_string(), fig);
        }
        println!("{}", Value::Object(obj));
    } else {
        println!("{:<34} {:>19}  {:<26} {:>19} {:>7}", "figure", "value", "baseline", "", "ratio");
        for f in &figures {
            println!(
                "{:<34} {:>10.0} {:<8}  {:<26} {:>10.0} {:<8} {:>7.2}",
                f.name, f.value, f.unit, f.baseline_name, f.baseline, f.unit, f.ratio
            );
            if let Some((p99, baseline_p99)) = f.p99 {
                println!(
                    "{:<34} {:>10.0} {:<8}  {:<26} {:>10.0} {:<8}",
                    "  p99", p99, f.unit, "", baseline_p99, f.unit
                );
            }
        }
    }
}

#[cfg(feature = "sqlite")]
#[path = "../benches/common/market_fixture.rs"]
mod market_fixture;

#[cfg(feature = "sqlite")]
mod market {
    //! Marketplace figures: checkout orders/s (spread and hot SKU) and the catalog page query's p50/p99, each
    //! beside the raw SQL of the same statements, on SQLite and, with `DATABASE_URL` and the feature
    //! `postgres`, on PostgreSQL in a throwaway schema.
    use std::sync::Arc;

    use super::market_fixture::{Fixture, Raw, concurrent_rate, fixture, page_percentiles, sku_count};
    use super::{Bench, Figure, median};
    use wxshop::market::{new_id, store};

    /// Concurrent clients per checkout run.
    const CLIENTS: usize = 8;

    pub fn figures(_b: &Bench, rt: &tokio::runtime::Runtime, quick: bool, out: &mut Vec<Figure>) {
        let skus = sku_count(if quick { 10_000 } else { 100_000 });
        let path = std::env::temp_dir().join(format!("wxshop-report-{}.db", new_id()));
        let f = rt.block_on(async {
            let s = store::SqliteStore::open(&format!("sqlite://{}", path.display())).await.expect("sqlite");
            let raw = Raw::Sqlite(s.pool().clone());
            fixture("sqlite", Arc::new(s), raw, skus).await
        });
        backend_figures(rt, quick, &f, out);
        drop(f);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        postgres(rt, quick, skus, out);
    }

    #[cfg(feature = "postgres")]
    fn postgres(rt: &tokio::runtime::Runtime, quick: bool, skus: usize, out: &mut Vec<Figure>) {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("postgres: DATABASE_URL not set; skipped");
            return;
        };
        let schema = format!("wxshop_report_{}", new_id());
        let (f, s) = rt.block_on(async {
            let s = store::PgStore::open_in_schema(&url, &schema).await.expect("postgres");
            let raw = Raw::Pg(s.pool().clone());
            (fixture("postgres", Arc::new(s.clone()), raw, skus).await, s)
        });
        backend_figures(rt, quick, &f, out);
        drop(f);
        rt.block_on(s.drop_schema()).expect("drop schema");
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres(_: &tokio::runtime::Runtime, _: bool, _: usize, _: &mut Vec<Figure>) {
        eprintln!("postgres: built without feature `postgres`; skipped");
    }

    fn backend_figures(rt: &tokio::runtime::Runtime, quick: bool, f: &Fixture, out: &mut Vec<Figure>) {
        let (rounds, secs, samples) = if quick { (3, 0.5, 300) } else { (5, 1.0, 2000) };
        let sqlite = f.name == "sqlite";
        for hot in [false, true] {
            // Alternate raw and wxshop rounds, each first in turn, so the growing database and a noisy
            // neighbour slow both; keep each side's median round.
            let (mut wx, mut raw) = (Vec::new(), Vec::new());
            rt.block_on(async {
                for round in 0..rounds {
                    let raw_first = round % 2 == 0;
                    let a = concurrent_rate(f, CLIENTS, secs, hot, raw_first).await;
                    let b = concurrent_rate(f, CLIENTS, secs, hot, !raw_first).await;
                    let (r, w) = if raw_first { (a, b) } else { (b, a) };
                    raw.push(r);
                    wx.push(w);
                }
            });
            let (value, baseline) = (median(&mut wx), median(&mut raw));
            out.push(Figure {
                name: match (sqlite, hot) {
                    (true, false) => "checkout_sqlite_spread",
                    (true, true) => "checkout_sqlite_hot_sku",
                    (false, false) => "checkout_postgres_spread",
                    (false, true) => "checkout_postgres_hot_sku",
                },
                unit: "orders/s",
                value,
                baseline_name: "raw_sql_same_transaction",
                baseline,
                ratio: value / baseline,
                note: format!(
                    "{CLIENTS} concurrent clients, {} over {} SKUs; goal ≥ 0.70 of raw",
                    if hot { "one hot SKU" } else { "spread" },
                    f.skus.len()
                ),
                p99: None,
            });
        }
        for deep in [false, true] {
            let ((rp50, rp99), (wp50, wp99)) = rt.block_on(async {
                let raw = page_percentiles(f, deep, true, samples).await;
                (raw, page_percentiles(f, deep, false, samples).await)
            });
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
            out.push(Figure {
                name: match (sqlite, deep) {
                    (true, false) => "catalog_page_sqlite_first",
                    (true, true) => "catalog_page_sqlite_deep",
                    (false, false) => "catalog_page_postgres_first",
                    (false, true) => "catalog_page_postgres_deep",
                },
                unit: "µs",
                value: us(wp50),
                baseline_name: "raw_sql_page_query",
                baseline: us(rp50),
                ratio: us(rp50) / us(wp50),
                note: format!(
                    "p50 (p99 beside it) of {samples} sequential {} page queries, 20 per page, {} SKUs",
                    if deep { "mid-category" } else { "first" },
                    f.skus.len()
                ),
                p99: Some((us(wp99), us(rp99))),
            });
        }
    }
}

#[cfg(not(feature = "sqlite"))]
mod market {
    //! Built without the feature `sqlite`: no marketplace figures.
    use super::{Bench, Figure};
    pub fn figures(_b: &Bench, _rt: &tokio::runtime::Runtime, _quick: bool, _out: &mut Vec<Figure>) {
        eprintln!("market: built without feature `sqlite`; skipped");
    }
}
