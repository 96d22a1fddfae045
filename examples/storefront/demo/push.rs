//! The `--demo` steps of `push.rs`: each drives the routes over HTTP like a client would.

use crate::demo::Demo;
use crate::push::{EMULATOR_PUSH_AES_KEY, EMULATOR_PUSH_TOKEN, ORDER_SHIPPED_KEYS, ORDER_SHIPPED_TEMPLATE};
use std::time::Duration;

/// Demo: point the emulator's push at this server (secure mode, XML) and pass URL verification.
pub async fn demo_configure(d: &mut Demo) -> Result<String, String> {
    let appid = d.state.client.appid().to_string();
    let url = format!("{}/wx/push", d.base);
    d.emulator_post(
        "/__emulator/push/config",
        serde_json::json!({
            "appid": appid, "url": url, "token": EMULATOR_PUSH_TOKEN,
            "encoding_aes_key": EMULATOR_PUSH_AES_KEY, "mode": "secure", "format": "xml"
        }),
    )
    .await?;
    let r = d.emulator_post("/__emulator/push/verify_url", serde_json::json!({ "appid": appid })).await?;
    if r["ok"] != true {
        return Err(format!("URL verification failed: {r}"));
    }
    Ok(format!("{url} verified (secure mode, XML)"))
}

/// Demo: alice writes to customer service; the storefront answers with a customer-service message.
pub async fn demo_customer_message(d: &mut Demo) -> Result<String, String> {
    let appid = d.state.client.appid().to_string();
    let text = "Has my order shipped?";
    let r = d
        .emulator_post(
            "/__emulator/push/send",
            serde_json::json!({ "appid": appid, "user": "alice", "message": { "MsgType": "text", "Content": text } }),
        )
        .await?;
    let delivery = &r[0];
    if delivery["status"] != 200 || delivery["reply"] != "success" {
        return Err(format!("the push was not accepted: {delivery}"));
    }
    let inbox = d.get("/api/messages/inbox").await?;
    if inbox["messages"][0] != text {
        return Err(format!("the storefront did not record the message: {inbox}"));
    }
    let emu = d.state.emulator.clone().ok_or("the demo needs the emulator")?;
    let openid = emu.openid_of(&appid, "alice");
    for _ in 0..100 {
        if let Some(m) = emu.sent_messages().into_iter().find(|m| m.kind == "custom" && m.touser == openid) {
            return Ok(format!("received {text:?}, answered {:?}", m.body["text"]["content"].as_str().unwrap_or("")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("no customer-service answer reached the emulator".into())
}

/// Demo: alice accepts the "order shipped" template; the storefront sends it once, and a second
/// send is refused (43101) because consent is one-shot.
pub async fn demo_subscribe(d: &mut Demo) -> Result<String, String> {
    let appid = d.state.client.appid().to_string();
    let emu = d.state.emulator.clone().ok_or("the demo needs the emulator")?;
    emu.register_template(&appid, ORDER_SHIPPED_TEMPLATE, ORDER_SHIPPED_KEYS);
    d.emulator_post(
        "/__emulator/messages/consent",
        serde_json::json!({ "appid": appid, "user": "alice", "template_id": ORDER_SHIPPED_TEMPLATE, "push": true }),
    )
    .await?;
    let inbox = d.get("/api/messages/inbox").await?;
    if inbox["consents"][0] != ORDER_SHIPPED_TEMPLATE {
        return Err(format!("the consent push was not recorded: {inbox}"));
    }
    d.post("/api/messages/subscribe", serde_json::json!({})).await?;
    let again = d.post("/api/messages/subscribe", serde_json::json!({})).await;
    match again {
        Err(e) if e.contains("43101") => {}
        other => return Err(format!("a second send should be refused with 43101: {other:?}")),
    }
    let sent = emu.sent_messages().into_iter().filter(|m| m.kind == "subscribe").count();
    Ok(format!("{sent} subscribe message sent; the second was refused (43101, consent is one-shot)"))
}

/// Demo: a push signed ten years ago is refused (401); a fresh one is processed once, and its exact
/// replay is acknowledged without being processed again (the claim is in the market's database).
pub async fn demo_replay(d: &mut Demo) -> Result<String, String> {
    let appid = d.state.client.appid().to_string();
    let emu = d.state.emulator.clone().ok_or("the demo needs the emulator")?;
    let openid = emu.openid_of(&appid, "alice");
    let gh = wxshop::emulator::mp::message::gh_id(&appid);
    let crypt = wxshop::crypto::msgcrypt::MsgCrypt::new(EMULATOR_PUSH_TOKEN, EMULATOR_PUSH_AES_KEY, &appid)
        .map_err(|e| e.to_string())?;
    let verifier = crate::push::verifier(&appid).map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let text = "Is this message a replay?";
    let send = |ts: i64, msg_id: u64| {
        let plain = format!(
            "<xml><ToUserName><![CDATA[{gh}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>\
             <MsgId>{msg_id}</MsgId></xml>"
        );
        let (ts, nonce) = (ts.to_string(), "replay-nonce".to_string());
        let encrypt = crypt.encrypt(plain.as_bytes());
        let url = format!(
            "{}/wx/push?signature={}&timestamp={ts}&nonce={nonce}&openid={openid}&encrypt_type=aes&msg_signature={}",
            d.base,
            verifier.signature(&ts, &nonce),
            crypt.signature(&ts, &nonce, &encrypt)
        );
        let body =
            format!("<xml><ToUserName><![CDATA[{gh}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
        let req = http.post(url).header("content-type", "text/xml").body(body);
        async move {
            let r = req.send().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((r.status().as_u16(), r.text().await.unwrap_or_default()))
        }
    };
    let now = chrono::Utc::now().timestamp();
    let (old, _) = send(now - 10 * 365 * 86_400, 7_000_000_001).await?;
    if old != 401 {
        return Err(format!("a push signed ten years ago got HTTP {old}"));
    }
    let fresh = send(now, 7_000_000_002);
    let (first, _) = fresh.await?;
    let (again, body) = send(now, 7_000_000_002).await?;
    let processed = d.state.inbox.messages.lock().map_err(|e| e.to_string())?.iter().filter(|(_, t)| t == text).count();
    if first != 200 || again != 200 || body != "success" || processed != 1 {
        return Err(format!("fresh {first}, replay {again} {body:?}: processed {processed} times"));
    }
    Ok("a push signed 10 years ago: 401; a fresh one processed once, its exact replay acknowledged unprocessed".into())
}
