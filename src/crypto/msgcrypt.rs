//! WXBizMsgCrypt: the AES-256-CBC envelope of WeChat's message push in compatible and secure modes.
//!
//! - key = base64(EncodingAESKey + "="), decoded leniently: the 43rd character of a real key often
//!   carries non-zero trailing bits, which a strict decoder rejects;
//! - IV = key[..16];
//! - plaintext frame = random(16) ‖ u32 big-endian length ‖ message ‖ appid, PKCS#7-padded to
//!   **32**-byte blocks (not AES's 16);
//! - `msg_signature` = sha1 of the sorted token, timestamp, nonce and `Encrypt`.
//!
//! Decryption checks, in order: the signature (constant time), the base64, the block length, the
//! padding (1..=32, every byte equal), the length field, and the trailing appid (constant time).
//! Each failure is its own typed error.
//!
//! ```
//! use wxshop::crypto::msgcrypt::MsgCrypt;
//! // WeChat's published Python demo (Sample.py).
//! let crypt = MsgCrypt::new("spamtest", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx2c2769f8efd9abc2").unwrap();
//! let encrypt = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
//! let xml = crypt
//!     .decrypt_verified("5d197aaffba7e9b25a30732f161a50dee96bd5fa", "1409735669", "1320562132", encrypt)
//!     .unwrap();
//! assert!(std::str::from_utf8(&xml).unwrap().contains("<Content><![CDATA[abcdteT]]></Content>"));
//!
//! // Replies go the other way.
//! let reply = crypt.encrypt_reply(b"<xml>...</xml>", "1409735670", "nonce1");
//! assert_eq!(crypt.decrypt_verified(&reply.msg_signature, "1409735670", "nonce1", &reply.encrypt).unwrap(), b"<xml>...</xml>");
//! ```

use std::fmt;
use std::sync::Arc;

use aes::Aes256;
use aws_lc_rs::cipher::{AES_256, DecryptingKey, DecryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
#[cfg(test)]
use base64::engine::general_purpose::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::sig;

/// The [`Error::Signature`] message of a `msg_signature` in uppercase hex.
pub(crate) const UPPERCASE_MSG_SIGNATURE: &str = "msg_signature is uppercase hex; WeChat signs in lowercase hex";
use crate::error::{CryptoKind, Error, Result};

/// The PKCS#7 block size WXBizMsgCrypt pads to.
pub const BLOCK: usize = 32;

/// Length of an EncodingAESKey.
pub const ENCODING_AES_KEY_LEN: usize = 43;

/// Real EncodingAESKeys may carry non-zero trailing bits in their last character; accept them.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes an EncodingAESKey (43 base64 characters) into the 32-byte AES key.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<Zeroizing<[u8; 32]>> {
    if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
        return Err(Error::crypto(
            CryptoKind::Key,
            format!("EncodingAESKey must be {ENCODING_AES_KEY_LEN} characters, got {}", encoding_aes_key.len()),
        ));
    }
    let mut padded = Zeroizing::new(String::with_capacity(44));
    padded.push_str(encoding_aes_key);
    padded.push('=');
    let bytes = Zeroizing::new(
        LENIENT
            .decode(padded.as_bytes())
            .map_err(|_| Error::crypto(CryptoKind::Key, "EncodingAESKey is not base64"))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(Error::crypto(CryptoKind::Key, "EncodingAESKey does not decode to 32 bytes"));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// An encrypted reply: the four fields WeChat expects back in secure mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedReply {
    /// Base64 ciphertext.
    pub encrypt: String,
    /// sha1 of the sorted token, timestamp, nonce and `encrypt`, lowercase hex.
    pub msg_signature: String,
    /// The timestamp signed.
    pub timestamp: String,
    /// The nonce signed.
    pub nonce: String,
}

impl EncryptedReply {
    /// The XML envelope: `<xml><Encrypt>…</Encrypt><MsgSignature>…</MsgSignature><TimeStamp>…</TimeStamp><Nonce>…</Nonce></xml>`.
    pub fn to_xml(&self) -> String {
        // Base64, hex and our nonces never contain "]]>", so CDATA is safe; the timestamp is digits.
        format!(
            "<xml><Encrypt><![CDATA[{}]]></Encrypt><MsgSignature><![CDATA[{}]]></MsgSignature><TimeStamp>{}</TimeStamp><Nonce><![CDATA[{}]]></Nonce></xml>",
            self.encrypt,
            self.msg_signature,
            xml_text(&self.timestamp),
            cdata_safe(&self.nonce)
        )
    }

