//! Shipping-info management (发货信息管理) against the in-process emulator: the exact body of
//! every endpoint, WeChat's validation errcodes, the one correction, the paginated listing, and a
//! payment's whole life from paid to settled with its trade_manage_* events.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures_util::TryStreamExt;
use serde_json::json;
use wxshop::emulator::mp::shipping::PaidTransaction;
use wxshop::emulator::{DEFAULT_APPID, Emulator, EmulatorHandle};
use wxshop::http::Request;
use wxshop::mp::shipping::{
    Contact, LogisticsType, OrderKey, OrderListQuery, OrderRef, OrderSettlementEvent, OrderState, ShippingItem,
    SpecialOrder, SubOrderShipping, UploadCombinedShippingInfo, UploadShippingInfo,
};
use wxshop::{ErrCode, Error};

const MCH: &str = "1900000109";
const BUYER: &str = "oBuyer0000000000000000000001";

async fn emu() -> (EmulatorHandle, wxshop::Client) {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    (emu, client)
}

fn paid(emu: &EmulatorHandle, out_trade_no: &str, tx: &str) -> String {
    emu.register_transaction(
        PaidTransaction::new(MCH, out_trade_no, BUYER, 1999).transaction_id(tx).description("Blue mug"),
    )
    .unwrap()
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 2, 0, 0).unwrap()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

