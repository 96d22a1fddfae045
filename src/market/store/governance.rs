//! Storage of governance: the [`GovTx`] half of a [`StoreTx`], on both backends.
//!
//! Same rules as the rest of the store: runtime-checked statements shared by both engines (written
//! once in `gov_store_tx!`), conditional writes (`WHERE version = $n`) whose row count says who won,
//! idempotent inserts with `ON CONFLICT DO NOTHING`. Each aggregate keeps its full state as JSON in a
//! `doc` column beside the columns that queries and constraints use.
//!
//! The ledger is posted by [`post`]: the transaction row, its entries, and one conditional upsert per
//! account touched that refuses to take an account below zero when its policy forbids debt; the
//! balances table is a projection that [`GovTx::ledger_audit`] checks against the entries.
//!
//! ```no_run
//! # async fn demo() -> wxshop::market::Result<()> {
//! use wxshop::market::governance::ledger::{Account, NegativePolicy, TxnBuilder, TxnKind};
//! use wxshop::market::{Money, store};
//! let store = store::open("sqlite::memory:").await?;
//! let mut tx = store.begin().await?;
//! let t = TxnBuilder::new(TxnKind::DepositPayIn, "deposit:m1")
//!     .transfer(Account::Clearing, Account::MerchantDeposit("m1".into()), Money::fen(500))
//!     .build("t1", chrono::Utc::now())
//!     .unwrap();
//! store::governance::post(&mut *tx, &t, &NegativePolicy::default()).await?;
//! assert_eq!(tx.ledger_balance("merchant:m1:deposit").await?, 500);
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreTx;
use crate::market::error::{MarketError, Result};
use crate::market::governance::aftersale::{Case, Dispute};
use crate::market::governance::commission::CommissionRule;
use crate::market::governance::deposit::{DepositAccount, DepositPayment, DepositRefund, DepositRefundStatus};
use crate::market::governance::ledger::{NegativePolicy, Txn};
use crate::market::governance::penalty::{Penalty, Restriction};
use crate::market::governance::review::Review;
use crate::market::governance::settlement::{
    Attribution, Click, Compensation, CompensationTransfer, PayoutStatus, ProfitShare, Settlement, ShareStatus,
};

/// A value and the optimistic-concurrency version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub version: i64,
}

/// What [`post`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Written.
    Posted,
    /// A transaction with this id was already posted; nothing written.
    Duplicate,
    /// Refused: `account` would have fallen to `balance`. The caller must roll back (entries of other
    /// accounts may have been written in this transaction).
    Negative {
        /// The account.
        account: String,
        /// The balance it would have reached.
        balance: i64,
    },
}

/// The ledger checked against itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerAudit {
    /// Σ of every balance (zero).
    pub total: i64,
    /// Accounts whose projected balance differs from the sum of their entries: `(account, balance, Σ entries)`.
    pub mismatches: Vec<(String, i64, i64)>,
    /// Transactions whose entries do not sum to zero.
    pub unbalanced: Vec<String>,
}

/// The governance operations of one transaction.
#[async_trait]
pub trait GovTx: Send {
    // ---- configuration
    /// A configuration document.
    async fn gov_config(&mut self, key: &str) -> Result<Option<String>>;
    /// Writes a configuration document.
    async fn put_gov_config(&mut self, key: &str, doc: &str, at: DateTime<Utc>) -> Result<()>;

