//! The push hot path, each beside its raw baseline in the same run:
//! - a 1 KB secure-mode XML push: `Verifier::open` (envelope parse, msg_signature, base64,
//!   AES-256-CBC, padding/length/appid checks, XML parse, typing) vs the raw SHA-1 + AES-256-CBC
//!   work alone (and the same plus base64);
//! - an encrypted reply (`transfer_customer_service`, rendered, encrypted, signed, enveloped) vs
//!   raw AES-256-CBC encryption + SHA-1 of the same size.

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sha1::{Digest, Sha1};
use std::hint::black_box;
use wxshop::crypto::msgcrypt::decode_aes_key;
use wxshop::push::{Format, Mode, PushQuery, Reply, Verifier};

const TOKEN: &str = "bench-token";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APPID: &str = "wx2c2769f8efd9abc2";

/// A secure-mode XML push whose decrypted message is about 1 KB.
fn push_1kb(v: &Verifier) -> (PushQuery, String, usize) {
    let content = "您好，请问我的订单什么时候发货？Order WX20240501-0042, two boxes of jasmine tea. ".repeat(8);
    let fields = json!({
        "ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        "CreateTime": 1409735668, "MsgType": "text", "Content": content, "MsgId": 6054768590064713728u64
    });
    let fields = fields.as_object().unwrap();
    let plain_len = wxshop::push::body::render_xml(fields).len();
    let p = v.sign_push(Mode::Secure, Format::Xml, fields, "1409735669", "1320562132").unwrap();
    (p.query, p.body, plain_len)
}

fn sha1_sorted_raw(parts: &mut [&str]) -> [u8; 20] {
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts.iter() {
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

fn decrypt(c: &mut Criterion) {
    let v = Verifier::with_aes_key(TOKEN, AES_KEY, APPID).unwrap();
    let (q, body, plain_len) = push_1kb(&v);
    let encrypt = wxshop::push::body::parse_xml(body.as_bytes()).unwrap()["Encrypt"].as_str().unwrap().to_string();
    let ct = STANDARD.decode(&encrypt).unwrap();
    let key = decode_aes_key(AES_KEY).unwrap();
    let iv: [u8; 16] = key[..16].try_into().unwrap();
    eprintln!("push: decrypted message {plain_len} bytes, ciphertext {} bytes, body {} bytes", ct.len(), body.len());

    let mut g = c.benchmark_group("push_decrypt_1kb");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_sha1_aes256cbc", |b| {
        b.iter(|| {
            let sig = sha1_sorted_raw(&mut [TOKEN, "1409735669", "1320562132", black_box(&encrypt)]);
            let mut buf = black_box(&ct).clone();
            cbc::Decryptor::<Aes256>::new((&*key).into(), (&iv).into()).decrypt_padded::<NoPadding>(&mut buf).unwrap();
            black_box((sig, buf))
        })
    });
    g.bench_function("raw_sha1_base64_aes256cbc", |b| {
        b.iter(|| {
            let sig = sha1_sorted_raw(&mut [TOKEN, "1409735669", "1320562132", black_box(&encrypt)]);
            let mut buf = STANDARD.decode(black_box(&encrypt)).unwrap();
            cbc::Decryptor::<Aes256>::new((&*key).into(), (&iv).into()).decrypt_padded::<NoPadding>(&mut buf).unwrap();
            black_box((sig, buf))
        })
    });
    g.bench_function("wxshop_open_verify_decrypt_parse", |b| {
        b.iter(|| black_box(v.open_at(black_box(&q), black_box(body.as_bytes()), 0).unwrap()))
    });
    g.finish();
}

fn reply(c: &mut Criterion) {
    let v = Verifier::with_aes_key(TOKEN, AES_KEY, APPID).unwrap();
    let (q, body, _) = push_1kb(&v);
    let push = v.open_at(&q, body.as_bytes(), 0).unwrap();
    let sample = v.reply_with(&push, &Reply::TransferCustomerService { kf_account: None }, "1409735670", "n1").unwrap();
    let plain_len = v.open_reply(sample.body.as_bytes()).unwrap().len();
    // The raw work on a frame of the same padded size: 16 + 4 + message + appid, to 32-byte blocks.
    let frame_len = (16 + 4 + plain_len + APPID.len()).div_ceil(32) * 32;
    let frame = vec![7u8; frame_len];
    let key = decode_aes_key(AES_KEY).unwrap();
    let iv: [u8; 16] = key[..16].try_into().unwrap();
    eprintln!("push: reply message {plain_len} bytes, frame {frame_len} bytes");

    let mut g = c.benchmark_group("push_reply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_aes256cbc_sha1", |b| {
        b.iter(|| {
            let mut buf = black_box(&frame).clone();
            let n = buf.len();
            let ct = cbc::Encryptor::<Aes256>::new((&*key).into(), (&iv).into())
                .encrypt_padded::<NoPadding>(&mut buf, n)
                .unwrap()
                .to_vec();
            let enc = STANDARD.encode(&ct);
            black_box(sha1_sorted_raw(&mut [TOKEN, "1409735670", "n1", &enc]))
        })
    });
    g.bench_function("wxshop_reply_render_encrypt_sign", |b| {
        b.iter(|| {
            black_box(
                v.reply_with(
                    black_box(&push),
                    &Reply::TransferCustomerService { kf_account: None },
                    "1409735670",
                    "n1",
                )
                .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, decrypt, reply);
criterion_main!(benches);
