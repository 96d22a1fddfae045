//! Trade and fund-flow bills and their download (mirrors `crate::pay::bills`).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::json;

use super::extract::{Authed, PayError, Q, reply};
use super::{Bill, Order, PayState};
use crate::emulator::{Shared, lock};

// ----- bills -----

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn beijing_date(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset")).format("%Y-%m-%d").to_string()
}

fn beijing_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset")).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn trade_bill_text(p: &PayState, mchid: &str, date: &str, bill_type: &str) -> String {
    let mut out = String::from(
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n",
    );
    let (mut count, mut paid, mut refunded) = (0i64, 0i64, 0i64);
    let mine = |o: &Order| o.owner == mchid || o.notify_mchid == mchid;
    if bill_type != "REFUND" {
        for k in &p.order_seq {
            let Some(o) = p.orders.get(k).filter(|o| mine(o)) else { continue };
            let Some(t) = o.success_time.filter(|t| beijing_date(*t) == date) else { continue };
            count += 1;
            paid += o.total;
            out.push_str(&format!(
                "`{},`{},`{},`{},`,`{},`{},`{},`JSAPI,`SUCCESS,`OTHERS,`CNY,`{},`0.00,`0,`0,`0.00,`0.00,`,`,`{},`{},`0.00000,`0.60%,`{},`0.00,`\n",
                beijing_time(t),
                o.appid,
                o.notify_mchid,
                if o.owner != o.notify_mchid { o.owner.as_str() } else { "0" },
                o.transaction_id.as_deref().unwrap_or(""),
                o.out_trade_no,
                o.openid,
                yuan(o.total),
                o.description.replace(',', " "),
                o.attach.as_deref().unwrap_or("").replace(',', " "),
                yuan(o.total),
            ));
        }
    }
    if bill_type != "SUCCESS" {
        for r in p.refunds.values().filter(|r| r.notify_mchid == mchid || r.order.0 == mchid) {
            let Some(t) = r.success_time.filter(|t| beijing_date(*t) == date) else { continue };
            let Some(o) = p.orders.get(&r.order) else { continue };
            count += 1;
            refunded += r.refund;
            out.push_str(&format!(
                "`{},`{},`{},`0,`,`{},`{},`{},`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`{},`{},`{},`0.00,`ORIGINAL,`SUCCESS,`{},`,`0.00000,`0.60%,`{},`{},`\n",
                beijing_time(t),
                o.appid,
                r.notify_mchid,
                r.transaction_id,
                r.out_trade_no,
                o.openid,
                r.refund_id,
                r.out_refund_no,
                yuan(r.refund),
                o.description.replace(',', " "),
                yuan(r.total),
                yuan(r.refund),
            ));
        }
    }
    out.push_str("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n");
    out.push_str(&format!(
        "`{count},`{},`{},`0.00,`0.00000,`{},`{}\n",
        yuan(paid),
        yuan(refunded),
        yuan(paid),
        yuan(refunded)
    ));
    out
}

fn fund_flow_text(p: &PayState, mchid: &str, date: &str) -> String {
    let mut out = String::from(
        "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号\n",
    );
    let (mut n_in, mut sum_in, mut n_out, mut sum_out, mut balance) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut events: Vec<(DateTime<Utc>, String, bool, i64, String)> = Vec::new();
    for o in p.orders.values().filter(|o| o.notify_mchid == mchid) {
        if let (Some(t), Some(id)) = (o.success_time, &o.transaction_id) {
            events.push((t, id.clone(), true, o.total, o.out_trade_no.clone()));
        }
    }
    for r in p.refunds.values().filter(|r| r.notify_mchid == mchid) {
        if let Some(t) = r.success_time {
            events.push((t, r.refund_id.clone(), false, r.refund, r.out_refund_no.clone()));
        }
    }
    events.sort_by_key(|e| e.0);
    for (t, id, income, amount, voucher) in events {
        balance += if income { amount } else { -amount };
        if beijing_date(t) != date {
            continue;
        }
        if income {
            n_in += 1;
            sum_in += amount;
        } else {
            n_out += 1;
            sum_out += amount;
        }
        out.push_str(&format!(
            "`{},`{id},`{id}0001,`{},`{},`{},`{},`{},`system,`,`{voucher}\n",
            beijing_time(t),
            if income { "交易" } else { "退款" },
            if income { "交易" } else { "退款" },
            if income { "收入" } else { "支出" },
            yuan(amount),
            yuan(balance),
        ));
    }
    out.push_str("资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\n");
    out.push_str(&format!("`{},`{n_in},`{},`{n_out},`{}\n", n_in + n_out, yuan(sum_in), yuan(sum_out)));
    out
}