    // ---- ledger
    /// Inserts a transaction and its entries; `false` (nothing written) if its id exists.
    async fn ledger_insert_txn(&mut self, t: &Txn) -> Result<bool>;
    /// `balance += delta` for `account`, unless that takes it below zero and `allow_negative` is false;
    /// the new balance, or `None` if refused.
    async fn ledger_add(
        &mut self,
        account: &str,
        delta: i64,
        allow_negative: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>>;
    /// A transaction.
    async fn ledger_txn(&mut self, id: &str) -> Result<Option<Txn>>;
    /// The transactions of a reference, oldest first.
    async fn ledger_txns(&mut self, reference: &str) -> Result<Vec<Txn>>;
    /// Whether `id` was reversed.
    async fn ledger_reversed(&mut self, id: &str) -> Result<bool>;
    /// The balance of an account (0 if it never moved).
    async fn ledger_balance(&mut self, account: &str) -> Result<i64>;
    /// Balances of the accounts whose name starts with `prefix`.
    async fn ledger_balances(&mut self, prefix: &str) -> Result<Vec<(String, i64)>>;
    /// Checks the projection against the entries.
    async fn ledger_audit(&mut self) -> Result<LedgerAudit>;

    // ---- deposits
    /// A merchant's deposit account.
    async fn deposit(&mut self, merchant_id: &str) -> Result<Option<Versioned<DepositAccount>>>;
    /// Inserts a deposit account (version 1); `false` if it exists.
    async fn insert_deposit(&mut self, d: &DepositAccount) -> Result<bool>;
    /// Writes a deposit account if still at `expected`.
    async fn update_deposit(&mut self, d: &DepositAccount, expected: i64) -> Result<bool>;
    /// Deposit accounts in Insufficient whose grace ended by `now` (for repair sweeps).
    async fn deposits_in(&mut self, status: &str, limit: i64) -> Result<Vec<DepositAccount>>;
    /// Inserts a pending deposit payment; `false` if its id or `(merchant, key)` exists.
    async fn insert_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool>;
    /// A deposit payment by `out_trade_no`.
    async fn deposit_payment(&mut self, id: &str) -> Result<Option<DepositPayment>>;
    /// A merchant's deposit payment by idempotency key.
    async fn deposit_payment_by_key(&mut self, merchant_id: &str, key: &str) -> Result<Option<DepositPayment>>;
    /// Marks a pending (or closed: the money arrived anyway) deposit payment paid; `false` if it was
    /// already paid.
    async fn mark_deposit_payment_paid(&mut self, p: &DepositPayment) -> Result<bool>;
    /// Marks a pending deposit payment closed (unpaid); `false` if it was not pending.
    async fn close_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool>;
    /// A merchant's deposit payments (every status), oldest first.
    async fn deposit_payments_of(&mut self, merchant_id: &str) -> Result<Vec<DepositPayment>>;
    /// Pending deposit payments created at or before `before`, oldest first, at most `limit`.
    async fn pending_deposit_payments(&mut self, before: DateTime<Utc>, limit: i64) -> Result<Vec<DepositPayment>>;
    /// Inserts a deposit refund; `false` if its id exists.
    async fn insert_deposit_refund(&mut self, r: &DepositRefund) -> Result<bool>;
    /// A deposit refund by `out_refund_no`.
    async fn deposit_refund(&mut self, id: &str) -> Result<Option<DepositRefund>>;
    /// Writes a deposit refund if its status is still `expected`.
    async fn update_deposit_refund(&mut self, r: &DepositRefund, expected: DepositRefundStatus) -> Result<bool>;
    /// A merchant's deposit refunds, oldest first.
    async fn deposit_refunds_of(&mut self, merchant_id: &str) -> Result<Vec<DepositRefund>>;
    /// Deposit refunds in `status` last changed at or before `before`, oldest first, at most `limit`.
    async fn deposit_refunds_in(
        &mut self,
        status: DepositRefundStatus,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DepositRefund>>;

    // ---- reviews
    /// Inserts a review of line `line_no`; `false` if the line already has one.
    async fn insert_review(&mut self, r: &Review, line_no: i64) -> Result<bool>;
    /// A review.
    async fn review(&mut self, id: &str) -> Result<Option<Versioned<Review>>>;
    /// Writes a review if still at `expected`.
    async fn update_review(&mut self, r: &Review, expected: i64) -> Result<bool>;
    /// A merchant's reviews written after `since`, newest first, at most `limit`.
    async fn reviews_of_merchant(&mut self, merchant_id: &str, since: DateTime<Utc>, limit: i64)
    -> Result<Vec<Review>>;
    /// Published reviews in these categories after `since`: `(count, Σ item, Σ logistics, Σ service)`.
    async fn category_stars(&mut self, category_ids: &[String], since: DateTime<Utc>) -> Result<(i64, i64, i64, i64)>;

    // ---- after-sale cases and disputes
    /// Inserts a case of line `line_no`; `false` if the line already has an open case.
    async fn insert_case(&mut self, c: &Case, line_no: i64, refund_id: Option<&str>) -> Result<bool>;
    /// A case.
    async fn case(&mut self, id: &str) -> Result<Option<Versioned<Case>>>;
    /// Writes a case if still at `expected`.
    async fn update_case(&mut self, c: &Case, refund_id: Option<&str>, expected: i64) -> Result<bool>;
    /// The cases of an order line, oldest first.
    async fn cases_of_line(&mut self, order_id: &str, line_no: i64) -> Result<Vec<Case>>;
    /// The cases of an order, oldest first.
    async fn cases_of_order(&mut self, order_id: &str) -> Result<Vec<Case>>;
    /// A merchant's cases opened after `since`, newest first, at most `limit`.
    async fn cases_of_merchant(&mut self, merchant_id: &str, since: DateTime<Utc>, limit: i64) -> Result<Vec<Case>>;
    /// The case a refund pays.
    async fn case_of_refund(&mut self, refund_id: &str) -> Result<Option<Versioned<Case>>>;
    /// Inserts a dispute; `false` if the case already has one.
    async fn insert_dispute(&mut self, d: &Dispute, line_no: i64) -> Result<bool>;
    /// A dispute.
    async fn dispute(&mut self, id: &str) -> Result<Option<Versioned<Dispute>>>;
    /// Writes a dispute if still at `expected`.
    async fn update_dispute(&mut self, d: &Dispute, expected: i64) -> Result<bool>;
    /// A merchant's disputes opened after `since`, newest first.
    async fn disputes_of_merchant(
        &mut self,
        merchant_id: &str,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Dispute>>;

    // ---- penalties, restrictions, delistings
    /// Inserts a penalty; `false` if its violation key already has one.
    async fn insert_penalty(&mut self, p: &Penalty) -> Result<bool>;
    /// A penalty.
    async fn penalty(&mut self, id: &str) -> Result<Option<Versioned<Penalty>>>;
    /// Writes a penalty if still at `expected`.
    async fn update_penalty(&mut self, p: &Penalty, expected: i64) -> Result<bool>;
    /// A merchant's penalties created after `since`, newest first.
    async fn penalties_of_merchant(
        &mut self,
        merchant_id: &str,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Penalty>>;
    /// Inserts a restriction.
    async fn insert_restriction(&mut self, r: &Restriction) -> Result<()>;
    /// A merchant's restrictions not lifted.
    async fn restrictions_of(&mut self, merchant_id: &str) -> Result<Vec<Restriction>>;
    /// Lifts a restriction; `false` if unknown or already lifted.
    async fn lift_restriction(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Records that a penalty delisted a product.
    async fn insert_delisting(
        &mut self,
        merchant_id: &str,
        product_id: &str,
        penalty_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Forgets a penalty's delistings.
    async fn delete_delistings(&mut self, penalty_id: &str) -> Result<()>;
    /// How many penalties still hold a product delisted.
    async fn delisting_holds(&mut self, merchant_id: &str, product_id: &str) -> Result<i64>;

    // ---- commission, settlement, profit sharing, compensation, promoters
    /// Inserts or replaces a commission rule.
    async fn put_commission_rule(&mut self, r: &CommissionRule) -> Result<()>;
    /// Every commission rule.
    async fn commission_rules(&mut self) -> Result<Vec<CommissionRule>>;
    /// Inserts a settlement; `false` if the order has one.
    async fn insert_settlement(&mut self, s: &Settlement) -> Result<bool>;
    /// The settlement of an order.
    async fn settlement(&mut self, order_id: &str) -> Result<Option<Versioned<Settlement>>>;
    /// Writes a settlement if still at `expected`.
    async fn update_settlement(&mut self, s: &Settlement, expected: i64) -> Result<bool>;
    /// A merchant's settlements, newest first.
    async fn settlements_of(&mut self, merchant_id: &str, limit: i64) -> Result<Vec<Settlement>>;
    /// Inserts a profit-sharing record; `false` if its `out_order_no` exists.
    async fn insert_profit_share(&mut self, p: &ProfitShare) -> Result<bool>;
    /// A profit-sharing record.
    async fn profit_share(&mut self, out_order_no: &str) -> Result<Option<ProfitShare>>;
    /// Moves a profit-sharing record from `from` to its status.
    async fn update_profit_share(&mut self, p: &ProfitShare, from: ShareStatus) -> Result<bool>;
    /// Inserts a compensation payout.
    async fn insert_compensation(&mut self, c: &Compensation) -> Result<bool>;
    /// A compensation payout.
    async fn compensation(&mut self, id: &str) -> Result<Option<Compensation>>;
    /// Moves a compensation payout from `from` to its status.
    async fn update_compensation(&mut self, c: &Compensation, from: PayoutStatus) -> Result<bool>;
    /// Records a share-link click.
    async fn insert_click(&mut self, buyer_openid: &str, c: &Click) -> Result<()>;
    /// A buyer's clicks after `since`.
    async fn clicks_of(&mut self, buyer_openid: &str, since: DateTime<Utc>) -> Result<Vec<Click>>;
    /// Inserts an attribution; `false` if the order has one.
    async fn insert_attribution(&mut self, merchant_id: &str, a: &Attribution) -> Result<bool>;
    /// The attribution of an order.
    async fn attribution_of(&mut self, order_id: &str) -> Result<Option<Versioned<Attribution>>>;
    /// Writes an attribution if still at `expected`.
    async fn update_attribution(&mut self, a: &Attribution, expected: i64) -> Result<bool>;

    // ---- facts the score and the detectors read
    /// Records the carrier's first scan of an order (keeps the earliest).
    async fn put_carrier_event(&mut self, merchant_id: &str, order_id: &str, at: DateTime<Utc>) -> Result<()>;
    /// The carrier's first scan of an order.
    async fn carrier_event(&mut self, order_id: &str) -> Result<Option<DateTime<Utc>>>;
    /// Flags an order (fraud, abuse): its reviews stop counting.
    async fn flag_order(&mut self, merchant_id: &str, order_id: &str, reason: &str, at: DateTime<Utc>) -> Result<()>;
    /// The flagged orders of a merchant.
    async fn flagged_orders(&mut self, merchant_id: &str) -> Result<Vec<String>>;
    /// `(ship_deadline, shipped_at)` of a merchant's orders whose deadline is after `since`.
    async fn ship_facts(
        &mut self,
        merchant_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>>;
    /// Orders of a merchant paid after `since`.
    async fn paid_orders_since(&mut self, merchant_id: &str, since: DateTime<Utc>) -> Result<i64>;
    /// The categories a merchant may sell in.
    async fn merchant_categories(&mut self, merchant_id: &str) -> Result<Vec<String>>;
    /// The listed products of a merchant.
    async fn listed_products(&mut self, merchant_id: &str) -> Result<Vec<String>>;

    // ---- compensation paid by merchant transfer (商家转账)
    /// Inserts a transfer of a compensation; `false` if its `out_bill_no` exists.
    async fn insert_compensation_transfer(&mut self, t: &CompensationTransfer) -> Result<bool>;
    /// A transfer by `out_bill_no`.
    async fn compensation_transfer(&mut self, out_bill_no: &str) -> Result<Option<CompensationTransfer>>;
    /// The transfers of a compensation, first attempt first.
    async fn compensation_transfers(&mut self, compensation_id: &str) -> Result<Vec<CompensationTransfer>>;
    /// Writes a transfer if its stored state is still `from`.
    async fn update_compensation_transfer(&mut self, t: &CompensationTransfer, from: &str) -> Result<bool>;
    /// Transfers WeChat Pay accepted that have not reached a final state, oldest change first.
    async fn pending_compensation_transfers(&mut self, limit: i64) -> Result<Vec<CompensationTransfer>>;
    /// A buyer's compensations, newest first.
    async fn compensations_of_buyer(&mut self, buyer_openid: &str, limit: i64) -> Result<Vec<Compensation>>;

    // ---- promoter ids (what referral tokens carry)
    /// Gives `openid` the next promoter id (`MAX(id) + 1`, the first is 1); `false` (nothing written) if
    /// the openid has one, or if a concurrent transaction took that id (read [`GovTx::promoter_id`]: still
    /// `None` means a lost race, worth retrying as a whole).
    async fn insert_promoter(&mut self, openid: &str, at: DateTime<Utc>) -> Result<bool>;
    /// The promoter id of an openid.
    async fn promoter_id(&mut self, openid: &str) -> Result<Option<i64>>;
    /// The openid of a promoter id.
    async fn promoter_openid(&mut self, id: i64) -> Result<Option<String>>;
}

/// Posts `t`: checks its shape, writes it, and applies each account's delta under `policy`. A
/// [`Posted::Negative`] leaves partial writes behind: roll the transaction back.
pub async fn post(tx: &mut dyn StoreTx, t: &Txn, policy: &NegativePolicy) -> Result<Posted> {
    t.validate().map_err(|e| MarketError::Invalid(e.to_string()))?;
    if let Some(orig) = &t.reverses {
        if tx.ledger_txn(orig).await?.is_none() {
            return Err(MarketError::not_found("ledger transaction", orig));
        }
        if tx.ledger_reversed(orig).await? && tx.ledger_txn(&t.id).await?.is_none() {
            return Err(MarketError::Invalid(format!("ledger transaction {orig} was already reversed")));
        }
    }
    if !tx.ledger_insert_txn(t).await? {
        // The id exists: a repeat if the postings are the same (a redelivered event may rebuild the
        // transaction at a later instant), a mistake otherwise.
        let existing = tx.ledger_txn(&t.id).await?;
        let same = existing.is_some_and(|e| {
            e.kind == t.kind && e.reference == t.reference && e.reverses == t.reverses && e.entries == t.entries
        });
        return if same {
            Ok(Posted::Duplicate)
        } else {
            Err(MarketError::Invalid(format!("ledger transaction id {} reused for a different posting", t.id)))
        };
    }
    for (account, delta) in t.deltas() {
        let delta = i64::try_from(delta).map_err(|_| MarketError::Money(format!("delta on {account} overflows")))?;
        let allow = delta >= 0 || account.may_go_negative(policy);
        let name = account.to_string();
        if tx.ledger_add(&name, delta, allow, t.at).await?.is_none() {
            let balance = tx.ledger_balance(&name).await? + delta;
            return Ok(Posted::Negative { account: name, balance });
        }
    }
    Ok(Posted::Posted)
}

// ---------------------------------------------------------------- rows

pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

pub(crate) fn doc<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| MarketError::Store { message: format!("encode: {e}"), retryable: false })
}

pub(crate) fn undoc<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s)
        .map_err(|e| MarketError::Store { message: format!("corrupt {what} row: {e}"), retryable: false })
}

pub(crate) fn versioned<T: serde::de::DeserializeOwned>(
    what: &str,
    row: Option<(String, i64)>,
) -> Result<Option<Versioned<T>>> {
    row.map(|(d, version)| Ok(Versioned { value: undoc(what, &d)?, version })).transpose()
}

pub(crate) fn docs<T: serde::de::DeserializeOwned>(what: &str, rows: Vec<(String,)>) -> Result<Vec<T>> {
    rows.into_iter().map(|(d,)| undoc(what, &d)).collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct TxnRow {
    pub(crate) txn_id: String,
    pub(crate) kind: String,
    pub(crate) reference: String,
    pub(crate) reverses: Option<String>,
    pub(crate) at: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct EntryRow {
    pub(crate) txn_id: String,
    pub(crate) account: String,
    pub(crate) amount_fen: i64,
}

pub(crate) fn assemble(txns: Vec<TxnRow>, entries: Vec<EntryRow>) -> Result<Vec<Txn>> {
    use crate::market::governance::ledger::{Entry, TxnKind};
    let mut out = Vec::with_capacity(txns.len());
    for r in txns {
        let kind = TxnKind::parse(&r.kind).ok_or_else(|| MarketError::Store {
            message: format!("corrupt ledger kind {}", r.kind),
            retryable: false,
        })?;
        let entries = entries
            .iter()
            .filter(|e| e.txn_id == r.txn_id)
            .map(|e| {
                Ok(Entry {
                    account: e.account.parse().map_err(|e: crate::market::governance::GovError| {
                        MarketError::Store { message: e.to_string(), retryable: false }
                    })?,
                    amount: crate::market::Money::fen(e.amount_fen),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Txn { id: r.txn_id, kind, reference: r.reference, at: from_ms(r.at), reverses: r.reverses, entries });
    }
    Ok(out)
}

/// Implements [`GovTx`] for a backend's transaction newtype, with the same statements on every backend.
macro_rules! gov_store_tx {
    ($tx:ty, $db:ty) => {
        const _: () = {
        use chrono::{DateTime, Utc};
        use $crate::market::error::{MarketError, Result};
        use $crate::market::governance::aftersale::{Case, Dispute, Payer};
        use $crate::market::governance::commission::CommissionRule;
        use $crate::market::governance::deposit::{
            DepositAccount, DepositPayment, DepositRefund, DepositRefundStatus,
        };
        use $crate::market::governance::ledger::Txn as GovTxn;
        use $crate::market::governance::penalty::{Penalty, Restriction, RestrictionKind};
        use $crate::market::governance::review::Review;
        use $crate::market::governance::settlement::{
            Attribution, Click, Compensation, CompensationTransfer, PayoutStatus, ProfitShare, Settlement,
            ShareStatus,
        };
        use $crate::market::store::governance::{
            EntryRow, GovTx, LedgerAudit, TxnRow, Versioned, assemble, doc, docs, from_ms as gfrom_ms, ms as gms,
            undoc, versioned,
        };

        #[async_trait::async_trait]
        impl GovTx for $tx {
            async fn gov_config(&mut self, key: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT doc FROM gov_config WHERE config_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *self.0)
                    .await?)
            }

            async fn put_gov_config(&mut self, key: &str, doc: &str, at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gov_config (config_key, doc, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (config_key) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                )
                .bind(key)
                .bind(doc)
                .bind(gms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn ledger_insert_txn(&mut self, t: &GovTxn) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_ledger_txns (txn_id, kind, reference, reverses, at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (txn_id) DO NOTHING",
                )
                .bind(&t.id)
                .bind(t.kind.as_str())
                .bind(&t.reference)
                .bind(&t.reverses)
                .bind(gms(t.at))
                .execute(&mut *self.0)
                .await?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                for (i, e) in t.entries.iter().enumerate() {
                    sqlx::query("INSERT INTO gov_ledger_entries (txn_id, seq, account, amount_fen) VALUES ($1, $2, $3, $4)")
                        .bind(&t.id)
                        .bind(i as i64)
                        .bind(e.account.to_string())
                        .bind(e.amount.as_fen())
                        .execute(&mut *self.0)
                        .await?;
                }
                Ok(true)
            }

            async fn ledger_add(
                &mut self,
                account: &str,
                delta: i64,
                allow_negative: bool,
                at: DateTime<Utc>,
            ) -> Result<Option<i64>> {
                // One conditional upsert: the row lock makes concurrent postings serialize, and the WHERE
                // refuses an overdraft without a read-modify-write.
                let row: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO gov_balances (account, balance_fen, updated_at) \
                     SELECT $1, $2, $4 WHERE $2 >= 0 OR $3 OR EXISTS (SELECT 1 FROM gov_balances WHERE account = $1) \
                     ON CONFLICT (account) DO UPDATE SET balance_fen = gov_balances.balance_fen + excluded.balance_fen, \
                     updated_at = excluded.updated_at \
                     WHERE gov_balances.balance_fen + excluded.balance_fen >= 0 OR $3 \
                     RETURNING balance_fen",
                )
                .bind(account)
                .bind(delta)
                .bind(allow_negative)
                .bind(gms(at))
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(row)
            }

            async fn ledger_txn(&mut self, id: &str) -> Result<Option<GovTxn>> {
                let rows = sqlx::query_as::<_, TxnRow>(
                    "SELECT txn_id, kind, reference, reverses, at FROM gov_ledger_txns WHERE txn_id = $1",
                )
                .bind(id)
                .fetch_all(&mut *self.0)
                .await?;
                let entries = sqlx::query_as::<_, EntryRow>(
                    "SELECT txn_id, account, amount_fen FROM gov_ledger_entries WHERE txn_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&mut *self.0)
                .await?;
                Ok(assemble(rows, entries)?.pop())
            }

            async fn ledger_txns(&mut self, reference: &str) -> Result<Vec<GovTxn>> {
                let rows = sqlx::query_as::<_, TxnRow>(
                    "SELECT txn_id, kind, reference, reverses, at FROM gov_ledger_txns WHERE reference = $1 \
                     ORDER BY at, txn_id",
                )
                .bind(reference)
                .fetch_all(&mut *self.0)
                .await?;
                let entries = sqlx::query_as::<_, EntryRow>(
                    "SELECT e.txn_id, e.account, e.amount_fen FROM gov_ledger_entries e \
                     JOIN gov_ledger_txns t ON t.txn_id = e.txn_id WHERE t.reference = $1 ORDER BY e.txn_id, e.seq",
                )
                .bind(reference)
                .fetch_all(&mut *self.0)
                .await?;
                assemble(rows, entries)
            }

            async fn ledger_reversed(&mut self, id: &str) -> Result<bool> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gov_ledger_txns WHERE reverses = $1")
                    .bind(id)
                    .fetch_one(&mut *self.0)
                    .await?;
                Ok(n > 0)
            }

            async fn ledger_balance(&mut self, account: &str) -> Result<i64> {
                let v: Option<i64> = sqlx::query_scalar("SELECT balance_fen FROM gov_balances WHERE account = $1")
                    .bind(account)
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(v.unwrap_or(0))
            }

            async fn ledger_balances(&mut self, prefix: &str) -> Result<Vec<(String, i64)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT account, balance_fen FROM gov_balances WHERE substr(account, 1, length($1)) = $1 \
                     ORDER BY account",
                )
                .bind(prefix)
                .fetch_all(&mut *self.0)
                .await?;
                Ok(rows)
            }

            async fn ledger_audit(&mut self) -> Result<LedgerAudit> {
                let total: Option<i64> = sqlx::query_scalar("SELECT CAST(SUM(balance_fen) AS BIGINT) FROM gov_balances")
                    .fetch_one(&mut *self.0)
                    .await?;
                let mismatches: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT b.account, b.balance_fen, CAST(COALESCE(e.s, 0) AS BIGINT) FROM gov_balances b \
                     LEFT JOIN (SELECT account, SUM(amount_fen) AS s FROM gov_ledger_entries GROUP BY account) e \
                     ON e.account = b.account WHERE b.balance_fen <> COALESCE(e.s, 0) \
                     UNION ALL \
                     SELECT e.account, 0, CAST(e.s AS BIGINT) FROM (SELECT account, SUM(amount_fen) AS s \
                     FROM gov_ledger_entries GROUP BY account) e \
                     WHERE NOT EXISTS (SELECT 1 FROM gov_balances b WHERE b.account = e.account)",
                )
                .fetch_all(&mut *self.0)
                .await?;
                let unbalanced: Vec<(String,)> = sqlx::query_as(
                    "SELECT txn_id FROM gov_ledger_entries GROUP BY txn_id HAVING SUM(amount_fen) <> 0",
                )
                .fetch_all(&mut *self.0)
                .await?;
                Ok(LedgerAudit {
                    total: total.unwrap_or(0),
                    mismatches,
                    unbalanced: unbalanced.into_iter().map(|(t,)| t).collect(),
                })
            }

            async fn deposit(&mut self, merchant_id: &str) -> Result<Option<Versioned<DepositAccount>>> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT doc, version FROM gov_deposits WHERE merchant_id = $1")
                        .bind(merchant_id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                versioned("deposit", row)
            }

            async fn insert_deposit(&mut self, d: &DepositAccount) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_deposits (merchant_id, required_fen, status, grace_until, version, updated_at, doc) \
                     VALUES ($1, $2, $3, $4, 1, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&d.merchant_id)
                .bind(d.required.as_fen())
                .bind(d.status.as_str())
                .bind(d.grace_until.map(gms))
                .bind(gms(d.updated_at))
                .bind(doc(d)?)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn update_deposit(&mut self, d: &DepositAccount, expected: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_deposits SET required_fen = $1, status = $2, grace_until = $3, version = $4, \
                     updated_at = $5, doc = $6 WHERE merchant_id = $7 AND version = $8",
                )
                .bind(d.required.as_fen())
                .bind(d.status.as_str())
                .bind(d.grace_until.map(gms))
                .bind(expected + 1)
                .bind(gms(d.updated_at))
                .bind(doc(d)?)
                .bind(&d.merchant_id)
                .bind(expected)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_deposit_payments (id, merchant_id, idem_key, amount_fen, status, created_at, doc) \
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&p.id)
                .bind(&p.merchant_id)
                .bind(&p.idempotency_key)
                .bind(p.amount.as_fen())
                .bind(gms(p.created_at))
                .bind(doc(p)?)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn deposit_payment(&mut self, id: &str) -> Result<Option<DepositPayment>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT doc FROM gov_deposit_payments WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(docs("deposit payment", row.into_iter().collect())?.pop())
            }

            async fn deposit_payment_by_key(
                &mut self,
                merchant_id: &str,
                key: &str,
            ) -> Result<Option<DepositPayment>> {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_deposit_payments WHERE merchant_id = $1 AND idem_key = $2",
                )
                .bind(merchant_id)
                .bind(key)
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(docs("deposit payment", row.into_iter().collect())?.pop())
            }

            async fn mark_deposit_payment_paid(&mut self, p: &DepositPayment) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_deposit_payments SET status = 'paid', doc = $1 WHERE id = $2 AND status <> 'paid'",
                )
                .bind(doc(p)?)
                .bind(&p.id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn close_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_deposit_payments SET status = 'closed', doc = $1 WHERE id = $2 AND status = 'pending'",
                )
                .bind(doc(p)?)
                .bind(&p.id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn deposit_payments_of(&mut self, merchant_id: &str) -> Result<Vec<DepositPayment>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_deposit_payments WHERE merchant_id = $1 ORDER BY created_at, id",
                )
                .bind(merchant_id)
                .fetch_all(&mut *self.0)
                .await?;
                docs("deposit payment", rows)
            }

            async fn pending_deposit_payments(
                &mut self,
                before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<DepositPayment>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_deposit_payments WHERE status = 'pending' AND created_at <= $1 \
                     ORDER BY created_at, id LIMIT $2",
                )
                .bind(gms(before))
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("deposit payment", rows)
            }

