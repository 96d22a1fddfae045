//! SHA-1 and HMAC signatures, and the constant-time comparison every check uses.
//!
//! ```
//! use wxshop::crypto::sig;
//! // WeChat's published URL-verification example.
//! let s = sig::sha1_sorted(&["AAAAA", "1714036504", "1514711492"]);
//! assert_eq!(s, "f464b24fc39322e44b38aa78f5edd27bd1441696");
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Lowercase hex SHA-1 of the parts sorted lexicographically and concatenated — WeChat's push
/// `signature` (token, timestamp, nonce) and `msg_signature` (plus Encrypt).
pub fn sha1_sorted(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    sorted.sort_unstable();
    let mut h = Sha1::new();
    for p in sorted {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Checks a lowercase hex [`sha1_sorted`] signature in constant time, without allocating: the
/// hot path of every push. WeChat signs in lowercase, so an uppercase signature is refused (as
/// wechatpy does); [`is_uppercase_hex_sha1`] tells that case apart for the error message.
pub fn verify_sha1_sorted(parts: &[&str], given_hex: &str) -> bool {
    let mut sorted = [""; 8];
    if parts.len() > sorted.len() {
        return ct_eq(sha1_sorted(parts).as_bytes(), given_hex.trim().as_bytes());
    }
    // The given signature as 20 bytes; anything but 40 lowercase hex digits never verifies.
    // Decoding the given string (public) spares hex-encoding the digest on every push.
    let Some(given) = lowercase_hex_20(given_hex.trim().as_bytes()) else { return false };
    sorted[..parts.len()].copy_from_slice(parts);
    let sorted = &mut sorted[..parts.len()];
    sorted.sort_unstable();
    let mut h = Sha1::new();
    for p in sorted.iter() {
        h.update(p.as_bytes());
    }
    ct_eq(&h.finalize(), &given)
}

/// 40 lowercase hex digits as 20 bytes, or `None`. It looks only at the given (public) string.
fn lowercase_hex_20(hex: &[u8]) -> Option<[u8; 20]> {
    if hex.len() != 40 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 20];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Whether `given` is shaped like a SHA-1 hex signature (40 hex digits) but has an uppercase
/// digit: what [`verify_sha1_sorted`] refuses although the digest might match. It looks only at
/// the given string, never at the expected digest, so it leaks nothing about the secret.
pub fn is_uppercase_hex_sha1(given: &str) -> bool {
    let g = given.trim().as_bytes();
    g.len() == 40 && g.iter().all(u8::is_ascii_hexdigit) && g.iter().any(u8::is_ascii_uppercase)
}

/// Lowercase hex SHA-1 of `data`.
pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// Raw SHA-1 of `data` (ids derived from names, not signatures).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// Lowercase hex SHA-256 of the parts, each fed to the hash in order (no separator is added).
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Lowercase hex HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Raw HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Compares two byte strings in constant time (for equal lengths; a length difference returns
/// false at once, which leaks only the length).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // Every byte is looked at, with plain integer ops, and only the accumulated difference goes
    // through `subtle` (its slice comparison fences every byte, a tenth of a push's signature check).
    a.len() == b.len() && bool::from(a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)).ct_eq(&0))
}

/// Compares a hex signature case-insensitively in constant time.
pub fn ct_eq_hex(expected_lower: &str, given: &str) -> bool {
    let given = given.trim().to_ascii_lowercase();
    ct_eq(expected_lower.as_bytes(), given.as_bytes())
}

/// Checks `signature == sha1(raw_data + session_key)` (wx.getUserInfo rawData), in constant time.
pub fn verify_raw_data(raw_data: &[u8], session_key: &str, signature: &str) -> bool {
    let mut h = Sha1::new();
    h.update(raw_data);
    h.update(session_key.as_bytes());
    ct_eq_hex(&hex::encode(h.finalize()), signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_push_signatures() {
        assert_eq!(sha1_sorted(&["AAAAA", "1714036504", "1514711492"]), "f464b24fc39322e44b38aa78f5edd27bd1441696");
        assert_eq!(sha1_sorted(&["AAAAA", "1714037059", "486452656"]), "899cf89e464efb63f54ddac96b0a0a235f53aa78");
    }

    #[test]
    fn sorted_signature_verification_takes_lowercase_only_and_rejects_junk() {
        let parts = ["AAAAA", "1714036504", "1514711492"];
        assert!(verify_sha1_sorted(&parts, "f464b24fc39322e44b38aa78f5edd27bd1441696"));
        assert!(verify_sha1_sorted(&parts, " f464b24fc39322e44b38aa78f5edd27bd1441696\n"));
        assert!(!verify_sha1_sorted(&parts, "F464B24FC39322E44B38AA78F5EDD27BD1441696"));
        assert!(!verify_sha1_sorted(&parts, "f464b24fc39322e44b38aa78f5edd27bd144169F"));
        assert!(!verify_sha1_sorted(&parts, "f464b24fc39322e44b38aa78f5edd27bd1441697"));
        assert!(!verify_sha1_sorted(&parts, "f464b24f"));
        assert!(!verify_sha1_sorted(&parts, "zz64b24fc39322e44b38aa78f5edd27bd1441696"));
        // More parts than the stack buffer: the allocating path is lowercase-only too.
        let many = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        let s = sha1_sorted(&many);
        assert!(verify_sha1_sorted(&many, &s));
        assert!(!verify_sha1_sorted(&many, &s.to_uppercase()));
    }

    #[test]
    fn uppercase_hex_sha1_is_told_apart_from_junk() {
        assert!(is_uppercase_hex_sha1("F464B24FC39322E44B38AA78F5EDD27BD1441696"));
        assert!(is_uppercase_hex_sha1("f464b24fc39322e44b38aa78f5edd27bd144169F"));
        assert!(!is_uppercase_hex_sha1("f464b24fc39322e44b38aa78f5edd27bd1441696"));
        assert!(!is_uppercase_hex_sha1("F464B24F"));
        assert!(!is_uppercase_hex_sha1("ZZ64B24FC39322E44B38AA78F5EDD27BD1441696"));
    }

    #[test]
    fn hmac_of_empty_message_matches_rfc4231_style_reference() {
        // HMAC-SHA256(key="key", msg="The quick brown fox jumps over the lazy dog")
        assert_eq!(
            hmac_sha256_hex(b"key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn raw_data_signature() {
        let sig = sha1_hex(b"{\"nickName\":\"Band\"}HyVFkGl5F5OQWJZZaNzBBg==");
        assert!(verify_raw_data(b"{\"nickName\":\"Band\"}", "HyVFkGl5F5OQWJZZaNzBBg==", &sig));
        assert!(verify_raw_data(b"{\"nickName\":\"Band\"}", "HyVFkGl5F5OQWJZZaNzBBg==", &sig.to_uppercase()));
        assert!(!verify_raw_data(b"{\"nickName\":\"Bend\"}", "HyVFkGl5F5OQWJZZaNzBBg==", &sig));
    }
}
