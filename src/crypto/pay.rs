//! WeChat Pay API v3 cryptography: RSA-SHA256 (PKCS#1 v1.5) signatures, AES-256-GCM resources,
//! RSA-OAEP (SHA-1, MGF1-SHA1) sensitive fields, and the exact messages that get signed.
//!
//! Every RSA operation goes through aws-lc-rs (constant-time; the `rsa` crate's private-key path is
//! the subject of RUSTSEC-2023-0071); AES-256-GCM is RustCrypto `aes-gcm`; certificates are parsed
//! with `x509-cert`. Keys load from PEM and say clearly what is wrong with the usual mistakes
//! (a PKCS#1 key, a certificate where a key belongs, a private key where a public key belongs).
//!
//! ```
//! use wxshop::crypto::pay::{self, MerchantKey};
//! let key = MerchantKey::generate().unwrap();
//! let msg = pay::request_message("GET", "/v3/certificates", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", b"");
//! assert_eq!(msg, b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n");
//! let sig = key.sign(&msg).unwrap();
//! key.public_key().verify(&msg, &sig).unwrap();
//! assert_eq!(format!("{key:?}"), "MerchantKey { bits: 2048, private: \"[redacted]\" }");
//! ```

use std::fmt;

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeyPair as RsaKeyPair, KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::error::{CryptoKind, Error, Result};

/// The signature scheme name in `Authorization` and `Wechatpay-Signature-Type`.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// The prefix WeChat Pay puts on deliberately wrong signatures it sends to probe merchants.
pub const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// The resource algorithm of notifications and certificates.
pub const AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";

fn key_err(msg: impl Into<String>) -> Error {
    Error::crypto(CryptoKind::Key, msg)
}

fn b64(what: &str, s: &str) -> Result<Vec<u8>> {
    STANDARD.decode(s.trim()).map_err(|e| Error::crypto(CryptoKind::Base64, format!("{what} is not valid base64: {e}")))
}

/// What a PEM block's label says it is, for the error messages.
fn describe_label(label: &str) -> &'static str {
    match label {
        "PRIVATE KEY" => "a PKCS#8 private key",
        "RSA PRIVATE KEY" => "a PKCS#1 RSA private key",
        "ENCRYPTED PRIVATE KEY" => "an encrypted PKCS#8 private key",
        "CERTIFICATE" => "an X.509 certificate",
        "PUBLIC KEY" => "a public key",
        "RSA PUBLIC KEY" => "a PKCS#1 RSA public key",
        "CERTIFICATE REQUEST" => "a certificate signing request",
        _ => "an unexpected PEM block",
    }
}