#[tokio::test]
async fn every_shipping_endpoint_sends_wechats_exact_body() {
    let (emu, client) = emu().await;
    let ship = client.shipping();
    paid(&emu, "T-1", "4200000000000000000000000001");
    paid(&emu, "T-2", "4200000000000000000000000002");
    paid(&emu, "T-3", "4200000000000000000000000003");

    let item =
        ShippingItem::express("SF1234567890", "SF", "Blue mug ×1").contact(Contact::receiver_phone("13812345678"));
    ship.upload_shipping_info(
        &UploadShippingInfo::express(OrderKey::transaction_id("4200000000000000000000000001"), BUYER, item)
            .upload_time(t0()),
    )
    .await
    .unwrap();
    assert_eq!(
        emu.last_json("/wxa/sec/order/upload_shipping_info").unwrap(),
        json!({
            "order_key": {"order_number_type": 2, "transaction_id": "4200000000000000000000000001"},
            "logistics_type": 1,
            "delivery_mode": 1,
            "shipping_list": [{"tracking_no": "SF1234567890", "express_company": "SF", "item_desc": "Blue mug ×1",
                               "contact": {"receiver_contact": "138****5678"}}],
            "upload_time": "2025-03-01T10:00:00.000+08:00",
            "payer": {"openid": BUYER}
        })
    );

    let combined = UploadCombinedShippingInfo::new(
        OrderKey::out_trade_no(MCH, "COMBINED-1"),
        BUYER,
        vec![
            SubOrderShipping::unified(
                OrderKey::out_trade_no(MCH, "T-2"),
                LogisticsType::Virtual,
                ShippingItem::described("Gift card"),
            ),
            SubOrderShipping::split(
                OrderKey::out_trade_no(MCH, "T-3"),
                vec![ShippingItem::express("YT1", "YTO", "Cup")],
                false,
            ),
        ],
    )
    .upload_time(t0());
    ship.upload_combined_shipping_info(&combined).await.unwrap();
    assert_eq!(
        emu.last_json("/wxa/sec/order/upload_combined_shipping_info").unwrap(),
        json!({
            "order_key": {"order_number_type": 1, "mchid": MCH, "out_trade_no": "COMBINED-1"},
            "sub_orders": [
                {"order_key": {"order_number_type": 1, "mchid": MCH, "out_trade_no": "T-2"}, "logistics_type": 3,
                 "delivery_mode": 1, "shipping_list": [{"item_desc": "Gift card"}]},
                {"order_key": {"order_number_type": 1, "mchid": MCH, "out_trade_no": "T-3"}, "logistics_type": 1,
                 "delivery_mode": 2, "is_all_delivered": false,
                 "shipping_list": [{"tracking_no": "YT1", "express_company": "YTO", "item_desc": "Cup"}]}
            ],
            "upload_time": "2025-03-01T10:00:00.000+08:00",
            "payer": {"openid": BUYER}
        })
    );

    ship.get_order(&OrderRef::merchant_trade_no(MCH, "T-1")).await.unwrap();
    assert_eq!(
        emu.last_json("/wxa/sec/order/get_order").unwrap(),
        json!({"merchant_id": MCH, "merchant_trade_no": "T-1"})
    );
    ship.get_order(&OrderRef::transaction_id("4200000000000000000000000001")).await.unwrap();
    assert_eq!(
        emu.last_json("/wxa/sec/order/get_order").unwrap(),
        json!({"transaction_id": "4200000000000000000000000001"})
    );

    ship.get_order_list_page(
        &OrderListQuery::default().order_state(OrderState::Shipped).openid(BUYER).paid_between(1, 2).page_size(10),
        Some("abc"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        emu.last_json("/wxa/sec/order/get_order_list").unwrap(),
        json!({"pay_time_range": {"begin_time": 1, "end_time": 2}, "order_state": 2, "openid": BUYER, "page_size": 10, "last_index": "abc"})
    );

    let received = Utc::now();
    ship.notify_confirm_receive(&OrderRef::transaction_id("4200000000000000000000000001"), received).await.unwrap();
    assert_eq!(
        emu.last_json("/wxa/sec/order/notify_confirm_receive").unwrap(),
        json!({"transaction_id": "4200000000000000000000000001", "received_time": received.timestamp()})
    );

    ship.set_msg_jump_path("pages/orders/detail").await.unwrap();
    assert_eq!(emu.last_json("/wxa/sec/order/set_msg_jump_path").unwrap(), json!({"path": "pages/orders/detail"}));
    assert!(ship.is_trade_managed().await.unwrap());
    assert_eq!(emu.last_json("/wxa/sec/order/is_trade_managed").unwrap(), json!({"appid": DEFAULT_APPID}));
    assert!(ship.is_trade_management_confirmation_completed().await.unwrap());
    assert_eq!(
        emu.last_json("/wxa/sec/order/is_trade_management_confirmation_completed").unwrap(),
        json!({"appid": DEFAULT_APPID})
    );

    paid(&emu, "T-4", "4200000000000000000000000004");
    let ships_at = emu.state().now() + chrono::Duration::days(20);
    ship.op_special_order(&SpecialOrder::presale("T-4", ships_at)).await.unwrap();
    assert_eq!(
        emu.last_json("/wxa/sec/order/opspecialorder").unwrap(),
        json!({"order_id": "T-4", "type": 1, "delay_to": ships_at.timestamp()})
    );

    let carriers = ship.get_delivery_list().await.unwrap();
    assert_eq!(emu.last_json("/cgi-bin/express/delivery/open_msg/get_delivery_list").unwrap(), json!({}));
    assert_eq!((carriers[0].delivery_id.as_str(), carriers[0].delivery_name.as_str()), ("SF", "顺丰速运"));
}

#[tokio::test]
async fn a_payment_goes_from_paid_to_settled_with_its_events() {
    let (emu, client) = emu().await;
    let ship = client.shipping();
    let tx = paid(&emu, "T-1", "4200000000000000000000000010");
    let by_tx = OrderRef::transaction_id(&tx);

    let order = ship.get_order(&by_tx).await.unwrap();
    assert_eq!(order.order_state, OrderState::Unshipped);
    assert!(order.can_ship());
    assert_eq!((order.paid_amount, order.openid.as_str(), order.description.as_str()), (1999, BUYER, "Blue mug"));
    assert_eq!(order.shipping, None);

    let before = emu.state().now().timestamp();
    let upload = UploadShippingInfo::express(
        OrderKey::transaction_id(&tx),
        BUYER,
        ShippingItem::express("ZT1", "ZTO", "Blue mug ×1"),
    );
    ship.upload_shipping_info(&upload).await.unwrap();
    let after = emu.state().now().timestamp();

    let order = ship.get_order(&by_tx).await.unwrap();
    assert_eq!(order.order_state, OrderState::Shipped);
    let shipping = order.shipping.clone().unwrap();
    assert_eq!((shipping.finish_shipping, shipping.finish_shipping_count), (true, 1));
    assert_eq!(shipping.logistics_type, LogisticsType::Express);
    assert_eq!(shipping.shipping_list[0].tracking_no, "ZT1");
    assert!(order.correction_allowed());

    // Shipping complete: the settlement event announces the estimated settlement time.
    let events = emu.shipping_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "trade_manage_order_settlement");
    let shipped: OrderSettlementEvent = serde_json::from_value(events[0].payload.clone()).unwrap();
    assert!((before..=after).contains(&shipped.shipped_time));
    assert_eq!(shipped.estimated_settlement_time, Some(shipped.shipped_time + 11 * 86_400));
    assert_eq!((shipped.confirm_receive_method, shipped.settlement_time), (None, None));
    assert_eq!(shipped.pay_time, order.pay_time);
    assert_eq!(events[0].payload["MsgType"], "event");
    assert_eq!(events[0].payload["Event"], "trade_manage_order_settlement");
    assert_eq!(events[0].payload["merchant_trade_no"], "T-1");

    // The one correction, three days later; it restarts the auto-confirm clock.
    emu.state().advance(days(3));
    let fix = UploadShippingInfo::express(
        OrderKey::transaction_id(&tx),
        BUYER,
        ShippingItem::express("ZT2", "ZTO", "Blue mug ×1"),
    );
    ship.correct_shipping_info(&fix).await.unwrap();
    let order = ship.get_order(&by_tx).await.unwrap();
    assert_eq!(order.shipping.as_ref().unwrap().finish_shipping_count, 2);
    assert_eq!(order.shipping.as_ref().unwrap().shipping_list[0].tracking_no, "ZT2");
    assert!(!order.correction_allowed());
    let corrected: OrderSettlementEvent = serde_json::from_value(emu.shipping_events()[1].payload.clone()).unwrap();
    assert!(corrected.shipped_time >= shipped.shipped_time + 3 * 86_400);

    // A second correction: refused locally by correct_shipping_info, and by WeChat when forced.
    let again = UploadShippingInfo::express(
        OrderKey::transaction_id(&tx),
        BUYER,
        ShippingItem::express("ZT3", "ZTO", "Blue mug ×1"),
    );
    let err = ship.correct_shipping_info(&again).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest(m) if m.contains("finish_shipping_count is 2")), "{err}");
    let err = ship.upload_shipping_info(&again).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::ShippingCorrectionUsed));

    // Remind the buyer once.
    let received = emu.state().now();
    ship.notify_confirm_receive(&by_tx, received).await.unwrap();
    let err = ship.notify_confirm_receive(&by_tx, received).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::ConfirmReminderUsed));

    // Nobody confirms: WeChat confirms 10 days after the (corrected) shipment, settles a day later.
    emu.state().advance(days(9));
    assert_eq!(ship.get_order(&by_tx).await.unwrap().order_state, OrderState::Shipped);
    emu.state().advance(days(1));
    assert_eq!(ship.get_order(&by_tx).await.unwrap().order_state, OrderState::Confirmed);
    emu.state().advance(days(1));
    assert_eq!(ship.get_order(&by_tx).await.unwrap().order_state, OrderState::Settled);

    let events = emu.shipping_events();
    assert_eq!(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), vec!["trade_manage_order_settlement"; 3]);
    let settled: OrderSettlementEvent = serde_json::from_value(events[2].payload.clone()).unwrap();
    assert_eq!(settled.confirm_receive_method, Some(1));
    assert_eq!(settled.confirm_receive_time, Some(corrected.shipped_time + 10 * 86_400));
    assert_eq!(settled.settlement_time, Some(corrected.shipped_time + 11 * 86_400));
    assert_eq!(settled.estimated_settlement_time, None);
    assert_eq!(events[2].payload["CreateTime"], json!(corrected.shipped_time + 11 * 86_400));

    // Nothing ships after settlement.
    let late = UploadShippingInfo::same_city(OrderKey::transaction_id(&tx), BUYER, "mug");
    assert_eq!(ship.upload_shipping_info(&late).await.unwrap_err().errcode(), Some(ErrCode::ShippingNotAllowed));
}

