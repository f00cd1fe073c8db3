//! What only the local journal of a node on a shared database does (`store::fallback`): its
//! recordings are read a batch at a time to be moved to the database, and removed once the
//! database holds them (or a newer write of them).

use rusqlite::params;

use super::Sqlite;
use crate::store::fallback::{Moved, MovedDelivery};
use crate::store::StoreError;

impl Sqlite {
    /// Removes recording `id` and its deliveries (the database took a newer write of it).
    pub(in crate::store) async fn remove_recording(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.quick(move |c| {
            let id = id.as_str();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM deliveries WHERE recording_id = ?1")?
                .execute(params![id])?;
            tx.prepare_cached("DELETE FROM recordings WHERE id = ?1")?
                .execute(params![id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Whether the file holds any recording.
    pub(in crate::store) async fn holds_recordings(&self) -> Result<bool, StoreError> {
        self.run(move |c| {
            Ok(c.prepare_cached("SELECT EXISTS(SELECT 1 FROM recordings)")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    /// The oldest `limit` recordings, every column, their deliveries' too.
    pub(in crate::store) async fn recordings_to_move(
        &self,
        limit: i64,
    ) -> Result<Vec<Moved>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, account_id, call_id, file_path, state, meta, created_us,
                            updated_us
                     FROM recordings ORDER BY created_us LIMIT ?1",
            )?;
            let rows = st.query_map(params![limit], |r| {
                Ok(Moved {
                    id: r.get(0)?,
                    account_id: r.get(1)?,
                    call_id: r.get(2)?,
                    file_path: r.get(3)?,
                    state: r.get(4)?,
                    meta: r.get(5)?,
                    created: r.get(6)?,
                    updated: r.get(7)?,
                    deliveries: Vec::new(),
                })
            })?;
            let mut out: Vec<Moved> = rows.collect::<Result<_, _>>()?;
            let mut st = c.prepare_cached(
                "SELECT url, method, state, attempts, next_attempt_us, since_us, last_error,
                            last_status, delivered_us
                     FROM deliveries WHERE recording_id = ?1",
            )?;
            for m in &mut out {
                let rows = st.query_map(params![m.id], |r| {
                    Ok(MovedDelivery {
                        url: r.get(0)?,
                        method: r.get(1)?,
                        state: r.get(2)?,
                        attempts: r.get(3)?,
                        next: r.get(4)?,
                        since: r.get(5)?,
                        last_error: r.get(6)?,
                        last_status: r.get(7)?,
                        delivered: r.get(8)?,
                    })
                })?;
                m.deliveries = rows.collect::<Result<_, _>>()?;
            }
            Ok(out)
        })
        .await
    }

    /// Removes the recordings of `batch` the database now holds: each only if it did not
    /// change meanwhile (else the newer row moves next round).
    pub(in crate::store) async fn remove_moved(&self, batch: &[Moved]) -> Result<(), StoreError> {
        let batch = batch.to_vec();
        self.run(move |c| {
            let batch = batch.as_slice();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for m in batch {
                // Only if it did not change meanwhile (else the newer row moves next round).
                let gone = tx
                    .prepare_cached("DELETE FROM recordings WHERE id = ?1 AND updated_us = ?2")?
                    .execute(params![m.id, m.updated])?;
                if gone > 0 {
                    tx.prepare_cached("DELETE FROM deliveries WHERE recording_id = ?1")?
                        .execute(params![m.id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
