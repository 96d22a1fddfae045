//! Credentials: merchant staff and platform operators present API keys (`wxk_…`, kept only as digests
//! in the market's database, scoped to a merchant and a role, revocable, rotated with an overlap), and
//! whoever keeps presenting wrong ones is throttled.
//!
//! Merchant routes take `X-Merchant-Key: <key>`; platform routes (`/admin/...`) take
//! `Authorization: Bearer <key>` with a platform key, or the bootstrap token `STOREFRONT_ADMIN_TOKEN`
//! when it is set. On the first run (an empty database) the storefront issues a platform key and one
//! owner key per seeded merchant and prints them once; they are never shown again.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /api/merchant/keys` | merchant | the merchant's keys (never their secrets) |
//! | `POST /api/merchant/keys` `{label, role?}` | owner | a staff (`MerchantStaff`, default) or owner key: the secret is in this answer only |
//! | `POST /api/merchant/keys/{id}/rotate` `{overlap_secs?}` | owner | its successor; the old key works `overlap_secs` more (default 1 day) |
//! | `DELETE /api/merchant/keys/{id}` | owner | revoke |
//! | `POST /admin/merchants/{id}/keys` `{label}` | platform | an owner key for a merchant (onboarding, lost key) |
//! | `GET /admin/keys` · `POST /admin/keys` `{label}` · `DELETE /admin/keys/{id}` | platform | platform operators' keys |
//!
//! A client (by peer address) that fails `STOREFRONT_AUTH_MAX_FAILURES` (default 10) times within a
//! minute gets 429 with `Retry-After` for a minute, whatever it presents.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::json;
use wxshop::market::access::{FailureThrottle, IssuedKey, KeyScope, Principal, Role};

use crate::AppState;
use crate::api::{Answer, ApiError, Body};
use crate::routes::{Auth, Routes, doc};

/// The credential settings of this process.
pub struct Access {
    /// Failed attempts by client address.
    pub throttle: FailureThrottle,
    /// SHA-256 of `STOREFRONT_ADMIN_TOKEN`, when it is set.
    bootstrap_digest: Option<String>,
    /// The platform key issued at this start (first run), for `--demo`; never printed again.
    pub first_run_admin_key: Option<String>,
}

impl Access {
    /// From the environment; `first_run_admin_key` is the key issued when the database was empty.
    pub fn from_env(first_run_admin_key: Option<String>) -> Self {
        let max = std::env::var("STOREFRONT_AUTH_MAX_FAILURES").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
        let bootstrap_digest = std::env::var("STOREFRONT_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(|t| wxshop::crypto::sig::sha256_hex(&[t.as_bytes()]));
        Access { throttle: FailureThrottle::new(max, Duration::from_secs(60)), bootstrap_digest, first_run_admin_key }
    }

    /// Whether a platform credential is configured by the environment.
    pub fn has_bootstrap_token(&self) -> bool {
        self.bootstrap_digest.is_some()
    }
}

/// Issues the first platform key when there is none and no bootstrap token: printed once, here.
pub async fn first_run(market: &wxshop::market::Market) -> wxshop::Result<Option<String>> {
    if std::env::var("STOREFRONT_ADMIN_TOKEN").is_ok_and(|t| !t.is_empty()) {
        return Ok(None);
    }
    if !market.access().keys(None).await?.is_empty() {
        println!("platform keys exist (shown once when issued); add more with POST /admin/keys");
        return Ok(None);
    }
    let issued = market.access().issue_key(KeyScope::platform(), "first-run admin", None).await?;
    println!("platform key (shown once, keep it): {}", issued.secret.expose());
    Ok(Some(issued.secret.expose().to_string()))
}

fn client_of(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or_else(|| "local".to_string(), |c| c.0.ip().to_string())
}

fn too_many(wait: Duration) -> ApiError {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many failed credentials: retry later");
    e.kind = "throttled";
    e.retry_after = Some(wait.as_secs().max(1));
    e
}

/// Authenticates `presented` for the client of `parts`, counting failures against it.
async fn authenticate(parts: &Parts, state: &AppState, presented: &str) -> Result<Principal, ApiError> {
    let client = client_of(parts);
    let access = &state.access;
    access.throttle.check(&client).map_err(too_many)?;
    match state.market.market.access().authenticate_key(presented).await {
        Ok(p) => {
            access.throttle.succeed(&client);
            Ok(p)
        }
        Err(wxshop::market::MarketError::Unauthorized(m)) => {
            access.throttle.fail(&client);
            Err(ApiError::new(StatusCode::UNAUTHORIZED, m))
        }
        Err(e) => Err(e.into()),
    }
}

/// A merchant's staff or owner, by `X-Merchant-Key`: the merchant id and the key's role.
pub struct MerchantAuth(pub String, pub Role);

impl FromRequestParts<AppState> for MerchantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts.headers.get("x-merchant-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if key.is_empty() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "merchant routes need X-Merchant-Key: <key>"));
        }
        let p = authenticate(parts, state, &key).await?;
        match p.merchant_id {
            Some(m) => Ok(MerchantAuth(m, p.role)),
            None => Err(ApiError::new(StatusCode::FORBIDDEN, "a platform key is not a merchant's")),
        }
    }
}

