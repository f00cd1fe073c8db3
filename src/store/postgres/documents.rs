//! Documents on PostgreSQL: get, list, put with revisions, delete, and the planner's lookups
//! (callflow numbers, SIP usernames, whether any recording settings exist). What the planner
//! remembers for an outage is the planner's (`rules::lookups`).

use super::*;
use crate::store::documents::{may_delete, DocumentRows};

// --- documents -------------------------------------------------------------------------------

/// A document from its `id, rev, body` columns, starting at column `i`.
fn doc_of(kind: Kind, account: String, r: &Row, i: usize) -> Result<Doc, StoreError> {
    row_to_doc(kind, account, r.get(i), r.get(i + 1), r.get(i + 2))
}

#[async_trait::async_trait]
impl DocumentRows for Pg {
    async fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let row = cached_query_opt(
                &c,
                "SELECT rev, body FROM documents WHERE account_id = $1 AND kind = $2 AND id = $3",
                &[&account_id, &kind.as_str(), &id],
            )
            .await?;
            row.map(|r| row_to_doc(kind, account_id.into(), id.into(), r.get(0), r.get(1)))
                .transpose()
        })
        .await
    }

    async fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT id, rev, body FROM documents WHERE account_id = $1 AND kind = $2
                     ORDER BY id COLLATE \"C\"",
                &[&account_id, &kind.as_str()],
            )
            .await?;
            rows.iter()
                .map(|r| doc_of(kind, account_id.into(), r, 0))
                .collect()
        })
        .await
    }

    async fn documents_of_kind(&self, kind: Kind) -> Result<Vec<Doc>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT account_id, id, rev, body FROM documents WHERE kind = $1
                     ORDER BY account_id COLLATE \"C\", id COLLATE \"C\"",
                &[&kind.as_str()],
            )
            .await?;
            rows.iter().map(|r| doc_of(kind, r.get(0), r, 1)).collect()
        })
        .await
    }

    async fn all_documents(&self) -> Result<Vec<Doc>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT account_id, kind, id, rev, body FROM documents
                     ORDER BY account_id COLLATE \"C\", kind COLLATE \"C\", id COLLATE \"C\"",
                &[],
            )
            .await?;
            rows.iter()
                .map(|r| {
                    let kind: String = r.get(1);
                    doc_of(crate::store::documents::parse_kind(&kind)?, r.get(0), r, 2)
                })
                .collect()
        })
        .await
    }

    async fn put(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        body: Value,
        text: &str,
        expect: Expect,
    ) -> Result<Doc, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            // Two writers of one new document: the loser waits here, then sees the winner's row.
            cached_execute(
                &tx,
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 1))",
                &[&account_id, &kind.as_str(), &id],
            )
            .await?;
            let current: Option<i64> = cached_query_opt(
                &tx,
                "SELECT rev FROM documents WHERE account_id = $1 AND kind = $2 AND id = $3
                     FOR UPDATE",
                &[&account_id, &kind.as_str(), &id],
            )
            .await?
            .map(|r| r.get(0));
            let rev = expect.next_revision(current)?;
            cached_execute(
                &tx,
                "INSERT INTO documents (account_id, kind, id, rev, body, modified, records)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (account_id, kind, id)
                 DO UPDATE SET rev = $4, body = $5, modified = $6, records = $7",
                &[
                    &account_id,
                    &kind.as_str(),
                    &id,
                    &rev,
                    &text,
                    &crate::store::now_s(),
                    &mentions_recording(text),
                ],
            )
            .await?;
            if kind == Kind::Callflow {
                set_numbers(&tx, account_id, id, Some(&body)).await?;
            }
            tx.commit().await?;
            Ok(Doc {
                kind,
                id: id.into(),
                account_id: account_id.into(),
                rev: revision(rev),
                body,
            })
        })
        .await
    }

    async fn delete(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        expect: Option<Revision>,
    ) -> Result<bool, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let current: Option<i64> = cached_query_opt(
                &tx,
                "SELECT rev FROM documents WHERE account_id = $1 AND kind = $2 AND id = $3
                     FOR UPDATE",
                &[&account_id, &kind.as_str(), &id],
            )
            .await?
            .map(|r| r.get(0));
            let Some(cur) = current else { return Ok(false) };
            may_delete(expect, cur)?;
            cached_execute(
                &tx,
                "DELETE FROM documents WHERE account_id = $1 AND kind = $2 AND id = $3",
                &[&account_id, &kind.as_str(), &id],
            )
            .await?;
            if kind == Kind::Callflow {
                set_numbers(&tx, account_id, id, None).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT account_id FROM callflow_numbers WHERE number = $1
                     GROUP BY account_id ORDER BY account_id COLLATE \"C\"",
                &[&number],
            )
            .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await
    }

    async fn any_recording_settings(&self) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.client().await?;
            Ok(cached_query_one(
                &c,
                "SELECT EXISTS(SELECT 1 FROM documents WHERE records)",
                &[],
            )
            .await?
            .get(0))
        })
        .await
    }

    async fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT account_id, id, rev, body FROM documents
                     WHERE kind = 'device' AND (body::jsonb) #>> '{sip,username}' = $1
                       AND ($2::text IS NULL OR account_id = $2)
                     ORDER BY account_id COLLATE \"C\", id COLLATE \"C\"",
                &[&username, &account_id],
            )
            .await?;
            rows.iter()
                .map(|r| doc_of(Kind::Device, r.get(0), r, 1))
                .collect()
        })
        .await
    }
}

async fn set_numbers(
    c: &impl GenericClient,
    account_id: &str,
    id: &str,
    body: Option<&Value>,
) -> Result<(), StoreError> {
    cached_execute(
        c,
        "DELETE FROM callflow_numbers WHERE account_id = $1 AND id = $2",
        &[&account_id, &id],
    )
    .await?;
    for n in numbers_of(body) {
        cached_execute(
            c,
            "INSERT INTO callflow_numbers (number, account_id, id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&n, &account_id, &id],
        )
        .await?;
    }
    Ok(())
}
