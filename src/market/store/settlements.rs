//! Settlement: the commission rules, one settlement per order (held through the after-sale window), and the
//! profit-sharing orders that pay it out.

use async_trait::async_trait;

use super::governance::Versioned;
use crate::market::error::Result;
use crate::market::governance::commission::CommissionRule;
use crate::market::governance::settlement::{ProfitShare, Settlement, ShareStatus};

/// Commission rules, settlements and profit sharing.
#[async_trait]
pub trait SettlementRepo: Send {
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
}

/// Implements [`SettlementRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! settlement_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use $crate::market::error::Result;
            use $crate::market::governance::commission::CommissionRule;
            use $crate::market::governance::settlement::{ProfitShare, Settlement, ShareStatus};
            use $crate::market::store::governance::{Versioned, doc, get_doc, get_docs, get_versioned, update_versioned};
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl $crate::market::store::settlements::SettlementRepo for $tx {
                async fn put_commission_rule(&mut self, r: &CommissionRule) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO gov_commission_rules (rule_id, created_at, doc) VALUES ($1, $2, $3) \
                         ON CONFLICT (rule_id) DO UPDATE SET doc = excluded.doc",
                    )
                    .bind(&r.id)
                    .bind(ms(r.created_at))
                    .bind(doc(r)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn commission_rules(&mut self) -> Result<Vec<CommissionRule>> {
                    get_docs!(
                        &mut *self.0,
                        "commission rule",
                        "SELECT doc FROM gov_commission_rules ORDER BY created_at, rule_id",
                    )
                }

                async fn insert_settlement(&mut self, s: &Settlement) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO gov_settlements (merchant_id, order_id, state, window_closes_at, backstop_at, version, \
                         doc) VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&s.merchant_id)
                    .bind(&s.order_id)
                    .bind(s.state.as_str())
                    .bind(s.window_closes_at.map(ms))
                    .bind(ms(s.backstop_at))
                    .bind(doc(s)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn settlement(&mut self, order_id: &str) -> Result<Option<Versioned<Settlement>>> {
                    get_versioned!(
                        &mut *self.0,
                        "settlement",
                        "SELECT doc, version FROM gov_settlements WHERE order_id = $1",
                        order_id,
                    )
                }

                async fn update_settlement(&mut self, s: &Settlement, expected: i64) -> Result<bool> {
                    update_versioned!(
                        &mut *self.0,
                        "UPDATE gov_settlements SET state = $1, window_closes_at = $2, version = $3, doc = $4 \
                         WHERE order_id = $5 AND version = $6",
                        [s.state.as_str(), s.window_closes_at.map(ms)],
                        [doc(s)?],
                        key = &s.order_id,
                        expected = expected,
                    )
                }

                async fn settlements_of(&mut self, merchant_id: &str, limit: i64) -> Result<Vec<Settlement>> {
                    get_docs!(
                        &mut *self.0,
                        "settlement",
                        "SELECT doc FROM gov_settlements WHERE merchant_id = $1 ORDER BY order_id DESC LIMIT $2",
                        merchant_id,
                        limit,
                    )
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
                    .bind(ms(p.created_at))
                    .bind(doc(p)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn profit_share(&mut self, out_order_no: &str) -> Result<Option<ProfitShare>> {
                    get_doc!(
                        &mut *self.0,
                        "profit share",
                        "SELECT doc FROM gov_profit_shares WHERE out_order_no = $1",
                        out_order_no,
                    )
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
            }
        };
    };
}
pub(crate) use settlement_repo;