#[tokio::test]
async fn a_buyer_confirmation_settles_the_next_day() {
    let (emu, client) = emu().await;
    let tx = paid(&emu, "T-1", "4200000000000000000000000020");
    client
        .shipping()
        .upload_shipping_info(&UploadShippingInfo::virtual_goods(
            OrderKey::out_trade_no(MCH, "T-1"),
            BUYER,
            "Top-up ¥20",
        ))
        .await
        .unwrap();
    emu.confirm_receipt(&tx).unwrap();
    let confirmed_at = emu.state().now().timestamp();
    assert_eq!(
        client.shipping().get_order(&OrderRef::transaction_id(&tx)).await.unwrap().order_state,
        OrderState::Confirmed
    );
    emu.state().advance(days(1));
    let produced = emu.tick_shipping();
    assert_eq!(produced.len(), 1);
    let settled: OrderSettlementEvent = serde_json::from_value(produced[0].payload.clone()).unwrap();
    assert_eq!(settled.confirm_receive_method, Some(2));
    assert!((confirmed_at - 1..=confirmed_at).contains(&settled.confirm_receive_time.unwrap()));
    assert_eq!(settled.settlement_time, Some(settled.confirm_receive_time.unwrap() + 86_400));
    assert!(emu.tick_shipping().is_empty(), "timers fire once");
}

