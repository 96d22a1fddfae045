//! The `--demo` steps of `market.rs`: each drives the routes over HTTP like a client would.

use crate::demo::Demo;
use serde_json::json;
use wxshop::market::Money;

fn key_of(d: &Demo, name: &str) -> Result<String, String> {
    d.merchant_key(name).map(|(_, key)| key)
}

/// Demo: browse the catalog; both seeded merchants are on it.
pub async fn demo_browse(d: &mut Demo) -> Result<String, String> {
    let page = d.get("/api/products?limit=10").await?;
    let items = page["items"].as_array().ok_or("no items")?;
    let merchants: std::collections::BTreeSet<&str> = items.iter().filter_map(|p| p["merchant_id"].as_str()).collect();
    if merchants.len() < 2 {
        return Err(format!("expected products of two merchants, got {page}"));
    }
    let cheap = d.get("/api/products?sort=price&limit=1").await?;
    // The old computable key (`mk_` + the id's last 12 characters, the id being public) must not open
    // another merchant's orders; the refusal has the one error shape.
    let public_id = merchants.iter().next().ok_or("no merchant")?;
    let guessed = format!("mk_{}", &public_id[public_id.len().saturating_sub(12)..]);
    let refused = d
        .call(reqwest::Method::GET, "/api/merchant/orders", None, &[("x-merchant-key", guessed)], true)
        .await
        .err()
        .ok_or("a key computed from the public merchant id was accepted")?;
    if !refused.starts_with("HTTP 401") || !refused.contains(r#""kind":"unauthorized""#) {
        return Err(format!("a guessed merchant key was not refused as unauthorized: {refused}"));
    }
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/products?sort=popular", None),
        (reqwest::Method::GET, "/api/products?min=cheap", None),
        (reqwest::Method::POST, "/api/cart/items", Some(json!({ "qty": "two" }))),
        (reqwest::Method::GET, "/api/products?cursor=nonsense", None),
        (reqwest::Method::GET, "/api/products?limit=0", None),
        (reqwest::Method::GET, "/api/market/orders?cursor=nonsense", None),
        (reqwest::Method::GET, "/api/market/orders?limit=1000", None),
    ] {
        let guest = [("x-cart-token", "guest-demo-bad".to_string())];
        // Order lists need the signed-in buyer; the catalog and the cart take the guest.
        let anonymous = !path.starts_with("/api/market/");
        let refused =
            d.call(method, path, body, &guest, anonymous).await.err().ok_or_else(|| format!("{path} accepted"))?;
        if !refused.starts_with("HTTP 400") || !refused.contains(r#""kind":"invalid""#) {
            return Err(format!("{path}: expected 400 with kind invalid, got {refused}"));
        }
    }
    Ok(format!(
        "{} products from {} merchants; cheapest {}; a merchant key guessed from a public id refused (401); \
         an unknown sort, a malformed query or body, a malformed cursor and an out-of-range limit (catalog and \
         orders alike) answered 400 in the one error shape",
        items.len(),
        merchants.len(),
        cheap["items"][0]["title"].as_str().unwrap_or("?")
    ))
}

pub(crate) async fn first_sku_of(d: &Demo, merchant_name: &str) -> Result<String, String> {
    let id =
        d.state.market.seeded.iter().find(|(n, _)| n == merchant_name).map(|(_, id)| id.clone()).ok_or("not seeded")?;
    let page = d.get(&format!("/api/products?merchant={id}&limit=1")).await?;
    let pid = page["items"][0]["id"].as_str().ok_or("no product")?.to_string();
    let p = d.get(&format!("/api/products/{pid}")).await?;
    p["skus"][0]["id"].as_str().map(str::to_string).ok_or_else(|| "no sku".into())
}

/// Demo: a guest cart merged at login, then a second merchant's item: one cart, two merchants.
pub async fn demo_cart(d: &mut Demo) -> Result<String, String> {
    let tea = first_sku_of(d, "Leaf & Co").await?;
    let silk = first_sku_of(d, "Silk Road").await?;
    let guest = [("x-cart-token", "guest-demo-1".to_string())];
    d.call(reqwest::Method::POST, "/api/cart/items", Some(json!({ "sku_id": tea, "qty": 2 })), &guest, true).await?;
    let merged = d.post("/api/cart/merge", json!({ "guest_token": "guest-demo-1" })).await?;
    if merged["merchants"].as_array().map(Vec::len) != Some(1) {
        return Err(format!("the guest line did not move to the buyer cart: {merged}"));
    }
    let cart = d.post("/api/cart/items", json!({ "sku_id": silk, "qty": 1 })).await?;
    let groups = cart["merchants"].as_array().ok_or("no groups")?;
    if groups.len() != 2 {
        return Err(format!("expected two merchants in the cart: {cart}"));
    }
    Ok(format!("2 merchants, total {}", Money::fen(cart["total"].as_i64().unwrap_or(0))))
}

