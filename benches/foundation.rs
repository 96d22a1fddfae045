//! Hot paths of the foundation, each beside its raw baseline in the same run:
//! - cached `access_token()` vs a bare `RwLock` read + clone (the floor of any cache);
//! - encryptedData decrypt + watermark check + typed decode vs raw AES-128-CBC decryption alone.

use aes::Aes128;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wxshop::crypto::wxa;

const APPID: &str = "wx4f4bc4dec97d474b";
const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";

fn vector() -> String {
    let v: serde_json::Value = serde_json::from_str(include_str!("../tests/vectors/official.json")).unwrap();
    v["wxa_encrypted_data"]["encrypted_data"].as_str().unwrap().to_string()
}

fn encrypted_data(c: &mut Criterion) {
    let data = vector();
    let mut g = c.benchmark_group("encrypted_data");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_base64_aes128cbc_decrypt", |b| {
        b.iter(|| {
            let key: [u8; 16] = STANDARD.decode(KEY).unwrap().try_into().unwrap();
            let iv: [u8; 16] = STANDARD.decode(IV).unwrap().try_into().unwrap();
            let ct = STANDARD.decode(black_box(&data)).unwrap();
            black_box(cbc::Decryptor::<Aes128>::new(&key.into(), &iv.into()).decrypt_padded_vec::<Pkcs7>(&ct).unwrap())
        })
    });
    g.bench_function("wxshop_decrypt_watermark_typed", |b| {
        b.iter(|| black_box(wxa::decrypt_user_info(APPID, KEY, IV, black_box(&data)).unwrap()))
    });
    g.finish();
}

fn cached_token(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let emu = rt.block_on(wxshop::emulator::Emulator::start_default()).unwrap();
    let client = emu.client().unwrap();
    rt.block_on(client.access_token()).unwrap();
    let floor = std::sync::RwLock::new(secrecy::SecretString::from("x".repeat(136)));
    let mut g = c.benchmark_group("access_token");
    g.bench_function("raw_rwlock_read_clone", |b| b.iter(|| black_box(floor.read().unwrap().clone())));
    g.bench_function("wxshop_cached_access_token", |b| {
        b.iter(|| rt.block_on(async { black_box(client.access_token().await.unwrap()) }))
    });
    g.finish();
}

criterion_group!(benches, encrypted_data, cached_token);
criterion_main!(benches);
