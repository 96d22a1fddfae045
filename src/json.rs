//! JSON decoding of bytes on the hot paths (decrypted open data, payment notifications): the whole
//! input is checked as UTF-8 once, with SIMD, and then parsed as a `str`, which spares serde_json
//! its scalar UTF-8 check of every string (a tenth of the decode of a profile or a resource). The
//! same inputs are accepted and refused as with `serde_json::from_slice`: input that is not UTF-8
//! goes through `from_slice`, which reports the precise error.

use serde::Deserialize;

/// `serde_json::from_slice`, with the UTF-8 check done once over the whole input.
pub(crate) fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => serde_json::from_str(s),
        Err(_) => serde_json::from_slice(bytes),
    }
}
