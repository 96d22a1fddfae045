//! The marketplace's view of WeChat Pay and WeChat shipping-info management.
//!
//! `market` never sends HTTP: it calls a [`PaymentGateway`] and a [`ShippingGateway`], which the
//! WeChat Pay client and the mini-program shipping client implement (pointed at WeChat or at the
//! emulator). [`WechatPayGateway`] pays through [`crate::pay::PayClient`] (JSAPI, partner and combined
//! payments, close, refunds); [`MpShippingGateway`] uploads through [`crate::mp::shipping`];
//! [`RecordingGateway`] implements both traits in memory and records every call, for tests and demos
//! that need no emulator.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use wxshop::market::{Money, PayMode, PaymentGateway, PrepayRequest, RecordingGateway};
//! let gw = RecordingGateway::default();
//! let req = PrepayRequest {
//!     mode: PayMode::Jsapi, out_trade_no: "g1".into(), description: "tea".into(),
//!     payer_openid: "o1".into(), total: Money::fen(100),
//!     time_expire: chrono::Utc::now(), sub_mchid: None, sub_orders: vec![], purpose: Default::default(),
//! };
//! let ticket = gw.prepay(&req).await.unwrap();
//! assert_eq!(ticket.prepay_id, "prepay_g1");
//! assert_eq!(gw.calls().len(), 1);
//! # }
//! ```
//!
//! The port traits live here; `types.rs` holds the data they exchange, `fake.rs` the in-memory
//! [`RecordingGateway`], `wechat_pay.rs` the two adapters onto WeChat. Every item is re-exported
//! here, so `market::gateway::X` names them all.

mod fake;
mod types;
mod wechat_pay;

use std::fmt;

use async_trait::async_trait;

pub use fake::*;
pub use types::*;
pub use wechat_pay::*;

/// WeChat Pay, as the marketplace needs it.
#[async_trait]
pub trait PaymentGateway: Send + Sync + fmt::Debug {
    /// Creates (or, for the same `out_trade_no`, returns again) a prepay order.
    async fn prepay(&self, req: &PrepayRequest) -> crate::Result<PrepayTicket>;
    /// Closes an unpaid prepay order (closing an unknown or closed one succeeds).
    async fn close(&self, req: &CloseRequest) -> crate::Result<()>;
    /// Requests a refund (idempotent by `out_refund_no`).
    async fn refund(&self, req: &RefundRequest) -> crate::Result<RefundTicket>;
    /// Shares a transaction out (idempotent by `out_order_no`). Gateways without profit sharing refuse.
    async fn profit_share(&self, req: &ProfitShareRequest) -> crate::Result<ProfitShareTicket> {
        Err(crate::Error::Config(format!("this payment gateway cannot share {} out", req.out_order_no)))
    }
    /// Pays a buyer compensation (idempotent by `out_no`). Gateways without it refuse.
    async fn compensate(&self, req: &CompensationRequest) -> crate::Result<CompensationTicket> {
        Err(crate::Error::Config(format!("this payment gateway cannot pay compensation {}", req.out_no)))
    }
    /// Asks for a payment's state. Gateways without a query answer [`PaymentQuery::Unknown`].
    async fn query(&self, req: &QueryRequest) -> crate::Result<PaymentQuery> {
        let _ = req;
        Ok(PaymentQuery::Unknown)
    }
    /// Asks for a refund's state. Gateways without a refund query answer [`RefundQuery::Unknown`].
    async fn query_refund(&self, req: &RefundQueryRequest) -> crate::Result<RefundQuery> {
        let _ = req;
        Ok(RefundQuery::Unknown)
    }
    /// Asks for a compensation transfer's state by `out_bill_no`. Gateways without transfers answer
    /// [`TransferQuery::Unknown`].
    async fn query_transfer(&self, out_bill_no: &str) -> crate::Result<TransferQuery> {
        let _ = out_bill_no;
        Ok(TransferQuery::Unknown)
    }
    /// The payments and refunds of one day's trade bill (Beijing time). Gateways without bills refuse.
    async fn trade_bill(&self, date: chrono::NaiveDate) -> crate::Result<Vec<BillLine>> {
        Err(crate::Error::Config(format!("this payment gateway has no trade bill for {date}")))
    }
}

/// WeChat shipping-info management, as the marketplace needs it.
#[async_trait]
pub trait ShippingGateway: Send + Sync + fmt::Debug {
    /// Uploads shipping info for a paid order.
    async fn upload(&self, req: &ShippingUpload) -> crate::Result<()>;

    /// Replaces the shipping info of a shipped, unconfirmed payment with `req` (every parcel of the
    /// order, one of them corrected): WeChat allows this once per payment. `Ok(false)`: WeChat has no
    /// correction left for it (already corrected, or no longer shipped and unconfirmed), and nothing
    /// was sent. The default refuses: a gateway that cannot correct says so.
    async fn correct(&self, req: &ShippingUpload) -> crate::Result<bool> {
        Err(crate::Error::InvalidRequest(format!(
            "this shipping gateway cannot correct the shipping info of {}",
            req.out_trade_no
        )))
    }
}
