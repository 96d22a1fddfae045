//! The signature of referral tokens: HMAC-SHA256 under the merchant's referral secret,
//! domain-separated and truncated to [`TAG_LEN`] bytes so that a whole token fits a 32-character
//! wxacode `scene`. Verification compares in constant time.
//!
//! 64 bits of tag make a blind forgery succeed once in 2^64 tries; tokens are verified online
//! (the server answers each try), so that margin is ample. The token format itself lives in
//! [`crate::mp::referral`].
//!
//! ```
//! use wxshop::crypto::referral;
//! let tag = referral::tag(b"a merchant secret of 16+ bytes", b"body");
//! assert!(referral::verify(b"a merchant secret of 16+ bytes", b"body", &tag));
//! assert!(!referral::verify(b"a merchant secret of 16+ bytes", b"bodY", &tag));
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::sig::ct_eq;

/// Bytes of HMAC-SHA256 kept in a token.
pub const TAG_LEN: usize = 8;

/// Separates referral tags from every other HMAC a merchant key might make.
const DOMAIN: &[u8] = b"wxshop/referral/v1\0";

/// The truncated, domain-separated HMAC-SHA256 of `body` under `key`.
pub fn tag(key: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(DOMAIN);
    mac.update(body);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// Checks `given` against the tag of `body`, in constant time.
pub fn verify(key: &[u8], body: &[u8], given: &[u8]) -> bool {
    ct_eq(&tag(key, body), given)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_a_prefix_of_the_domain_separated_hmac() {
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(b"payload");
        let full = super::super::sig::hmac_sha256(b"k", &msg);
        assert_eq!(tag(b"k", b"payload"), full[..TAG_LEN]);
    }

    #[test]
    fn wrong_length_or_key_fails() {
        let t = tag(b"key-one", b"x");
        assert!(verify(b"key-one", b"x", &t));
        assert!(!verify(b"key-two", b"x", &t));
        assert!(!verify(b"key-one", b"x", &t[..7]));
        assert!(!verify(b"key-one", b"x", b""));
    }
}