    /// The JSON envelope: `{"Encrypt","MsgSignature","TimeStamp" (a number when it is one),"Nonce"}`.
    pub fn to_json(&self) -> String {
        let ts = match self.timestamp.parse::<i64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(self.timestamp.clone()),
        };
        serde_json::json!({
            "Encrypt": self.encrypt,
            "MsgSignature": self.msg_signature,
            "TimeStamp": ts,
            "Nonce": self.nonce,
        })
        .to_string()
    }
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cdata_safe(s: &str) -> String {
    s.replace("]]>", "]]]]><![CDATA[>")
}

/// One app's WXBizMsgCrypt: token, AES key and appid. Cheap to clone; `Debug` redacts the secrets.
#[derive(Clone)]
pub struct MsgCrypt {
    token: SecretString,
    key: Zeroizing<[u8; 32]>,
    appid: String,
    /// The AES-256-CBC decryption key schedule, expanded once: aws-lc's CBC decrypts a 1 KB push
    /// faster than the RustCrypto one, and it zeroizes the schedule when dropped.
    decrypting: Arc<DecryptingKey>,
}

impl fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("token", &"[redacted]")
            .field("key", &"[redacted]")
            .field("appid", &self.appid)
            .finish()
    }
}

impl MsgCrypt {
    /// Builds from the console's Token, EncodingAESKey (43 characters) and the appid.
    pub fn new(token: impl Into<String>, encoding_aes_key: &str, appid: impl Into<String>) -> Result<Self> {
        let appid = appid.into();
        if appid.is_empty() {
            return Err(Error::Config("appid is empty".into()));
        }
        let key = decode_aes_key(encoding_aes_key)?;
        let decrypting = UnboundCipherKey::new(&AES_256, &key[..])
            .and_then(DecryptingKey::cbc)
            .map_err(|_| Error::crypto(CryptoKind::Key, "the AES key was refused"))?;
        Ok(MsgCrypt { token: SecretString::from(token.into()), key, appid, decrypting: Arc::new(decrypting) })
    }

    /// The appid the trailing field must name.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// `msg_signature` of an `Encrypt` value.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        sig::sha1_sorted(&[self.token.expose_secret(), timestamp, nonce, encrypt])
    }

    /// Checks `msg_signature` in constant time. WeChat sends it in lowercase hex; an uppercase
    /// one is refused (as wechatpy does) with its own message.
    pub fn verify_signature(&self, msg_signature: &str, timestamp: &str, nonce: &str, encrypt: &str) -> Result<()> {
        if sig::verify_sha1_sorted(&[self.token.expose_secret(), timestamp, nonce, encrypt], msg_signature) {
            return Ok(());
        }
        // Uppercase never verifies (WeChat signs in lowercase); telling it apart is only for the message,
        // so it is looked at once verification has failed, off the hot path.
        if sig::is_uppercase_hex_sha1(msg_signature) {
            return Err(Error::Signature(UPPERCASE_MSG_SIGNATURE.into()));
        }
        Err(Error::Signature("msg_signature does not match sha1(sort(token, timestamp, nonce, Encrypt))".into()))
    }

    /// Verifies `msg_signature`, then decrypts `encrypt` (see [`MsgCrypt::decrypt`]).
    pub fn decrypt_verified(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<Vec<u8>> {
        self.verify_signature(msg_signature, timestamp, nonce, encrypt)?;
        self.decrypt(encrypt)
    }

    /// Decrypts `encrypt` without checking a signature: the message bytes, after the padding,
    /// length-field and appid checks. Use [`MsgCrypt::decrypt_verified`] on anything from the network.
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>> {
        // Strict standard base64 (padding required, no trailing bits), SIMD where the CPU has it.
        let mut buf = base64_simd::STANDARD
            .decode_to_vec(encrypt.as_bytes())
            .map_err(|_| Error::crypto(CryptoKind::Base64, "Encrypt is not valid base64"))?;
        if buf.is_empty() || buf.len() % BLOCK != 0 {
            return Err(Error::crypto(
                CryptoKind::Length,
                format!("ciphertext of {} bytes is not a whole number of {BLOCK}-byte blocks", buf.len()),
            ));
        }
        // WeChat's IV is the key's first 16 bytes.
        let iv: [u8; 16] = self.key[..16].try_into().expect("16 of 32 bytes");
        self.decrypting
            .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| Error::crypto(CryptoKind::Length, "ciphertext is not whole AES blocks"))?;
        // The plaintext is the message handed back to the caller, not a secret: no zeroizing copy.
        let body_len = unpad(&buf)?.len();
        if body_len < 20 {
            return Err(Error::crypto(CryptoKind::Length, "plaintext is shorter than random(16) + length(4)"));
        }
        let len = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]) as usize;
        let rest = body_len - 20;
        if len > rest {
            return Err(Error::crypto(
                CryptoKind::Length,
                format!("length field {len} points past the end of {rest} plaintext bytes"),
            ));
        }
        let appid = &buf[20 + len..body_len];
        if !sig::ct_eq(appid, self.appid.as_bytes()) {
            return Err(Error::crypto(
                CryptoKind::AppidMismatch,
                format!("the trailing appid {:?} is not {}", String::from_utf8_lossy(appid), self.appid),
            ));
        }
        buf.copy_within(20..20 + len, 0);
        buf.truncate(len);
        Ok(buf)
    }

    /// Encrypts `msg` with a fresh random prefix.
    pub fn encrypt(&self, msg: &[u8]) -> String {
        self.encrypt_with_random(&rand::random::<[u8; 16]>(), msg)
    }

    /// Encrypts `msg` with the given 16-byte random prefix (known-answer tests and the emulator).
    pub fn encrypt_with_random(&self, random: &[u8; 16], msg: &[u8]) -> String {
        let body_len = 16 + 4 + msg.len() + self.appid.len();
        let pad = BLOCK - body_len % BLOCK;
        let mut buf = Vec::with_capacity(body_len + pad);
        buf.extend_from_slice(random);
        buf.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        buf.extend_from_slice(msg);
        buf.extend_from_slice(self.appid.as_bytes());
        buf.resize(body_len + pad, pad as u8);
        let key = &*self.key;
        let iv: &[u8; 16] = key[..16].try_into().expect("16 of 32 bytes");
        let n = buf.len();
        let ct = cbc::Encryptor::<Aes256>::new(key.into(), iv.into())
            .encrypt_padded::<NoPadding>(&mut buf, n)
            .expect("the buffer is whole blocks");
        base64_simd::STANDARD.encode_to_string(ct)
    }

    /// Encrypts and signs a reply with the given timestamp and nonce.
    pub fn encrypt_reply(&self, msg: &[u8], timestamp: &str, nonce: &str) -> EncryptedReply {
        let encrypt = self.encrypt(msg);
        let msg_signature = self.signature(timestamp, nonce, &encrypt);
        EncryptedReply { encrypt, msg_signature, timestamp: timestamp.to_string(), nonce: nonce.to_string() }
    }
}

