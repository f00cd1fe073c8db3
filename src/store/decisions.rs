//! Decision records: one row per call the planner decided on (its body the planner's record,
//! as JSON the store does not read), and the outcomes of the call's recordings (started,
//! failed, discarded, kept, delivered) appended as they happen.
//!
//! Invariants: the searchable columns (account, caller, callee, planned count, time) are
//! written with the body and never change; outcomes are their own rows (appending never
//! rewrites a record, and an outcome written before its record is still found); listings are
//! newest first and paged by `(created_us, id)`, never by offset; pruning removes rows older
//! than the retention or beyond the row bound, in batches; an erasure request for a call takes
//! its records and outcomes at once.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::listing::{Bound, Dialect};
use super::{Store, StoreError};

/// A decision record to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    pub id: String,
    pub call_id: String,
    pub account_id: Option<String>,
    pub created_us: u64,
    pub caller: String,
    pub callee: String,
    /// How many recordings the rules planned.
    pub planned: u32,
    /// The record (JSON).
    pub body: String,
}

/// Something that became of one of a call's recordings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub call_id: String,
    pub at_us: u64,
    /// `recording.started`, `recording.failed`, …
    pub event: String,
    pub recording_id: Option<String>,
    pub reason: Option<String>,
}

/// A kept decision record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRow {
    pub id: String,
    pub call_id: String,
    pub account_id: Option<String>,
    pub node: String,
    pub created_us: u64,
    pub caller: String,
    pub callee: String,
    pub planned: u32,
    pub body: serde_json::Value,
}

/// Which decision records to list.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub account_id: Option<String>,
    /// The caller's or the callee's number.
    pub party: Option<String>,
    pub call_id: Option<String>,
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    /// Only calls the rules planned recordings for (`true`) or planned none for (`false`).
    pub recorded: Option<bool>,
    /// The page after this `(created_us, id)`.
    pub after: Option<(u64, String)>,
    pub limit: u32,
}

impl DecisionFilter {
    /// The statement with only the conditions this filter sets, and its values (`ph(n)` spells
    /// placeholder `n`).
    pub(super) fn sql(&self, d: Dialect) -> (String, Vec<Bound>) {
        let ph = |n: usize| d.placeholder(n);
        let mut values: Vec<Bound> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        let next = |v: Bound, values: &mut Vec<Bound>| {
            values.push(v);
            ph(values.len())
        };
        if let Some(party) = &self.party {
            // Each branch names the account, so each is one index range.
            match &self.account_id {
                Some(a) => {
                    let (a1, p1) = (
                        next(Bound::Text(a.clone()), &mut values),
                        next(Bound::Text(party.clone()), &mut values),
                    );
                    let (a2, p2) = (
                        next(Bound::Text(a.clone()), &mut values),
                        next(Bound::Text(party.clone()), &mut values),
                    );
                    conds.push(format!(
                        "((account_id = {a1} AND caller = {p1}) OR (account_id = {a2} AND callee = {p2}))"
                    ));
                }
                None => {
                    let p1 = next(Bound::Text(party.clone()), &mut values);
                    let p2 = next(Bound::Text(party.clone()), &mut values);
                    conds.push(format!("(caller = {p1} OR callee = {p2})"));
                }
            }
        } else if let Some(a) = &self.account_id {
            let a = next(Bound::Text(a.clone()), &mut values);
            // With a call id, the call's index: a unary `+` keeps SQLite from taking the
            // account's (and walking the account). PostgreSQL has statistics (and no unary `+`
            // for text).
            let col = match (d, &self.call_id) {
                (Dialect::Sqlite, Some(_)) => "+account_id",
                _ => "account_id",
            };
            conds.push(format!("{col} = {a}"));
        }
        if let Some(c) = &self.call_id {
            let c = next(Bound::Text(c.clone()), &mut values);
            conds.push(format!("call_id = {c}"));
        }
        if let Some(v) = self.since_us {
            let v = next(Bound::Int(v as i64), &mut values);
            conds.push(format!("created_us >= {v}"));
        }
        if let Some(v) = self.until_us {
            let v = next(Bound::Int(v as i64), &mut values);
            conds.push(format!("created_us < {v}"));
        }
        match self.recorded {
            Some(true) => conds.push("planned > 0".into()),
            Some(false) => conds.push("planned = 0".into()),
            None => {}
        }
        if let Some((at, id)) = &self.after {
            let a1 = next(Bound::Int(*at as i64), &mut values);
            let a2 = next(Bound::Int(*at as i64), &mut values);
            let i = next(Bound::Text(id.clone()), &mut values);
            conds.push(format!(
                "(created_us < {a1} OR (created_us = {a2} AND id < {i}))"
            ));
        }
        let mut sql = String::from(
            "SELECT id, call_id, account_id, node, created_us, caller, callee, planned, body \
             FROM decisions",
        );
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        let l = next(
            Bound::Int(i64::from(self.limit.clamp(1, 1000))),
            &mut values,
        );
        sql.push_str(&format!(" ORDER BY created_us DESC, id DESC LIMIT {l}"));
        (sql, values)
    }
}

