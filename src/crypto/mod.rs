//! Every signature and cipher WeChat uses, and nothing else: the rest of the crate calls these.
//!
//! - [`sig`]: SHA-1 signatures (push URL verification, rawData), HMAC-SHA256 (session key checks),
//!   constant-time comparison.
//! - [`wxa`]: mini-program `encryptedData` (AES-128-CBC) with the watermark check.
//! - [`msgcrypt`]: WXBizMsgCrypt for message push (AES-256-CBC, 32-byte PKCS#7).
//! - [`pay`]: WeChat Pay v3 (RSA-SHA256, AES-256-GCM, RSA-OAEP).
//! - [`referral`]: the truncated HMAC-SHA256 of referral tokens.

pub mod msgcrypt;
pub mod pay;
pub mod referral;
pub mod sig;
pub mod wxa;
