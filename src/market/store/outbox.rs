//! What every state change writes beside the new state: an audit row, outbox events (polled and acked per
//! consumer, pruned once every consumer has them) and durable timers (leased, fired, failed or cancelled).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, from_ms};
use crate::market::error::{MarketError, Result};
use crate::market::events::{AuditEntry, OutboxEvent, Timer, TimerAction, TimerStatus};

/// The audit log, the outbox and timers.
#[async_trait]
pub trait OutboxRepo: Send {
    /// Appends an audit row.
    async fn insert_audit(&mut self, a: &AuditEntry) -> Result<()>;
    /// Audit rows of an aggregate, oldest first.
    async fn audit_of(&mut self, aggregate_id: &str) -> Result<Vec<AuditEntry>>;
    /// Audit rows of an aggregate type, oldest first, at most `limit`.
    async fn audit_of_type(&mut self, aggregate_type: &str, limit: i64) -> Result<Vec<AuditEntry>>;
    /// Appends an outbox event.
    async fn insert_event(&mut self, e: &OutboxEvent) -> Result<()>;
    /// Events the consumer has not acked, oldest first.
    async fn poll_events(&mut self, consumer: &str, limit: i64) -> Result<Vec<OutboxEvent>>;
    /// Acks events for a consumer (idempotent).
    async fn ack_events(&mut self, consumer: &str, event_ids: &[String], at: DateTime<Utc>) -> Result<()>;
    /// Deletes up to `limit` outbox events created before `before` that every consumer has acked (each
    /// of `consumers`, and every consumer that has acked any event), with their acks except each
    /// consumer's newest (kept, so the consumer stays known); returns `(events, acks)` deleted. An
    /// event some consumer has not acked is never deleted.
    async fn prune_outbox(&mut self, before: DateTime<Utc>, consumers: &[String], limit: i64) -> Result<(u64, u64)>;
    /// Inserts a timer.
    async fn insert_timer(&mut self, t: &Timer) -> Result<()>;
    /// Timers of an aggregate.
    async fn timers_of(&mut self, aggregate_id: &str) -> Result<Vec<Timer>>;
    /// Scheduled timers due at `now`, earliest first.
    async fn due_timers(&mut self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Timer>>;
    /// Cancels the scheduled timers of an aggregate with this action; how many.
    async fn cancel_timers(&mut self, aggregate_id: &str, action: TimerAction, at: DateTime<Utc>) -> Result<u64>;
    /// Moves a scheduled timer to `to` (Fired, Failed), recording `error`.
    async fn finish_timer(&mut self, id: &str, to: TimerStatus, error: Option<&str>, at: DateTime<Utc>)
    -> Result<bool>;
    /// Claims a due scheduled timer for an external call: pushes `due_at` to `until` (the retry time if
    /// the caller dies) and counts an attempt.
    async fn lease_timer(&mut self, id: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool>;
    /// Records the last error of a timer.
    async fn note_timer_error(&mut self, id: &str, error: &str) -> Result<()>;
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    pub(super) audit_id: String,
    pub(super) merchant_id: Option<String>,
    pub(super) aggregate_type: String,
    pub(super) aggregate_id: String,
    pub(super) actor: String,
    pub(super) action: String,
    pub(super) from_state: Option<String>,
    pub(super) to_state: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) at: i64,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.audit_id,
            merchant_id: r.merchant_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            actor: r.actor,
            action: r.action,
            from_state: r.from_state,
            to_state: r.to_state,
            reason: r.reason,
            at: from_ms(r.at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    pub(super) event_id: String,
    pub(super) merchant_id: Option<String>,
    pub(super) aggregate_type: String,
    pub(super) aggregate_id: String,
    pub(super) event_type: String,
    pub(super) payload: String,
    pub(super) created_at: i64,
}

impl TryFrom<EventRow> for OutboxEvent {
    type Error = MarketError;
    fn try_from(r: EventRow) -> Result<Self> {
        Ok(OutboxEvent {
            id: r.event_id,
            merchant_id: r.merchant_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            event_type: r.event_type,
            payload: serde_json::from_str(&r.payload).map_err(|e| corrupt("outbox", e))?,
            created_at: from_ms(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TimerRow {
    pub(super) timer_id: String,
    pub(super) merchant_id: Option<String>,
    pub(super) aggregate_type: String,
    pub(super) aggregate_id: String,
    pub(super) action: String,
    pub(super) due_at: i64,
    pub(super) status: String,
    pub(super) attempts: i64,
    pub(super) last_error: Option<String>,
    pub(super) created_at: i64,
}

impl TryFrom<TimerRow> for Timer {
    type Error = MarketError;
    fn try_from(r: TimerRow) -> Result<Self> {
        Ok(Timer {
            id: r.timer_id,
            merchant_id: r.merchant_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            action: r.action.parse().map_err(|e| corrupt("timer", e))?,
            due_at: from_ms(r.due_at),
            status: r.status.parse().map_err(|e| corrupt("timer", e))?,
            attempts: r.attempts,
            last_error: r.last_error,
            created_at: from_ms(r.created_at),
        })
    }
}

/// Implements [`OutboxRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! outbox_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::events::{AuditEntry, OutboxEvent, Timer, TimerAction, TimerStatus};
            use $crate::market::store::outbox::{AuditRow, EventRow, TimerRow};
            use $crate::market::store::{convert, json, ms, push_list};

            #[async_trait::async_trait]
            impl $crate::market::store::outbox::OutboxRepo for $tx {
                async fn insert_audit(&mut self, a: &AuditEntry) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO audit_log (audit_id, merchant_id, aggregate_type, aggregate_id, actor, action, \
                         from_state, to_state, reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&a.id)
                    .bind(&a.merchant_id)
                    .bind(&a.aggregate_type)
                    .bind(&a.aggregate_id)
                    .bind(&a.actor)
                    .bind(&a.action)
                    .bind(&a.from_state)
                    .bind(&a.to_state)
                    .bind(&a.reason)
                    .bind(ms(a.at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn audit_of(&mut self, aggregate_id: &str) -> Result<Vec<AuditEntry>> {
                    let rows = sqlx::query_as::<_, AuditRow>(
                        "SELECT audit_id, merchant_id, aggregate_type, aggregate_id, actor, action, from_state, to_state, \
                         reason, at FROM audit_log WHERE aggregate_id = $1 ORDER BY audit_id",
                    )
                    .bind(aggregate_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    Ok(rows.into_iter().map(AuditEntry::from).collect())
                }

                async fn audit_of_type(&mut self, aggregate_type: &str, limit: i64) -> Result<Vec<AuditEntry>> {
                    let rows = sqlx::query_as::<_, AuditRow>(
                        "SELECT audit_id, merchant_id, aggregate_type, aggregate_id, actor, action, from_state, to_state, \
                         reason, at FROM audit_log WHERE aggregate_type = $1 ORDER BY audit_id LIMIT $2",
                    )
                    .bind(aggregate_type)
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                    Ok(rows.into_iter().map(AuditEntry::from).collect())
                }

                async fn insert_event(&mut self, e: &OutboxEvent) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO outbox (event_id, merchant_id, aggregate_type, aggregate_id, event_type, payload, \
                         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&e.id)
                    .bind(&e.merchant_id)
                    .bind(&e.aggregate_type)
                    .bind(&e.aggregate_id)
                    .bind(&e.event_type)
                    .bind(json(&e.payload)?)
                    .bind(ms(e.created_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn poll_events(&mut self, consumer: &str, limit: i64) -> Result<Vec<OutboxEvent>> {
                    let rows = sqlx::query_as::<_, EventRow>(
                        "SELECT e.event_id, e.merchant_id, e.aggregate_type, e.aggregate_id, e.event_type, e.payload, \
                         e.created_at FROM outbox e WHERE NOT EXISTS (SELECT 1 FROM outbox_acks a \
                         WHERE a.consumer = $1 AND a.event_id = e.event_id) ORDER BY e.created_at, e.event_id LIMIT $2",
                    )
                    .bind(consumer)
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn ack_events(&mut self, consumer: &str, event_ids: &[String], at: DateTime<Utc>) -> Result<()> {
                    for id in event_ids {
                        sqlx::query(
                            "INSERT INTO outbox_acks (consumer, event_id, acked_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (consumer, event_id) DO NOTHING",
                        )
                        .bind(consumer)
                        .bind(id)
                        .bind(ms(at))
                        .execute(&mut *self.0)
                        .await?;
                    }
                    Ok(())
                }

                async fn prune_outbox(
                    &mut self,
                    before: DateTime<Utc>,
                    consumers: &[String],
                    limit: i64,
                ) -> Result<(u64, u64)> {
                    // The consumers to wait for: the named ones and every one that has acked anything.
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT e.event_id FROM outbox e WHERE e.created_at < ",
                    );
                    q.push_bind(ms(before));
                    q.push(
                        " AND NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT consumer FROM outbox_acks",
                    );
                    for c in consumers {
                        q.push(" UNION SELECT CAST(").push_bind(c.clone()).push(" AS TEXT)");
                    }
                    q.push(
                        ") c WHERE NOT EXISTS (SELECT 1 FROM outbox_acks a \
                         WHERE a.consumer = c.consumer AND a.event_id = e.event_id)) \
                         ORDER BY e.created_at, e.event_id LIMIT ",
                    );
                    q.push_bind(limit);
                    let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *self.0).await?;
                    if ids.is_empty() {
                        return Ok((0, 0));
                    }
                    // Each consumer's newest ack stays (even once its event is gone): it is how a consumer
                    // that has acked nothing since is still known, and so still waited for.
                    const NOT_NEWEST: &str = " AND NOT EXISTS (SELECT 1 FROM (SELECT consumer AS c, \
                         MAX(event_id) AS m FROM outbox_acks GROUP BY consumer) k \
                         WHERE k.c = outbox_acks.consumer AND k.m = outbox_acks.event_id)";
                    let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM outbox_acks WHERE event_id IN (");
                    push_list(&mut q, &ids);
                    q.push(NOT_NEWEST);
                    let mut acks = q.build().execute(&mut *self.0).await?.rows_affected();
                    // Markers left by earlier runs whose consumer has acked something newer since.
                    let stale = format!(
                        "DELETE FROM outbox_acks WHERE NOT EXISTS (SELECT 1 FROM outbox e \
                         WHERE e.event_id = outbox_acks.event_id){NOT_NEWEST}"
                    );
                    acks += sqlx::query(sqlx::AssertSqlSafe(stale)).execute(&mut *self.0).await?.rows_affected();
                    let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM outbox WHERE event_id IN (");
                    push_list(&mut q, &ids);
                    let events = q.build().execute(&mut *self.0).await?.rows_affected();
                    Ok((events, acks))
                }

                async fn insert_timer(&mut self, t: &Timer) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO timers (timer_id, merchant_id, aggregate_type, aggregate_id, action, due_at, status, \
                         attempts, last_error, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                    )
                    .bind(&t.id)
                    .bind(&t.merchant_id)
                    .bind(&t.aggregate_type)
                    .bind(&t.aggregate_id)
                    .bind(t.action.as_str())
                    .bind(ms(t.due_at))
                    .bind(t.status.as_str())
                    .bind(t.attempts)
                    .bind(&t.last_error)
                    .bind(ms(t.created_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn timers_of(&mut self, aggregate_id: &str) -> Result<Vec<Timer>> {
                    let rows = sqlx::query_as::<_, TimerRow>(
                        "SELECT timer_id, merchant_id, aggregate_type, aggregate_id, action, due_at, status, attempts, \
                         last_error, created_at FROM timers WHERE aggregate_id = $1 ORDER BY timer_id",
                    )
                    .bind(aggregate_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn due_timers(&mut self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Timer>> {
                    let rows = sqlx::query_as::<_, TimerRow>(
                        "SELECT timer_id, merchant_id, aggregate_type, aggregate_id, action, due_at, status, attempts, \
                         last_error, created_at FROM timers WHERE status = 'Scheduled' AND due_at <= $1 \
                         ORDER BY due_at, timer_id LIMIT $2",
                    )
                    .bind(ms(now))
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn cancel_timers(&mut self, aggregate_id: &str, action: TimerAction, at: DateTime<Utc>) -> Result<u64> {
                    let r = sqlx::query(
                        "UPDATE timers SET status = 'Cancelled', updated_at = $1 \
                         WHERE aggregate_id = $2 AND action = $3 AND status = 'Scheduled'",
                    )
                    .bind(ms(at))
                    .bind(aggregate_id)
                    .bind(action.as_str())
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected())
                }

                async fn finish_timer(
                    &mut self,
                    id: &str,
                    to: TimerStatus,
                    error: Option<&str>,
                    at: DateTime<Utc>,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE timers SET status = $1, last_error = COALESCE($2, last_error), updated_at = $3 \
                         WHERE timer_id = $4 AND status = 'Scheduled'",
                    )
                    .bind(to.as_str())
                    .bind(error)
                    .bind(ms(at))
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn lease_timer(&mut self, id: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE timers SET due_at = $1, attempts = attempts + 1, updated_at = $2 \
                         WHERE timer_id = $3 AND status = 'Scheduled' AND due_at <= $2",
                    )
                    .bind(ms(until))
                    .bind(ms(now))
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn note_timer_error(&mut self, id: &str, error: &str) -> Result<()> {
                    sqlx::query("UPDATE timers SET last_error = $1 WHERE timer_id = $2")
                        .bind(error)
                        .bind(id)
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use outbox_repo;