#[tokio::test]
async fn unshipped_payments_are_reminded_after_48_hours() {
    let (emu, client) = emu().await;
    let tx = paid(&emu, "T-1", "4200000000000000000000000030");
    let presale = paid(&emu, "T-2", "4200000000000000000000000031");
    let test_order = paid(&emu, "T-3", "4200000000000000000000000032");
    let pay_time = client.shipping().get_order(&OrderRef::transaction_id(&tx)).await.unwrap().pay_time;
    let ships_at = Utc.timestamp_opt(pay_time + 20 * 86_400, 0).unwrap();
    client.shipping().op_special_order(&SpecialOrder::presale(&presale, ships_at)).await.unwrap();
    client.shipping().op_special_order(&SpecialOrder::test_order("T-3")).await.unwrap();

    emu.state().advance(Duration::from_secs(47 * 3600));
    assert!(emu.tick_shipping().is_empty());
    emu.state().advance(Duration::from_secs(3600));
    let produced = emu.tick_shipping();
    assert_eq!(produced.len(), 1);
    assert_eq!(produced[0].transaction_id, tx);
    let mut payload = produced[0].payload.clone();
    assert!(payload["ToUserName"].as_str().unwrap().starts_with("gh_"));
    payload.as_object_mut().unwrap().remove("ToUserName");
    assert_eq!(
        payload,
        json!({
            "FromUserName": BUYER, "CreateTime": pay_time + 48 * 3600, "MsgType": "event",
            "Event": "trade_manage_remind_shipping", "transaction_id": tx, "merchant_id": MCH,
            "sub_merchant_id": "", "merchant_trade_no": "T-1", "pay_time": pay_time,
            "msg": "你有一笔订单已超过48小时未发货，请尽快发货"
        })
    );
    // The payload function the push sender uses gives the same message for the transaction.
    let mut again = wxshop::emulator::mp::shipping::remind_shipping_payload(emu.state(), &tx).unwrap();
    again.as_object_mut().unwrap().remove("CreateTime");
    let mut emitted = produced[0].payload.clone();
    emitted.as_object_mut().unwrap().remove("CreateTime");
    assert_eq!(again, emitted);
    let settle = wxshop::emulator::mp::shipping::settlement_payload(emu.state(), &tx).unwrap();
    assert_eq!(
        (settle["Event"].as_str(), settle["shipped_time"].as_i64()),
        (Some("trade_manage_order_settlement"), Some(0))
    );
    assert!(
        wxshop::emulator::mp::shipping::remind_shipping_payload(emu.state(), "4200000000000000000000009999").is_none()
    );
    // The pre-sale order is reminded on its filed date; the test order never.
    emu.state().advance(days(19));
    let produced = emu.tick_shipping();
    assert_eq!(produced.iter().map(|e| e.transaction_id.as_str()).collect::<Vec<_>>(), vec![presale.as_str()]);
    assert_eq!(emu.shipping_events().iter().filter(|e| e.transaction_id == test_order).count(), 0);

    // Pre-sale dates outside 15..330 days after payment are refused.
    let other = paid(&emu, "T-5", "4200000000000000000000000035");
    let too_soon = emu.state().now() + chrono::Duration::days(3);
    let err = client.shipping().op_special_order(&SpecialOrder::presale(&other, too_soon)).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidDelayTo));
    let err = client.shipping().op_special_order(&SpecialOrder::test_order("nope")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::SpecialOrderNotFound));
}