fn parse_pem(what: &str, text: &str) -> Result<pem::Pem> {
    let blocks = pem::parse_many(text.as_bytes()).map_err(|e| key_err(format!("{what}: not PEM ({e})")))?;
    let mut blocks = blocks.into_iter();
    match (blocks.next(), blocks.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(key_err(format!("{what}: no PEM block found (expected -----BEGIN …-----)"))),
        (Some(first), Some(second)) => Err(key_err(format!(
            "{what}: the file holds more than one PEM block ({} then {}); give it exactly one",
            first.tag(),
            second.tag()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// The merchant private key
// ---------------------------------------------------------------------------------------------

/// The merchant API private key (`apiclient_key.pem`, PKCS#8): signs requests and `paySign`,
/// and decrypts sensitive fields WeChat encrypted for the merchant.
pub struct MerchantKey {
    signer: RsaKeyPair,
    decrypter: OaepPrivateDecryptingKey,
    pkcs8: Zeroizing<Vec<u8>>,
    rng: SystemRandom,
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantKey")
            .field("bits", &(self.signer.public_modulus_len() * 8))
            .field("private", &"[redacted]")
            .finish()
    }
}

impl MerchantKey {
    /// Loads `apiclient_key.pem`. A PKCS#1 key (`BEGIN RSA PRIVATE KEY`), a certificate, a public
    /// key or an encrypted key are refused with a message saying what to do instead.
    pub fn from_pem(text: &str) -> Result<Self> {
        let block = parse_pem("merchant private key", text)?;
        match block.tag() {
            "PRIVATE KEY" => Self::from_pkcs8_der(block.contents()),
            "RSA PRIVATE KEY" => Err(key_err(
                "the merchant private key is PKCS#1 (BEGIN RSA PRIVATE KEY); WeChat Pay's apiclient_key.pem is \
                 PKCS#8 (BEGIN PRIVATE KEY) — convert it with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out \
                 apiclient_key.pem`",
            )),
            "ENCRYPTED PRIVATE KEY" => Err(key_err(
                "the merchant private key is encrypted; decrypt it first with `openssl pkcs8 -in key.pem -out \
                 apiclient_key.pem`",
            )),
            "CERTIFICATE" => Err(key_err(
                "got a certificate where the merchant private key belongs — that is apiclient_cert.pem (or a \
                 platform certificate); pass apiclient_key.pem",
            )),
            other => Err(key_err(format!(
                "got {} ({other}) where the merchant private key (apiclient_key.pem, BEGIN PRIVATE KEY) belongs",
                describe_label(other)
            ))),
        }
    }

    /// Loads a PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let signer = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| key_err(format!("the merchant private key is not an RSA PKCS#8 key: {e}")))?;
        let decrypter = PrivateDecryptingKey::from_pkcs8(der)
            .ok()
            .and_then(|k| OaepPrivateDecryptingKey::new(k).ok())
            .ok_or_else(|| key_err("the merchant private key cannot be used for RSA-OAEP decryption"))?;
        Ok(MerchantKey { signer, decrypter, pkcs8: Zeroizing::new(der.to_vec()), rng: SystemRandom::new() })
    }

    /// A fresh RSA-2048 key (tests and the emulator).
    pub fn generate() -> Result<Self> {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| key_err("RSA key generation failed"))?;
        let der = kp.as_der().map_err(|_| key_err("RSA key export failed"))?;
        Self::from_pkcs8_der(der.as_ref())
    }

    /// The key as a PKCS#8 PEM (`BEGIN PRIVATE KEY`), zeroized on drop.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", self.pkcs8.to_vec())))
    }

    /// The matching public key (what the merchant certificate carries).
    pub fn public_key(&self) -> PayPublicKey {
        PayPublicKey::from_der(self.signer.public_key().as_ref()).expect("an RSA key pair has a valid public key")
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.signer.public_modulus_len() * 8
    }

    /// RSA-SHA256 PKCS#1 v1.5 signature of `message`, raw bytes.
    pub fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>> {
        let mut sig = vec![0u8; self.signer.public_modulus_len()];
        self.signer
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
            .map_err(|_| Error::crypto(CryptoKind::Rsa, "RSA signing failed"))?;
        Ok(sig)
    }

    /// RSA-SHA256 PKCS#1 v1.5 signature of `message`, base64 (what WeChat Pay expects).
    pub fn sign(&self, message: &[u8]) -> Result<String> {
        Ok(STANDARD.encode(self.sign_raw(message)?))
    }

    /// Decrypts a base64 RSA-OAEP (SHA-1, MGF1-SHA1) ciphertext of a sensitive field that WeChat
    /// encrypted with the merchant's public key.
    pub fn decrypt_oaep(&self, ciphertext_b64: &str) -> Result<Zeroizing<String>> {
        let ct = b64("the OAEP ciphertext", ciphertext_b64)?;
        let mut out = Zeroizing::new(vec![0u8; self.decrypter.min_output_size()]);
        let plain = self
            .decrypter
            .decrypt(&OAEP_SHA1_MGF1SHA1, &ct, &mut out, None)
            .map_err(|_| Error::crypto(CryptoKind::Rsa, "RSA-OAEP decryption failed: wrong key or corrupted data"))?;
        let text = std::str::from_utf8(plain)
            .map_err(|_| Error::crypto(CryptoKind::Plaintext, "the decrypted field is not UTF-8"))?;
        Ok(Zeroizing::new(text.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// WeChat Pay public keys (certificate keys and PUB_KEY_ID keys alike)
// ---------------------------------------------------------------------------------------------

/// An RSA public key of WeChat Pay (from a platform certificate or a `PUB_KEY_ID_…` public key),
/// or the public half of a merchant key: verifies signatures and OAEP-encrypts sensitive fields.
#[derive(Clone)]
pub struct PayPublicKey {
    verifier: std::sync::Arc<ParsedPublicKey>,
    spki: Vec<u8>,
}

impl fmt::Debug for PayPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = crate::crypto::sig::sha1_hex(&self.spki);
        f.debug_struct("PayPublicKey").field("spki_sha1", &&fp[..16]).finish()
    }
}

impl PartialEq for PayPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for PayPublicKey {}

impl PayPublicKey {
    /// Loads a public key PEM (`BEGIN PUBLIC KEY`, the WeChat Pay public key file
    /// `pub_key.pem`; `BEGIN RSA PUBLIC KEY` also works). A certificate or private key is refused.
    pub fn from_pem(text: &str) -> Result<Self> {
        let block = parse_pem("WeChat Pay public key", text)?;
        match block.tag() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Self::from_der(block.contents()),
            "CERTIFICATE" => Err(key_err(
                "got a certificate where the WeChat Pay public key (pub_key.pem, BEGIN PUBLIC KEY) belongs — load \
                 it as a platform certificate instead",
            )),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => Err(key_err(
                "got a private key where the WeChat Pay public key belongs — is this your apiclient_key.pem? \
                 Responses are verified with WeChat Pay's public key (pub_key.pem) or platform certificate",
            )),
            other => {
                Err(key_err(format!("got {} ({other}) where the WeChat Pay public key belongs", describe_label(other))))
            }
        }
    }

    /// Loads a DER public key (SubjectPublicKeyInfo or PKCS#1 RSAPublicKey).
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let parsed =
            aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|e| key_err(format!("not an RSA public key: {e}")))?;
        let spki = parsed.as_der().map_err(|_| key_err("RSA public key export failed"))?.as_ref().to_vec();
        let verifier = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &spki)
            .map_err(|e| key_err(format!("RSA public key rejected for verification: {e}")))?;
        Ok(PayPublicKey { verifier: std::sync::Arc::new(verifier), spki })
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// `BEGIN PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.spki.clone()))
    }

    /// Verifies a raw RSA-SHA256 PKCS#1 v1.5 signature.
    pub fn verify_raw(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        self.verifier
            .verify_sig(message, signature)
            .map_err(|_| Error::Signature("RSA-SHA256 signature does not verify".into()))
    }

    /// Verifies a base64 signature; a `WECHATPAY/SIGNTEST/` probe is always rejected.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<()> {
        self.verify_parts(&[message], signature_b64)
    }

    /// Verifies a base64 signature over the concatenation of `parts` without copying them into
    /// one buffer (responses and notifications: `TIMESTAMP\nNONCE\nBODY\n`).
    pub fn verify_parts(&self, parts: &[&[u8]], signature_b64: &str) -> Result<()> {
        if signature_b64.starts_with(SIGNTEST_PREFIX) {
            return Err(Error::Signature(
                "a WeChat Pay signature probe (WECHATPAY/SIGNTEST/…) — rejected, as WeChat Pay expects".into(),
            ));
        }
        let mut sig = [0u8; 1024];
        let n = STANDARD
            .decode_slice(signature_b64.trim(), &mut sig)
            .map_err(|_| Error::Signature("the signature is not valid base64 (or longer than RSA-8192)".into()))?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        self.verifier
            .verify_digest_sig(&ctx.finish(), &sig[..n])
            .map_err(|_| Error::Signature("RSA-SHA256 signature does not verify".into()))
    }

    /// RSA-OAEP (SHA-1, MGF1-SHA1) encryption of a sensitive field, base64.
    pub fn encrypt_oaep(&self, plaintext: &str) -> Result<String> {
        let key = PublicEncryptingKey::from_der(&self.spki)
            .ok()
            .and_then(|k| OaepPublicEncryptingKey::new(k).ok())
            .ok_or_else(|| key_err("RSA public key rejected for encryption"))?;
        let max = key.max_plaintext_size(&OAEP_SHA1_MGF1SHA1);
        if plaintext.len() > max {
            return Err(Error::InvalidRequest(format!(
                "a sensitive field of {} bytes exceeds the RSA-OAEP limit of {max}",
                plaintext.len()
            )));
        }
        let mut out = vec![0u8; key.ciphertext_size()];
        let ct = key
            .encrypt(&OAEP_SHA1_MGF1SHA1, plaintext.as_bytes(), &mut out, None)
            .map_err(|_| Error::crypto(CryptoKind::Rsa, "RSA-OAEP encryption failed"))?;
        Ok(STANDARD.encode(ct))
    }
}

