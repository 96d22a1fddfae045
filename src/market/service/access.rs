//! API keys: issue, authenticate, list, revoke, rotate.

use std::time::Duration;

use super::chrono_dur;
use crate::market::access::{ApiKey, IssuedKey, KeyScope, Principal, Role, new_key, parse_key, secret_matches};
use crate::market::error::{MarketError, Result};
use crate::market::service::handles::Access;

impl Access<'_> {
    /// Issues a key for `scope`, valid until revoked (or until `ttl` has passed). The secret is in the
    /// answer only: hand it to its holder; it is not kept.
    pub async fn issue_key(&self, scope: KeyScope, label: &str, ttl: Option<Duration>) -> Result<IssuedKey> {
        match (&scope.role, &scope.merchant_id) {
            (Role::Platform, None) => {}
            (Role::Platform, Some(_)) => return Err(MarketError::invalid("a platform key has no merchant")),
            (_, None) => return Err(MarketError::invalid("a merchant key needs its merchant")),
            (_, Some(m)) => {
                self.merchants().merchant(m).await?;
            }
        }
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 64 {
            return Err(MarketError::invalid("a key's label is 1 to 64 characters"));
        }
        let at = self.now();
        let (id, secret, digest) = new_key();
        let key = ApiKey {
            id,
            role: scope.role,
            merchant_id: scope.merchant_id,
            label: label.to_string(),
            created_at: at,
            expires_at: ttl.map(|t| at + chrono_dur(t)),
            revoked_at: None,
            last_used_at: None,
        };
        self.retry(|| async {
            let mut tx = self.begin().await?;
            tx.insert_key(&key, &digest).await?;
            tx.commit().await
        })
        .await?;
        Ok(IssuedKey { key, secret })
    }

    /// Who `presented` belongs to. A malformed, unknown, revoked or expired key is
    /// [`MarketError::Unauthorized`], the same for each so that an answer tells a guesser nothing.
    pub async fn authenticate_key(&self, presented: &str) -> Result<Principal> {
        let refused = || MarketError::Unauthorized("unknown, revoked or expired key".into());
        let (id, secret) = parse_key(presented).ok_or_else(refused)?;
        let now = self.now();
        let Some((key, digest)) = self.read().await?.key_with_digest(id).await? else {
            // Hash anyway, so an unknown id costs what a wrong secret does.
            let _ = secret_matches(&"0".repeat(64), secret);
            return Err(refused());
        };
        if !secret_matches(&digest, secret) || !key.is_active(now) {
            return Err(refused());
        }
        if key.last_used_at.is_none_or(|t| t < now - chrono::Duration::hours(1)) {
            // Best effort: a failed note of use must not refuse a valid key.
            let touched = async {
                let mut tx = self.begin().await?;
                tx.touch_key(&key.id, now, now - chrono::Duration::hours(1)).await?;
                tx.commit().await
            };
            if let Err(e) = touched.await {
                tracing::debug!(key_id = %key.id, error = %e, "could not note a key's use");
            }
        }
        Ok(Principal { key_id: key.id, role: key.role, merchant_id: key.merchant_id })
    }

    /// The keys of a merchant (`None`: the platform's), revoked ones included.
    pub async fn keys(&self, merchant_id: Option<&str>) -> Result<Vec<ApiKey>> {
        self.read().await?.keys_of(merchant_id).await
    }

    /// Revokes a key of `merchant_id` (`None`: a platform key). Revoking twice is a no-op; another
    /// owner's key is [`MarketError::NotFound`].
    pub async fn revoke_key(&self, merchant_id: Option<&str>, key_id: &str) -> Result<ApiKey> {
        self.retry(|| async {
            let mut tx = self.begin().await?;
            owned_key(&mut *tx, merchant_id, key_id).await?;
            tx.revoke_key(key_id, self.now()).await?;
            let key = owned_key(&mut *tx, merchant_id, key_id).await?;
            tx.commit().await?;
            Ok(key)
        })
        .await
    }

    /// Rotates a key without downtime: issues its successor (same scope and label) and lets the old one
    /// work for `overlap` more, so every holder can switch before it stops.
    pub async fn rotate_key(&self, merchant_id: Option<&str>, key_id: &str, overlap: Duration) -> Result<IssuedKey> {
        let old = {
            let mut tx = self.read().await?;
            owned_key(&mut *tx, merchant_id, key_id).await?
        };
        if !old.is_active(self.now()) {
            return Err(MarketError::invalid("only an active key can be rotated"));
        }
        let scope = KeyScope { role: old.role, merchant_id: old.merchant_id.clone() };
        let new = self.issue_key(scope, &old.label, None).await?;
        self.retry(|| async {
            let mut tx = self.begin().await?;
            tx.expire_key(key_id, self.now() + chrono_dur(overlap)).await?;
            tx.commit().await
        })
        .await?;
        Ok(new)
    }
}

async fn owned_key(tx: &mut dyn crate::market::StoreTx, merchant_id: Option<&str>, key_id: &str) -> Result<ApiKey> {
    match tx.key_with_digest(key_id).await? {
        Some((k, _)) if k.merchant_id.as_deref() == merchant_id => Ok(k),
        _ => Err(MarketError::not_found("key", key_id)),
    }
}
