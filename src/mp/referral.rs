//! Referral attribution: a compact signed token that says *promoter P shared campaign C (and
//! maybe product X), valid until T*, small enough for a 32-character wxacode `scene`.
//!
//! A promoter's share link or code carries the token; when a buyer arrives, the server verifies
//! it with the merchant's secret and records the attribution, so that an order can later credit
//! the promoter. Forged, altered, truncated and expired tokens are rejected with a typed
//! [`ReferralError`]; the parser never panics, whatever the input.
//!
//! Token format (v1), base64url without padding, at most 32 characters (24 bytes):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version (high nibble, = 1) and flags (bit 0: a product follows) |
//! | 4 | expiry, Unix seconds, big-endian |
//! | 1–10 | promoter id, LEB128 |
//! | 1–10 | campaign id, LEB128 |
//! | 0–10 | product id, LEB128 (when flagged) |
//! | 8 | HMAC-SHA256 tag over everything before it ([`crate::crypto::referral`]) |
//!
//! Ids are numbers: map openids and SKUs to your own numeric ids. Promoter ids below 2^28,
//! campaign ids below 2^14 and product ids below 2^35 always fit; [`ReferralKey::sign`]
//! says [`ReferralError::TooLong`] when a combination does not.
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use wxshop::mp::referral::{Referral, ReferralError, ReferralKey};
//!
//! let key = ReferralKey::new("a 32-byte merchant referral secret").unwrap();
//! let now = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
//! let token = key.sign(&Referral::new(1001, 7).product(42).expires_at(now + Duration::days(30))).unwrap();
//! assert!(token.as_str().len() <= 32);
//!
//! // The three places a token travels:
//! let scene = token.scene();                                 // getwxacodeunlimit scene
//! let query = token.query();                                 // URL Link query: "ref=…"
//! let path = token.share_path("pages/product/index", &[("id", "42")]); // onShareAppMessage path
//! assert_eq!(path, format!("pages/product/index?id=42&ref={scene}"));
//!
//! let r = key.verify(scene, now).unwrap();
//! assert_eq!((r.promoter, r.campaign, r.product), (1001, 7, Some(42)));
//! assert_eq!(key.verify(scene, now + Duration::days(31)), Err(ReferralError::Expired { expired_at: r.expires_at }));
//! # let _ = query;
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::crypto::referral::{self as sig, TAG_LEN};
use crate::error::{Error, Result};

/// The token format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// The most characters a token has (a wxacode `scene`).
pub const MAX_TOKEN_CHARS: usize = 32;
/// The most bytes a token carries.
pub const MAX_TOKEN_BYTES: usize = MAX_TOKEN_CHARS * 6 / 8;
/// The query parameter that carries a token in links and share paths.
pub const QUERY_KEY: &str = "ref";
/// The shortest merchant secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;

const FLAG_PRODUCT: u8 = 0b0001;
const HEADER_LEN: usize = 1 + 4;

/// Why a token was not issued or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferralError {
    /// The ids do not fit a 32-character token.
    #[error("the referral needs {bytes} bytes; a 32-character token holds {MAX_TOKEN_BYTES} — use smaller ids")]
    TooLong {
        /// Bytes it would need.
        bytes: usize,
    },
    /// The expiry is not after now, or beyond 2106 (it is stored in 32 bits).
    #[error("the referral expiry must be in the future and before 2106")]
    ExpiryOutOfRange,
    /// The token is not one of ours (bad length, characters, encoding or structure).
    #[error("malformed referral token: {0}")]
    Malformed(&'static str),
    /// A version this crate does not read.
    #[error("unsupported referral token version {0}")]
    UnsupportedVersion(u8),
    /// The signature does not match: forged, altered or signed with another key.
    #[error("referral token signature does not verify")]
    BadSignature,
    /// A genuine token past its expiry.
    #[error("referral token expired at {expired_at}")]
    Expired {
        /// When it expired.
        expired_at: DateTime<Utc>,
    },
}

impl From<ReferralError> for Error {
    fn from(e: ReferralError) -> Self {
        match e {
            ReferralError::BadSignature => Error::Signature(e.to_string()),
            other => Error::InvalidRequest(other.to_string()),
        }
    }
}