/// A merchant's owner (key management).
pub struct MerchantOwner(pub String);

impl FromRequestParts<AppState> for MerchantOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match MerchantAuth::from_request_parts(parts, state).await? {
            MerchantAuth(m, Role::MerchantOwner) => Ok(MerchantOwner(m)),
            _ => Err(ApiError::new(StatusCode::FORBIDDEN, "only the merchant's owner key manages keys")),
        }
    }
}

/// A platform operator: `Authorization: Bearer <platform key>` (or `<STOREFRONT_ADMIN_TOKEN>`).
pub struct Platform;

impl FromRequestParts<AppState> for Platform {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string();
        if given.is_empty() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "platform routes need Authorization: Bearer <key>"));
        }
        if let Some(digest) = &state.access.bootstrap_digest
            && !given.starts_with(wxshop::market::access::KEY_PREFIX)
        {
            let client = client_of(parts);
            state.access.throttle.check(&client).map_err(too_many)?;
            let d = wxshop::crypto::sig::sha256_hex(&[given.as_bytes()]);
            if wxshop::crypto::sig::ct_eq(d.as_bytes(), digest.as_bytes()) {
                state.access.throttle.succeed(&client);
                return Ok(Platform);
            }
            state.access.throttle.fail(&client);
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown, revoked or expired key"));
        }
        match authenticate(parts, state, &given).await?.role {
            Role::Platform => Ok(Platform),
            _ => Err(ApiError::new(StatusCode::FORBIDDEN, "a merchant key is not a platform key")),
        }
    }
}

pub fn routes() -> Routes {
    Routes::new("access")
        .get("/api/merchant/keys", merchant_keys, doc("The merchant's API keys (never their secrets)", Auth::Merchant))
        .post(
            "/api/merchant/keys",
            issue_merchant_key,
            doc("Issue a staff or owner key (owner only; the secret is in this answer only)", Auth::Merchant)
                .body::<IssueBody>(),
        )
        .post(
            "/api/merchant/keys/{id}/rotate",
            rotate_merchant_key,
            doc("Rotate a key: its successor, and the old key for an overlap (owner only)", Auth::Merchant)
                .body::<RotateBody>(),
        )
        .delete("/api/merchant/keys/{id}", revoke_merchant_key, doc("Revoke a key (owner only)", Auth::Merchant))
        .post(
            "/admin/merchants/{id}/keys",
            admin_issue_owner_key,
            doc("Issue an owner key for a merchant", Auth::Platform).body::<LabelBody>(),
        )
        .get("/admin/keys", platform_keys, doc("The platform operators' keys", Auth::Platform))
        .post(
            "/admin/keys",
            issue_platform_key,
            doc("Issue a platform operator's key", Auth::Platform).body::<LabelBody>(),
        )
        .delete("/admin/keys/{id}", revoke_platform_key, doc("Revoke a platform operator's key", Auth::Platform))
}

fn issued(k: IssuedKey) -> Answer {
    Ok(Json(json!({ "key": k.key, "secret": k.secret.expose() })))
}

async fn merchant_keys(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    Ok(Json(json!({ "items": s.market.market.access().keys(Some(&me.0)).await? })))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct IssueBody {
    label: String,
    /// `MerchantStaff` (default) or `MerchantOwner`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    role: Option<Role>,
}

async fn issue_merchant_key(State(s): State<AppState>, me: MerchantOwner, Body(b): Body<IssueBody>) -> Answer {
    let role = b.role.unwrap_or(Role::MerchantStaff);
    if role == Role::Platform {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "a merchant issues only its own keys"));
    }
    issued(s.market.market.access().issue_key(KeyScope::merchant(&me.0, role), &b.label, None).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RotateBody {
    #[serde(default)]
    overlap_secs: Option<u64>,
}

async fn rotate_merchant_key(
    State(s): State<AppState>,
    me: MerchantOwner,
    Path(id): Path<String>,
    Body(b): Body<RotateBody>,
) -> Answer {
    let overlap = Duration::from_secs(b.overlap_secs.unwrap_or(86_400).min(30 * 86_400));
    issued(s.market.market.access().rotate_key(Some(&me.0), &id, overlap).await?)
}

async fn revoke_merchant_key(State(s): State<AppState>, me: MerchantOwner, Path(id): Path<String>) -> Answer {
    Ok(Json(json!(s.market.market.access().revoke_key(Some(&me.0), &id).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LabelBody {
    label: String,
}

async fn admin_issue_owner_key(
    State(s): State<AppState>,
    _: Platform,
    Path(id): Path<String>,
    Body(b): Body<LabelBody>,
) -> Answer {
    issued(s.market.market.access().issue_key(KeyScope::merchant(&id, Role::MerchantOwner), &b.label, None).await?)
}

async fn platform_keys(State(s): State<AppState>, _: Platform) -> Answer {
    Ok(Json(json!({ "items": s.market.market.access().keys(None).await? })))
}

async fn issue_platform_key(State(s): State<AppState>, _: Platform, Body(b): Body<LabelBody>) -> Answer {
    issued(s.market.market.access().issue_key(KeyScope::platform(), &b.label, None).await?)
}

async fn revoke_platform_key(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Answer {
    Ok(Json(json!(s.market.market.access().revoke_key(None, &id).await?)))
}
