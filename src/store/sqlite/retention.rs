//! Erasure and retention in the SQLite file: the statements behind [`RemovalRows`]; what may
//! be erased is `store::retention`'s rule ([`refusal`]).

use rusqlite::{params, OptionalExtension};

use super::Sqlite;
use crate::store::retention::{refusal, state_of, Cutoffs, Erasure, RemovalRows, Removed};
use crate::store::StoreError;

#[async_trait::async_trait]
impl RemovalRows for Sqlite {
    async fn erase_recording(
        &self,
        node: &str,
        id: &str,
        account: Option<&str>,
    ) -> Result<Erasure, StoreError> {
        let node = node.to_owned();
        let id = id.to_owned();
        let account = account.map(str::to_owned);
        self.quick(move |c| {
            let node = node.as_str();
            let id = id.as_str();
            let account = account.as_deref();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row: Option<(String, Option<String>, String, String, String)> = tx
                .prepare_cached(
                    "SELECT node, account_id, call_id, file_path, state FROM recordings
                     WHERE id = ?1",
                )?
                .query_row(params![id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            let Some((owner, account_id, call_id, file_path, state)) = row else {
                return Ok(Erasure::Unknown);
            };
            if let Some(refused) = refusal(&owner, account_id.as_deref(), &state, account, node)? {
                return Ok(refused);
            }
            tx.prepare_cached("DELETE FROM deliveries WHERE recording_id = ?1")?
                .execute(params![id])?;
            tx.prepare_cached("DELETE FROM recordings WHERE id = ?1")?
                .execute(params![id])?;
            tx.commit()?;
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
        let account = account.map(str::to_owned);
        let call_id = call_id.to_owned();
        self.quick(move |c| {
            let account = account.as_deref();
            let call_id = call_id.as_str();
            let mut st = c.prepare_cached(
                "SELECT id FROM recordings WHERE call_id = ?1
                   AND (?2 IS NULL OR account_id = ?2) ORDER BY created_us, id",
            )?;
            let rows = st.query_map(params![call_id, account], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn checkpoint_log(&self) -> Result<(), StoreError> {
        self.checkpoint_now().await
    }

    async fn take_expired(
        &self,
        node: &str,
        cutoffs: &Cutoffs,
        limit: i64,
    ) -> Result<Vec<Removed>, StoreError> {
        let node = node.to_owned();
        let cutoffs = cutoffs.clone();
        let own: Vec<&str> = cutoffs.accounts.iter().map(|(a, _)| a.as_str()).collect();
        let own = serde_json::to_string(&own).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.run(move |c| {
            let node = node.as_str();

            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut found: Vec<Removed> = Vec::new();
            let read = |sql: &str, p: &[&dyn rusqlite::ToSql], found: &mut Vec<Removed>| {
                let mut st = tx.prepare_cached(sql)?;
                let mut rows = st.query(p)?;
                while let Some(r) = rows.next()? {
                    let state: String = r.get(4)?;
                    found.push(Removed {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        call_id: r.get(2)?,
                        file_path: r.get(3)?,
                        state: state_of(&state)?,
                    });
                }
                Ok::<_, StoreError>(())
            };
            for (account, before) in &cutoffs.accounts {
                let left = limit - found.len() as i64;
                if left <= 0 {
                    break;
                }
                read(
                    "SELECT id, account_id, call_id, file_path, state FROM recordings
                     WHERE node = ?1 AND account_id = ?2 AND state IN ('stored', 'delivered')
                       AND created_us < ?3
                     ORDER BY created_us LIMIT ?4",
                    &[&node, account, &(*before as i64), &left],
                    &mut found,
                )?;
            }
            // One state at a time: each is an ordered range of `(state, created_us)`, read only
            // as far as the batch needs (both at once would sort every expired row).
            for state in ["stored", "delivered"] {
                let Some(before) = cutoffs.default_before_us else {
                    break;
                };
                let left = limit - found.len() as i64;
                if left <= 0 {
                    break;
                }
                read(
                    "SELECT id, account_id, call_id, file_path, state FROM recordings
                     WHERE state = ?5 AND created_us < ?2 AND node = ?1
                       AND (account_id IS NULL
                            OR account_id NOT IN (SELECT value FROM json_each(?3)))
                     ORDER BY created_us LIMIT ?4",
                    &[&node, &(before as i64), &own, &left, &state],
                    &mut found,
                )?;
            }
            for r in &found {
                tx.prepare_cached("DELETE FROM deliveries WHERE recording_id = ?1")?
                    .execute(params![r.id])?;
                tx.prepare_cached("DELETE FROM recordings WHERE id = ?1")?
                    .execute(params![r.id])?;
            }
            tx.commit()?;
            Ok(found)
        })
        .await
    }
}
