//! Listing recordings: [`Filter`] (what a listing asks for) and the statement it makes, with
//! only the conditions it sets, spelled for either store ([`Dialect`]).
//!
//! Invariants: every value is bound, never spliced into the SQL; a listing is newest first and
//! paged by `(created_us, id)`; a condition a request does not set is not in the statement (a
//! `(? IS NULL OR col = ?)` form hides the column from the planner); the listing's indexes leave
//! out live (`recording`) rows, so the statement names that condition wherever it takes them.

use super::RecordingState;

/// Which recordings to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<RecordingState>,
    pub node: Option<String>,
    pub account_id: Option<String>,
    pub call_id: Option<String>,
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    pub limit: Option<u32>,
    /// The caller's or the callee's number (`caller_id_number`, `callee_number`).
    pub party: Option<String>,
    /// The page after this `(created_us, id)` (newest first).
    pub after: Option<(u64, String)>,
}

/// One value bound to a listing's placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bound {
    Text(String),
    Int(i64),
}

impl rusqlite::ToSql for Bound {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Bound::Text(t) => t.to_sql(),
            Bound::Int(i) => i.to_sql(),
        }
    }
}

/// Which SQL a statement is spelled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub(super) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// A top-level text field of the recording's metadata, as the party indexes spell it.
    fn meta_field(self, field: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract(meta, '$.{field}')"),
            Dialect::Postgres => format!("((meta::jsonb) ->> '{field}')"),
        }
    }
}

impl Filter {
    /// The listing's statement with only the conditions this filter sets (a condition written
    /// as `(? IS NULL OR col = ?)` hides the column from the planner, which then walks the
    /// newest-first index past every other account's rows), and the values for its
    /// placeholders.
    pub(super) fn sql(&self, d: Dialect) -> (String, Vec<Bound>) {
        let mut values = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        let next = |v: Bound, values: &mut Vec<Bound>| {
            values.push(v);
            d.placeholder(values.len())
        };
        // The listing's indexes leave out live (`recording`) rows (see migrations v7): a
        // condition that names them lets the planner take them.
        const KEPT: &str = "state != 'recording'";
        if let Some(s) = self.state {
            let p = next(Bound::Text(s.as_str().into()), &mut values);
            if s == RecordingState::Recording {
                conds.push(format!("state = {p}"));
            } else {
                conds.push(format!("state = {p} AND {KEPT}"));
            }
        }
        match (&self.party, &self.account_id) {
            (Some(party), Some(a)) => {
                // Each kept branch names the account: one range of a party index each; live
                // rows (few, outside those indexes) through the state index.
                let branch = |field: &str, values: &mut Vec<Bound>| {
                    let pa = next(Bound::Text(a.clone()), values);
                    let pp = next(Bound::Text(party.clone()), values);
                    format!(
                        "(account_id = {pa} AND {} = {pp} AND {KEPT})",
                        d.meta_field(field)
                    )
                };
                let caller = branch("caller_id_number", &mut values);
                let callee = branch("callee_number", &mut values);
                let pa = next(Bound::Text(a.clone()), &mut values);
                let p1 = next(Bound::Text(party.clone()), &mut values);
                let p2 = next(Bound::Text(party.clone()), &mut values);
                let live = format!(
                    "(state = 'recording' AND account_id = {pa} AND ({} = {p1} OR {} = {p2}))",
                    d.meta_field("caller_id_number"),
                    d.meta_field("callee_number")
                );
                conds.push(format!("({caller} OR {callee} OR {live})"));
            }
            (Some(party), None) => {
                let p1 = next(Bound::Text(party.clone()), &mut values);
                let p2 = next(Bound::Text(party.clone()), &mut values);
                conds.push(format!(
                    "({} = {p1} OR {} = {p2})",
                    d.meta_field("caller_id_number"),
                    d.meta_field("callee_number")
                ));
            }
            (None, Some(a)) => {
                let p = next(Bound::Text(a.clone()), &mut values);
                // With a call id the call's index is the one to take: SQLite would take the
                // account's (it gives the order) and walk every row of the account. A unary `+`
                // takes a term out of SQLite's index choice (PostgreSQL has statistics).
                let col = match (d, &self.call_id) {
                    (Dialect::Sqlite, Some(_)) => "+account_id",
                    _ => "account_id",
                };
                conds.push(format!("{col} = {p}"));
            }
            (None, None) => {}
        }
        if let Some(c) = &self.call_id {
            let p = next(Bound::Text(c.clone()), &mut values);
            conds.push(format!("call_id = {p}"));
        }
        if let Some(v) = self.since_us {
            let p = next(Bound::Int(v as i64), &mut values);
            conds.push(format!("created_us >= {p}"));
        }
        if let Some(v) = self.until_us {
            let p = next(Bound::Int(v as i64), &mut values);
            conds.push(format!("created_us < {p}"));
        }
        if let Some(n) = &self.node {
            let p = next(Bound::Text(n.clone()), &mut values);
            conds.push(format!("node = {p}"));
        }
        if let Some((at, id)) = &self.after {
            let p1 = next(Bound::Int(*at as i64), &mut values);
            let p2 = next(Bound::Int(*at as i64), &mut values);
            let p3 = next(Bound::Text(id.clone()), &mut values);
            conds.push(format!(
                "(created_us < {p1} OR (created_us = {p2} AND id < {p3}))"
            ));
        }
        let mut sql =
            String::from("SELECT id, node, state, created_us, updated_us, meta FROM recordings");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        let p = next(
            Bound::Int(i64::from(self.limit.unwrap_or(1000))),
            &mut values,
        );
        sql.push_str(&format!(" ORDER BY created_us DESC, id DESC LIMIT {p}"));
        (sql, values)
    }
}
