//! The verifier of WeChat Pay signatures: one place that holds both kinds of WeChat Pay keys at
//! once — platform certificates (downloaded from `/v3/certificates`, decrypted with the APIv3 key,
//! refreshed before they expire and when an unknown serial appears, at most once per interval) and
//! WeChat Pay public keys (`PUB_KEY_ID_…`, configured, never downloaded). The key is chosen by the
//! `Wechatpay-Serial` header, so during WeChat's migration a response signed with either is
//! accepted. A merchant configured with a public key only never calls `/v3/certificates`.
//!
//! Every check rejects by default: the signature type, the `WECHATPAY/SIGNTEST/` probes, the
//! 300-second timestamp window, the serial, an expired certificate, then the RSA signature over
//! `TIMESTAMP\nNONCE\nBODY\n` of the raw body bytes.
//!
//! ```
//! use wxshop::crypto::pay::{self, MerchantKey};
//! use wxshop::pay::keys::{SignatureHeaders, Verifier};
//! let wechat = MerchantKey::generate().unwrap(); // stands in for WeChat Pay's key
//! let verifier = Verifier::new();
//! verifier.add_public_key("PUB_KEY_ID_0114232134912410000000000000", wechat.public_key());
//! let body = br#"{"prepay_id":"wx2"}"#;
//! let sig = wechat.sign(&pay::response_message("1700000000", "nonce", body)).unwrap();
//! let headers = SignatureHeaders {
//!     serial: "PUB_KEY_ID_0114232134912410000000000000",
//!     signature: &sig,
//!     timestamp: "1700000000",
//!     nonce: "nonce",
//!     signature_type: None,
//! };
//! verifier.verify(&headers, body, 1_700_000_100).unwrap();
//! assert!(verifier.verify(&headers, body, 1_700_000_400).is_err()); // outside the 300 s window
//! ```

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue};

use crate::crypto::pay::{
    PayPublicKey, PlatformCertificate, SCHEME, SIGNTEST_PREFIX, check_timestamp, normalize_serial,
};
use crate::error::{Error, Result};

/// WeChat Pay's (and the official SDKs') window on `Wechatpay-Timestamp`.
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;

/// The prefix of WeChat Pay public key ids.
pub const PUBLIC_KEY_ID_PREFIX: &str = "PUB_KEY_ID_";

/// The `Wechatpay-*` headers of a signed response or notification.
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    /// `Wechatpay-Serial`: which key signed.
    pub serial: &'a str,
    /// `Wechatpay-Signature` (base64).
    pub signature: &'a str,
    /// `Wechatpay-Timestamp` (unix seconds).
    pub timestamp: &'a str,
    /// `Wechatpay-Nonce`.
    pub nonce: &'a str,
    /// `Wechatpay-Signature-Type`, when sent.
    pub signature_type: Option<&'a str>,
}

impl<'a> SignatureHeaders<'a> {
    /// Reads the headers; a missing one is a [`Error::Signature`].
    pub fn from_headers(headers: &'a HeaderMap) -> Result<Self> {
        const NAMES: [&str; 5] = [
            "wechatpay-serial",
            "wechatpay-signature",
            "wechatpay-timestamp",
            "wechatpay-nonce",
            "wechatpay-signature-type",
        ];
        // One pass over the headers (each `get` hashes its name): the first value of each name,
        // as `HeaderMap::get` answers.
        let mut found: [Option<&'a HeaderValue>; 5] = [None; 5];
        for (name, value) in headers {
            let name = name.as_str();
            if !name.starts_with("wechatpay-") {
                continue;
            }
            if let Some(i) = NAMES.iter().position(|n| *n == name) {
                found[i].get_or_insert(value);
            }
        }
        let text = |i: usize| found[i].and_then(|v| v.to_str().ok());
        let get = |i: usize| -> Result<&'a str> {
            text(i).ok_or_else(|| Error::Signature(format!("missing header {}", NAMES[i])))
        };
        Ok(SignatureHeaders {
            serial: get(0)?,
            signature: get(1)?,
            timestamp: get(2)?,
            nonce: get(3)?,
            signature_type: text(4),
        })
    }
}