            async fn insert_deposit_refund(&mut self, r: &DepositRefund) -> Result<bool> {
                let res = sqlx::query(
                    "INSERT INTO gov_deposit_refunds (id, merchant_id, payment_id, amount_fen, status, created_at, \
                     updated_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(&r.id)
                .bind(&r.merchant_id)
                .bind(r.payment_id.as_deref())
                .bind(r.amount.as_fen())
                .bind(r.status.as_str())
                .bind(gms(r.created_at))
                .bind(gms(r.updated_at))
                .bind(doc(r)?)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn deposit_refund(&mut self, id: &str) -> Result<Option<DepositRefund>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT doc FROM gov_deposit_refunds WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(docs("deposit refund", row.into_iter().collect())?.pop())
            }

            async fn update_deposit_refund(
                &mut self,
                r: &DepositRefund,
                expected: DepositRefundStatus,
            ) -> Result<bool> {
                let res = sqlx::query(
                    "UPDATE gov_deposit_refunds SET status = $1, updated_at = $2, doc = $3 \
                     WHERE id = $4 AND status = $5",
                )
                .bind(r.status.as_str())
                .bind(gms(r.updated_at))
                .bind(doc(r)?)
                .bind(&r.id)
                .bind(expected.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn deposit_refunds_of(&mut self, merchant_id: &str) -> Result<Vec<DepositRefund>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_deposit_refunds WHERE merchant_id = $1 ORDER BY created_at, id",
                )
                .bind(merchant_id)
                .fetch_all(&mut *self.0)
                .await?;
                docs("deposit refund", rows)
            }

            async fn deposit_refunds_in(
                &mut self,
                status: DepositRefundStatus,
                before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<DepositRefund>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_deposit_refunds WHERE status = $1 AND updated_at <= $2 \
                     ORDER BY updated_at, id LIMIT $3",
                )
                .bind(status.as_str())
                .bind(gms(before))
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("deposit refund", rows)
            }