/// What a token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Referral {
    /// The promoter to credit.
    pub promoter: u64,
    /// The campaign.
    pub campaign: u64,
    /// The product shared, if one was.
    pub product: Option<u64>,
    /// When the token stops being accepted (whole seconds).
    pub expires_at: DateTime<Utc>,
}

impl Referral {
    /// A referral with no product, expiring at the Unix epoch until [`Referral::expires_at`] is set.
    pub fn new(promoter: u64, campaign: u64) -> Self {
        Referral { promoter, campaign, product: None, expires_at: DateTime::<Utc>::UNIX_EPOCH }
    }

    /// The product shared.
    pub fn product(mut self, product: u64) -> Self {
        self.product = Some(product);
        self
    }

    /// When the token expires.
    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = at;
        self
    }

    fn body(&self) -> std::result::Result<Vec<u8>, ReferralError> {
        let expiry = u32::try_from(self.expires_at.timestamp()).map_err(|_| ReferralError::ExpiryOutOfRange)?;
        let mut out = Vec::with_capacity(MAX_TOKEN_BYTES);
        let flags = if self.product.is_some() { FLAG_PRODUCT } else { 0 };
        out.push((VERSION << 4) | flags);
        out.extend_from_slice(&expiry.to_be_bytes());
        put_varint(&mut out, self.promoter);
        put_varint(&mut out, self.campaign);
        if let Some(p) = self.product {
            put_varint(&mut out, p);
        }
        let bytes = out.len() + TAG_LEN;
        if bytes > MAX_TOKEN_BYTES {
            return Err(ReferralError::TooLong { bytes });
        }
        Ok(out)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a minimal LEB128 u64; `None` on truncation, overflow or a non-minimal encoding.
fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        if i == 9 && part > 1 {
            return None; // would overflow 64 bits
        }
        v |= part << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return None; // a trailing zero group: not minimal, so not canonical
            }
            *input = &input[i + 1..];
            return Some(v);
        }
    }
    None
}

/// A signed token, at most 32 characters of base64url.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferralToken(String);

impl ReferralToken {
    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As a `getwxacodeunlimit` scene (the token itself: base64url is within WeChat's scene set).
    pub fn scene(&self) -> &str {
        &self.0
    }

    /// As a URL Scheme / URL Link query: `ref=TOKEN`.
    pub fn query(&self) -> String {
        format!("{QUERY_KEY}={}", self.0)
    }

    /// As a share path (`onShareAppMessage`): `page?k=v&…&ref=TOKEN`. Keys and values are
    /// appended as given: pass them already percent-encoded when they need it.
    pub fn share_path(&self, page: &str, params: &[(&str, &str)]) -> String {
        let mut s = String::with_capacity(page.len() + 48);
        s.push_str(page);
        let mut sep = if page.contains('?') { '&' } else { '?' };
        for (k, v) in params {
            s.push(sep);
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            sep = '&';
        }
        s.push(sep);
        s.push_str(&self.query());
        s
    }
}

impl fmt::Display for ReferralToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Finds the token in a query string (`id=42&ref=TOKEN`), e.g. a page's `options` joined back,
/// or a URL Link query. A scene from a wxacode is the token itself.
pub fn token_from_query(query: &str) -> Option<&str> {
    query.trim_start_matches('?').split('&').find_map(|pair| pair.strip_prefix(QUERY_KEY)?.strip_prefix('='))
}

/// The merchant's referral secret: signs and verifies tokens. Never printed.
#[derive(Clone)]
pub struct ReferralKey {
    secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ReferralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReferralKey([redacted])")
    }
}