/// Checks everything but the key lookup: signature type, probe, window; then the RSA signature.
pub fn verify_with_key(key: &PayPublicKey, h: &SignatureHeaders<'_>, body: &[u8], now: i64) -> Result<()> {
    precheck(h, now)?;
    key.verify_parts(&response_parts(h, body), h.signature)
}

/// `TIMESTAMP\nNONCE\nBODY\n` as parts, so the body is hashed in place.
fn response_parts<'a>(h: &SignatureHeaders<'a>, body: &'a [u8]) -> [&'a [u8]; 6] {
    [h.timestamp.as_bytes(), b"\n", h.nonce.as_bytes(), b"\n", body, b"\n"]
}

fn precheck(h: &SignatureHeaders<'_>, now: i64) -> Result<()> {
    if let Some(t) = h.signature_type
        && t != SCHEME
    {
        return Err(Error::Signature(format!("unsupported Wechatpay-Signature-Type {t:?} (expected {SCHEME})")));
    }
    if h.signature.starts_with(SIGNTEST_PREFIX) {
        return Err(Error::Signature(
            "a WeChat Pay signature probe (WECHATPAY/SIGNTEST/…) — rejected, as WeChat Pay expects".into(),
        ));
    }
    check_timestamp(h.timestamp, now, TIMESTAMP_WINDOW_SECS)?;
    Ok(())
}

/// How often certificates are refreshed and how fast an unknown serial may trigger a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// At most one download per this interval, whatever triggers it (unknown serials included).
    pub min_interval: Duration,
    /// Download again when the last successful download is older than this (new certificates
    /// appear before the old ones expire; the official SDKs poll hourly).
    pub every: Duration,
    /// Download again when the newest certificate expires within this.
    pub before_expiry: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            min_interval: Duration::from_secs(60),
            every: Duration::from_secs(3600),
            before_expiry: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
}

/// Holds platform certificates and WeChat Pay public keys and verifies signatures with them.
#[derive(Debug)]
pub struct Verifier {
    public_keys: RwLock<HashMap<String, PayPublicKey>>,
    certificates: RwLock<HashMap<String, PlatformCertificate>>,
    certificates_enabled: bool,
    policy: RefreshPolicy,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier with no keys and certificate downloads off (public keys only).
    pub fn new() -> Self {
        Self::with_mode(false, RefreshPolicy::default())
    }

    /// A verifier that may download platform certificates (`certificates_enabled`) with `policy`.
    pub fn with_mode(certificates_enabled: bool, policy: RefreshPolicy) -> Self {
        Verifier {
            public_keys: RwLock::new(HashMap::new()),
            certificates: RwLock::new(HashMap::new()),
            certificates_enabled,
            policy,
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    /// Whether this verifier downloads platform certificates.
    pub fn certificates_enabled(&self) -> bool {
        self.certificates_enabled
    }

    /// The refresh policy.
    pub fn policy(&self) -> RefreshPolicy {
        self.policy
    }

    /// Adds a WeChat Pay public key under its id (`PUB_KEY_ID_…`).
    pub fn add_public_key(&self, id: impl Into<String>, key: PayPublicKey) {
        write(&self.public_keys).insert(id.into(), key);
    }

    /// Adds platform certificates (from a download or configured by hand); expired ones are
    /// dropped. Returns how many are held afterwards.
    pub fn add_certificates(&self, certs: impl IntoIterator<Item = PlatformCertificate>, now: DateTime<Utc>) -> usize {
        let mut held = write(&self.certificates);
        for c in certs {
            held.insert(c.serial_no().to_string(), c);
        }
        held.retain(|_, c| c.not_after() > now);
        held.len()
    }

    /// The certificates held, newest expiry first.
    pub fn certificates(&self) -> Vec<PlatformCertificate> {
        let mut v: Vec<_> = read(&self.certificates).values().cloned().collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.not_after()));
        v
    }

    /// The public key ids held.
    pub fn public_key_ids(&self) -> Vec<String> {
        read(&self.public_keys).keys().cloned().collect()
    }

    /// Whether a key with this serial or id is held.
    pub fn knows(&self, serial: &str) -> bool {
        read(&self.public_keys).contains_key(serial)
            || read(&self.certificates).contains_key(serial)
            || read(&self.certificates).contains_key(&normalize_serial(serial))
    }