#[tokio::test]
async fn the_emulator_refuses_what_wechat_refuses() {
    let (emu, client) = emu().await;
    let tx = paid(&emu, "T-1", "4200000000000000000000000040");
    let base = json!({
        "order_key": {"order_number_type": 2, "transaction_id": tx},
        "logistics_type": 1, "delivery_mode": 1,
        "shipping_list": [{"tracking_no": "ZT1", "express_company": "ZTO", "item_desc": "mug"}],
        "upload_time": "2025-03-01T10:00:00.000+08:00",
        "payer": {"openid": BUYER}
    });
    let with = |patch: serde_json::Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        Request::mp_post("/wxa/sec/order/upload_shipping_info", &b).unwrap()
    };
    let item = |v: serde_json::Value| json!({ "shipping_list": [v] });
    let cases = [
        (with(json!({"order_key": {"order_number_type": 3}})), ErrCode::InvalidOrderNumberType),
        (with(json!({"order_key": {"order_number_type": 2}})), ErrCode::TransactionIdMissing),
        (with(json!({"order_key": {"order_number_type": 1, "out_trade_no": "T-1"}})), ErrCode::MchidMissing),
        (with(json!({"order_key": {"order_number_type": 1, "mchid": MCH}})), ErrCode::OutTradeNoMissing),
        (
            with(json!({"order_key": {"order_number_type": 2, "transaction_id": "4200000000000000000000009999"}})),
            ErrCode::ShippingOrderNotFound,
        ),
        (with(json!({"upload_time": "2025-03-01 10:00:00"})), ErrCode::InvalidUploadTime),
        (with(json!({"logistics_type": 5})), ErrCode::InvalidLogisticsType),
        (with(json!({"delivery_mode": 3})), ErrCode::InvalidDeliveryMode),
        (with(json!({"delivery_mode": "UNIFIED_DELIVERY"})), ErrCode::DataFormatError),
        (
            with(
                json!({"shipping_list": [{"tracking_no": "A", "express_company": "ZTO", "item_desc": "a"}, {"tracking_no": "B", "express_company": "ZTO", "item_desc": "b"}]}),
            ),
            ErrCode::UnifiedNeedsOnePackage,
        ),
        (with(json!({"delivery_mode": 2, "logistics_type": 2, "is_all_delivered": true})), ErrCode::SplitNeedsExpress),
        (with(json!({"delivery_mode": 2})), ErrCode::SplitNeedsAllDelivered),
        (with(item(json!({"tracking_no": "ZT1", "express_company": "ZTO", "item_desc": ""}))), ErrCode::ItemDescEmpty),
        (
            with(item(json!({"tracking_no": "ZT1", "express_company": "ZTO", "item_desc": "x".repeat(121)}))),
            ErrCode::ItemDescTooLong,
        ),
        (with(item(json!({"express_company": "ZTO", "item_desc": "mug"}))), ErrCode::TrackingNoMissing),
        (with(item(json!({"tracking_no": "ZT1", "item_desc": "mug"}))), ErrCode::ExpressCompanyMissing),
        (
            with(item(json!({"tracking_no": "ZT1", "express_company": "Z".repeat(129), "item_desc": "mug"}))),
            ErrCode::ExpressCompanyTooLong,
        ),
        (
            with(item(json!({"tracking_no": "9".repeat(129), "express_company": "ZTO", "item_desc": "mug"}))),
            ErrCode::TrackingNoTooLong,
        ),
        (
            with(item(json!({"tracking_no": "SF1", "express_company": "SF", "item_desc": "mug"}))),
            ErrCode::ShippingInvalidParam,
        ),
        (
            with(item(
                json!({"tracking_no": "SF1", "express_company": "SF", "item_desc": "mug", "contact": {"receiver_contact": "13812345678"}}),
            )),
            ErrCode::ShippingInvalidParam,
        ),
        (
            with(
                json!({"shipping_list": (0..16).map(|i| json!({"tracking_no": format!("T{i}"), "express_company": "ZTO", "item_desc": "x"})).collect::<Vec<_>>(), "delivery_mode": 2, "is_all_delivered": true}),
            ),
            ErrCode::ShippingListTooLong,
        ),
        (with(json!({"payer": {"openid": "oSomeoneElse"}})), ErrCode::PayerMismatch),
    ];
    for (req, code) in cases {
        let err = client.call_raw(&req).await.unwrap_err();
        assert_eq!(err.errcode(), Some(code), "{}", String::from_utf8_lossy(req.body.signed_bytes()));
    }
    assert_eq!(
        client.shipping().get_order(&OrderRef::transaction_id(&tx)).await.unwrap().order_state,
        OrderState::Unshipped
    );

    // Reminders need an express shipment that is shipped, and a plausible signing time.
    let r = OrderRef::transaction_id(&tx);
    assert_eq!(
        client.shipping().notify_confirm_receive(&r, Utc::now()).await.unwrap_err().errcode(),
        Some(ErrCode::NotShipped)
    );
    client.call_raw(&with(json!({}))).await.unwrap();
    // An unchanged correction changes nothing.
    let same = with(json!({"upload_time": "2025-03-01T11:00:00.000+08:00"}));
    assert_eq!(client.call_raw(&same).await.unwrap_err().errcode(), Some(ErrCode::ShippingUnchanged));
    let future = emu.state().now() + chrono::Duration::hours(1);
    assert_eq!(
        client.shipping().notify_confirm_receive(&r, future).await.unwrap_err().errcode(),
        Some(ErrCode::InvalidReceivedTime)
    );
    let city = paid(&emu, "T-2", "4200000000000000000000000041");
    client
        .shipping()
        .upload_shipping_info(&UploadShippingInfo::same_city(OrderKey::transaction_id(&city), BUYER, "cake"))
        .await
        .unwrap();
    let err = client.shipping().notify_confirm_receive(&OrderRef::transaction_id(&city), Utc::now()).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::RemindNeedsExpress));

    // is_trade_managed only answers for the caller's own appid.
    let req = Request::mp_post("/wxa/sec/order/is_trade_managed", &json!({"appid": "wx_someone_else"})).unwrap();
    assert_eq!(client.call_raw(&req).await.unwrap_err().errcode(), Some(ErrCode::InvalidAppid));
}

