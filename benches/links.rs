//! Referral tokens, each beside its raw baseline in the same run:
//! - sign a referral (encode + truncated HMAC-SHA256 + base64url) vs one raw HMAC-SHA256 of the same
//!   bytes (the floor of any signed token);
//! - verify a token (decode + constant-time tag check + parse + expiry) vs one raw HMAC-SHA256;
//! - the referral scene as a whole: sign + verify.

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wxshop::crypto::sig;
use wxshop::mp::referral::{Referral, ReferralKey};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn referral(c: &mut Criterion) {
    let key = ReferralKey::new(SECRET).unwrap();
    let now = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    let r = Referral::new(1_000_001, 7).product(4_242).expires_at(now + Duration::days(30));
    let token = key.sign(&r).unwrap();
    // The body a token signs is 16 bytes for these ids; hash the same length raw.
    let body = [0x11u8; 16];

    let mut g = c.benchmark_group("referral");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_hmac_sha256_16_bytes", |b| {
        b.iter(|| black_box(sig::hmac_sha256(SECRET.as_bytes(), black_box(&body))))
    });
    g.bench_function("sign", |b| b.iter(|| black_box(key.sign(black_box(&r)).unwrap())));
    g.bench_function("verify", |b| b.iter(|| black_box(key.verify(black_box(token.as_str()), now).unwrap())));
    g.bench_function("sign_and_verify", |b| {
        b.iter(|| {
            let t = key.sign(black_box(&r)).unwrap();
            black_box(key.verify(t.as_str(), now).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, referral);
criterion_main!(benches);
