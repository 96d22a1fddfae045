//! The `--demo` steps of `login.rs`: each drives the routes over HTTP like a client would.

use crate::demo::Demo;

/// Demo: log in as "alice" with a code from the emulator's wx.login stand-in.
pub async fn demo_login(d: &mut Demo) -> Result<String, String> {
    let code = d.emulator_login_code("alice").await?;
    let r = d.post("/api/login", serde_json::json!({ "code": code })).await?;
    let token = r["session_token"].as_str().ok_or("no session_token")?.to_string();
    d.token = Some(token);
    Ok(format!("signed in as {}", r["openid"].as_str().unwrap_or("?")))
}

/// Demo: bind a phone number through a getPhoneNumber code.
pub async fn demo_phone(d: &mut Demo) -> Result<String, String> {
    let code = d.emulator_phone_code("+8613800138000").await?;
    let r = d.post("/api/me/phone", serde_json::json!({ "code": code })).await?;
    let me = d.get("/api/me").await?;
    if me["phone_number"] != r["phone_number"] {
        return Err(format!("profile does not show the phone number: {me}"));
    }
    Ok(format!("phone {} bound", r["phone_number"].as_str().unwrap_or("?")))
}