impl ReferralKey {
    /// A key from the merchant's secret (at least 16 bytes; 32 random bytes recommended).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::Config(format!(
                "the referral secret is {} bytes; use at least {MIN_SECRET_BYTES} (32 random bytes recommended)",
                secret.len()
            )));
        }
        Ok(ReferralKey { secret: Zeroizing::new(secret.to_vec()) })
    }

    /// Signs a referral. Fails when the ids do not fit 32 characters or the expiry is out of range.
    pub fn sign(&self, referral: &Referral) -> std::result::Result<ReferralToken, ReferralError> {
        let mut bytes = referral.body()?;
        let tag = sig::tag(&self.secret, &bytes);
        bytes.extend_from_slice(&tag);
        Ok(ReferralToken(URL_SAFE_NO_PAD.encode(&bytes)))
    }

    /// Signs a referral valid from `now` for `ttl`.
    pub fn sign_for(
        &self,
        referral: Referral,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> std::result::Result<ReferralToken, ReferralError> {
        if ttl <= chrono::Duration::zero() {
            return Err(ReferralError::ExpiryOutOfRange);
        }
        self.sign(&referral.expires_at(now + ttl))
    }

    /// Verifies a token (the scene, or the `ref` value of a query) and returns what it says.
    /// The signature is checked, in constant time, before any field is trusted; then the expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> std::result::Result<Referral, ReferralError> {
        let referral = self.verify_ignoring_expiry(token)?;
        if now >= referral.expires_at {
            return Err(ReferralError::Expired { expired_at: referral.expires_at });
        }
        Ok(referral)
    }

    /// Verifies the signature and structure only (for audits of old attributions).
    pub fn verify_ignoring_expiry(&self, token: &str) -> std::result::Result<Referral, ReferralError> {
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            return Err(ReferralError::Malformed("length is not 1 to 32 characters"));
        }
        // Strict, canonical base64url: one string per token, no padding, no stray bits.
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| ReferralError::Malformed("not canonical base64url"))?;
        if bytes.len() < HEADER_LEN + 2 + TAG_LEN {
            return Err(ReferralError::Malformed("too short"));
        }
        let version = bytes[0] >> 4;
        if version != VERSION {
            return Err(ReferralError::UnsupportedVersion(version));
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        if !sig::verify(&self.secret, body, tag) {
            return Err(ReferralError::BadSignature);
        }
        parse_body(body)
    }
}

