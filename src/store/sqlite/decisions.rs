//! Decision records in the SQLite file: the statements behind [`DecisionRows`].

use rusqlite::{params, OptionalExtension};

use super::{listed, Sqlite};
use crate::store::decisions::{
    body_of, prune_cutoff, DecisionFilter, DecisionRow, DecisionRows, NewDecision, Outcome,
    OUTCOMES_PER_DECISION,
};
use crate::store::listing::Dialect;
use crate::store::StoreError;

fn decision_row(r: &rusqlite::Row<'_>) -> Result<DecisionRow, StoreError> {
    let body: String = r.get(8)?;
    Ok(DecisionRow {
        id: r.get(0)?,
        call_id: r.get(1)?,
        account_id: r.get(2)?,
        node: r.get(3)?,
        created_us: r.get::<_, i64>(4)? as u64,
        caller: r.get(5)?,
        callee: r.get(6)?,
        planned: r.get::<_, i64>(7)? as u32,
        body: body_of(&body)?,
    })
}

#[async_trait::async_trait]
impl DecisionRows for Sqlite {
    async fn add_decisions(&self, node: &str, rows: &[NewDecision]) -> Result<(), StoreError> {
        let node = node.to_owned();
        let rows = rows.to_vec();
        self.quick(move |c| {
            let node = node.as_str();
            let rows = rows.as_slice();
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO decisions
                     (id, call_id, account_id, node, created_us, caller, callee, planned, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for d in rows {
                    st.execute(params![
                        d.id,
                        d.call_id,
                        d.account_id,
                        node,
                        d.created_us as i64,
                        d.caller,
                        d.callee,
                        d.planned,
                        d.body
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn add_outcomes(&self, rows: &[Outcome]) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.quick(move |c| {
            let rows = rows.as_slice();
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO decision_outcomes (call_id, at_us, event, recording_id, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for o in rows {
                    st.execute(params![
                        o.call_id,
                        o.at_us as i64,
                        o.event,
                        o.recording_id,
                        o.reason
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn decisions(&self, f: &DecisionFilter) -> Result<Vec<DecisionRow>, StoreError> {
        let f = f.clone();
        self.run(move |c| listed(c, f.sql(Dialect::Sqlite), decision_row))
            .await
    }

    async fn outcomes(&self, call_id: &str) -> Result<Vec<Outcome>, StoreError> {
        let call_id = call_id.to_owned();
        self.quick(move |c| {
            let call_id = call_id.as_str();
            let mut st = c.prepare_cached(
                "SELECT call_id, at_us, event, recording_id, reason FROM decision_outcomes
                 WHERE call_id = ?1 ORDER BY at_us, rowid",
            )?;
            let rows = st.query_map(params![call_id], |r| {
                Ok(Outcome {
                    call_id: r.get(0)?,
                    at_us: r.get::<_, i64>(1)? as u64,
                    event: r.get(2)?,
                    recording_id: r.get(3)?,
                    reason: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn erase_decisions(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<usize, StoreError> {
        let account = account.map(str::to_owned);
        let call_id = call_id.to_owned();
        self.run(move |c| {
            let account = account.as_deref();
            let call_id = call_id.as_str();
            let tx = c.transaction()?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM decisions WHERE call_id = ?1 AND (?2 IS NULL OR account_id = ?2)",
                )?
                .execute(params![call_id, account])?;
            // Outcomes carry no account: a call id is one call, whose records are all gone.
            let left: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM decisions WHERE call_id = ?1")?
                .query_row(params![call_id], |r| r.get(0))?;
            if left == 0 {
                tx.prepare_cached("DELETE FROM decision_outcomes WHERE call_id = ?1")?
                    .execute(params![call_id])?;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn prune_decisions(
        &self,
        before_us: i64,
        keep_rows: i64,
        batch: i64,
    ) -> Result<usize, StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let bound: Option<i64> = tx
                .prepare_cached(
                    "SELECT created_us FROM decisions ORDER BY created_us DESC LIMIT 1 OFFSET ?1",
                )?
                .query_row(params![keep_rows], |r| r.get(0))
                .optional()?;
            let cutoff = prune_cutoff(before_us, bound);
            let n = tx
                .prepare_cached(
                    "DELETE FROM decisions WHERE id IN
                 (SELECT id FROM decisions WHERE created_us < ?1 ORDER BY created_us LIMIT ?2)",
                )?
                .execute(params![cutoff, batch])?;
            tx.prepare_cached(
                "DELETE FROM decision_outcomes WHERE rowid IN
                 (SELECT rowid FROM decision_outcomes WHERE at_us < ?1 ORDER BY at_us LIMIT ?2)",
            )?
            .execute(params![cutoff, batch * OUTCOMES_PER_DECISION])?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }
}
