//! The `--demo` steps of `shipping.rs`: each drives the routes over HTTP like a client would.

use crate::demo::Demo;
use crate::demo::governance::as_merchant;
use serde_json::json;

/// Demo: the merchant ships the referred order with SF Express (receiver phone sent masked), corrects
/// the waybill once, and a second correction is refused; WeChat's view follows.
pub async fn demo_ship_and_correct(d: &mut Demo) -> Result<String, String> {
    let oid = d.referred_order.clone().ok_or("no referred order")?;
    let merchant = crate::demo::share::REFERRED_MERCHANT;
    let ship = json!({ "tracking_no": "SF1000000001", "express_company": "SF", "receiver_phone": "13800138000" });
    let r = as_merchant(d, merchant, reqwest::Method::POST, &format!("/api/merchant/orders/{oid}/ship"), Some(ship))
        .await?;
    if r["order"]["status"] != "Shipped" {
        return Err(format!("not shipped: {r}"));
    }
    let view = d.admin_get(&format!("/admin/orders/{oid}")).await?;
    let phone = view["wechat"]["shipping"]["shipping_list"][0]["contact"]["receiver_contact"].clone();
    if view["wechat"]["order_state"] != 2 || phone != "138****8000" {
        return Err(format!("WeChat does not have it shipped with a masked phone: {view}"));
    }
    let fix = json!({ "tracking_no": "SF1000000002", "express_company": "SF", "receiver_phone": "13800138000" });
    let path = format!("/api/merchant/orders/{oid}/shipping/correct");
    let r = as_merchant(d, merchant, reqwest::Method::POST, &path, Some(fix)).await?;
    let waybill = &r["order"]["shipments"][0]["tracking_no"];
    if waybill != "SF1000000002"
        || r["wechat"]["shipping"]["finish_shipping_count"] != 2
        || r["wechat"]["shipping"]["shipping_list"][0]["tracking_no"] != "SF1000000002"
    {
        return Err(format!("the correction did not apply: {r}"));
    }
    let again = json!({ "tracking_no": "SF1000000003", "express_company": "SF", "receiver_phone": "13800138000" });
    match as_merchant(d, merchant, reqwest::Method::POST, &path, Some(again)).await {
        Err(e) if e.contains("HTTP 409") && e.contains("correction_refused") => {}
        other => return Err(format!("a second correction was not refused: {other:?}")),
    }
    Ok(format!(
        "order {} shipped with SF Express (receiver phone sent as {phone}), waybill corrected once to {waybill} \
         (WeChat finish_shipping_count 2); a second correction refused",
        &oid[..12]
    ))
}