// ---------------------------------------------------------------------------------------------
// Platform certificates
// ---------------------------------------------------------------------------------------------

/// A WeChat Pay platform certificate: serial number, validity and public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PlatformCertificate {
    serial_no: String,
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    key: PayPublicKey,
    pem: String,
}

impl fmt::Debug for PlatformCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformCertificate")
            .field("serial_no", &self.serial_no)
            .field("subject", &self.subject)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The serial as WeChat Pay writes it: uppercase hex without leading zeros (Go's `%X` of the
/// big integer, Java's `toString(16)`).
pub fn normalize_serial(serial: &str) -> String {
    let s = serial.trim().trim_start_matches('0').to_ascii_uppercase();
    if s.is_empty() { "0".into() } else { s }
}

impl PlatformCertificate {
    /// Parses a PEM certificate. A private or public key where the certificate belongs is refused.
    pub fn from_pem(text: &str) -> Result<Self> {
        let block = parse_pem("platform certificate", text)?;
        match block.tag() {
            "CERTIFICATE" => Self::from_der(block.contents()),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => Err(key_err(
                "got a private key where the WeChat Pay platform certificate belongs — is this apiclient_key.pem?",
            )),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(key_err(
                "got a public key where a platform certificate belongs — a WeChat Pay public key (PUB_KEY_ID_…) is \
                 configured as a public key, not a certificate",
            )),
            other => {
                Err(key_err(format!("got {} ({other}) where the platform certificate belongs", describe_label(other))))
            }
        }
    }

    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        use x509_cert::der::{Decode, Encode};
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|e| key_err(format!("not an X.509 certificate: {e}")))?;
        let tbs = &cert.tbs_certificate;
        let serial_no = normalize_serial(&hex::encode_upper(tbs.serial_number.as_bytes()));
        let to_utc = |t: x509_cert::time::Time| {
            DateTime::<Utc>::from_timestamp(t.to_unix_duration().as_secs() as i64, 0).unwrap_or_default()
        };
        let spki = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| key_err(format!("certificate public key does not encode: {e}")))?;
        Ok(PlatformCertificate {
            serial_no,
            subject: tbs.subject.to_string(),
            not_before: to_utc(tbs.validity.not_before),
            not_after: to_utc(tbs.validity.not_after),
            key: PayPublicKey::from_der(&spki)?,
            pem: pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())),
        })
    }

    /// The serial number (uppercase hex), as it appears in `Wechatpay-Serial`.
    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    /// The subject distinguished name.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Start of validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// The public key.
    pub fn public_key(&self) -> &PayPublicKey {
        &self.key
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A merchant API certificate (`apiclient_cert.pem`) names the merchant number as its CN;
    /// platform certificates do not. Used to explain a mix-up.
    pub fn looks_like_merchant_certificate(&self) -> bool {
        self.subject.split(',').any(|rdn| {
            rdn.trim().strip_prefix("CN=").is_some_and(|cn| !cn.is_empty() && cn.bytes().all(|b| b.is_ascii_digit()))
        })
    }

    /// Refuses the merchant's own certificate where a platform certificate belongs.
    pub fn check_not_merchant(&self, merchant_serial: &str, merchant_key: Option<&PayPublicKey>) -> Result<()> {
        if normalize_serial(merchant_serial) == self.serial_no || merchant_key.is_some_and(|k| *k == self.key) {
            return Err(key_err(format!(
                "certificate {} is your merchant API certificate (apiclient_cert.pem), not a WeChat Pay platform \
                 certificate — download platform certificates from /v3/certificates or use the WeChat Pay public key",
                self.serial_no
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The APIv3 key and AES-256-GCM resources
// ---------------------------------------------------------------------------------------------

/// The 32-character APIv3 key that encrypts notification and certificate resources.
#[derive(Clone)]
pub struct ApiV3Key {
    cipher: Aes256Gcm,
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key([redacted])")
    }
}

impl ApiV3Key {
    /// The key as set in the merchant platform: exactly 32 bytes.
    pub fn new(key: &str) -> Result<Self> {
        Self::from_bytes(key.as_bytes())
    }

    /// The key from raw bytes (must be 32).
    pub fn from_bytes(key: &[u8]) -> Result<Self> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| {
            key_err(format!("the APIv3 key must be exactly 32 bytes, got {} (it is not the APIv2 key)", key.len()))
        })?;
        Ok(ApiV3Key { cipher })
    }

    /// Decrypts an `AEAD_AES_256_GCM` resource: `nonce` (12 characters), `associated_data`, and
    /// base64 `ciphertext` with the 16-byte tag appended.
    pub fn decrypt(&self, nonce: &str, associated_data: &str, ciphertext_b64: &str) -> Result<Vec<u8>> {
        let nonce = Nonce::try_from(nonce.as_bytes()).map_err(|_| {
            Error::crypto(CryptoKind::Iv, format!("the resource nonce must be 12 bytes, got {}", nonce.len()))
        })?;
        // Strict standard base64 (padding required, no trailing bits), SIMD where the CPU has it.
        let mut buf = base64_simd::STANDARD
            .decode_to_vec(ciphertext_b64.trim().as_bytes())
            .map_err(|_| Error::crypto(CryptoKind::Base64, "the resource ciphertext is not valid base64"))?;
        if buf.len() < 16 {
            return Err(Error::crypto(CryptoKind::Length, "the resource ciphertext is shorter than its 16-byte tag"));
        }
        // In place: the decoded buffer becomes the plaintext, with no second allocation.
        self.cipher.decrypt_in_place(&nonce, associated_data.as_bytes(), &mut buf).map_err(|_| {
            Error::crypto(
                CryptoKind::Tag,
                "AES-GCM tag mismatch: wrong APIv3 key, or tampered ciphertext/nonce/associated_data",
            )
        })?;
        Ok(buf)
    }

    /// Encrypts a resource (the emulator and test fixtures): base64 ciphertext with the tag appended.
    pub fn encrypt(&self, nonce: &str, associated_data: &str, plaintext: &[u8]) -> Result<String> {
        let nonce = Nonce::try_from(nonce.as_bytes())
            .map_err(|_| Error::crypto(CryptoKind::Iv, format!("the nonce must be 12 bytes, got {}", nonce.len())))?;
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: associated_data.as_bytes() })
            .map_err(|_| Error::crypto(CryptoKind::Length, "AES-GCM encryption failed"))?;
        Ok(STANDARD.encode(ct))
    }
}

// ---------------------------------------------------------------------------------------------
// The signed messages
// ---------------------------------------------------------------------------------------------

/// `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n` — what a request signature covers (the trailing
/// newline is there even for an empty body).
pub fn request_message(method: &str, path_and_query: &str, timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(method.len() + path_and_query.len() + timestamp.len() + nonce.len() + body.len() + 5);
    for part in [method.as_bytes(), path_and_query.as_bytes(), timestamp.as_bytes(), nonce.as_bytes(), body] {
        m.extend_from_slice(part);
        m.push(b'\n');
    }
    m
}

/// `TIMESTAMP\nNONCE\nBODY\n` — what a response or notification signature covers (raw body bytes).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    for part in [timestamp.as_bytes(), nonce.as_bytes(), body] {
        m.extend_from_slice(part);
        m.push(b'\n');
    }
    m
}