            async fn deposits_in(&mut self, status: &str, limit: i64) -> Result<Vec<DepositAccount>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT doc FROM gov_deposits WHERE status = $1 ORDER BY merchant_id LIMIT $2")
                        .bind(status)
                        .bind(limit)
                        .fetch_all(&mut *self.0)
                        .await?;
                docs("deposit", rows)
            }

            async fn insert_review(&mut self, r: &Review, line_no: i64) -> Result<bool> {
                let res = sqlx::query(
                    "INSERT INTO gov_reviews (merchant_id, review_id, order_id, line_no, buyer_openid, category_id, \
                     status, created_at, version, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&r.merchant_id)
                .bind(&r.id)
                .bind(&r.order_id)
                .bind(line_no)
                .bind(&r.buyer_id)
                .bind(&r.category_id)
                .bind(r.status.as_str())
                .bind(gms(r.created_at))
                .bind(doc(r)?)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn review(&mut self, id: &str) -> Result<Option<Versioned<Review>>> {
                let row: Option<(String, i64)> = sqlx::query_as("SELECT doc, version FROM gov_reviews WHERE review_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                versioned("review", row)
            }

            async fn update_review(&mut self, r: &Review, expected: i64) -> Result<bool> {
                let res = sqlx::query(
                    "UPDATE gov_reviews SET status = $1, version = $2, doc = $3 WHERE review_id = $4 AND version = $5",
                )
                .bind(r.status.as_str())
                .bind(expected + 1)
                .bind(doc(r)?)
                .bind(&r.id)
                .bind(expected)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn reviews_of_merchant(
                &mut self,
                merchant_id: &str,
                since: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Review>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_reviews WHERE merchant_id = $1 AND created_at > $2 \
                     ORDER BY created_at DESC, review_id DESC LIMIT $3",
                )
                .bind(merchant_id)
                .bind(gms(since))
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("review", rows)
            }

            async fn category_stars(
                &mut self,
                category_ids: &[String],
                since: DateTime<Utc>,
            ) -> Result<(i64, i64, i64, i64)> {
                if category_ids.is_empty() {
                    return Ok((0, 0, 0, 0));
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT doc FROM gov_reviews WHERE status = 'published' AND created_at > ",
                );
                q.push_bind(gms(since));
                q.push(" AND category_id IN (");
                let mut sep = q.separated(", ");
                for id in category_ids {
                    sep.push_bind(id.clone());
                }
                q.push(")");
                let rows: Vec<(String,)> = q.build_query_as().fetch_all(&mut *self.0).await?;
                let reviews: Vec<Review> = docs("review", rows)?;
                let mut acc = (0i64, 0i64, 0i64, 0i64);
                for r in reviews {
                    acc.0 += 1;
                    acc.1 += r.ratings.item as i64;
                    acc.2 += r.ratings.logistics as i64;
                    acc.3 += r.ratings.service as i64;
                }
                Ok(acc)
            }

            async fn insert_case(&mut self, c: &Case, line_no: i64, refund_id: Option<&str>) -> Result<bool> {
                let res = sqlx::query(
                    "INSERT INTO gov_cases (merchant_id, case_id, order_id, line_no, buyer_openid, state, is_open, \
                     refund_id, opened_at, version, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&c.merchant_id)
                .bind(&c.id)
                .bind(&c.order_id)
                .bind(line_no)
                .bind(&c.buyer_id)
                .bind(c.state.as_str())
                .bind(c.state.is_open())
                .bind(refund_id)
                .bind(gms(c.opened_at))
                .bind(doc(c)?)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn case(&mut self, id: &str) -> Result<Option<Versioned<Case>>> {
                let row: Option<(String, i64)> = sqlx::query_as("SELECT doc, version FROM gov_cases WHERE case_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                versioned("case", row)
            }

            async fn update_case(&mut self, c: &Case, refund_id: Option<&str>, expected: i64) -> Result<bool> {
                let res = sqlx::query(
                    "UPDATE gov_cases SET state = $1, is_open = $2, refund_id = COALESCE($3, refund_id), version = $4, \
                     doc = $5 WHERE case_id = $6 AND version = $7",
                )
                .bind(c.state.as_str())
                .bind(c.state.is_open())
                .bind(refund_id)
                .bind(expected + 1)
                .bind(doc(c)?)
                .bind(&c.id)
                .bind(expected)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn cases_of_line(&mut self, order_id: &str, line_no: i64) -> Result<Vec<Case>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_cases WHERE order_id = $1 AND line_no = $2 ORDER BY opened_at, case_id",
                )
                .bind(order_id)
                .bind(line_no)
                .fetch_all(&mut *self.0)
                .await?;
                docs("case", rows)
            }

            async fn cases_of_order(&mut self, order_id: &str) -> Result<Vec<Case>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT doc FROM gov_cases WHERE order_id = $1 ORDER BY opened_at, case_id")
                        .bind(order_id)
                        .fetch_all(&mut *self.0)
                        .await?;
                docs("case", rows)
            }

            async fn cases_of_merchant(
                &mut self,
                merchant_id: &str,
                since: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Case>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_cases WHERE merchant_id = $1 AND opened_at > $2 \
                     ORDER BY opened_at DESC, case_id DESC LIMIT $3",
                )
                .bind(merchant_id)
                .bind(gms(since))
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("case", rows)
            }

            async fn case_of_refund(&mut self, refund_id: &str) -> Result<Option<Versioned<Case>>> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT doc, version FROM gov_cases WHERE refund_id = $1")
                        .bind(refund_id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                versioned("case", row)
            }

            async fn insert_dispute(&mut self, d: &Dispute, line_no: i64) -> Result<bool> {
                let res = sqlx::query(
                    "INSERT INTO gov_disputes (merchant_id, dispute_id, case_id, order_id, line_no, state, opened_at, \
                     decided_at, version, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) ON CONFLICT DO NOTHING",
                )
                .bind(&d.merchant_id)
                .bind(&d.id)
                .bind(&d.case_id)
                .bind(&d.order_id)
                .bind(line_no)
                .bind(d.state.as_str())
                .bind(gms(d.opened_at))
                .bind(d.decided_at.map(gms))
                .bind(doc(d)?)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn dispute(&mut self, id: &str) -> Result<Option<Versioned<Dispute>>> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT doc, version FROM gov_disputes WHERE dispute_id = $1")
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                versioned("dispute", row)
            }

            async fn update_dispute(&mut self, d: &Dispute, expected: i64) -> Result<bool> {
                let res = sqlx::query(
                    "UPDATE gov_disputes SET state = $1, decided_at = $2, version = $3, doc = $4 \
                     WHERE dispute_id = $5 AND version = $6",
                )
                .bind(d.state.as_str())
                .bind(d.decided_at.map(gms))
                .bind(expected + 1)
                .bind(doc(d)?)
                .bind(&d.id)
                .bind(expected)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn disputes_of_merchant(
                &mut self,
                merchant_id: &str,
                since: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Dispute>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_disputes WHERE merchant_id = $1 AND opened_at > $2 \
                     ORDER BY opened_at DESC, dispute_id DESC LIMIT $3",
                )
                .bind(merchant_id)
                .bind(gms(since))
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("dispute", rows)
            }

            async fn insert_penalty(&mut self, p: &Penalty) -> Result<bool> {
                let res = sqlx::query(
                    "INSERT INTO gov_penalties (merchant_id, penalty_id, violation_key, status, created_at, version, doc) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&p.merchant_id)
                .bind(&p.id)
                .bind(&p.violation.key)
                .bind(p.status.as_str())
                .bind(gms(p.created_at))
                .bind(doc(p)?)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn penalty(&mut self, id: &str) -> Result<Option<Versioned<Penalty>>> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT doc, version FROM gov_penalties WHERE penalty_id = $1")
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                versioned("penalty", row)
            }

            async fn update_penalty(&mut self, p: &Penalty, expected: i64) -> Result<bool> {
                let res = sqlx::query(
                    "UPDATE gov_penalties SET status = $1, version = $2, doc = $3 WHERE penalty_id = $4 AND version = $5",
                )
                .bind(p.status.as_str())
                .bind(expected + 1)
                .bind(doc(p)?)
                .bind(&p.id)
                .bind(expected)
                .execute(&mut *self.0)
                .await?;
                Ok(res.rows_affected() == 1)
            }

            async fn penalties_of_merchant(
                &mut self,
                merchant_id: &str,
                since: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Penalty>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_penalties WHERE merchant_id = $1 AND created_at > $2 \
                     ORDER BY created_at DESC, penalty_id DESC LIMIT $3",
                )
                .bind(merchant_id)
                .bind(gms(since))
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("penalty", rows)
            }

            async fn insert_restriction(&mut self, r: &Restriction) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gov_restrictions (merchant_id, restriction_id, kind, source, from_at, until_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&r.merchant_id)
                .bind(&r.id)
                .bind(r.kind.as_str())
                .bind(&r.source)
                .bind(gms(r.from))
                .bind(r.until.map(gms))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn restrictions_of(&mut self, merchant_id: &str) -> Result<Vec<Restriction>> {
                let rows: Vec<(String, String, String, String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT merchant_id, restriction_id, kind, source, from_at, until_at FROM gov_restrictions \
                     WHERE merchant_id = $1 AND lifted_at IS NULL ORDER BY from_at, restriction_id",
                )
                .bind(merchant_id)
                .fetch_all(&mut *self.0)
                .await?;
                rows.into_iter()
                    .map(|(m, id, kind, source, from, until)| {
                        Ok(Restriction {
                            merchant_id: m,
                            id,
                            kind: RestrictionKind::parse(&kind).ok_or_else(|| MarketError::Store {
                                message: format!("corrupt restriction kind {kind}"),
                                retryable: false,
                            })?,
                            source,
                            from: gfrom_ms(from),
                            until: until.map(gfrom_ms),
                        })
                    })
                    .collect()
            }

            async fn lift_restriction(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_restrictions SET lifted_at = $1 WHERE restriction_id = $2 AND lifted_at IS NULL",
                )
                .bind(gms(at))
                .bind(id)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_delisting(
                &mut self,
                merchant_id: &str,
                product_id: &str,
                penalty_id: &str,
                at: DateTime<Utc>,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gov_delistings (merchant_id, product_id, penalty_id, at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(merchant_id)
                .bind(product_id)
                .bind(penalty_id)
                .bind(gms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_delistings(&mut self, penalty_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM gov_delistings WHERE penalty_id = $1")
                    .bind(penalty_id)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn delisting_holds(&mut self, merchant_id: &str, product_id: &str) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM gov_delistings WHERE merchant_id = $1 AND product_id = $2",
                )
                .bind(merchant_id)
                .bind(product_id)
                .fetch_one(&mut *self.0)
                .await?)
            }

            async fn put_commission_rule(&mut self, r: &CommissionRule) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gov_commission_rules (rule_id, created_at, doc) VALUES ($1, $2, $3) \
                     ON CONFLICT (rule_id) DO UPDATE SET doc = excluded.doc",
                )
                .bind(&r.id)
                .bind(gms(r.created_at))
                .bind(doc(r)?)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn commission_rules(&mut self) -> Result<Vec<CommissionRule>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT doc FROM gov_commission_rules ORDER BY created_at, rule_id")
                        .fetch_all(&mut *self.0)
                        .await?;
                docs("commission rule", rows)
            }

            async fn insert_settlement(&mut self, s: &Settlement) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_settlements (merchant_id, order_id, state, window_closes_at, backstop_at, version, \
                     doc) VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&s.merchant_id)
                .bind(&s.order_id)
                .bind(s.state.as_str())
                .bind(s.window_closes_at.map(gms))
                .bind(gms(s.backstop_at))
                .bind(doc(s)?)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn settlement(&mut self, order_id: &str) -> Result<Option<Versioned<Settlement>>> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT doc, version FROM gov_settlements WHERE order_id = $1")
                        .bind(order_id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                versioned("settlement", row)
            }

            async fn update_settlement(&mut self, s: &Settlement, expected: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_settlements SET state = $1, window_closes_at = $2, version = $3, doc = $4 \
                     WHERE order_id = $5 AND version = $6",
                )
                .bind(s.state.as_str())
                .bind(s.window_closes_at.map(gms))
                .bind(expected + 1)
                .bind(doc(s)?)
                .bind(&s.order_id)
                .bind(expected)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn settlements_of(&mut self, merchant_id: &str, limit: i64) -> Result<Vec<Settlement>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_settlements WHERE merchant_id = $1 ORDER BY order_id DESC LIMIT $2",
                )
                .bind(merchant_id)
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("settlement", rows)
            }

            async fn insert_profit_share(&mut self, p: &ProfitShare) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_profit_shares (merchant_id, out_order_no, order_id, amount_fen, status, created_at, \
                     doc) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(&p.merchant_id)
                .bind(&p.request.out_order_no)
                .bind(&p.order_id)
                .bind(p.amount().as_fen())
                .bind(p.status.as_str())
                .bind(gms(p.created_at))
                .bind(doc(p)?)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn profit_share(&mut self, out_order_no: &str) -> Result<Option<ProfitShare>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT doc FROM gov_profit_shares WHERE out_order_no = $1")
                        .bind(out_order_no)
                        .fetch_optional(&mut *self.0)
                        .await?;
                row.map(|(d,)| undoc("profit share", &d)).transpose()
            }

            async fn update_profit_share(&mut self, p: &ProfitShare, from: ShareStatus) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_profit_shares SET status = $1, doc = $2 WHERE out_order_no = $3 AND status = $4",
                )
                .bind(p.status.as_str())
                .bind(doc(p)?)
                .bind(&p.request.out_order_no)
                .bind(from.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_compensation(&mut self, c: &Compensation) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_payouts (merchant_id, payout_id, buyer_openid, amount_fen, source, reference, \
                     status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(&c.merchant_id)
                .bind(&c.id)
                .bind(&c.buyer_id)
                .bind(c.amount.as_fen())
                .bind(c.source.as_str())
                .bind(&c.reference)
                .bind(c.status.as_str())
                .bind(gms(c.created_at))
                .bind(gms(c.updated_at))
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn compensation(&mut self, id: &str) -> Result<Option<Compensation>> {
                let row: Option<(String, String, String, i64, String, String, String, i64, i64)> = sqlx::query_as(
                    "SELECT merchant_id, payout_id, buyer_openid, amount_fen, source, reference, status, created_at, \
                     updated_at FROM gov_payouts WHERE payout_id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
                let bad = |what: &str| MarketError::Store { message: format!("corrupt payout {what}"), retryable: false };
                row.map(|(m, id, b, amount, source, reference, status, created, updated)| {
                    Ok(Compensation {
                        merchant_id: m,
                        id,
                        buyer_id: b,
                        amount: crate::market::Money::fen(amount),
                        source: Payer::parse(&source).ok_or_else(|| bad("source"))?,
                        reference,
                        status: PayoutStatus::parse(&status).ok_or_else(|| bad("status"))?,
                        created_at: gfrom_ms(created),
                        updated_at: gfrom_ms(updated),
                    })
                })
                .transpose()
            }

            async fn update_compensation(&mut self, c: &Compensation, from: PayoutStatus) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_payouts SET status = $1, updated_at = $2 WHERE payout_id = $3 AND status = $4",
                )
                .bind(c.status.as_str())
                .bind(gms(c.updated_at))
                .bind(&c.id)
                .bind(from.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_click(&mut self, buyer_openid: &str, c: &Click) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gov_clicks (buyer_openid, share_token, promoter_id, at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(buyer_openid)
                .bind(&c.share_token)
                .bind(&c.promoter_id)
                .bind(gms(c.at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn clicks_of(&mut self, buyer_openid: &str, since: DateTime<Utc>) -> Result<Vec<Click>> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT promoter_id, share_token, at FROM gov_clicks WHERE buyer_openid = $1 AND at > $2 \
                     ORDER BY at, share_token",
                )
                .bind(buyer_openid)
                .bind(gms(since))
                .fetch_all(&mut *self.0)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(promoter_id, share_token, at)| Click { promoter_id, share_token, at: gfrom_ms(at) })
                    .collect())
            }

            async fn insert_attribution(&mut self, merchant_id: &str, a: &Attribution) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_attributions (merchant_id, attribution_id, order_id, promoter_id, state, version, doc) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT DO NOTHING",
                )
                .bind(merchant_id)
                .bind(&a.id)
                .bind(&a.order_id)
                .bind(&a.promoter_id)
                .bind(a.state.as_str())
                .bind(doc(a)?)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn attribution_of(&mut self, order_id: &str) -> Result<Option<Versioned<Attribution>>> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT doc, version FROM gov_attributions WHERE order_id = $1")
                        .bind(order_id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                versioned("attribution", row)
            }

            async fn update_attribution(&mut self, a: &Attribution, expected: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_attributions SET state = $1, version = $2, doc = $3 WHERE attribution_id = $4 \
                     AND version = $5",
                )
                .bind(a.state.as_str())
                .bind(expected + 1)
                .bind(doc(a)?)
                .bind(&a.id)
                .bind(expected)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn put_carrier_event(&mut self, merchant_id: &str, order_id: &str, at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gov_carrier_events (merchant_id, order_id, first_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (order_id) DO UPDATE SET first_at = excluded.first_at \
                     WHERE excluded.first_at < gov_carrier_events.first_at",
                )
                .bind(merchant_id)
                .bind(order_id)
                .bind(gms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn carrier_event(&mut self, order_id: &str) -> Result<Option<DateTime<Utc>>> {
                let v: Option<i64> = sqlx::query_scalar("SELECT first_at FROM gov_carrier_events WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(v.map(gfrom_ms))
            }

            async fn flag_order(&mut self, merchant_id: &str, order_id: &str, reason: &str, at: DateTime<Utc>) -> Result<()> {
                sqlx::query(
                    "INSERT INTO gov_order_flags (merchant_id, order_id, reason, at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(merchant_id)
                .bind(order_id)
                .bind(reason)
                .bind(gms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn flagged_orders(&mut self, merchant_id: &str) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar("SELECT order_id FROM gov_order_flags WHERE merchant_id = $1 ORDER BY order_id")
                    .bind(merchant_id)
                    .fetch_all(&mut *self.0)
                    .await?)
            }

            async fn ship_facts(
                &mut self,
                merchant_id: &str,
                since: DateTime<Utc>,
            ) -> Result<Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>> {
                let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
                    "SELECT ship_deadline, shipped_at FROM merchant_orders WHERE merchant_id = $1 AND ship_deadline IS NOT NULL \
                     AND ship_deadline > $2 AND status <> 'Cancelled'",
                )
                .bind(merchant_id)
                .bind(gms(since))
                .fetch_all(&mut *self.0)
                .await?;
                Ok(rows.into_iter().map(|(d, s)| (gfrom_ms(d), s.map(gfrom_ms))).collect())
            }

            async fn paid_orders_since(&mut self, merchant_id: &str, since: DateTime<Utc>) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM merchant_orders WHERE merchant_id = $1 AND paid_at IS NOT NULL AND paid_at > $2",
                )
                .bind(merchant_id)
                .bind(gms(since))
                .fetch_one(&mut *self.0)
                .await?)
            }

            async fn merchant_categories(&mut self, merchant_id: &str) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT category_id FROM merchant_categories WHERE merchant_id = $1 ORDER BY category_id",
                )
                .bind(merchant_id)
                .fetch_all(&mut *self.0)
                .await?)
            }

            async fn listed_products(&mut self, merchant_id: &str) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT product_id FROM products WHERE merchant_id = $1 AND status = 'Listed' ORDER BY product_id",
                )
                .bind(merchant_id)
                .fetch_all(&mut *self.0)
                .await?)
            }

            async fn insert_compensation_transfer(&mut self, t: &CompensationTransfer) -> Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO gov_compensation_transfers (out_bill_no, payout_id, buyer_openid, attempt, state, \
                     updated_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(&t.out_bill_no)
                .bind(&t.compensation_id)
                .bind(&t.buyer_id)
                .bind(t.attempt)
                .bind(&t.state)
                .bind(gms(t.updated_at))
                .bind(doc(t)?)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn compensation_transfer(&mut self, out_bill_no: &str) -> Result<Option<CompensationTransfer>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT doc FROM gov_compensation_transfers WHERE out_bill_no = $1")
                        .bind(out_bill_no)
                        .fetch_optional(&mut *self.0)
                        .await?;
                row.map(|(d,)| undoc("compensation transfer", &d)).transpose()
            }

            async fn compensation_transfers(&mut self, compensation_id: &str) -> Result<Vec<CompensationTransfer>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_compensation_transfers WHERE payout_id = $1 ORDER BY attempt",
                )
                .bind(compensation_id)
                .fetch_all(&mut *self.0)
                .await?;
                docs("compensation transfer", rows)
            }

            async fn update_compensation_transfer(&mut self, t: &CompensationTransfer, from: &str) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE gov_compensation_transfers SET state = $1, updated_at = $2, doc = $3 \
                     WHERE out_bill_no = $4 AND state = $5",
                )
                .bind(&t.state)
                .bind(gms(t.updated_at))
                .bind(doc(t)?)
                .bind(&t.out_bill_no)
                .bind(from)
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn pending_compensation_transfers(&mut self, limit: i64) -> Result<Vec<CompensationTransfer>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT doc FROM gov_compensation_transfers \
                     WHERE state NOT IN ('NEW', 'SUCCESS', 'FAIL', 'CANCELLED') ORDER BY updated_at, out_bill_no LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                docs("compensation transfer", rows)
            }

            async fn compensations_of_buyer(&mut self, buyer_openid: &str, limit: i64) -> Result<Vec<Compensation>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT payout_id FROM gov_payouts WHERE buyer_openid = $1 \
                     ORDER BY created_at DESC, payout_id DESC LIMIT $2",
                )
                .bind(buyer_openid)
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(c) = self.compensation(&id).await? {
                        out.push(c);
                    }
                }
                Ok(out)
            }

            async fn insert_promoter(&mut self, openid: &str, at: DateTime<Utc>) -> Result<bool> {
                // Dense ids: a sequence (identity, AUTOINCREMENT) would be spent by every insert that
                // meets an existing openid. Two writers taking the same MAX + 1 meet on the primary key;
                // ON CONFLICT (no target) lets the loser write nothing. `WHERE TRUE` keeps SQLite from
                // reading ON CONFLICT as a join constraint.
                let r = sqlx::query(
                    "INSERT INTO gov_promoters (id, openid, created_at) \
                     SELECT COALESCE(MAX(id), 0) + 1, $1, $2 FROM gov_promoters WHERE TRUE \
                     ON CONFLICT DO NOTHING",
                )
                .bind(openid)
                .bind(gms(at))
                .execute(&mut *self.0)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn promoter_id(&mut self, openid: &str) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar("SELECT id FROM gov_promoters WHERE openid = $1")
                    .bind(openid)
                    .fetch_optional(&mut *self.0)
                    .await?)
            }

            async fn promoter_openid(&mut self, id: i64) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT openid FROM gov_promoters WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?)
            }
        }
        };
    };
}