fn body_of(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("decision body: {e}")))
}

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

impl Store {
    /// Keeps decision records (this node's), in one transaction.
    pub fn add_decisions(&self, rows: &[NewDecision]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(pg) = &self.pg {
            return pg.add_decisions(&self.node, rows);
        }
        let node: &str = &self.node;
        self.with(|c| {
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
    }

    /// Appends outcomes of calls' recordings, in one transaction.
    pub fn add_outcomes(&self, rows: &[Outcome]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(pg) = &self.pg {
            return pg.add_outcomes(rows);
        }
        self.with(|c| {
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
    }

    /// Decision records matching `f`, newest first.
    pub fn decisions(&self, f: &DecisionFilter) -> Result<Vec<DecisionRow>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.decisions(f);
        }
        self.with(|c| {
            let (sql, values) = f.sql(Dialect::Sqlite);
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(decision_row(r)?);
            }
            Ok(out)
        })
    }

    /// The newest decision record of `call_id` (in `account`, when given), with every outcome
    /// of the call's recordings, oldest first.
    pub fn decision_of_call(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<Option<(DecisionRow, Vec<Outcome>)>, StoreError> {
        let f = DecisionFilter {
            account_id: account.map(str::to_string),
            call_id: Some(call_id.to_string()),
            limit: 1,
            ..DecisionFilter::default()
        };
        let Some(row) = self.decisions(&f)?.into_iter().next() else {
            return Ok(None);
        };
        let outcomes = match &self.pg {
            Some(pg) => pg.outcomes(call_id)?,
            None => self.with(|c| {
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
            })?,
        };
        Ok(Some((row, outcomes)))
    }

    /// Erasure on request: removes every decision record of `call_id` (in `account`, when
    /// given) and the outcomes of its recordings. Returns how many records went.
    pub fn erase_decisions(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.erase_decisions(account, call_id);
        }
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM decisions WHERE call_id = ?1 AND (?2 IS NULL OR account_id = ?2)",
                params![call_id, account],
            )?;
            // Outcomes carry no account: a call id is one call, whose records are all gone.
            let left: i64 = tx.query_row(
                "SELECT COUNT(*) FROM decisions WHERE call_id = ?1",
                params![call_id],
                |r| r.get(0),
            )?;
            if left == 0 {
                tx.execute(
                    "DELETE FROM decision_outcomes WHERE call_id = ?1",
                    params![call_id],
                )?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Removes up to `batch` decision records (and outcomes) made before `before_us`, or older
    /// than the newest `keep_rows`. Returns how many records went; call until it returns less
    /// than `batch`.
    pub fn prune_decisions(
        &self,
        before_us: u64,
        keep_rows: u64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.prune_decisions(before_us as i64, keep_rows as i64, batch as i64);
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let bound: Option<i64> = tx
                .query_row(
                    "SELECT created_us FROM decisions ORDER BY created_us DESC LIMIT 1 OFFSET ?1",
                    params![keep_rows as i64],
                    |r| r.get(0),
                )
                .optional()?;
            // Rows at or below the (keep_rows+1)-th newest go too.
            let cutoff = match bound {
                Some(b) => (before_us as i64).max(b + 1),
                None => before_us as i64,
            };
            let n = tx.execute(
                "DELETE FROM decisions WHERE id IN
                 (SELECT id FROM decisions WHERE created_us < ?1 ORDER BY created_us LIMIT ?2)",
                params![cutoff, batch as i64],
            )?;
            tx.execute(
                "DELETE FROM decision_outcomes WHERE rowid IN
                 (SELECT rowid FROM decision_outcomes WHERE at_us < ?1 ORDER BY at_us LIMIT ?2)",
                params![cutoff, batch as i64 * 4],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }
}
