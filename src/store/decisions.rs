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

pub(super) fn body_of(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("decision body: {e}")))
}

/// With `bound`, the creation time of the newest record past the `keep_rows` kept, the time
/// before which pruning removes records: older than the retention's cutoff, or beyond the
/// row limit (records at or below the bound go too).
pub(super) fn prune_cutoff(before_us: i64, bound: Option<i64>) -> i64 {
    match bound {
        Some(b) => before_us.max(b + 1),
        None => before_us,
    }
}

/// Outcomes pruned per decision record pruned (a call's recordings leave a few each).
pub(super) const OUTCOMES_PER_DECISION: i64 = 4;

/// What a backend does with decision records: statements only.
#[async_trait::async_trait]
pub(super) trait DecisionRows {
    /// Keeps `rows` as `node`'s, in one transaction (a record already kept stays as it is).
    async fn add_decisions(&self, node: &str, rows: &[NewDecision]) -> Result<(), StoreError>;
    /// Appends outcomes, in one transaction.
    async fn add_outcomes(&self, rows: &[Outcome]) -> Result<(), StoreError>;
    /// The records matching `f` ([`DecisionFilter::sql`]), newest first.
    async fn decisions(&self, f: &DecisionFilter) -> Result<Vec<DecisionRow>, StoreError>;
    /// Every outcome of `call_id`'s recordings, oldest first.
    async fn outcomes(&self, call_id: &str) -> Result<Vec<Outcome>, StoreError>;
    /// Removes `call_id`'s records (in `account`, when given), and its outcomes once none of
    /// its records is left, in one transaction; how many records went.
    async fn erase_decisions(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<usize, StoreError>;
    /// Removes up to `batch` records made before [`prune_cutoff`], and up to
    /// [`OUTCOMES_PER_DECISION`] × `batch` outcomes; how many records went.
    async fn prune_decisions(
        &self,
        before_us: i64,
        keep_rows: i64,
        batch: i64,
    ) -> Result<usize, StoreError>;
}

impl Store {
    /// Keeps decision records (this node's), in one transaction.
    pub async fn add_decisions(&self, rows: &[NewDecision]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.db().add_decisions(&self.node, rows).await
    }

    /// Appends outcomes of calls' recordings, in one transaction.
    pub async fn add_outcomes(&self, rows: &[Outcome]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.db().add_outcomes(rows).await
    }

    /// Decision records matching `f`, newest first.
    pub async fn decisions(&self, f: &DecisionFilter) -> Result<Vec<DecisionRow>, StoreError> {
        self.db().decisions(f).await
    }

    /// The newest decision record of `call_id` (in `account`, when given), with every outcome
    /// of the call's recordings, oldest first.
    pub async fn decision_of_call(
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
        let Some(row) = self.decisions(&f).await?.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some((row, self.db().outcomes(call_id).await?)))
    }

    /// Erasure on request: removes every decision record of `call_id` (in `account`, when
    /// given) and the outcomes of its recordings. Returns how many records went.
    pub async fn erase_decisions(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<usize, StoreError> {
        self.db().erase_decisions(account, call_id).await
    }

    /// Removes up to `batch` decision records (and outcomes) made before `before_us`, or older
    /// than the newest `keep_rows`. Returns how many records went; call until it returns less
    /// than `batch`.
    pub async fn prune_decisions(
        &self,
        before_us: u64,
        keep_rows: u64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        self.db()
            .prune_decisions(before_us as i64, keep_rows as i64, batch as i64)
            .await
    }
}
