//! The `--demo` steps of `share.rs`: each drives the routes over HTTP like a client would.

use crate::demo::Demo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use wxshop::mp::referral::token_from_query;

/// Demo: the signed-in buyer shares product 42 and gets a URL Link and a code.
pub async fn demo_share(d: &mut Demo) -> Result<String, String> {
    let r = d.get("/api/share?product=42").await?;
    let link = r["url_link"].as_str().ok_or("no url_link")?;
    if !link.starts_with("https://wxaurl.cn/") {
        return Err(format!("not a URL Link: {link}"));
    }
    let png = STANDARD.decode(r["wxacode_png_base64"].as_str().ok_or("no code")?).map_err(|e| e.to_string())?;
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err("the code is not a PNG".into());
    }
    let path = std::env::temp_dir().join("wxshop-storefront-share.png");
    std::fs::write(&path, &png).map_err(|e| e.to_string())?;
    // Sharing again reuses the cached link: no second link is generated.
    let again = d.get("/api/share?product=42").await?;
    if again["url_link"] != r["url_link"] {
        return Err("a repeated share generated a new link".into());
    }
    d.shared_link = Some(link.to_string());
    d.promoter = r["promoter"].as_u64();
    d.promoter_openid = d.get("/api/me").await?["openid"].as_str().map(str::to_string);
    Ok(format!("promoter {} got {link} and a {}-byte code at {}", r["promoter"], png.len(), path.display()))
}

/// Demo: a friend opens the shared link; the click is recorded in the market; a forged token is refused.
pub async fn demo_arrive(d: &mut Demo) -> Result<String, String> {
    let link = d.shared_link.clone().ok_or("share first")?;
    d.sign_in("bob").await?;
    let opened = d.emulator_post("/__emulator/links/open", serde_json::json!({ "link": link, "user": "bob" })).await?;
    let query = opened["query"].as_str().ok_or("the link opened no query")?.to_string();
    let r = d.post("/api/referral", serde_json::json!({ "query": query })).await?;
    if r["recorded"] != true || r["promoter"].as_u64() != d.promoter {
        return Err(format!("bob's click was not recorded for the promoter: {r}"));
    }
    // Change one character in the middle of the token (its expiry and ids): the signature no
    // longer matches.
    let token = token_from_query(&query).ok_or("no ref")?;
    let mut chars: Vec<char> = token.chars().collect();
    chars[6] = if chars[6] == 'A' { 'B' } else { 'A' };
    let forged: String = chars.into_iter().collect();
    match d.post("/api/referral", serde_json::json!({ "scene": forged })).await {
        Err(e) if e.contains("HTTP 401") => {}
        other => return Err(format!("a forged token was not refused: {other:?}")),
    }
    Ok(format!(
        "bob opened {}; his click for promoter {} is in the market ({} touch, {} days); a forged token was refused",
        opened["path"],
        r["promoter"],
        r["attribution"]["touch"].as_str().unwrap_or("?"),
        r["attribution"]["window_days"]
    ))
}

/// The merchant whose product the referred friend buys in the demo.
pub const REFERRED_MERCHANT: &str = "Leaf & Co";

