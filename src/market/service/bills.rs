//! Reconciliation against WeChat Pay's trade bill: what a lost notification hid (a payment of a
//! checkout that has since closed, a refund made outside the market) is found and applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Market;
use crate::market::anomaly::RefundNotice;
use crate::market::error::{MarketError, Result};
use crate::market::gateway::{BillLine, query_notify_id};
use crate::market::money::Money;
use crate::market::payment::{NoticeOutcome, PaymentNotice, PaymentStatus, SubOrderPaid};
use crate::market::service::handles::Payments;

/// What [`Payments::reconcile_trade_bill`](crate::market::handles::Payments::reconcile_trade_bill) found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillReport {
    /// Lines in the bill.
    pub lines: usize,
    /// Lines that matched the books already.
    pub matched: usize,
    /// Payments the market had not recorded, now applied (paid, refunded as late, or held).
    pub payments_applied: usize,
    /// Refunds the market had not concluded or not requested, now applied.
    pub refunds_applied: usize,
    /// Anomalies recorded by this run.
    pub anomalies: usize,
    /// Lines of payments that are not the market's (another system on the same merchant id).
    pub foreign: usize,
    /// Lines that could not be applied (left to the next run), with why.
    pub failed: Vec<String>,
}

impl Payments<'_> {
    /// Fetches one day's trade bill (Beijing date) from the payment gateway and reconciles it: every
    /// payment line the market has not recorded is applied like its notification (under the same id as
    /// a query finding it, so it counts once), every refund line concludes its refund, or, when the
    /// market never asked for it, is applied as an external refund. Run it daily for the day before,
    /// once WeChat Pay has produced the bill (after 10:00 Beijing time).
    pub async fn reconcile_trade_bill(&self, date: chrono::NaiveDate) -> Result<BillReport> {
        let lines = self.inner.pay.trade_bill(date).await.map_err(MarketError::from)?;
        self.reconcile_bill_lines(&lines).await
    }

    /// [`reconcile_trade_bill`](crate::market::handles::Payments::reconcile_trade_bill) over lines already fetched.
    pub async fn reconcile_bill_lines(&self, lines: &[BillLine]) -> Result<BillReport> {
        let mut report = BillReport { lines: lines.len(), ..BillReport::default() };
        // Combined payments appear as one line per sub-order: gather them by checkout.
        let mut combined: BTreeMap<String, Vec<SubOrderPaid>> = BTreeMap::new();
        for line in lines {
            match line {
                BillLine::Paid { out_trade_no, transaction_id, amount } => {
                    let read = self.read().await?.payment(out_trade_no).await?;
                    if let Some(p) = read {
                        if p.transaction_id.as_deref() == Some(transaction_id.as_str())
                            && p.status != PaymentStatus::Initiated
                        {
                            report.matched += 1;
                            continue;
                        }
                        let n = PaymentNotice {
                            notify_id: query_notify_id(transaction_id),
                            out_trade_no: out_trade_no.clone(),
                            transaction_id: transaction_id.clone(),
                            amount: *amount,
                            paid_at: self.now(),
                            sub_orders: Vec::new(),
                        };
                        self.apply_bill_payment(&n, &mut report).await;
                    } else if let Some(o) = self.read().await?.order(out_trade_no).await? {
                        combined.entry(o.group_id).or_default().push(SubOrderPaid {
                            out_trade_no: out_trade_no.clone(),
                            transaction_id: transaction_id.clone(),
                            amount: *amount,
                        });
                    } else {
                        report.foreign += 1;
                    }
                }
                BillLine::Refunded { out_trade_no, transaction_id, out_refund_no, refund_id, amount } => {
                    self.apply_bill_refund(
                        out_trade_no,
                        transaction_id,
                        out_refund_no,
                        refund_id,
                        *amount,
                        &mut report,
                    )
                    .await;
                }
            }
        }
        for (group_id, subs) in combined {
            let p = self.read().await?.payment(&group_id).await?;
            let Some(p) = p else { continue };
            let first = subs.first().map(|s| s.transaction_id.clone()).unwrap_or_default();
            if p.transaction_id.as_deref() == Some(first.as_str()) && p.status != PaymentStatus::Initiated {
                report.matched += subs.len();
                continue;
            }
            let mut amount = Money::ZERO;
            for s in &subs {
                amount = amount.checked_add(s.amount)?;
            }
            let n = PaymentNotice {
                notify_id: query_notify_id(&first),
                out_trade_no: group_id,
                transaction_id: first,
                amount,
                paid_at: self.now(),
                sub_orders: subs,
            };
            self.apply_bill_payment(&n, &mut report).await;
        }
        Ok(report)
    }
}

impl Market {
    async fn apply_bill_payment(&self, n: &PaymentNotice, report: &mut BillReport) {
        match self.payments().handle_payment_notice(n).await {
            Ok(NoticeOutcome::Duplicate | NoticeOutcome::AlreadyPaid) => report.matched += 1,
            Ok(NoticeOutcome::Held { anomaly_ids } | NoticeOutcome::DuplicateRefunded { anomaly_ids }) => {
                report.payments_applied += 1;
                report.anomalies += anomaly_ids.len();
            }
            Ok(_) => report.payments_applied += 1,
            Err(e) => report.failed.push(format!("payment {} ({}): {e}", n.out_trade_no, n.transaction_id)),
        }
    }

    async fn apply_bill_refund(
        &self,
        out_trade_no: &str,
        transaction_id: &str,
        out_refund_no: &str,
        refund_id: &str,
        amount: Money,
        report: &mut BillReport,
    ) {
        let known = match self.read().await {
            Ok(mut tx) => tx.refund(out_refund_no).await.map(|r| r.map(|r| r.status)),
            Err(e) => Err(e),
        };
        let result = match known {
            Ok(Some(crate::market::payment::RefundStatus::Succeeded)) => {
                report.matched += 1;
                return;
            }
            Ok(Some(_)) => self.payments().handle_refund_notice(out_refund_no, true, Some(refund_id)).await.map(|_| {
                report.refunds_applied += 1;
            }),
            Ok(None) => match self.payments().handle_refund_notice(out_refund_no, true, Some(refund_id)).await {
                // A deposit exit refund, concluded (or already).
                Ok(_) => {
                    report.matched += 1;
                    Ok(())
                }
                Err(MarketError::NotFound { .. }) => {
                    let n = RefundNotice {
                        notify_id: format!("bill:{out_refund_no}"),
                        out_refund_no: out_refund_no.into(),
                        out_trade_no: out_trade_no.into(),
                        transaction_id: transaction_id.into(),
                        refund_id: refund_id.into(),
                        succeeded: true,
                        amount,
                    };
                    self.payments().handle_external_refund(&n).await.map(|a| match a {
                        Some(_) => {
                            report.refunds_applied += 1;
                            report.anomalies += 1;
                        }
                        None => report.foreign += 1,
                    })
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            report.failed.push(format!("refund {out_refund_no}: {e}"));
        }
    }
}
