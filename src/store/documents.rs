//! Documents: accounts, users, devices and callflows as JSON objects with revisions.
//!
//! Invariants: a document's key is `(account, kind, id)`: the same id in two accounts is two
//! documents, and every statement here names the account, so nothing reached through one
//! account can read, change, move or reveal another account's document. An account's own
//! document is `(account, Account, account)`. A write with an expected revision fails with
//! [`StoreError::Conflict`] unless the stored document is at exactly that revision; the
//! revision goes up by one with every write, in the same transaction. `body.id` always equals
//! the key's id.

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::{now_s, Store, StoreError};

pub use crate::settings::documents::Kind;

/// The kind a stored row names.
pub(super) fn parse_kind(s: &str) -> Result<Kind, StoreError> {
    Kind::from_name(s).ok_or_else(|| StoreError::Corrupt(format!("unknown kind {s:?}")))
}

/// A document's revision: 1 after the first write, one more after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl Revision {
    /// An `If-Match` value (`3` or `"3"`); `None` when it is not a revision at all.
    pub fn parse(s: &str) -> Option<Revision> {
        s.trim().trim_matches('"').parse().ok().map(Revision)
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored document. `body` is a JSON object; its `id` member always equals `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub kind: Kind,
    pub id: String,
    pub account_id: String,
    pub rev: Revision,
    pub body: Value,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Create or replace, whatever is there.
    Any,
    /// Only if the document is at this revision (`If-Match`); an absent one never is.
    Revision(Revision),
    /// Only if there is no such document (create with an explicit id).
    Absent,
}

pub(super) fn row_to_doc(
    kind: Kind,
    account_id: String,
    id: String,
    rev: i64,
    body: &str,
) -> Result<Doc, StoreError> {
    let body = serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("document {id}: {e}")))?;
    Ok(Doc {
        kind,
        id,
        account_id,
        rev: Revision(rev as u64),
        body,
    })
}

impl Store {
    pub fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.get(kind, account_id, id);
        }
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT rev, body FROM documents WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                    params![account_id, kind.as_str(), id],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            row.map(|(rev, body)| row_to_doc(kind, account_id.into(), id.into(), rev, &body))
                .transpose()
        })
    }

    /// The account's documents of `kind`, by id.
    pub fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.list(kind, account_id);
        }
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, rev, body FROM documents WHERE account_id = ?1 AND kind = ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![account_id, kind.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, rev, body) = row?;
                out.push(row_to_doc(kind, account_id.into(), id, rev, &body)?);
            }
            Ok(out)
        })
    }

    /// Every document of `kind`, of every account (retention reads the accounts' limits).
    pub fn documents_of_kind(&self, kind: Kind) -> Result<Vec<Doc>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.documents_of_kind(kind);
        }
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT account_id, id, rev, body FROM documents WHERE kind = ?1
                 ORDER BY account_id, id",
            )?;
            let rows = st.query_map(params![kind.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (account, id, rev, body) = row?;
                out.push(row_to_doc(kind, account, id, rev, &body)?);
            }
            Ok(out)
        })
    }

    /// Every document of every account (the start-up check of stored settings).
    pub fn all_documents(&self) -> Result<Vec<Doc>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.all_documents();
        }
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT account_id, kind, id, rev, body FROM documents ORDER BY account_id, kind, id",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (account, kind, id, rev, body) = row?;
                out.push(row_to_doc(parse_kind(&kind)?, account, id, rev, &body)?);
            }
            Ok(out)
        })
    }

    /// Writes a document of `account_id` if `expect` holds; returns it at its new revision.
    pub fn put(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        mut body: Value,
        expect: Expect,
    ) -> Result<Doc, StoreError> {
        if let Value::Object(m) = &mut body {
            m.insert("id".into(), Value::String(id.to_string()));
        }
        let text = body.to_string();
        if let Some(pg) = &self.pg {
            return pg.put(kind, account_id, id, body, &text, expect);
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT rev FROM documents WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                    params![account_id, kind.as_str(), id],
                    |r| r.get(0),
                )
                .optional()?;
            match (expect, current) {
                (Expect::Absent, Some(_)) => return Err(StoreError::Exists),
                (Expect::Revision(want), cur) if cur != Some(want.0 as i64) => {
                    return Err(StoreError::Conflict {
                        current: cur.map(|r| r.to_string()).unwrap_or_default(),
                    })
                }
                _ => {}
            }
            let rev = current.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO documents (account_id, kind, id, rev, body, modified, records)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (account_id, kind, id)
                 DO UPDATE SET rev = ?4, body = ?5, modified = ?6, records = ?7",
                params![
                    account_id,
                    kind.as_str(),
                    id,
                    rev,
                    text,
                    now_s(),
                    mentions_recording(&text)
                ],
            )?;
            if kind == Kind::Callflow {
                set_numbers(&tx, account_id, id, Some(&body))?;
            }
            tx.commit()?;
            Ok(Doc {
                kind,
                id: id.into(),
                account_id: account_id.into(),
                rev: Revision(rev as u64),
                body,
            })
        })
    }

    /// Deletes a document of `account_id`; false when it did not exist there.
    pub fn delete(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        expect: Option<Revision>,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.delete(kind, account_id, id, expect);
        }
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT rev FROM documents WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                    params![account_id, kind.as_str(), id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(cur) = current else { return Ok(false) };
            if let Some(want) = expect {
                if cur != want.0 as i64 {
                    return Err(StoreError::Conflict {
                        current: cur.to_string(),
                    });
                }
            }
            tx.execute(
                "DELETE FROM documents WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                params![account_id, kind.as_str(), id],
            )?;
            if kind == Kind::Callflow {
                set_numbers(&tx, account_id, id, None)?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    /// The accounts with a callflow whose `numbers` hold `number` exactly (identifying the
    /// account of a call to a DID whose channel does not name it).
    pub fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.accounts_with_number(number);
        }
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT DISTINCT account_id FROM callflow_numbers WHERE number = ?1
                 ORDER BY account_id",
            )?;
            let rows = st.query_map(params![number], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Whether any stored document mentions recording settings (`record_call`, as settings or as
    /// a callflow module, or `call_recording`), enabled or not. When none does, no document can
    /// make any party of any call recorded.
    pub fn any_recording_settings(&self) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.any_recording_settings();
        }
        self.with(|c| {
            Ok(c.query_row(
                "SELECT EXISTS(SELECT 1 FROM documents WHERE records = 1)",
                [],
                |r| r.get::<_, bool>(0),
            )?)
        })
    }

    /// Devices whose `sip.username` is `username`, in `account_id` or (identification of a
    /// caller whose account the channel does not name) in any account.
    pub fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.devices_by_sip_username(account_id, username);
        }
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT account_id, id, rev, body FROM documents
                 WHERE kind = 'device' AND json_extract(body, '$.sip.username') = ?1
                   AND (?2 IS NULL OR account_id = ?2) ORDER BY account_id, id",
            )?;
            let rows = st.query_map(params![username, account_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (acc, id, rev, body) = row?;
                out.push(row_to_doc(Kind::Device, acc, id, rev, &body)?);
            }
            Ok(out)
        })
    }
}

/// The `records` flag of a document's stored text: it names recording settings (`record_call`,
/// as settings or as a callflow module, or `call_recording`), enabled or not.
pub(super) fn mentions_recording(text: &str) -> bool {
    text.contains("\"record_call\"") || text.contains("\"call_recording\"")
}

/// A callflow's `numbers` that are text (the ones a call can match).
pub(super) fn numbers_of(body: Option<&Value>) -> Vec<&str> {
    body.and_then(|b| b.get("numbers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Replaces a callflow's rows in `callflow_numbers` with its `numbers` (the text ones; `None`
/// when it is deleted).
fn set_numbers(
    c: &rusqlite::Connection,
    account_id: &str,
    id: &str,
    body: Option<&Value>,
) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM callflow_numbers WHERE account_id = ?1 AND id = ?2",
        params![account_id, id],
    )?;
    for n in numbers_of(body) {
        c.execute(
            "INSERT OR IGNORE INTO callflow_numbers (number, account_id, id) VALUES (?1, ?2, ?3)",
            params![n, account_id, id],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! What both backends do is in `tests/store_suite.rs`; here, what only SQLite's file shows.
    use super::*;
    use serde_json::json;

    #[test]
    fn the_per_call_lookups_are_index_searches() {
        let s = Store::open_in_memory().unwrap();
        s.put(
            Kind::Callflow,
            "a",
            "cf1",
            json!({"numbers": ["1"], "flow": {"module": "device", "data": {}}}),
            Expect::Any,
        )
        .unwrap();
        s.with(|c| {
            for q in [
                "EXPLAIN QUERY PLAN SELECT EXISTS(SELECT 1 FROM documents WHERE records = 1)",
                "EXPLAIN QUERY PLAN SELECT DISTINCT account_id FROM callflow_numbers WHERE number = '1'",
            ] {
                let plan: Vec<String> = c
                    .prepare(q)?
                    .query_map([], |r| r.get::<_, String>(3))?
                    .collect::<Result<_, _>>()?;
                assert!(
                    plan.iter().any(|p| p.starts_with("SEARCH"))
                        && plan
                            .iter()
                            .all(|p| !p.starts_with("SCAN") || p == "SCAN CONSTANT ROW"),
                    "{q}: {plan:?}"
                );
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put(Kind::Account, "a", "a", json!({"name": "A"}), Expect::Any)
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.get(Kind::Account, "a", "a").unwrap().unwrap().rev,
            Revision(1)
        );
    }
}