    /// The key to encrypt sensitive fields with, and the serial to send as `Wechatpay-Serial`:
    /// the WeChat Pay public key when configured (WeChat's recommendation), else the platform
    /// certificate that expires last.
    pub fn encryption_key(&self) -> Option<(String, PayPublicKey)> {
        if let Some((id, k)) = read(&self.public_keys).iter().min_by(|a, b| a.0.cmp(b.0)) {
            return Some((id.clone(), k.clone()));
        }
        self.certificates().into_iter().next().map(|c| (c.serial_no().to_string(), c.public_key().clone()))
    }

    /// Verifies a signed response or notification body with the key named by `h.serial`.
    /// An unknown serial is [`Error::UnknownSerial`] (the client then refreshes certificates,
    /// when allowed, and retries once).
    pub fn verify(&self, h: &SignatureHeaders<'_>, body: &[u8], now: i64) -> Result<()> {
        precheck(h, now)?;
        let message = response_parts(h, body);
        if let Some(k) = read(&self.public_keys).get(h.serial) {
            return k.verify_parts(&message, h.signature);
        }
        let certs = read(&self.certificates);
        let cert = match certs.get(h.serial) {
            Some(c) => Some(c),
            None => certs.get(&normalize_serial(h.serial)),
        };
        if let Some(c) = cert {
            let at = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
            if c.not_after() <= at || c.not_before() > at {
                return Err(Error::Signature(format!(
                    "platform certificate {} is not valid now (valid {} to {})",
                    c.serial_no(),
                    c.not_before(),
                    c.not_after()
                )));
            }
            return c.public_key().verify_parts(&message, h.signature);
        }
        Err(self.unknown(h.serial))
    }

    pub(crate) fn unknown(&self, serial: &str) -> Error {
        let hint = if serial.starts_with(PUBLIC_KEY_ID_PREFIX) {
            "WeChat Pay signed with a public key this merchant has not configured — add it with \
             PayConfig::with_public_key (merchant platform → API安全 → 微信支付公钥)"
        } else if self.certificates_enabled {
            "no platform certificate with this serial, even after refreshing from /v3/certificates — is it \
             your merchant certificate serial? Responses are signed by WeChat Pay, not by you"
        } else {
            "this merchant verifies with WeChat Pay public keys only, and WeChat Pay signed with a platform \
             certificate — enable platform certificates (PayConfig::with_platform_certificates) during migration"
        };
        Error::UnknownSerial { serial: serial.to_string(), hint: hint.to_string() }
    }

    /// Whether an unknown `serial` may trigger a certificate download (never for public key ids,
    /// never in public-key-only mode).
    pub fn may_download_for(&self, serial: &str) -> bool {
        self.certificates_enabled && !serial.starts_with(PUBLIC_KEY_ID_PREFIX)
    }

    /// Whether certificates should be downloaded now: none held yet, the last download is older
    /// than `policy.every`, or the newest expires within `policy.before_expiry`.
    pub async fn refresh_due(&self, now: DateTime<Utc>) -> bool {
        if !self.certificates_enabled {
            return false;
        }
        let newest = read(&self.certificates).values().map(|c| c.not_after()).max();
        let expiring = match newest {
            None => true,
            Some(t) => {
                t - now < chrono::Duration::from_std(self.policy.before_expiry).unwrap_or(chrono::Duration::zero())
            }
        };
        let st = self.refresh.lock().await;
        let stale = st.last_success.is_none_or(|t| t.elapsed() >= self.policy.every);
        let allowed = st.last_attempt.is_none_or(|t| t.elapsed() >= self.policy.min_interval);
        (expiring || stale) && allowed
    }

    /// Runs `download` unless another download happened within `policy.min_interval`
    /// (single-flight: concurrent callers wait for the one in progress, then see its result).
    /// Returns whether a download ran.
    pub async fn refresh_with<F, Fut>(&self, now: DateTime<Utc>, download: F) -> Result<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<PlatformCertificate>>>,
    {
        if !self.certificates_enabled {
            return Ok(false);
        }
        let mut st = self.refresh.lock().await;
        if st.last_attempt.is_some_and(|t| t.elapsed() < self.policy.min_interval) {
            return Ok(false);
        }
        st.last_attempt = Some(Instant::now());
        let certs = download().await?;
        let n = self.add_certificates(certs, now);
        st.last_success = Some(Instant::now());
        tracing::info!(certificates = n, "WeChat Pay platform certificates refreshed");
        Ok(true)
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::pay::{MerchantKey, response_message};

    fn wechat() -> &'static MerchantKey {
        static K: std::sync::OnceLock<MerchantKey> = std::sync::OnceLock::new();
        K.get_or_init(|| MerchantKey::generate().unwrap())
    }