/// `appId\ntimeStamp\nnonceStr\npackage\n` — what `paySign` of `wx.requestPayment` covers
/// (signType is not signed).
pub fn pay_sign_message(appid: &str, timestamp: &str, nonce: &str, package: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(appid.len() + timestamp.len() + nonce.len() + package.len() + 4);
    for part in [appid, timestamp, nonce, package] {
        m.extend_from_slice(part.as_bytes());
        m.push(b'\n');
    }
    m
}

/// The `Authorization` header value.
pub fn authorization(mchid: &str, serial_no: &str, timestamp: &str, nonce: &str, signature: &str) -> String {
    format!(
        "{SCHEME} mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\""
    )
}

/// Signs a request and returns the whole `Authorization` header value.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    key: &MerchantKey,
    mchid: &str,
    serial_no: &str,
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Result<String> {
    let signature = key.sign(&request_message(method, path_and_query, timestamp, nonce, body))?;
    Ok(authorization(mchid, serial_no, timestamp, nonce, &signature))
}

/// The parsed fields of an `Authorization: WECHATPAY2-SHA256-RSA2048 …` header (the emulator
/// verifies merchants with it). Field order is free, as WeChat allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizationFields {
    /// `mchid`.
    pub mchid: String,
    /// `nonce_str`.
    pub nonce_str: String,
    /// `signature`.
    pub signature: String,
    /// `timestamp`.
    pub timestamp: String,
    /// `serial_no` (the merchant certificate serial).
    pub serial_no: String,
}

