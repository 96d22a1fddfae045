//! The `--demo` steps of `access.rs`: keys issued, scoped, rotated, revoked, and guessing throttled.

use reqwest::Method;
use serde_json::json;

use crate::demo::Demo;

/// Demo: the owner issues a staff key; staff may work but not manage keys; the owner rotates its own
/// key (both work during the overlap) and revokes the staff key; the platform lists its keys.
pub async fn demo_keys(d: &mut Demo) -> Result<String, String> {
    let (_, owner) = d.merchant_key("Leaf & Co")?;
    let as_owner = [("x-merchant-key", owner.clone())];
    let staff = d.call(Method::POST, "/api/merchant/keys", Some(json!({ "label": "till 1" })), &as_owner, true).await?;
    let staff_key = staff["secret"].as_str().ok_or("no secret")?.to_string();
    let staff_id = staff["key"]["id"].as_str().ok_or("no key id")?.to_string();
    if staff["key"]["role"] != "MerchantStaff" || !staff_key.starts_with("wxk_") {
        return Err(format!("not a staff key: {staff}"));
    }
    let as_staff = [("x-merchant-key", staff_key.clone())];
    d.call(Method::GET, "/api/merchant/orders", None, &as_staff, true).await?;
    let refused = d
        .call(Method::POST, "/api/merchant/keys", Some(json!({ "label": "mine" })), &as_staff, true)
        .await
        .err()
        .ok_or("staff issued a key")?;
    if !refused.starts_with("HTTP 403") {
        return Err(format!("staff issuing a key was not 403: {refused}"));
    }
    let listed = d.call(Method::GET, "/api/merchant/keys", None, &as_owner, true).await?;
    if listed.to_string().contains(&staff_key[21..]) {
        return Err("a key list shows a secret".into());
    }
    // Rotation without downtime: the successor works, and so does the old key for the overlap.
    let owner_id = owner[4..20].to_string();
    let rotated = d
        .call(
            Method::POST,
            &format!("/api/merchant/keys/{owner_id}/rotate"),
            Some(json!({ "overlap_secs": 3600 })),
            &as_owner,
            true,
        )
        .await?;
    let successor = rotated["secret"].as_str().ok_or("no successor")?.to_string();
    d.call(Method::GET, "/api/merchant/me", None, &[("x-merchant-key", successor)], true).await?;
    d.call(Method::GET, "/api/merchant/me", None, &as_owner, true).await?;
    d.call(Method::DELETE, &format!("/api/merchant/keys/{staff_id}"), None, &as_owner, true).await?;
    let gone =
        d.call(Method::GET, "/api/merchant/orders", None, &as_staff, true).await.err().ok_or("revoked key works")?;
    if !gone.starts_with("HTTP 401") {
        return Err(format!("a revoked key was not 401: {gone}"));
    }
    // Another merchant's key cannot touch Leaf & Co's keys.
    let (_, silk) = d.merchant_key("Silk Road")?;
    let cross = d
        .call(Method::DELETE, &format!("/api/merchant/keys/{owner_id}"), None, &[("x-merchant-key", silk)], true)
        .await
        .err()
        .ok_or("another merchant revoked a key")?;
    if !cross.starts_with("HTTP 404") {
        return Err(format!("revoking another merchant's key was not 404: {cross}"));
    }
    let platform = d.admin_get("/admin/keys").await?;
    let n = platform["items"].as_array().map_or(0, Vec::len);
    Ok(format!(
        "staff key issued (403 on key management), owner key rotated with a 1 h overlap, staff key revoked (401); \
         another merchant's revoke is 404; {n} platform key(s)"
    ))
}

/// Demo (last, since it locks this client out for a minute): guessing merchant keys is throttled.
pub async fn demo_brute_force(d: &mut Demo) -> Result<String, String> {
    let mut statuses = Vec::new();
    for i in 0..12 {
        let guess = format!("wxk_{:016x}_{}", i, "0".repeat(64));
        let r = d.call(Method::GET, "/api/merchant/me", None, &[("x-merchant-key", guess)], true).await;
        // The demo's HTTP client reports a 429 as "unexpected HTTP status 429" (it is retryable).
        let e = r.err().unwrap_or_default();
        statuses.push(if e.contains("429") { "429".to_string() } else { e.get(5..8).unwrap_or("").to_string() });
    }
    let unauthorized = statuses.iter().filter(|s| *s == "401").count();
    let throttled = statuses.iter().filter(|s| *s == "429").count();
    // Even the right key is refused while the client is locked out.
    let (_, owner) = d.merchant_key("Silk Road")?;
    let locked = d.call(Method::GET, "/api/merchant/me", None, &[("x-merchant-key", owner)], true).await;
    if unauthorized != 10 || throttled != 2 || !locked.as_ref().is_err_and(|e| e.contains("429")) {
        return Err(format!("expected 10 × 401 then 429s: {statuses:?}, then {locked:?}"));
    }
    Ok("12 guessed keys: 10 answered 401, then 429 with Retry-After for a minute (even for a valid key)".into())
}