#[tokio::test]
async fn local_rules_fail_before_sending() {
    let (emu, client) = emu().await;
    let ship = client.shipping();
    let key = || OrderKey::transaction_id("4200000000000000000000000050");
    let bad = [
        UploadShippingInfo::express(key(), BUYER, ShippingItem::express("SF1", "SF", "mug")),
        UploadShippingInfo::express(key(), BUYER, ShippingItem::described("mug")),
        UploadShippingInfo::split(key(), BUYER, vec![], true),
        UploadShippingInfo::virtual_goods(key(), "", "code"),
    ];
    for req in &bad {
        assert!(matches!(ship.upload_shipping_info(req).await, Err(Error::InvalidRequest(_))), "{req:?}");
    }
    assert_eq!(emu.calls("/wxa/sec/order/upload_shipping_info"), 0);
}

#[tokio::test]
async fn split_delivery_ships_when_all_packages_are_out() {
    let (emu, client) = emu().await;
    let tx = paid(&emu, "T-1", "4200000000000000000000000060");
    let ship = client.shipping();
    let first = UploadShippingInfo::split(
        OrderKey::transaction_id(&tx),
        BUYER,
        vec![ShippingItem::express("A1", "YTO", "Cup")],
        false,
    );
    ship.upload_shipping_info(&first).await.unwrap();
    let order = ship.get_order(&OrderRef::transaction_id(&tx)).await.unwrap();
    assert_eq!(order.order_state, OrderState::Unshipped);
    assert!(!order.shipping.as_ref().unwrap().finish_shipping);
    assert!(emu.shipping_events().is_empty());
    let rest = UploadShippingInfo::split(
        OrderKey::transaction_id(&tx),
        BUYER,
        vec![ShippingItem::express("A2", "YTO", "Saucer"), ShippingItem::express("A3", "YTO", "Spoon")],
        true,
    )
    .upload_time(Utc::now() + chrono::Duration::seconds(1));
    ship.upload_shipping_info(&rest).await.unwrap();
    let order = ship.get_order(&OrderRef::transaction_id(&tx)).await.unwrap();
    assert_eq!(order.order_state, OrderState::Shipped);
    let tracking: Vec<_> = order.shipping.unwrap().shipping_list.into_iter().map(|p| p.tracking_no).collect();
    assert_eq!(tracking, ["A1", "A2", "A3"]);
    assert_eq!(emu.shipping_events().len(), 1);
}