/// Parses an `Authorization` header value; `None` when the scheme or a field is missing.
pub fn parse_authorization(header: &str) -> Option<AuthorizationFields> {
    let rest = header.trim().strip_prefix(SCHEME)?.trim_start();
    let mut f = AuthorizationFields::default();
    for pair in rest.split(',') {
        let (k, v) = pair.trim().split_once('=')?;
        let v = v.trim().strip_prefix('"')?.strip_suffix('"')?.to_string();
        match k.trim() {
            "mchid" => f.mchid = v,
            "nonce_str" => f.nonce_str = v,
            "signature" => f.signature = v,
            "timestamp" => f.timestamp = v,
            "serial_no" => f.serial_no = v,
            _ => {}
        }
    }
    let complete = [&f.mchid, &f.nonce_str, &f.signature, &f.timestamp, &f.serial_no].iter().all(|s| !s.is_empty());
    complete.then_some(f)
}

/// A random nonce of 32 uppercase hex characters (requests, paySign).
pub fn nonce32() -> String {
    hex::encode_upper(rand::random::<[u8; 16]>())
}

/// A random 12-character alphanumeric nonce (AES-GCM resources).
pub fn nonce12() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Checks a `Wechatpay-Timestamp` against `now` (unix seconds): rejected when
/// `|now − timestamp| ≥ window_secs`, as the official SDKs do.
pub fn check_timestamp(timestamp: &str, now: i64, window_secs: i64) -> Result<i64> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Error::Signature(format!("Wechatpay-Timestamp {timestamp:?} is not a number")))?;
    if (now - ts).abs() >= window_secs {
        return Err(Error::StaleTimestamp { timestamp: ts, window_secs });
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> &'static MerchantKey {
        static K: std::sync::OnceLock<MerchantKey> = std::sync::OnceLock::new();
        K.get_or_init(|| MerchantKey::generate().unwrap())
    }

    #[test]
    fn request_message_matches_the_published_example() {
        assert_eq!(
            request_message("GET", "/v3/certificates", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", b""),
            b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n".to_vec()
        );
    }

    #[test]
    fn pay_sign_message_matches_the_published_example() {
        assert_eq!(
            pay_sign_message(
                "wx8888888888888888",
                "1414561699",
                "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                "prepay_id=wx201410272009395522657a690389285100"
            ),
            b"wx8888888888888888\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx201410272009395522657a690389285100\n"
                .to_vec()
        );
    }

    #[test]
    fn response_message_of_an_empty_204_body_is_three_lines() {
        assert_eq!(response_message("1", "n", b""), b"1\nn\n\n".to_vec());
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let k = key();
        let msg = response_message("1554209980", "c5ac7061fccab6bf3e254dcf98995b8c", b"{\"a\":1}");
        let sig = k.sign(&msg).unwrap();
        assert_eq!(STANDARD.decode(&sig).unwrap().len(), 256);
        k.public_key().verify(&msg, &sig).unwrap();
        let tampered = response_message("1554209980", "c5ac7061fccab6bf3e254dcf98995b8c", b"{\"a\":2}");
        assert!(matches!(k.public_key().verify(&tampered, &sig), Err(Error::Signature(_))));
        let probe = format!("{SIGNTEST_PREFIX}{sig}");
        assert!(matches!(k.public_key().verify(&msg, &probe), Err(Error::Signature(m)) if m.contains("SIGNTEST")));
    }

    #[test]
    fn pem_round_trip_and_mistakes() {
        let k = key();
        let pem = k.to_pkcs8_pem();
        let again = MerchantKey::from_pem(&pem).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        // PKCS#1 is refused with the conversion command.
        let pkcs1 = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", vec![1, 2, 3]));
        let e = MerchantKey::from_pem(&pkcs1).unwrap_err().to_string();
        assert!(e.contains("PKCS#1") && e.contains("openssl pkcs8 -topk8"), "{e}");
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        let e = MerchantKey::from_pem(&cert).unwrap_err().to_string();
        assert!(e.contains("apiclient_cert.pem"), "{e}");
        let e = PayPublicKey::from_pem(&pem).unwrap_err().to_string();
        assert!(e.contains("private key where the WeChat Pay public key belongs"), "{e}");
        let pubpem = k.public_key().to_pem();
        assert_eq!(PayPublicKey::from_pem(&pubpem).unwrap(), k.public_key());
        assert!(!format!("{k:?}").contains("MII"));
    }

    #[test]
    fn oaep_round_trip() {
        let k = key();
        let ct = k.public_key().encrypt_oaep("张三").unwrap();
        assert_eq!(STANDARD.decode(&ct).unwrap().len(), 256);
        assert_eq!(k.decrypt_oaep(&ct).unwrap().as_str(), "张三");
        let mut raw = STANDARD.decode(&ct).unwrap();
        raw[10] ^= 1;
        assert!(matches!(k.decrypt_oaep(&STANDARD.encode(raw)), Err(Error::Crypto { kind: CryptoKind::Rsa, .. })));
    }

    #[test]
    fn aes_gcm_round_trip_and_tamper() {
        let key = ApiV3Key::new("0123456789abcdef0123456789abcdef").unwrap();
        let ct = key.encrypt("fdasflkja484", "transaction", b"{\"x\":1}").unwrap();
        assert_eq!(key.decrypt("fdasflkja484", "transaction", &ct).unwrap(), b"{\"x\":1}");
        for (nonce, aad) in [("fdasflkja485", "transaction"), ("fdasflkja484", "refund")] {
            assert!(matches!(key.decrypt(nonce, aad, &ct), Err(Error::Crypto { kind: CryptoKind::Tag, .. })));
        }
        let mut raw = STANDARD.decode(&ct).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(matches!(
            key.decrypt("fdasflkja484", "transaction", &STANDARD.encode(&raw)),
            Err(Error::Crypto { kind: CryptoKind::Tag, .. })
        ));
        assert!(matches!(ApiV3Key::new("short"), Err(Error::Crypto { kind: CryptoKind::Key, .. })));
        assert_eq!(format!("{key:?}"), "ApiV3Key([redacted])");
    }

    #[test]
    fn authorization_header_parses_back() {
        let h = authorization("1900009191", "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C", "1554208460", "NONCE", "c2ln");
        assert_eq!(
            h,
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900009191\",nonce_str=\"NONCE\",signature=\"c2ln\",timestamp=\"1554208460\",serial_no=\"1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C\""
        );
        let f = parse_authorization(&h).unwrap();
        assert_eq!(f.mchid, "1900009191");
        assert_eq!(f.signature, "c2ln");
        assert!(parse_authorization("Bearer x").is_none());
    }

    #[test]
    fn timestamp_window() {
        assert_eq!(check_timestamp("1000", 1299, 300).unwrap(), 1000);
        assert!(matches!(check_timestamp("1000", 1300, 300), Err(Error::StaleTimestamp { timestamp: 1000, .. })));
        assert!(matches!(check_timestamp("1300", 1000, 300), Err(Error::StaleTimestamp { .. })));
        assert!(matches!(check_timestamp("x", 1000, 300), Err(Error::Signature(_))));
    }

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("00ab"), "AB");
        assert_eq!(
            normalize_serial("5157F09EFDC096DE15EBE81A47057A7232F1B8E1"),
            "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
        );
    }
}