/// Demo: one checkout, one combined payment, two merchant orders; the same key again is the same checkout.
pub async fn demo_checkout(d: &mut Demo) -> Result<String, String> {
    let co = d.post("/api/checkout", json!({ "idempotency_key": "demo-checkout-1" })).await?;
    let again = d.post("/api/checkout", json!({ "idempotency_key": "demo-checkout-1" })).await?;
    if co["group"]["id"] != again["group"]["id"] {
        return Err("a repeated checkout created a second group".into());
    }
    if co["payment"]["mode"] != "Combine" || co["orders"].as_array().map(Vec::len) != Some(2) {
        return Err(format!("expected a combined payment over two orders: {co}"));
    }
    let group = co["group"]["id"].as_str().ok_or("no group id")?.to_string();
    d.group_id = Some(group.clone());
    let stock = merchant_stock_step(d).await?;
    Ok(format!(
        "group {group}: {} over 2 merchant orders, combined payment {}; {stock}",
        Money::fen(co["group"]["total"].as_i64().unwrap_or(0)),
        co["payment"]["prepay_id"].as_str().unwrap_or("?")
    ))
}

/// The merchant reads the stock the checkout reserved, adds received goods relatively, and another
/// merchant cannot read it.
async fn merchant_stock_step(d: &Demo) -> Result<String, String> {
    let tea = first_sku_of(d, "Leaf & Co").await?;
    let key = [("x-merchant-key", key_of(d, "Leaf & Co")?)];
    let me = d.call(reqwest::Method::GET, "/api/merchant/me", None, &key, true).await?;
    if me["merchant"]["name"] != "Leaf & Co" || me["categories"].as_array().is_none_or(Vec::is_empty) {
        return Err(format!("GET /api/merchant/me does not show Leaf & Co and its categories: {me}"));
    }
    let path = format!("/api/merchant/skus/{tea}/stock");
    let before = d.call(reqwest::Method::GET, &path, None, &key, true).await?;
    let (on_hand, reserved) =
        (before["on_hand"].as_i64().ok_or("no on_hand")?, before["reserved"].as_i64().ok_or("no reserved")?);
    if reserved < 2 || before["available"].as_i64() != Some(on_hand - reserved) {
        return Err(format!("the checkout's 2 units are not reserved: {before}"));
    }
    let after =
        d.call(reqwest::Method::POST, &format!("{path}/adjust"), Some(json!({ "delta": 5 })), &key, true).await?;
    if after["on_hand"].as_i64() != Some(on_hand + 5) || after["reserved"].as_i64() != Some(reserved) {
        return Err(format!("a +5 adjustment gave {after} from {before}"));
    }
    // An absolute set must name the version it read: blind, stale and current.
    let path_ref = &path;
    let put = |tag: Option<String>| {
        let mut h = key.to_vec();
        if let Some(t) = tag {
            h.push(("if-match", t));
        }
        async move { d.call(reqwest::Method::PUT, path_ref, Some(json!({ "on_hand": on_hand + 6 })), &h, true).await }
    };
    let blind = put(None).await.err().ok_or("a PUT without If-Match was accepted")?;
    let stale = put(Some(format!("\"{on_hand}\""))).await.err().ok_or("a stale If-Match was accepted")?;
    if !blind.starts_with("HTTP 428") || !stale.starts_with("HTTP 412") || !stale.contains("version_mismatch") {
        return Err(format!("If-Match: without it {blind}; stale {stale}"));
    }
    let version = after["version"].as_str().ok_or("no version")?;
    let set = put(Some(format!("\"{version}\""))).await?;
    if set["on_hand"].as_i64() != Some(on_hand + 6) {
        return Err(format!("a current If-Match did not set the stock: {set}"));
    }
    let other = [("x-merchant-key", key_of(d, "Silk Road")?)];
    let refused =
        d.call(reqwest::Method::GET, &path, None, &other, true).await.err().ok_or("another merchant read the stock")?;
    if !refused.starts_with("HTTP 404") {
        return Err(format!("another merchant's stock read was not a 404: {refused}"));
    }
    Ok(format!(
        "Leaf & Co sees {reserved} reserved of {on_hand}, adds 5, sets {} with If-Match (blind 428, stale 412); \
         Silk Road gets 404",
        on_hand + 6
    ))
}

