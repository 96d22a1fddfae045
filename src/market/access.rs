//! API keys for merchant staff and platform operators: random secrets, kept only as SHA-256 digests,
//! scoped to a role (and a merchant), revocable, rotated with an overlap so nothing goes down, compared
//! in constant time; and a [`FailureThrottle`] that slows down whoever keeps presenting wrong ones.
//!
//! A key reads `wxk_<key id>_<secret>`: the id (public, shown in key lists and audit) finds the row,
//! the secret (256 random bits) is hashed and compared with the stored digest. Nothing about a key
//! follows from a merchant's public id, and a leaked database holds no usable key.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> wxshop::market::Result<()> {
//! use wxshop::market::access::{KeyScope, Role};
//! use wxshop::market::*;
//! let gw = std::sync::Arc::new(RecordingGateway::default());
//! let market = Market::builder(store::open("sqlite::memory:").await?).payments(gw.clone()).shipping(gw).build()?;
//! let shop = market.merchants().create_merchant(NewMerchant::new("Leaf & Co")).await?;
//! let issued = market.access().issue_key(KeyScope::merchant(&shop.id, Role::MerchantOwner), "owner", None).await?;
//! let who = market.access().authenticate_key(issued.secret.expose()).await?;
//! assert_eq!(who.merchant_id.as_deref(), Some(shop.id.as_str()));
//! assert_eq!(who.role, Role::MerchantOwner);
//! market.access().revoke_key(Some(&shop.id), &issued.key.id).await?;
//! assert!(market.access().authenticate_key(issued.secret.expose()).await.is_err());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

str_enum! {
    /// What a key may do.
    pub enum Role {
        /// The platform's operators: every `/admin` route.
        Platform,
        /// A merchant's owner: the merchant's routes, and its staff's keys.
        MerchantOwner,
        /// A merchant's staff: the merchant's routes, but not its keys.
        MerchantStaff,
    }
}

/// Who a key is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyScope {
    /// The role.
    pub role: Role,
    /// The merchant, for a merchant role (`None` for [`Role::Platform`]).
    pub merchant_id: Option<String>,
}

impl KeyScope {
    /// A platform operator's key.
    pub fn platform() -> Self {
        KeyScope { role: Role::Platform, merchant_id: None }
    }

    /// A merchant's key (`role` is [`Role::MerchantOwner`] or [`Role::MerchantStaff`]).
    pub fn merchant(merchant_id: impl Into<String>, role: Role) -> Self {
        KeyScope { role, merchant_id: Some(merchant_id.into()) }
    }
}

/// A key's record (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public id (the part after `wxk_`).
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Its merchant, for a merchant role.
    pub merchant_id: Option<String>,
    /// What it is for ("warehouse tablet").
    pub label: String,
    /// Issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working by itself (a rotated key's overlap), if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last accepted (to the hour).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether it is accepted at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A key's secret: redacted in `Debug`, shown to its holder once.
#[derive(Clone)]
pub struct KeySecret(String);

impl KeySecret {
    /// The whole key (`wxk_<id>_<secret>`), to hand to its holder.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(<redacted>)")
    }
}

/// A key just issued: its record and its secret, which is not kept anywhere.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The record.
    pub key: ApiKey,
    /// The key to hand over.
    pub secret: KeySecret,
}

/// Who presented a valid key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The key's id.
    pub key_id: String,
    /// Its role.
    pub role: Role,
    /// Its merchant, for a merchant role.
    pub merchant_id: Option<String>,
}

/// The prefix of every key.
pub const KEY_PREFIX: &str = "wxk_";

/// A new key id and secret: the id 64 random bits, the secret 256 random bits, both hex.
pub(crate) fn new_key() -> (String, KeySecret, String) {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let digest = digest_of(&secret);
    (id.clone(), KeySecret(format!("{KEY_PREFIX}{id}_{secret}")), digest)
}

/// Splits a presented key into its id and secret; `None` when it is not shaped like a key.
pub(crate) fn parse_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((id, secret))
}

/// The digest a secret is kept as.
pub(crate) fn digest_of(secret: &str) -> String {
    crate::crypto::sig::sha256_hex(&[secret.as_bytes()])
}

/// Whether `secret` hashes to `digest`, in constant time.
pub(crate) fn secret_matches(digest: &str, secret: &str) -> bool {
    crate::crypto::sig::ct_eq(digest.as_bytes(), digest_of(secret).as_bytes())
}

/// Slows down brute force: a client (an IP address, say) that fails `max_failures` times within
/// `window` is refused for `window` from its last failure, whatever it presents. In memory, per
/// process: a bound on guessing, not a ledger.
///
/// ```
/// use std::time::Duration;
/// use wxshop::market::access::FailureThrottle;
/// let t = FailureThrottle::new(3, Duration::from_secs(60));
/// for _ in 0..3 {
///     assert!(t.check("10.0.0.1").is_ok());
///     t.fail("10.0.0.1");
/// }
/// assert!(t.check("10.0.0.1").is_err()); // locked: retry after the window
/// assert!(t.check("10.0.0.2").is_ok());  // others are not
/// ```
#[derive(Debug)]
pub struct FailureThrottle {
    max_failures: u32,
    window: Duration,
    clients: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureThrottle {
    /// At most `max_failures` failures per `window` per client.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        FailureThrottle { max_failures: max_failures.max(1), window, clients: Mutex::new(HashMap::new()) }
    }

    /// `Err(retry_after)` while `client` is locked out.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        match clients.get(client) {
            Some((n, last)) if *n >= self.max_failures && last.elapsed() < self.window => {
                Err(self.window.saturating_sub(last.elapsed()))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure of `client`.
    pub fn fail(&self, client: &str) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if clients.len() >= 100_000 {
            clients.retain(|_, (_, last)| last.elapsed() < self.window);
        }
        let e = clients.entry(client.to_string()).or_insert((0, now));
        if e.1.elapsed() >= self.window {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
    }

    /// Forgets `client`'s failures (it authenticated).
    pub fn succeed(&self, client: &str) {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).remove(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_parses_back_to_its_id_and_matches_only_its_digest() {
        let (id, secret, digest) = new_key();
        let (pid, psecret) = parse_key(secret.expose()).expect("a key");
        assert_eq!(pid, id);
        assert!(secret_matches(&digest, psecret));
        let mut other = psecret.to_string();
        other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
        assert!(!secret_matches(&digest, &other));
        assert_eq!(format!("{secret:?}"), "KeySecret(<redacted>)");
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for k in ["", "wxk_", "wxk_00_11", "mk_0123456789abcdef", &format!("wxk_{}_{}", "0".repeat(16), "g".repeat(64))]
        {
            assert_eq!(parse_key(k), None, "{k}");
        }
        assert!(parse_key(&format!("wxk_{}_{}", "a".repeat(16), "b".repeat(64))).is_some());
    }

    #[test]
    fn the_throttle_locks_after_the_limit_and_forgets_on_success() {
        let t = FailureThrottle::new(2, Duration::from_secs(60));
        t.fail("a");
        assert!(t.check("a").is_ok());
        t.fail("a");
        let wait = t.check("a").unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50), "{wait:?}");
        t.succeed("a");
        assert!(t.check("a").is_ok());
    }
}