/// Demo: the friend checks a market product out and pays in the emulator's cashier; the order's
/// settlement attributes it to the promoter whose link brought him.
pub async fn demo_referred_purchase(d: &mut Demo) -> Result<String, String> {
    use crate::demo::governance::as_platform;
    let promoter = d.promoter_openid.clone().ok_or("share first")?;
    let merchant = d.state.market.seeded.iter().find(|(n, _)| n == REFERRED_MERCHANT).map(|(_, id)| id.clone());
    let merchant = merchant.ok_or("not seeded")?;
    let page = d.get(&format!("/api/products?merchant={merchant}&limit=1")).await?;
    let pid = page["items"][0]["id"].as_str().ok_or("no product")?.to_string();
    let p = d.get(&format!("/api/products/{pid}")).await?;
    let sku = p["skus"][0]["id"].as_str().ok_or("no sku")?.to_string();
    let body = serde_json::json!({ "idempotency_key": "demo-referred-1", "lines": [{ "sku_id": sku, "qty": 1 }] });
    let co = d.post("/api/checkout", body).await?;
    let group = co["group"]["id"].as_str().ok_or("no group")?.to_string();
    let oid = co["orders"][0]["id"].as_str().ok_or("no order")?.to_string();
    // The friend taps Pay in the cashier: a one-merchant checkout is one JSAPI payment of the group.
    let emu = d.state.emulator.clone().ok_or("the demo pays in the emulator's cashier")?;
    let mchid = d.state.pay.as_ref().ok_or("WeChat Pay is not configured")?.mchid().to_string();
    let out_trade_no = if co["payment"]["mode"] == "Combine" { oid.clone() } else { group.clone() };
    let txn = emu.cashier_pay(&mchid, &out_trade_no).await.map_err(|e| e.to_string())?;
    // The notification marks it paid; the market's outbox then opens the settlement (both async).
    let mut view = Err(String::new());
    for _ in 0..200 {
        view = as_platform(d, reqwest::Method::GET, &format!("/admin/governance/settlements/{oid}"), None).await;
        if view.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let view = view.map_err(|e| format!("no settlement for {oid}: {e}"))?;
    let line = &view["settlement"]["lines"][0];
    if line["promoter"]["promoter_id"] != promoter.as_str() || view["attribution"]["promoter_id"] != promoter.as_str() {
        return Err(format!("the settlement does not name the promoter {promoter}: {view}"));
    }
    d.referred_order = Some(oid.clone());
    Ok(format!(
        "order {} ({} from {REFERRED_MERCHANT}) paid in the cashier ({txn}); its settlement attributes it to \
         promoter {promoter} at {} bps",
        &oid[..12],
        wxshop::market::Money::fen(co["group"]["total"].as_i64().unwrap_or(0)),
        line["promoter"]["bps"]
    ))
}

/// Demo: the parcel is scanned and received; when the after-sale window closes the settlement is
/// released and WeChat Pay shares the promoter's fee to the promoter's openid (the gateway adds the
/// promoter as a personal receiver first, as WeChat requires).
pub async fn demo_promoter_share(d: &mut Demo) -> Result<String, String> {
    use crate::demo::governance::as_platform;
    let oid = d.referred_order.clone().ok_or("no referred order")?;
    let promoter = d.promoter_openid.clone().ok_or("share first")?;
    let scan = format!("/admin/governance/orders/{oid}/carrier-scan");
    as_platform(d, reqwest::Method::POST, &scan, Some(serde_json::json!({}))).await?;
    let got = d.post(&format!("/api/market/orders/{oid}/receive"), serde_json::json!({})).await?;
    if got["order"]["status"] != "Received" {
        return Err(format!("receipt not confirmed: {got}"));
    }
    // Eight days on, the 7-day after-sale window has closed: release and profit sharing are async.
    let run = serde_json::json!({ "advance_hours": 8 * 24 });
    let mut view = serde_json::Value::Null;
    for _ in 0..200 {
        as_platform(d, reqwest::Method::POST, "/admin/governance/timers/run", Some(run.clone())).await?;
        view = as_platform(d, reqwest::Method::GET, &format!("/admin/governance/settlements/{oid}"), None).await?;
        if view["profit_share"]["status"] == "finished" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if view["settlement"]["state"] != "released" || view["profit_share"]["status"] != "finished" {
        return Err(format!("the settlement was not shared out: {view}"));
    }
    // What WeChat Pay itself says: the promoter's fee went to the promoter's openid.
    let pay = d.state.pay.clone().ok_or("WeChat Pay is not configured")?;
    let out_order_no = view["profit_share"]["request"]["out_order_no"].as_str().ok_or("no out_order_no")?;
    let txn = view["settlement"]["transaction_id"].as_str().ok_or("no transaction id")?;
    let wx = pay.profit_sharing().query_order(out_order_no, txn, None).await.map_err(|e| e.to_string())?;
    let a = &view["settlement"]["amounts"];
    let fee = a["promoter_fee"].as_i64().unwrap_or(-1);
    let shared: Vec<(&str, &str, i64)> =
        wx.receivers.iter().map(|r| (r.kind.as_str(), r.account.as_str(), r.amount)).collect();
    if shared != [("PERSONAL_OPENID", promoter.as_str(), fee)] || view["attribution"]["state"] != "paid" {
        return Err(format!("WeChat Pay shared {shared:?}, expected the promoter fee {fee} to {promoter}: {view}"));
    }
    let audit = as_platform(d, reqwest::Method::GET, "/admin/governance/ledger/audit", None).await?;
    if audit["clean"] != true {
        return Err(format!("ledger audit: {audit}"));
    }
    let fen = |k: &str| wxshop::market::Money::fen(a[k].as_i64().unwrap_or(0));
    Ok(format!(
        "{} settled: promoter fee {} shared to PERSONAL_OPENID {promoter} (分账 {}), commission {} kept by the \
         platform, {} to the merchant; ledger audit clean",
        fen("gross"),
        fen("promoter_fee"),
        wx.state,
        fen("commission"),
        fen("net")
    ))
}