    fn headers<'a>(serial: &'a str, sig: &'a str, ts: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders { serial, signature: sig, timestamp: ts, nonce: "n1", signature_type: Some(SCHEME) }
    }

    #[test]
    fn headers_are_read_by_name_first_value_wins_and_a_missing_one_is_named() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("wechatpay-nonce", HeaderValue::from_static("n1"));
        h.insert("wechatpay-timestamp", HeaderValue::from_static("1700000000"));
        h.insert("wechatpay-signature", HeaderValue::from_static("c2ln"));
        h.append("wechatpay-signature", HeaderValue::from_static("second"));
        h.insert("wechatpay-serialx", HeaderValue::from_static("look-alike"));
        let e = SignatureHeaders::from_headers(&h).unwrap_err();
        assert_eq!(e.to_string(), Error::Signature("missing header wechatpay-serial".into()).to_string());
        h.insert("wechatpay-serial", HeaderValue::from_static("PUB_KEY_ID_1"));
        let got = SignatureHeaders::from_headers(&h).unwrap();
        assert_eq!(
            (got.serial, got.signature, got.timestamp, got.nonce, got.signature_type),
            ("PUB_KEY_ID_1", "c2ln", "1700000000", "n1", None)
        );
        h.insert("Wechatpay-Signature-Type", HeaderValue::from_static(SCHEME));
        assert_eq!(SignatureHeaders::from_headers(&h).unwrap().signature_type, Some(SCHEME));
        // A value that is not visible ASCII reads as missing, as `HeaderMap::get(..).to_str()` would.
        h.insert("wechatpay-nonce", HeaderValue::from_bytes(&[0xE4, 0xB8, 0xAD]).unwrap());
        let e = SignatureHeaders::from_headers(&h).unwrap_err();
        assert_eq!(e.to_string(), Error::Signature("missing header wechatpay-nonce".into()).to_string());
    }

    #[test]
    fn rejections_are_typed() {
        let v = Verifier::new();
        v.add_public_key("PUB_KEY_ID_1", wechat().public_key());
        let body = b"{}";
        let sig = wechat().sign(&response_message("1000", "n1", body)).unwrap();
        v.verify(&headers("PUB_KEY_ID_1", &sig, "1000"), body, 1000).unwrap();
        assert!(matches!(v.verify(&headers("PUB_KEY_ID_1", &sig, "1000"), b"{ }", 1000), Err(Error::Signature(_))));
        assert!(matches!(
            v.verify(&headers("PUB_KEY_ID_2", &sig, "1000"), body, 1000),
            Err(Error::UnknownSerial { serial, .. }) if serial == "PUB_KEY_ID_2"
        ));
        assert!(matches!(
            v.verify(&headers("PUB_KEY_ID_1", &sig, "1000"), body, 1300),
            Err(Error::StaleTimestamp { timestamp: 1000, window_secs: 300 })
        ));
        let probe = format!("WECHATPAY/SIGNTEST/{sig}");
        assert!(matches!(
            v.verify(&headers("PUB_KEY_ID_1", &probe, "1000"), body, 1000),
            Err(Error::Signature(m)) if m.contains("SIGNTEST")
        ));
        let mut h = headers("PUB_KEY_ID_1", &sig, "1000");
        h.signature_type = Some("WECHATPAY2-SM2-WITH-SM3");
        assert!(matches!(v.verify(&h, body, 1000), Err(Error::Signature(m)) if m.contains("unsupported")));
    }

    #[test]
    fn public_key_ids_never_trigger_downloads() {
        let v = Verifier::with_mode(true, RefreshPolicy::default());
        assert!(!v.may_download_for("PUB_KEY_ID_9"));
        assert!(v.may_download_for("5157F09EFDC096DE15EBE81A47057A7232F1B8E1"));
        assert!(!Verifier::new().may_download_for("5157F09EFDC096DE15EBE81A47057A7232F1B8E1"));
    }
}
