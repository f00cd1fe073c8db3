//! Documents in the SQLite file: the statements behind [`DocumentRows`]. The rules (revisions,
//! the `records` flag, a callflow's numbers) are `store::documents`'; this file only stores.

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::Sqlite;
use crate::store::documents::{
    may_delete, mentions_recording, numbers_of, parse_kind, row_to_doc, Doc, DocumentRows, Expect,
    Kind, Revision,
};
use crate::store::{now_s, StoreError};

#[async_trait::async_trait]
impl DocumentRows for Sqlite {
    async fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        let account_id = account_id.to_owned();
        let id = id.to_owned();
        self.quick(move |c| {
            let account_id = account_id.as_str();
            let id = id.as_str();
            let row = c
                .prepare_cached(
                    "SELECT rev, body FROM documents
                     WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                )?
                .query_row(params![account_id, kind.as_str(), id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?;
            row.map(|(rev, body)| row_to_doc(kind, account_id.into(), id.into(), rev, &body))
                .transpose()
        })
        .await
    }

    /// The account's documents of `kind`, by id.
    async fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        let account_id = account_id.to_owned();
        let read = move |c: &mut rusqlite::Connection| {
            let account_id = account_id.as_str();
            let mut st = c.prepare_cached(
                "SELECT id, rev, body FROM documents WHERE account_id = ?1 AND kind = ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![account_id, kind.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, rev, body) = row?;
                out.push(row_to_doc(kind, account_id.into(), id, rev, &body)?);
            }
            Ok(out)
        };
        // An account's callflows are read by every call's plan, and an account has a handful:
        // a quick read. Its devices or users may be thousands (the API's listing): the pool.
        if kind == Kind::Callflow {
            self.quick(read).await
        } else {
            self.run(read).await
        }
    }

    /// Every document of `kind`, of every account (retention reads the accounts' limits).
    async fn documents_of_kind(&self, kind: Kind) -> Result<Vec<Doc>, StoreError> {
        self.run(move |c| {
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
        .await
    }

    /// Every document of every account (the start-up check of stored settings).
    async fn all_documents(&self) -> Result<Vec<Doc>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare_cached(
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
        .await
    }

    /// Writes a document of `account_id` if `expect` holds; returns it at its new revision.
    async fn put(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        body: Value,
        text: &str,
        expect: Expect,
    ) -> Result<Doc, StoreError> {
        let account_id = account_id.to_owned();
        let id = id.to_owned();
        let text = text.to_owned();
        self.quick(move |c| {
            let account_id = account_id.as_str();
            let id = id.as_str();
            let text = text.as_str();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<i64> = tx
                .prepare_cached(
                    "SELECT rev FROM documents WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                )?
                .query_row(params![account_id, kind.as_str(), id], |r| r.get(0))
                .optional()?;
            let rev = expect.next_revision(current)?;
            tx.prepare_cached(
                "INSERT INTO documents (account_id, kind, id, rev, body, modified, records)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (account_id, kind, id)
                 DO UPDATE SET rev = ?4, body = ?5, modified = ?6, records = ?7",
            )?
            .execute(params![
                account_id,
                kind.as_str(),
                id,
                rev,
                text,
                now_s(),
                mentions_recording(text)
            ])?;
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
        .await
    }

    /// Deletes a document of `account_id`; false when it did not exist there.
    async fn delete(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        expect: Option<Revision>,
    ) -> Result<bool, StoreError> {
        let account_id = account_id.to_owned();
        let id = id.to_owned();
        self.quick(move |c| {
            let account_id = account_id.as_str();
            let id = id.as_str();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<i64> = tx
                .prepare_cached(
                    "SELECT rev FROM documents WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                )?
                .query_row(params![account_id, kind.as_str(), id], |r| r.get(0))
                .optional()?;
            let Some(cur) = current else { return Ok(false) };
            may_delete(expect, cur)?;
            tx.prepare_cached(
                "DELETE FROM documents WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
            )?
            .execute(params![account_id, kind.as_str(), id])?;
            if kind == Kind::Callflow {
                set_numbers(&tx, account_id, id, None)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// The accounts with a callflow whose `numbers` hold `number` exactly (identifying the
    /// account of a call to a DID whose channel does not name it).
    async fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        let number = number.to_owned();
        self.quick(move |c| {
            let number = number.as_str();
            let mut st = c.prepare_cached(
                "SELECT DISTINCT account_id FROM callflow_numbers WHERE number = ?1
                 ORDER BY account_id",
            )?;
            let rows = st.query_map(params![number], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Whether any stored document mentions recording settings (`record_call`, as settings or as
    /// a callflow module, or `call_recording`), enabled or not. When none does, no document can
    /// make any party of any call recorded.
    async fn any_recording_settings(&self) -> Result<bool, StoreError> {
        self.quick(move |c| {
            Ok(
                c.prepare_cached("SELECT EXISTS(SELECT 1 FROM documents WHERE records = 1)")?
                    .query_row([], |r| r.get::<_, bool>(0))?,
            )
        })
        .await
    }

    /// Devices whose `sip.username` is `username`, in `account_id` or (identification of a
    /// caller whose account the channel does not name) in any account.
    async fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        let account_id = account_id.map(str::to_owned);
        let username = username.to_owned();
        self.quick(move |c| {
            let account_id = account_id.as_deref();
            let username = username.as_str();
            let mut st = c.prepare_cached(
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
        .await
    }
}

/// Replaces a callflow's rows in `callflow_numbers` with its `numbers` (the text ones; `None`
/// when it is deleted).
fn set_numbers(
    c: &rusqlite::Connection,
    account_id: &str,
    id: &str,
    body: Option<&Value>,
) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM callflow_numbers WHERE account_id = ?1 AND id = ?2")?
        .execute(params![account_id, id])?;
    for n in numbers_of(body) {
        c.prepare_cached(
            "INSERT OR IGNORE INTO callflow_numbers (number, account_id, id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![n, account_id, id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! What both backends do is in `tests/store_suite.rs`; here, what only SQLite's file shows.
    use super::*;
    use crate::store::Store;
    use serde_json::json;

    #[tokio::test]
    async fn the_per_call_lookups_are_index_searches() {
        let s = Store::open_in_memory().unwrap();
        s.put(
            Kind::Callflow,
            "a",
            "cf1",
            json!({"numbers": ["1"], "flow": {"module": "device", "data": {}}}),
            Expect::Any,
        )
        .await
        .unwrap();
        s.sqlite.with(|c| {
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

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put(Kind::Account, "a", "a", json!({"name": "A"}), Expect::Any)
            .await
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.get(Kind::Account, "a", "a").await.unwrap().unwrap().rev,
            Revision(1)
        );
    }
}
