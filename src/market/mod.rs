//! The marketplace: merchants, categories with versioned rules, catalog, inventory reservations,
//! carts, multi-merchant checkout and orders, paid with WeChat Pay and shipped through WeChat's
//! shipping-info management — on SQLite (default) or PostgreSQL (feature `postgres`).
//!
//! The pieces:
//! - plain domain modules, which know nothing of storage: [`money`], [`merchant`], [`category`],
//!   [`catalog`], [`inventory`], [`cart`], [`checkout`], [`order`], [`payment`], [`events`];
//! - [`store`]: the [`MarketStore`] trait and its SQLite and PostgreSQL implementations (all SQL lives
//!   there);
//! - [`gateway`]: the [`PaymentGateway`] and [`ShippingGateway`] traits (`market` never sends HTTP
//!   itself), implemented over the crate's clients by [`WechatPayGateway`] (WeChat Pay v3: JSAPI,
//!   partner, combined payment, close, refund) and [`MpShippingGateway`] (shipping-info upload), and in
//!   memory by [`RecordingGateway`];
//! - [`governance`]: deposits, reviews and scores, after-sales, penalties, commissions, settlement and
//!   the double-entry ledger they post to;
//! - [`Market`]: the service that ties them together. Every state change is one transaction that
//!   writes the new state, an audit row, an outbox event and any timers; lost races and serialization
//!   failures are retried (bounded); external calls happen after commit, from durable timers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> wxshop::market::Result<()> {
//! use std::sync::Arc;
//! use wxshop::market::*;
//!
//! let gw = Arc::new(RecordingGateway::default());
//! let market = Market::builder(store::open("sqlite::memory:").await?)
//!     .payments(gw.clone())
//!     .shipping(gw.clone())
//!     .build()?;
//!
//! // A merchant selling tea, with 5 units in stock.
//! let (tea, _rule) = market.categories().create_category("Tea", None, RuleSpec::default()).await?;
//! let shop = market.merchants().create_merchant(NewMerchant::new("Leaf & Co")).await?;
//! market.merchants().approve_merchant(&shop.id).await?;
//! market.merchants().grant_category(&shop.id, &tea.id).await?;
//! let p = market.catalog().create_product(&shop.id, NewProduct {
//!     category_id: tea.id.clone(), title: "Longjing".into(), description: String::new(),
//!     skus: vec![NewSku { price: Money::fen(8800), ..Default::default() }],
//! }).await?;
//! market.catalog().list_product(&shop.id, &p.product.id).await?;
//! let sku = &p.skus[0].id;
//! market.inventory().set_stock(&shop.id, sku, 5).await?;
//!
//! // A buyer checks out 2 units and pays.
//! let co = market.orders().checkout(CheckoutRequest::new("openid-1", "k1", vec![CheckoutLine::new(sku, 2)])).await?;
//! assert_eq!(co.group.total, Money::fen(17600));
//! assert_eq!(market.inventory().stock(sku).await?.available(), 3);
//! let notice = PaymentNotice {
//!     notify_id: "n1".into(), out_trade_no: co.group.id.clone(), transaction_id: "t1".into(),
//!     amount: co.group.total, paid_at: chrono::Utc::now(), sub_orders: vec![],
//! };
//! assert_eq!(market.payments().handle_payment_notice(&notice).await?, NoticeOutcome::Paid);
//! assert_eq!(market.payments().handle_payment_notice(&notice).await?, NoticeOutcome::Duplicate);
//! assert_eq!(market.orders().order(&co.orders[0].id).await?.order.status, OrderStatus::Paid);
//! # Ok(()) }
//! ```

pub mod access;
pub mod anomaly;
pub mod cart;
pub mod catalog;
pub mod category;
pub mod checkout;
pub mod clock;
pub mod error;
pub mod events;
pub mod gateway;
pub mod governance;
pub mod inventory;
pub mod merchant;
pub mod money;
pub mod order;
pub mod payment;
pub mod recommend;
mod service;
pub mod store;

pub use cart::{CartChange, CartItem, CartLine, CartOwner, CartView, MerchantCart, merge_lines};
pub use catalog::{
    BrowseQuery, BrowseSort, Cursor, NewProduct, NewSku, Page, Product, ProductDetail, ProductStatus, Sku, SkuOffer,
};
pub use category::{Category, CategoryRule, RuleSpec, SevenDayReturn};
pub use checkout::{CheckoutGroup, CheckoutLine, CheckoutRequest, GroupStatus, Plan, plan};
pub use clock::{Clock, ManualClock, SystemClock, new_id};
pub use error::{ErrorKind, MarketError, Result, Shortage};
pub use events::{Actor, AuditEntry, OutboxEvent, Timer, TimerAction, TimerReport, TimerStatus};
pub use gateway::{
    BillLine, CloseRequest, CompensationRequest, CompensationTicket, GatewayCall, LogisticsType, MpShippingGateway,
    PROMOTER_RELATION, PaymentGateway, PaymentQuery, PrepayRequest, PrepayTicket, ProfitShareReceiver,
    ProfitShareRequest, ProfitShareTicket, QueryRequest, RecordingGateway, RefundQuery, RefundQueryRequest,
    RefundRequest, RefundTicket, ShippingGateway, ShippingParcel, ShippingUpload, SubOrder, TransferNotice,
    TransferOutcome, TransferQuery, WechatPayGateway, query_notify_id, transfer_query_notify_id,
};
pub use inventory::{Demand, Movement, MovementKind, Reservation, ReservationStatus, StockLevel, aggregate_demand};
pub use merchant::{Merchant, MerchantStatus, Restrictions};
pub use money::Money;
pub use order::{
    MerchantOrder, OrderDetail, OrderLine, OrderStatus, ShipCorrection, ShipItem, ShipRequest, Shipment, Step,
};
pub use payment::{NoticeOutcome, PayMode, Payment, PaymentNotice, PaymentStatus, Refund, RefundStatus, SubOrderPaid};
pub use service::handles;
pub use service::{BillReport, CLAIM_LEASE, CompensationView, StoreClaims, TransferNoticeOutcome};
pub use service::{
    CaseRequest, Checkout, DEFAULT_RETENTION_DAYS, DepositPrepay, DepositRefundView, DepositView, GOVERNANCE_CONSUMER,
    MIN_RETENTION_HOURS, Market, MarketBuilder, MarketConfig, MerchantBalances, NewMerchant, PenaltyLog, PruneReport,
    ReconcileReport, RefundSettled, Retention, ReviewRequest, StockReconciliation,
};
pub use store::{Backend, MarketStore, StoreTx};