/// Demo: the buyer pays the combined payment in the emulator's cashier; WeChat Pay's notification
/// marks both orders Paid, and redelivering it changes nothing.
pub async fn demo_pay(d: &mut Demo) -> Result<String, String> {
    let group = d.group_id.clone().ok_or("no checkout")?;
    let emu = d.state.emulator.clone().ok_or("the demo pays in the emulator's cashier")?;
    let mchid = d.state.pay.as_ref().ok_or("WeChat Pay is not configured")?.mchid().to_string();
    let co = d.get(&format!("/api/checkout/{group}")).await?;
    let first = co["orders"][0]["id"].as_str().ok_or("no order")?.to_string();
    // The buyer taps Pay: one payment for the whole combination.
    let txn = emu.cashier_pay(&mchid, &first).await.map_err(|e| e.to_string())?;
    let mut paid = serde_json::Value::Null;
    for _ in 0..100 {
        paid = d.get(&format!("/api/checkout/{group}")).await?;
        if paid["group"]["status"] == "Paid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let statuses: Vec<&str> =
        paid["orders"].as_array().ok_or("no orders")?.iter().filter_map(|o| o["status"].as_str()).collect();
    if statuses != ["Paid", "Paid"] {
        return Err(format!("orders not paid: {paid}"));
    }
    let delivery = emu
        .notifications()
        .into_iter()
        .rev()
        .find(|n| n.event_type == "TRANSACTION.SUCCESS" && (n.out_trade_no == group || n.out_trade_no == first))
        .ok_or("no notification")?;
    if !emu.redeliver(&delivery.id).await {
        return Err("the redelivered notification was refused".into());
    }
    let again = d.get(&format!("/api/checkout/{group}")).await?;
    if again["group"]["version"] != paid["group"]["version"] {
        return Err("the redelivered notification changed the checkout".into());
    }
    Ok(format!("one combined payment ({txn}…), both orders Paid; a redelivered notification changed nothing"))
}

/// Demo: each merchant ships its order (shipping info uploaded), the buyer confirms receipt.
pub async fn demo_ship_and_receive(d: &mut Demo) -> Result<String, String> {
    for (name, carrier) in [("Leaf & Co", "SF"), ("Silk Road", "YTO")] {
        let key = key_of(d, name)?;
        let hdr = [("x-merchant-key", key)];
        let list = d.call(reqwest::Method::GET, "/api/merchant/orders?status=Paid", None, &hdr, false).await?;
        let oid =
            list["items"][0]["id"].as_str().ok_or_else(|| format!("{name} has no paid order: {list}"))?.to_string();
        let body = json!({ "tracking_no": format!("{carrier}{}", &oid[..10]), "express_company": carrier,
                           "receiver_phone": "13800138000" });
        let shipped =
            d.call(reqwest::Method::POST, &format!("/api/merchant/orders/{oid}/ship"), Some(body), &hdr, false).await?;
        if shipped["order"]["status"] != "Shipped" {
            return Err(format!("{name}: not shipped: {shipped}"));
        }
        // The carrier's first scan, as the tracking provider's webhook would forward it: without one,
        // fake-shipment detection would judge the parcel 48 h after shipping.
        let token = d.admin_token();
        let auth = [("authorization", format!("Bearer {token}"))];
        let path = format!("/admin/governance/orders/{oid}/carrier-scan");
        d.call(reqwest::Method::POST, &path, Some(json!({})), &auth, true).await?;
        let got = d.post(&format!("/api/market/orders/{oid}/receive"), json!({})).await?;
        if got["order"]["status"] != "Received" {
            return Err(format!("receipt not confirmed: {got}"));
        }
    }
    let mine = d.get("/api/market/orders").await?;
    let n = mine["items"].as_array().map_or(0, |a| a.iter().filter(|o| o["status"] == "Received").count());
    Ok(format!(
        "2 parcels shipped (shipping info uploaded to WeChat's shipping management, carrier scans recorded); {n} orders received"
    ))
}
