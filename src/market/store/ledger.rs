//! The double-entry ledger: transactions, their entries, and the balances projection. [`post`] is the one way
//! in: the transaction row, its entries, and one conditional upsert per account touched that refuses to take an
//! account below zero when its policy forbids debt; [`LedgerRepo::ledger_audit`] checks the projection against the
//! entries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{StoreTx, from_ms};
use crate::market::error::{MarketError, Result};
use crate::market::governance::ledger::{NegativePolicy, Txn};

/// Ledger transactions and balances.
#[async_trait]
pub trait LedgerRepo: Send {
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
                    account: e.account.parse().map_err(|e: crate::market::MarketError| MarketError::Store {
                        message: e.to_string(),
                        retryable: false,
                    })?,
                    amount: crate::market::Money::fen(e.amount_fen),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Txn { id: r.txn_id, kind, reference: r.reference, at: from_ms(r.at), reverses: r.reverses, entries });
    }
    Ok(out)
}

/// Implements [`LedgerRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! ledger_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::governance::ledger::Txn;
            use $crate::market::store::ledger::{EntryRow, LedgerAudit, TxnRow, assemble};
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl $crate::market::store::ledger::LedgerRepo for $tx {
                async fn ledger_insert_txn(&mut self, t: &Txn) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO gov_ledger_txns (txn_id, kind, reference, reverses, at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (txn_id) DO NOTHING",
                    )
                    .bind(&t.id)
                    .bind(t.kind.as_str())
                    .bind(&t.reference)
                    .bind(&t.reverses)
                    .bind(ms(t.at))
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
                    .bind(ms(at))
                    .fetch_optional(&mut *self.0)
                    .await?;
                    Ok(row)
                }

                async fn ledger_txn(&mut self, id: &str) -> Result<Option<Txn>> {
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

                async fn ledger_txns(&mut self, reference: &str) -> Result<Vec<Txn>> {
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
            }
        };
    };
}
pub(crate) use ledger_repo;