fn parse_body(body: &[u8]) -> std::result::Result<Referral, ReferralError> {
    let flags = body[0] & 0x0f;
    if flags & !FLAG_PRODUCT != 0 {
        return Err(ReferralError::Malformed("unknown flags"));
    }
    let expiry = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
    let mut rest = &body[HEADER_LEN..];
    let promoter = get_varint(&mut rest).ok_or(ReferralError::Malformed("bad promoter id"))?;
    let campaign = get_varint(&mut rest).ok_or(ReferralError::Malformed("bad campaign id"))?;
    let product = if flags & FLAG_PRODUCT != 0 {
        Some(get_varint(&mut rest).ok_or(ReferralError::Malformed("bad product id"))?)
    } else {
        None
    };
    if !rest.is_empty() {
        return Err(ReferralError::Malformed("trailing bytes"));
    }
    let expires_at =
        DateTime::<Utc>::from_timestamp(i64::from(expiry), 0).ok_or(ReferralError::Malformed("bad expiry"))?;
    Ok(Referral { promoter, campaign, product, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn key() -> ReferralKey {
        ReferralKey::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn token_layout_is_pinned() {
        let r = Referral::new(1001, 7).product(42).expires_at(Utc.timestamp_opt(1_751_328_000, 0).unwrap());
        let t = key().sign(&r).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(t.as_str()).unwrap();
        // version 1 | product flag, expiry BE, 1001 = e9 07, 7, 42, then 8 tag bytes.
        assert_eq!(&raw[..9], &[0x11, 0x68, 0x63, 0x25, 0x00, 0xe9, 0x07, 0x07, 0x2a]);
        assert_eq!(raw.len(), 9 + TAG_LEN);
        assert_eq!(&raw[9..], &sig::tag(b"0123456789abcdef0123456789abcdef", &raw[..9]));
        assert_eq!(t.as_str().len(), 23);
    }

    #[test]
    fn round_trip_with_and_without_product() {
        let exp = now() + Duration::days(30);
        for r in [Referral::new(1, 2).expires_at(exp), Referral::new(u64::from(u32::MAX), 9).product(7).expires_at(exp)]
        {
            let t = key().sign(&r).unwrap();
            assert_eq!(key().verify(t.as_str(), now()).unwrap(), r);
        }
    }

    #[test]
    fn ids_that_do_not_fit_are_refused() {
        let r = Referral::new(u64::MAX, u64::MAX).product(u64::MAX).expires_at(now() + Duration::days(1));
        assert_eq!(key().sign(&r), Err(ReferralError::TooLong { bytes: 43 }));
        let r =
            Referral::new((1 << 28) - 1, (1 << 14) - 1).product((1 << 35) - 1).expires_at(now() + Duration::days(1));
        assert_eq!(key().sign(&r).unwrap().as_str().len(), 32);
    }

    #[test]
    fn forged_and_foreign_tokens_fail() {
        let t = key().sign(&Referral::new(5, 6).expires_at(now() + Duration::hours(1))).unwrap();
        let other = ReferralKey::new("another merchant's secret, 32 b!").unwrap();
        assert_eq!(other.verify(t.as_str(), now()), Err(ReferralError::BadSignature));
        // Promote ourselves: re-encode with promoter 6 and the old tag.
        let mut raw = URL_SAFE_NO_PAD.decode(t.as_str()).unwrap();
        raw[5] = 6;
        assert_eq!(key().verify(&URL_SAFE_NO_PAD.encode(&raw), now()), Err(ReferralError::BadSignature));
    }

    #[test]
    fn malformed_inputs_are_typed() {
        let k = key();
        assert_eq!(k.verify("", now()), Err(ReferralError::Malformed("length is not 1 to 32 characters")));
        assert_eq!(k.verify(&"A".repeat(33), now()), Err(ReferralError::Malformed("length is not 1 to 32 characters")));
        assert_eq!(k.verify("ab%d", now()), Err(ReferralError::Malformed("not canonical base64url")));
        assert_eq!(k.verify("AB", now()), Err(ReferralError::Malformed("not canonical base64url")));
        assert_eq!(k.verify("EQAAAA", now()), Err(ReferralError::Malformed("too short")));
        assert_eq!(k.verify("IAAAAAAAAAAAAAAAAAAA", now()), Err(ReferralError::UnsupportedVersion(2)));
    }

    #[test]
    fn query_helpers_find_the_token() {
        assert_eq!(token_from_query("id=42&ref=AbC-_"), Some("AbC-_"));
        assert_eq!(token_from_query("?ref=x"), Some("x"));
        assert_eq!(token_from_query("referrer=x&id=1"), None);
        assert_eq!(token_from_query(""), None);
    }

    #[test]
    fn debug_redacts_the_secret() {
        assert_eq!(format!("{:?}", key()), "ReferralKey([redacted])");
        assert!(ReferralKey::new("short").is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,64}") {
            let _ = key().verify(&s, now());
        }

        #[test]
        fn parser_never_panics_on_base64url(s in "[A-Za-z0-9_-]{0,40}") {
            let _ = key().verify(&s, now());
        }

        #[test]
        fn every_small_referral_round_trips(p in 0u64..(1 << 28), c in 0u64..(1 << 14), x in proptest::option::of(0u64..(1 << 35)), secs in 61i64..(86_400 * 365)) {
            let mut r = Referral::new(p, c).expires_at(now() + Duration::seconds(secs));
            if let Some(x) = x { r = r.product(x); }
            let t = key().sign(&r).unwrap();
            prop_assert!(t.as_str().len() <= MAX_TOKEN_CHARS);
            prop_assert!(crate::mp::wxacode::validate_scene(t.scene()).is_ok());
            prop_assert_eq!(key().verify(t.as_str(), now()).unwrap(), r);
        }

        #[test]
        fn any_single_character_change_is_rejected(p in 0u64..1000, i in 0usize..32, c in "[A-Za-z0-9_-]") {
            let t = key().sign(&Referral::new(p, 1).expires_at(now() + Duration::days(1))).unwrap();
            let mut chars: Vec<char> = t.as_str().chars().collect();
            let i = i % chars.len();
            let c = c.chars().next().unwrap();
            prop_assume!(chars[i] != c);
            chars[i] = c;
            let forged: String = chars.into_iter().collect();
            prop_assert!(key().verify(&forged, now()).is_err());
        }
    }
}