#[tokio::test]
async fn combined_uploads_are_all_or_nothing() {
    let (emu, client) = emu().await;
    paid(&emu, "S-1", "4200000000000000000000000070");
    paid(&emu, "S-2", "4200000000000000000000000071");
    let sub = |no: &str| {
        SubOrderShipping::unified(
            OrderKey::out_trade_no(MCH, no),
            LogisticsType::SelfPickup,
            ShippingItem::described("Flowers"),
        )
    };
    let bad =
        UploadCombinedShippingInfo::new(OrderKey::out_trade_no(MCH, "C-1"), BUYER, vec![sub("S-1"), sub("S-404")]);
    let err = client.shipping().upload_combined_shipping_info(&bad).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::ShippingOrderNotFound));
    let s1 = client.shipping().get_order(&OrderRef::merchant_trade_no(MCH, "S-1")).await.unwrap();
    assert_eq!(s1.order_state, OrderState::Unshipped);

    let good = UploadCombinedShippingInfo::new(OrderKey::out_trade_no(MCH, "C-1"), BUYER, vec![sub("S-1"), sub("S-2")]);
    client.shipping().upload_combined_shipping_info(&good).await.unwrap();
    for no in ["S-1", "S-2"] {
        let o = client.shipping().get_order(&OrderRef::merchant_trade_no(MCH, no)).await.unwrap();
        assert_eq!(
            (o.order_state, o.shipping.unwrap().logistics_type),
            (OrderState::Shipped, LogisticsType::SelfPickup)
        );
    }
    // Self-pickup confirms automatically after 2 days.
    emu.state().advance(days(2));
    assert_eq!(
        client.shipping().get_order(&OrderRef::merchant_trade_no(MCH, "S-2")).await.unwrap().order_state,
        OrderState::Confirmed
    );
}

#[tokio::test]
async fn the_order_list_is_a_stream_over_pages() {
    let (emu, client) = emu().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(paid(&emu, &format!("L-{i}"), &format!("42000000000000000000000001{i:02}")));
    }
    emu.register_transaction(PaidTransaction::new(MCH, "OTHER", "oAnotherBuyer", 5)).unwrap();
    let all: Vec<_> = client
        .shipping()
        .get_order_list(OrderListQuery::default().openid(BUYER).page_size(2))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.iter().map(|o| o.transaction_id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(emu.calls("/wxa/sec/order/get_order_list"), 3);
    assert_eq!(emu.last_json("/wxa/sec/order/get_order_list").unwrap()["last_index"], "0000000000000004");

    client
        .shipping()
        .upload_shipping_info(&UploadShippingInfo::virtual_goods(OrderKey::transaction_id(&ids[2]), BUYER, "code"))
        .await
        .unwrap();
    let shipped: Vec<_> = client
        .shipping()
        .get_order_list(OrderListQuery::default().order_state(OrderState::Shipped))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].transaction_id, ids[2]);

    let err = client.shipping().get_order_list_page(&OrderListQuery::default(), Some("zz")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidLastIndex));
}

#[tokio::test]
async fn registering_the_same_payment_twice_changes_nothing() {
    let (emu, _client) = emu().await;
    let a = emu.register_transaction(PaidTransaction::new(MCH, "T-1", BUYER, 100)).unwrap();
    let b = emu.register_transaction(PaidTransaction::new(MCH, "T-1", BUYER, 100)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 28);
    assert!(a.starts_with("4200"));
    assert_eq!(emu.counter("shipping.transactions"), 1);
}
