//! Mini-program open data (`encryptedData` from `wx.getUserInfo`, `wx.getWeRunData`, …):
//! AES-128-CBC with the user's session_key, PKCS#7 to 16-byte blocks, then the
//! `watermark.appid` check that most SDKs skip.
//!
//! ```
//! use wxshop::crypto::wxa;
//! let v: serde_json::Value = wxa::decrypt_json(
//!     "wx4f4bc4dec97d474b",
//!     "tiihtNczf5v6AKRyjwEUhQ==",
//!     "r7BXXKkLb8qrSNn05n0qiA==",
//!     "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==",
//! ).unwrap();
//! assert_eq!(v["nickName"], "Band");
//! ```

use aes::Aes128;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{CryptoKind, Error, Result};

/// The watermark WeChat puts inside every decrypted open-data payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Watermark {
    /// The appid the data was produced for.
    pub appid: String,
    /// When it was produced (unix seconds).
    pub timestamp: i64,
}

#[derive(Deserialize)]
struct WithWatermark {
    watermark: Watermark,
}

/// Decodes a base64 block of exactly 16 bytes without allocating.
fn b64_block(what: &str, s: &str, kind: CryptoKind) -> Result<[u8; 16]> {
    let mut buf = [0u8; 18];
    let n = STANDARD
        .decode_slice(s.trim(), &mut buf)
        .map_err(|e| Error::crypto(CryptoKind::Base64, format!("{what} is not valid base64: {e}")))
        .and_then(
            |n| if n == 16 { Ok(n) } else { Err(Error::crypto(kind, format!("{what} must be 16 bytes, got {n}"))) },
        );
    match n {
        Ok(_) => Ok(buf[..16].try_into().expect("16 bytes")),
        // A longer value overflows the buffer: report it as a length error, not as base64.
        Err(Error::Crypto { kind: CryptoKind::Base64, .. }) if STANDARD.decode(s.trim()).is_ok() => {
            Err(Error::crypto(kind, format!("{what} must be 16 bytes")))
        }
        Err(e) => Err(e),
    }
}

/// Decrypts to the exact plaintext bytes, without the watermark check.
fn decrypt_unchecked(session_key: &str, iv: &str, encrypted_data: &str) -> Result<Vec<u8>> {
    with_plaintext(session_key, iv, encrypted_data, |plain| Ok(plain.to_vec()))
}

/// Decrypts and hands the plaintext to `f`. The ciphertext is decoded and decrypted in place in a
/// buffer on the stack when it fits (every real payload does: a profile is well under 2 KB), so the
/// common path allocates nothing of its own.
fn with_plaintext<R>(
    session_key: &str,
    iv: &str,
    encrypted_data: &str,
    f: impl FnOnce(&[u8]) -> Result<R>,
) -> Result<R> {
    let key = b64_block("session_key", session_key, CryptoKind::Key)?;
    let iv = b64_block("iv", iv, CryptoKind::Iv)?;
    // Strict standard base64 (padding required, no trailing bits), SIMD where the CPU has it.
    let not_base64 = || Error::crypto(CryptoKind::Base64, "encryptedData is not valid base64");
    let src = encrypted_data.trim().as_bytes();
    let len = base64_simd::STANDARD.decoded_length(src).map_err(|_| not_base64())?;
    let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    let mut heap;
    let out = if len <= stack.len() {
        base64_simd::Out::from_uninit_slice(&mut stack[..len])
    } else {
        heap = vec![0u8; len];
        base64_simd::Out::from_slice(&mut heap)
    };
    let data = base64_simd::STANDARD.decode(src, out).map_err(|_| not_base64())?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(Error::crypto(CryptoKind::Length, "encryptedData is not a whole number of AES blocks"));
    }
    let plain = cbc::Decryptor::<Aes128>::new(&key.into(), &iv.into())
        .decrypt_padded::<Pkcs7>(data)
        .map_err(|_| Error::crypto(CryptoKind::Padding, "bad padding: wrong session_key or iv, or tampered data"))?;
    f(plain)
}

fn check_watermark(watermark: &Watermark, appid: &str) -> Result<()> {
    if !crate::crypto::sig::ct_eq(watermark.appid.as_bytes(), appid.as_bytes()) {
        return Err(Error::crypto(
            CryptoKind::AppidMismatch,
            format!("watermark.appid {} is not {appid}", watermark.appid),
        ));
    }
    Ok(())
}

/// Decrypts to the exact plaintext bytes and checks `watermark.appid == appid`.
pub fn decrypt_bytes(appid: &str, session_key: &str, iv: &str, encrypted_data: &str) -> Result<Vec<u8>> {
    let plain = decrypt_unchecked(session_key, iv, encrypted_data)?;
    let wm: WithWatermark = serde_json::from_slice(&plain)
        .map_err(|e| Error::crypto(CryptoKind::Plaintext, format!("plaintext is not JSON with a watermark: {e}")))?;
    check_watermark(&wm.watermark, appid)?;
    Ok(plain)
}

/// `wx.getUserInfo` encryptedData into [`UserInfo`], with the `watermark.appid` check, parsing the
/// JSON once ([`decrypt_json`] parses it twice: once for the watermark, once for `T`).
pub fn decrypt_user_info(appid: &str, session_key: &str, iv: &str, encrypted_data: &str) -> Result<UserInfo> {
    with_plaintext(session_key, iv, encrypted_data, |plain| user_info(appid, plain))
}

fn user_info(appid: &str, plain: &[u8]) -> Result<UserInfo> {
    let info: UserInfo = match crate::json::from_bytes(plain) {
        Ok(info) => info,
        Err(e) => {
            // The same errors, in the same order, as decrypt_json::<UserInfo>.
            let wm: WithWatermark = serde_json::from_slice(plain).map_err(|e| {
                Error::crypto(CryptoKind::Plaintext, format!("plaintext is not JSON with a watermark: {e}"))
            })?;
            check_watermark(&wm.watermark, appid)?;
            return Err(Error::crypto(CryptoKind::Plaintext, format!("unexpected shape: {e}")));
        }
    };
    check_watermark(&info.watermark, appid)?;
    Ok(info)
}

/// Decrypts, checks the watermark, and decodes into `T`.
pub fn decrypt_json<T: DeserializeOwned>(appid: &str, session_key: &str, iv: &str, encrypted_data: &str) -> Result<T> {
    let plain = decrypt_bytes(appid, session_key, iv, encrypted_data)?;
    serde_json::from_slice(&plain).map_err(|e| Error::crypto(CryptoKind::Plaintext, format!("unexpected shape: {e}")))
}

/// Encrypts open data the way WeChat does (the emulator and tests use it).
pub fn encrypt(session_key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> String {
    let ct = cbc::Encryptor::<Aes128>::new(session_key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext);
    STANDARD.encode(ct)
}

/// The user profile inside `wx.getUserInfo` encryptedData.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// openid.
    pub open_id: Option<String>,
    /// Nickname.
    pub nick_name: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    pub gender: Option<i64>,
    /// Language.
    pub language: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// unionid, when the app is bound to an open-platform account.
    pub union_id: Option<String>,
    /// The checked watermark.
    pub watermark: Watermark,
}
