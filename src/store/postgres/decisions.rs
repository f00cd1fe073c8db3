//! Decision records on PostgreSQL: the statements behind `DecisionRows` (`store::decisions`).

use super::*;
use crate::store::decisions::{
    body_of, prune_cutoff, DecisionFilter, DecisionRow, DecisionRows, NewDecision, Outcome,
    OUTCOMES_PER_DECISION,
};

fn decision_row(r: &Row) -> Result<DecisionRow, StoreError> {
    let body: String = r.get(8);
    Ok(DecisionRow {
        id: r.get(0),
        call_id: r.get(1),
        account_id: r.get(2),
        node: r.get(3),
        created_us: r.get::<_, i64>(4) as u64,
        caller: r.get(5),
        callee: r.get(6),
        planned: r.get::<_, i32>(7) as u32,
        body: body_of(&body)?,
    })
}

#[async_trait::async_trait]
impl DecisionRows for Pg {
    async fn add_decisions(&self, node: &str, rows: &[NewDecision]) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            for d in rows {
                cached_execute(
                    &tx,
                    "INSERT INTO decisions
                     (id, call_id, account_id, node, created_us, caller, callee, planned, body)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
                    &[
                        &d.id,
                        &d.call_id,
                        &d.account_id,
                        &node,
                        &(d.created_us as i64),
                        &d.caller,
                        &d.callee,
                        &(d.planned as i32),
                        &d.body,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn add_outcomes(&self, rows: &[Outcome]) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            for o in rows {
                cached_execute(
                    &tx,
                    "INSERT INTO decision_outcomes (call_id, at_us, event, recording_id, reason)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &o.call_id,
                        &(o.at_us as i64),
                        &o.event,
                        &o.recording_id,
                        &o.reason,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn decisions(&self, f: &DecisionFilter) -> Result<Vec<DecisionRow>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let (sql, values) = f.sql(crate::store::listing::Dialect::Postgres);
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v as _).collect();
            let rows = cached_query(&c, &sql, &params).await?;
            rows.iter().map(decision_row).collect()
        })
        .await
    }

    async fn outcomes(&self, call_id: &str) -> Result<Vec<Outcome>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT call_id, at_us, event, recording_id, reason FROM decision_outcomes
                 WHERE call_id = $1 ORDER BY at_us, ctid",
                &[&call_id],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| Outcome {
                    call_id: r.get(0),
                    at_us: r.get::<_, i64>(1) as u64,
                    event: r.get(2),
                    recording_id: r.get(3),
                    reason: r.get(4),
                })
                .collect())
        })
        .await
    }

    async fn erase_decisions(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let n = cached_execute(
                &tx,
                "DELETE FROM decisions WHERE call_id = $1 AND ($2::text IS NULL OR account_id = $2)",
                &[&call_id, &account],
            )
            .await?;
            let left: i64 = cached_query_one(
                &tx,
                "SELECT COUNT(*) FROM decisions WHERE call_id = $1",
                &[&call_id],
            )
            .await?
            .get(0);
            if left == 0 {
                cached_execute(
                    &tx,
                    "DELETE FROM decision_outcomes WHERE call_id = $1",
                    &[&call_id],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(n as usize)
        }).await
    }

    async fn prune_decisions(
        &self,
        before_us: i64,
        keep_rows: i64,
        batch: i64,
    ) -> Result<usize, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let bound: Option<i64> = cached_query_opt(
                &c,
                "SELECT created_us FROM decisions ORDER BY created_us DESC LIMIT 1 OFFSET $1",
                &[&keep_rows],
            )
            .await?
            .map(|r| r.get(0));
            let cutoff = prune_cutoff(before_us, bound);
            let n = cached_execute(
                &c,
                "DELETE FROM decisions WHERE id IN
                 (SELECT id FROM decisions WHERE created_us < $1 ORDER BY created_us LIMIT $2)",
                &[&cutoff, &batch],
            )
            .await?;
            cached_execute(
                &c,
                "DELETE FROM decision_outcomes WHERE ctid IN
                 (SELECT ctid FROM decision_outcomes WHERE at_us < $1 ORDER BY at_us LIMIT $2)",
                &[&cutoff, &(batch * OUTCOMES_PER_DECISION)],
            )
            .await?;
            Ok(n as usize)
        })
        .await
    }
}
