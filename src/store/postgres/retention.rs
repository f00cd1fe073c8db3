//! Erasure and retention on PostgreSQL: the same rules as SQLite's (`store::retention`), rows
//! locked while they are checked and removed, and each node removing only its own recordings.

use super::*;
use crate::store::retention::{refusal, state_of, Cutoffs, Erasure, RemovalRows, Removed};

fn removed(r: &Row) -> Result<Removed, StoreError> {
    Ok(Removed {
        id: r.get(0),
        account_id: r.get(1),
        call_id: r.get(2),
        file_path: r.get(3),
        state: state_of(r.get(4))?,
    })
}

#[async_trait::async_trait]
impl RemovalRows for Pg {
    async fn erase_recording(
        &self,
        node: &str,
        id: &str,
        account: Option<&str>,
    ) -> Result<Erasure, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            // Deliveries first, then the recording: the order claims and settles lock them in,
            // so an erasure racing a claim waits instead of deadlocking.
            cached_query(
                &tx,
                "SELECT 1 FROM deliveries WHERE recording_id = $1 FOR UPDATE",
                &[&id],
            )
            .await?;
            let Some(row) = cached_query_opt(
                &tx,
                "SELECT node, account_id, call_id, file_path, state FROM recordings
                 WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            else {
                return Ok(Erasure::Unknown);
            };
            let (owner, account_id, call_id, file_path, state): (
                String,
                Option<String>,
                String,
                String,
                String,
            ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            if let Some(refused) = refusal(&owner, account_id.as_deref(), &state, account, node)? {
                return Ok(refused);
            }
            cached_execute(
                &tx,
                "DELETE FROM deliveries WHERE recording_id = $1",
                &[&id],
            )
            .await?;
            cached_execute(&tx, "DELETE FROM recordings WHERE id = $1", &[&id]).await?;
            tx.commit().await?;
            Ok(Erasure::Removed(Removed {
                id: id.to_string(),
                account_id,
                call_id,
                file_path,
                state: state_of(&state)?,
            }))
        })
        .await
    }

    async fn recordings_of_call(
        &self,
        account: Option<&str>,
        call_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT id FROM recordings WHERE call_id = $1
                   AND ($2::text IS NULL OR account_id = $2) ORDER BY created_us, id",
                &[&call_id, &account],
            )
            .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await
    }

    async fn take_expired(
        &self,
        node: &str,
        cutoffs: &Cutoffs,
        limit: i64,
    ) -> Result<Vec<Removed>, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let mut found: Vec<Removed> = Vec::new();
            for (account, before) in &cutoffs.accounts {
                let left = limit - found.len() as i64;
                if left <= 0 {
                    break;
                }
                for r in cached_query(
                    &tx,
                    "SELECT id, account_id, call_id, file_path, state FROM recordings
                     WHERE node = $1 AND account_id = $2 AND state IN ('stored', 'delivered')
                       AND created_us < $3
                     ORDER BY created_us LIMIT $4 FOR UPDATE SKIP LOCKED",
                    &[&node, account, &(*before as i64), &left],
                )
                .await?
                {
                    found.push(removed(&r)?);
                }
            }
            let own: Vec<&str> = cutoffs.accounts.iter().map(|(a, _)| a.as_str()).collect();
            // One state at a time: each an ordered range of `(node, state, created_us)`.
            for state in ["stored", "delivered"] {
                let Some(before) = cutoffs.default_before_us else {
                    break;
                };
                let left = limit - found.len() as i64;
                if left <= 0 {
                    break;
                }
                for r in cached_query(
                    &tx,
                    "SELECT id, account_id, call_id, file_path, state FROM recordings
                     WHERE node = $1 AND state = $5 AND created_us < $2
                       AND (account_id IS NULL OR NOT (account_id = ANY($3)))
                     ORDER BY created_us LIMIT $4 FOR UPDATE SKIP LOCKED",
                    &[&node, &(before as i64), &own, &left, &state],
                )
                .await?
                {
                    found.push(removed(&r)?);
                }
            }
            let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
            cached_execute(
                &tx,
                "DELETE FROM deliveries WHERE recording_id = ANY($1)",
                &[&ids],
            )
            .await?;
            cached_execute(&tx, "DELETE FROM recordings WHERE id = ANY($1)", &[&ids]).await?;
            tx.commit().await?;
            Ok(found)
        })
        .await
    }

    async fn checkpoint_log(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
