//! [`RecordingGateway`]: both ports in memory, recording every call, for tests and demos that
//! need no emulator.

use std::sync::Mutex;

use async_trait::async_trait;

use super::types::*;
use super::{PaymentGateway, ShippingGateway};
use crate::market::payment::PaymentNotice;

/// A recorded gateway call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCall {
    /// `prepay`.
    Prepay(PrepayRequest),
    /// `close`.
    Close(CloseRequest),
    /// `refund`.
    Refund(RefundRequest),
    /// `upload`.
    Ship(ShippingUpload),
    /// `correct` (shipping info).
    CorrectShipping(ShippingUpload),
    /// `profit_share`.
    ProfitShare(ProfitShareRequest),
    /// `compensate`.
    Compensate(CompensationRequest),
    /// `query`.
    Query(QueryRequest),
    /// `query_refund`.
    QueryRefund(RefundQueryRequest),
    /// `query_transfer` (the `out_bill_no`).
    QueryTransfer(String),
}

/// An in-memory gateway that succeeds (unless told to fail) and records every call.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    calls: Mutex<Vec<GatewayCall>>,
    failures: Mutex<Vec<(&'static str, bool)>>,
    paid: Mutex<Vec<PaymentNotice>>,
    hold_refunds: Mutex<bool>,
    refunds: Mutex<Vec<(String, RefundQuery)>>,
    transfers: Mutex<Option<std::collections::HashMap<String, TransferQuery>>>,
    corrected: Mutex<Vec<String>>,
    bills: Mutex<Vec<(chrono::NaiveDate, Vec<BillLine>)>>,
}

impl RecordingGateway {
    /// Every call so far.
    pub fn calls(&self) -> Vec<GatewayCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `query` answer that `notice.out_trade_no` is paid (as if the buyer paid and the
    /// notification was lost); its `notify_id` is replaced by [`query_notify_id`].
    pub fn set_paid(&self, notice: PaymentNotice) {
        self.paid.lock().unwrap_or_else(|p| p.into_inner()).push(notice);
    }

    /// Makes `trade_bill` answer `lines` for `date`.
    pub fn set_trade_bill(&self, date: chrono::NaiveDate, lines: Vec<BillLine>) {
        self.bills.lock().unwrap_or_else(|p| p.into_inner()).push((date, lines));
    }

    /// While `hold` is true, `refund` answers processing (WeChat Pay's usual answer) instead of
    /// succeeded: a notification or [`settle_refund`](Self::settle_refund) then concludes it.
    pub fn hold_refunds(&self, hold: bool) {
        *self.hold_refunds.lock().unwrap_or_else(|p| p.into_inner()) = hold;
    }

    /// Makes `query_refund` answer `state` for `out_refund_no` (unset: [`RefundQuery::Unknown`]).
    pub fn settle_refund(&self, out_refund_no: &str, state: RefundQuery) {
        let mut r = self.refunds.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(no, _)| no != out_refund_no);
        r.push((out_refund_no.to_string(), state));
    }

    /// Makes `compensate` answer like WeChat Pay's merchant transfers: a bill waiting for the buyer
    /// (`WAIT_USER_CONFIRM`, id `wxtransfer_{out_no}`, package `package_{out_no}`), concluded later by a
    /// [`TransferNotice`] or by what [`RecordingGateway::set_transfer`] makes `query_transfer` answer.
    pub fn pay_by_transfer(&self) {
        let mut t = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
        t.get_or_insert_with(Default::default);
    }

    /// What `query_transfer` answers for `out_bill_no` (after [`RecordingGateway::pay_by_transfer`]).
    pub fn set_transfer(&self, out_bill_no: &str, answer: TransferQuery) {
        let mut t = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
        t.get_or_insert_with(Default::default).insert(out_bill_no.to_string(), answer);
    }

    /// Makes the next call of `op` (`"prepay"`, `"close"`, `"refund"`, `"ship"`, `"correct_shipping"`,
    /// `"profit_share"`, `"compensate"`, `"query"`, `"query_refund"`, `"query_transfer"`) fail; a `transient`
    /// failure is retryable (WeChat Pay's `SYSTEM_ERROR`), otherwise it is final (`PARAM_ERROR`).
    pub fn fail_next(&self, op: &'static str, transient: bool) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).push((op, transient));
    }