fn bill_reply(s: &Shared, what: &str, mchid: String, headers: &HeaderMap, text: String, gzip: bool) -> Response {
    let hash = crate::crypto::sig::sha1_hex(text.as_bytes());
    let token = format!("{:032x}", rand::random::<u128>());
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
    let now = s.now();
    lock(&s.pay).bills.insert(
        token.clone(),
        Bill { mchid, bytes: text.into_bytes(), gzip, expires: now + chrono::Duration::minutes(5) },
    );
    reply(
        s,
        what,
        200,
        Some(json!({
            "hash_type": "SHA1",
            "hash_value": hash,
            "download_url": format!("http://{host}/v3/billdownload/file?token={token}"),
        })),
    )
}

fn bill_date(s: &Shared, q: &HashMap<String, String>) -> std::result::Result<String, PayError> {
    let Some(d) = q.get("bill_date") else {
        return Err(PayError::param("bill_date", "bill_date 必填"));
    };
    match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
        Ok(day) => {
            let today = s.now().with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset")).date_naive();
            if day > today {
                Err(PayError::new(400, "INVALID_BILL_DATE", "账单日期不能晚于今天"))
            } else if today - day > chrono::Duration::days(92) {
                Err(PayError::new(400, "INVALID_BILL_DATE", "仅支持三个月内的账单下载申请"))
            } else {
                Ok(d.clone())
            }
        }
        Err(_) => Err(PayError::param("bill_date", "bill_date 格式须为yyyy-MM-dd")),
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/bill/tradebill", get(trade_bill))
        .route("/v3/bill/fundflowbill", get(fund_flow_bill))
        .route("/v3/billdownload/file", get(bill_download))
}

async fn trade_bill(State(s): State<Shared>, Query(q): Q, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, headers, .. } = m;
    let date = bill_date(&s, &q)?;
    let bill_type = q.get("bill_type").map(String::as_str).unwrap_or("ALL");
    if !matches!(bill_type, "ALL" | "SUCCESS" | "REFUND") {
        return Err(PayError::param("bill_type", "bill_type 取值错误"));
    }
    let gzip = q.get("tar_type").map(String::as_str) == Some("GZIP");
    let text = trade_bill_text(&lock(&s.pay), &mchid, &date, bill_type);
    Ok(bill_reply(&s, &what, mchid, &headers, text, gzip))
}

async fn fund_flow_bill(State(s): State<Shared>, Query(q): Q, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, headers, .. } = m;
    let date = bill_date(&s, &q)?;
    if !matches!(q.get("account_type").map(String::as_str).unwrap_or("BASIC"), "BASIC" | "OPERATION" | "FEES") {
        return Err(PayError::param("account_type", "account_type 取值错误"));
    }
    let gzip = q.get("tar_type").map(String::as_str) == Some("GZIP");
    let text = fund_flow_text(&lock(&s.pay), &mchid, &date);
    Ok(bill_reply(&s, &what, mchid, &headers, text, gzip))
}

async fn bill_download(State(s): State<Shared>, Query(q): Q, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let now = s.now();
    let bill = q.get("token").and_then(|t| lock(&s.pay).bills.get(t).cloned());
    let Some(bill) = bill.filter(|b| b.mchid == mchid && b.expires > now) else {
        return Err(PayError::new(400, "INVALID_REQUEST", "下载链接已失效或不存在"));
    };
    let bytes = if bill.gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        if std::io::Write::write_all(&mut enc, &bill.bytes).is_err() {
            return Err(PayError::new(500, "SYSTEM_ERROR", "gzip failed"));
        }
        enc.finish().unwrap_or_default()
    } else {
        bill.bytes
    };
    lock(&s.pay).push_log(now, "api", what, 200, format!("{} bytes, unsigned", bytes.len()));
    // Bill files are the one answer WeChat Pay does not sign.
    let ct = if bill.gzip { "application/octet-stream" } else { "text/plain; charset=utf-8" };
    Ok(([(axum::http::header::CONTENT_TYPE, ct)], bytes).into_response())
}