/// Strict PKCS#7 removal for 32-byte blocks: the pad byte is 1..=32 and every pad byte equals it.
/// Branch-free over the whole last block (plain integer masks: a `subtle` call per byte cost more
/// than the AES itself), though the signature check before it already closes any padding oracle.
fn unpad(plain: &[u8]) -> Result<&[u8]> {
    let n = plain.len();
    let pad = plain[n - 1];
    let tail = &plain[n - BLOCK..];
    let mut diff = 0u8;
    for (i, b) in tail.iter().enumerate() {
        // 0xFF when byte i of the last block is padding (i >= BLOCK - pad), else 0.
        let in_pad = 0u8.wrapping_sub(((i + pad as usize) >= BLOCK) as u8);
        diff |= (b ^ pad) & in_pad;
    }
    let range_ok = (pad.wrapping_sub(1) as usize) < BLOCK;
    if bool::from(diff.ct_eq(&0)) & range_ok {
        Ok(&plain[..n - pad as usize])
    } else {
        Err(Error::crypto(CryptoKind::Padding, "bad PKCS#7 padding: wrong EncodingAESKey, or tampered data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockModeDecrypt;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn raw_decrypt(crypt: &MsgCrypt, encrypt: &str) -> Vec<u8> {
        let mut buf = STANDARD.decode(encrypt).unwrap();
        let key = &*crypt.key;
        let iv: &[u8; 16] = key[..16].try_into().unwrap();
        cbc::Decryptor::<Aes256>::new(key.into(), iv.into()).decrypt_padded::<NoPadding>(&mut buf).unwrap();
        buf
    }

    fn raw_encrypt(crypt: &MsgCrypt, plain: &[u8]) -> String {
        let mut buf = plain.to_vec();
        let key = &*crypt.key;
        let iv: &[u8; 16] = key[..16].try_into().unwrap();
        let n = buf.len();
        let ct = cbc::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt_padded::<NoPadding>(&mut buf, n).unwrap();
        STANDARD.encode(ct)
    }

    #[test]
    fn ciphertext_base64_is_strict() {
        let c = MsgCrypt::new("t", KEY, "wx").unwrap();
        let ct = c.encrypt(b"hello");
        assert_eq!(STANDARD.decode(&ct).unwrap(), base64_simd::STANDARD.decode_to_vec(&ct).unwrap());
        for bad in [ct.trim_end_matches('=').to_string(), format!("{ct} "), ct.replacen('A', "-", 1), format!("{ct}=")]
        {
            if bad != ct {
                assert!(
                    matches!(c.decrypt(&bad), Err(Error::Crypto { kind: CryptoKind::Base64 | CryptoKind::Length, .. })),
                    "{bad}"
                );
            }
        }
    }

    #[test]
    fn published_encrypt_known_answer() {
        // WXBizMsgCrypt Java demo unit test (official.json msgcrypt_encrypt_known_answer).
        let c = MsgCrypt::new("pamtest", KEY, "wxb11529c136998cb6").unwrap();
        assert_eq!(
            c.encrypt_with_random(b"aaaabbbbccccdddd", "我是中文abcd123".as_bytes()),
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
        );
    }

    #[test]
    fn key_decoding_accepts_nonzero_trailing_bits() {
        // 'G' = 000110: its low 2 bits are past the 32nd byte; a strict decoder rejects them.
        assert!(STANDARD.decode(format!("{KEY}=")).is_err());
        let key = decode_aes_key(KEY).unwrap();
        assert_eq!(hex::encode(&key[..4]), "69b71d79");
    }

    #[test]
    fn key_of_wrong_length_is_a_key_error() {
        for bad in ["", "abc", &KEY[..42], &format!("{KEY}A")] {
            match decode_aes_key(bad) {
                Err(Error::Crypto { kind: CryptoKind::Key, .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        match decode_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!") {
            Err(Error::Crypto { kind: CryptoKind::Key, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_redacts_token_and_key() {
        let c = MsgCrypt::new("secret-token", KEY, "wx1").unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("secret-token"));
        assert!(s.contains("[redacted]") && s.contains("wx1"));
    }

    #[test]
    fn frame_is_random_length_message_appid_padded_to_32() {
        let c = MsgCrypt::new("t", KEY, "wxb11529c136998cb6").unwrap();
        let ct = c.encrypt_with_random(b"aaaabbbbccccdddd", b"hi");
        let plain = raw_decrypt(&c, &ct);
        // 16 + 4 + 2 + 18 = 40 → padded with 24 bytes of 24 to 64.
        assert_eq!(plain.len(), 64);
        assert_eq!(&plain[..16], b"aaaabbbbccccdddd");
        assert_eq!(&plain[16..20], &[0, 0, 0, 2]);
        assert_eq!(&plain[20..22], b"hi");
        assert_eq!(&plain[22..40], b"wxb11529c136998cb6");
        assert!(plain[40..].iter().all(|&b| b == 24));
    }

    #[test]
    fn a_frame_of_whole_blocks_gets_a_full_block_of_padding() {
        // 16 + 4 + 10 + 2 = 32 → 32 bytes of 32.
        let c = MsgCrypt::new("t", KEY, "wx").unwrap();
        let ct = c.encrypt_with_random(&[7; 16], b"0123456789");
        let plain = raw_decrypt(&c, &ct);
        assert_eq!(plain.len(), 64);
        assert!(plain[32..].iter().all(|&b| b == 32));
        assert_eq!(c.decrypt(&ct).unwrap(), b"0123456789");
    }

    fn frame(appid: &[u8], msg: &[u8], len_field: u32, pad: &[u8]) -> Vec<u8> {
        let mut v = vec![1u8; 16];
        v.extend_from_slice(&len_field.to_be_bytes());
        v.extend_from_slice(msg);
        v.extend_from_slice(appid);
        v.extend_from_slice(pad);
        v
    }

    #[test]
    fn padding_rules_are_strict() {
        let c = MsgCrypt::new("t", KEY, "wxapp").unwrap();
        // 16 + 4 + 7 + 5 = 32; a pad of 0 in a whole-block frame.
        let zero = frame(b"wxapp", b"message", 7, &[0; 32]);
        // Pad byte 33 is out of range.
        let big = frame(b"wxapp", b"message", 7, &[33; 32]);
        // Unequal pad bytes.
        let mut uneven = frame(b"wxapp", b"message", 7, &[32; 32]);
        uneven[40] = 31;
        for bad in [zero, big, uneven] {
            match c.decrypt(&raw_encrypt(&c, &bad)) {
                Err(Error::Crypto { kind: CryptoKind::Padding, .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        let good = frame(b"wxapp", b"message", 7, &[32; 32]);
        assert_eq!(c.decrypt(&raw_encrypt(&c, &good)).unwrap(), b"message");
    }

    #[test]
    fn pads_above_16_are_valid_in_32_byte_blocks() {
        // AES-block (16-byte) PKCS#7, which many SDKs use here, rejects every one of these.
        let c = MsgCrypt::new("t", KEY, "wxapp").unwrap();
        for fill in 17usize..=32 {
            // 16 + 4 + len + 5 must leave exactly `fill` bytes to the next 32-byte boundary.
            let msg = vec![b'm'; (39 - fill) % 32];
            let f = frame(b"wxapp", &msg, msg.len() as u32, &vec![fill as u8; fill]);
            assert_eq!(c.decrypt(&raw_encrypt(&c, &f)).unwrap(), msg, "pad {fill}");
        }
    }

    #[test]
    fn length_field_past_the_end_is_a_length_error() {
        let c = MsgCrypt::new("t", KEY, "wxapp").unwrap();
        let f = frame(b"wxapp", b"message", 4000, &[32; 32]);
        match c.decrypt(&raw_encrypt(&c, &f)) {
            Err(Error::Crypto { kind: CryptoKind::Length, message }) => assert!(message.contains("4000"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_frame_too_short_for_its_header_is_a_length_error() {
        let c = MsgCrypt::new("t", KEY, "wxapp").unwrap();
        // 16 bytes of content, 16 bytes of pad 16... pad must be in a 32-byte block: 10 bytes + 22 of 22.
        let mut f = vec![9u8; 10];
        f.extend_from_slice(&[22; 22]);
        match c.decrypt(&raw_encrypt(&c, &f)) {
            Err(Error::Crypto { kind: CryptoKind::Length, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ciphertext_that_is_not_whole_blocks_is_a_length_error() {
        let c = MsgCrypt::new("t", KEY, "wxapp").unwrap();
        for ct in [STANDARD.encode([0u8; 16]), STANDARD.encode([0u8; 48]), String::new()] {
            match c.decrypt(&ct) {
                Err(Error::Crypto { kind: CryptoKind::Length, .. }) => {}
                other => panic!("{ct:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_appid_is_an_appid_error() {
        let sender = MsgCrypt::new("t", KEY, "wx_other").unwrap();
        let receiver = MsgCrypt::new("t", KEY, "wx_mine").unwrap();
        match receiver.decrypt(&sender.encrypt(b"hello")) {
            Err(Error::Crypto { kind: CryptoKind::AppidMismatch, message }) => {
                assert_eq!(message, "the trailing appid \"wx_other\" is not wx_mine")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signature_is_checked_before_anything_else() {
        let c = MsgCrypt::new("tok", KEY, "wx").unwrap();
        // Not even base64, but the signature fails first.
        match c.decrypt_verified("0000000000000000000000000000000000000000", "1", "n", "%%%") {
            Err(Error::Signature(_)) => {}
            other => panic!("{other:?}"),
        }
        let sig = c.signature("1", "n", "%%%");
        match c.decrypt_verified(&sig, "1", "n", "%%%") {
            Err(Error::Crypto { kind: CryptoKind::Base64, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uppercase_msg_signature_is_refused_although_its_digest_matches() {
        let c = MsgCrypt::new("tok", KEY, "wx").unwrap();
        let encrypt = c.encrypt(b"<xml/>");
        let sig = c.signature("1", "n", &encrypt);
        assert_eq!(c.decrypt_verified(&sig, "1", "n", &encrypt).unwrap(), b"<xml/>");
        for given in [sig.to_uppercase(), format!("{}F", &sig[..39])] {
            match c.decrypt_verified(&given, "1", "n", &encrypt) {
                Err(Error::Signature(m)) => {
                    assert_eq!(m, "msg_signature is uppercase hex; WeChat signs in lowercase hex")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn reply_envelopes_have_the_four_fields() {
        let r = EncryptedReply {
            encrypt: "AAAA".into(),
            msg_signature: "ab12".into(),
            timestamp: "1409304348".into(),
            nonce: "xxxxxx".into(),
        };
        assert_eq!(
            r.to_xml(),
            "<xml><Encrypt><![CDATA[AAAA]]></Encrypt><MsgSignature><![CDATA[ab12]]></MsgSignature><TimeStamp>1409304348</TimeStamp><Nonce><![CDATA[xxxxxx]]></Nonce></xml>"
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Encrypt":"AAAA","MsgSignature":"ab12","TimeStamp":1409304348,"Nonce":"xxxxxx"})
        );
    }
}