    fn record(&self, op: &'static str, call: GatewayCall) -> crate::Result<()> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = f.iter().position(|(o, _)| *o == op) {
            let (_, transient) = f.remove(i);
            let (status, code) = if transient { (500, "SYSTEM_ERROR") } else { (400, "PARAM_ERROR") };
            return Err(crate::Error::PayApi {
                status,
                code: code.into(),
                message: format!("injected {op} failure"),
                detail: None,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl PaymentGateway for RecordingGateway {
    async fn trade_bill(&self, date: chrono::NaiveDate) -> crate::Result<Vec<BillLine>> {
        let bills = self.bills.lock().unwrap_or_else(|p| p.into_inner());
        Ok(bills.iter().filter(|(d, _)| *d == date).flat_map(|(_, l)| l.clone()).collect())
    }

    async fn prepay(&self, req: &PrepayRequest) -> crate::Result<PrepayTicket> {
        self.record("prepay", GatewayCall::Prepay(req.clone()))?;
        let prepay_id = format!("prepay_{}", req.out_trade_no);
        Ok(PrepayTicket {
            pay_params: serde_json::json!({
                "timeStamp": req.time_expire.timestamp().to_string(),
                "nonceStr": req.out_trade_no,
                "package": format!("prepay_id={prepay_id}"),
                "signType": "RSA",
                "paySign": "recorded",
            }),
            prepay_id,
        })
    }

    async fn close(&self, req: &CloseRequest) -> crate::Result<()> {
        self.record("close", GatewayCall::Close(req.clone()))
    }

    async fn refund(&self, req: &RefundRequest) -> crate::Result<RefundTicket> {
        self.record("refund", GatewayCall::Refund(req.clone()))?;
        let held = *self.hold_refunds.lock().unwrap_or_else(|p| p.into_inner());
        Ok(RefundTicket { refund_id: format!("wxrefund_{}", req.out_refund_no), succeeded: !held })
    }

    async fn query_refund(&self, req: &RefundQueryRequest) -> crate::Result<RefundQuery> {
        self.record("query_refund", GatewayCall::QueryRefund(req.clone()))?;
        let r = self.refunds.lock().unwrap_or_else(|p| p.into_inner());
        Ok(r.iter().find(|(no, _)| *no == req.out_refund_no).map_or(RefundQuery::Unknown, |(_, q)| q.clone()))
    }

    async fn profit_share(&self, req: &ProfitShareRequest) -> crate::Result<ProfitShareTicket> {
        self.record("profit_share", GatewayCall::ProfitShare(req.clone()))?;
        Ok(ProfitShareTicket { order_id: format!("wxshare_{}", req.out_order_no), finished: true })
    }

    async fn compensate(&self, req: &CompensationRequest) -> crate::Result<CompensationTicket> {
        self.record("compensate", GatewayCall::Compensate(req.clone()))?;
        if self.transfers.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(CompensationTicket {
                id: format!("wxtransfer_{}", req.out_no),
                succeeded: false,
                state: Some("WAIT_USER_CONFIRM".into()),
                package_info: Some(format!("package_{}", req.out_no)),
                fail_reason: None,
            });
        }
        Ok(CompensationTicket::paid(format!("wxcomp_{}", req.out_no)))
    }

    async fn query_transfer(&self, out_bill_no: &str) -> crate::Result<TransferQuery> {
        self.record("query_transfer", GatewayCall::QueryTransfer(out_bill_no.to_string()))?;
        let t = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(t.as_ref().and_then(|m| m.get(out_bill_no).cloned()).unwrap_or(TransferQuery::Unknown))
    }

    async fn query(&self, req: &QueryRequest) -> crate::Result<PaymentQuery> {
        self.record("query", GatewayCall::Query(req.clone()))?;
        let paid = self.paid.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match paid.iter().find(|n| n.out_trade_no == req.out_trade_no) {
            Some(n) => PaymentQuery::Paid(PaymentNotice { notify_id: query_notify_id(&n.transaction_id), ..n.clone() }),
            None => PaymentQuery::Unpaid,
        })
    }
}

#[async_trait]
impl ShippingGateway for RecordingGateway {
    async fn upload(&self, req: &ShippingUpload) -> crate::Result<()> {
        self.record("ship", GatewayCall::Ship(req.clone()))
    }

    /// Like WeChat: one correction per payment (by `out_trade_no`); the second answers `false`.
    async fn correct(&self, req: &ShippingUpload) -> crate::Result<bool> {
        self.record("correct_shipping", GatewayCall::CorrectShipping(req.clone()))?;
        let mut done = self.corrected.lock().unwrap_or_else(|p| p.into_inner());
        if done.contains(&req.out_trade_no) {
            return Ok(false);
        }
        done.push(req.out_trade_no.clone());
        Ok(true)
    }
}
