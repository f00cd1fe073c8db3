//! Stores made on purpose, for the test suite, the benchmarks and upgrade checks: a new
//! PostgreSQL database beside an administrative URL (and dropping it), a SQLite file as the
//! first release wrote it, and the unindexed document lookups of schema version 3, which the
//! benchmarks measure the indexed ones against, and a console-shaped month of recordings and
//! decision records (`console_rows`). Like the rest of `store`, the only place their
//! SQL lives; a running callrec never calls them.
//!
//! Invariants: a database name is checked (`[a-z0-9_]`, at most 63 bytes) before it reaches a
//! statement; the PostgreSQL calls block on a runtime of their own, so callers inside a runtime
//! or not may use them.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::StoreError;

/// One document of a first-release file: `(kind, id, account_id, rev, body)`.
pub type FirstReleaseDoc<'a> = (&'a str, &'a str, &'a str, i64, &'a str);

/// Writes `callrec.db` in `data_dir` with the first release's schema and `docs`, as an install
/// of that release left it (the file the store migrates when it opens it).
pub fn first_release_file(data_dir: &Path, docs: &[FirstReleaseDoc]) -> Result<(), StoreError> {
    let c = Connection::open(data_dir.join("callrec.db"))?;
    c.execute_batch(super::sqlite::migrations::V1_SCHEMA)?;
    for (kind, id, account, rev, body) in docs {
        c.execute(
            "INSERT INTO documents (kind, id, account_id, rev, body, modified)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            params![kind, id, account, rev, body],
        )?;
    }
    Ok(())
}

/// Adds `n` kept (`stored`) recordings of `account` on `node` to the SQLite file of `data_dir`
/// in one transaction, each with `meta` (its `recording_id` set to `<prefix><i>`): the deep
/// spools the benchmarks measure, written in seconds instead of one transaction each.
pub fn kept_rows(
    data_dir: &Path,
    node: &str,
    account: &str,
    prefix: &str,
    n: usize,
    meta: &serde_json::Value,
) -> Result<(), StoreError> {
    let mut c = Connection::open(data_dir.join("callrec.db"))?;
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare(
            "INSERT INTO recordings (id, node, account_id, call_id, file_path, state, meta,
                                     created_us, updated_us)
             VALUES (?1, ?2, ?3, ?4, ?5, 'stored', ?6, ?7, ?7)",
        )?;
        let now = super::now_us() as i64;
        let mut m = meta.clone();
        for i in 0..n {
            let id = format!("{prefix}{i}");
            m["recording_id"] = serde_json::Value::String(id.clone());
            let path = format!("/nowhere/{id}.wav");
            m["file_path"] = serde_json::Value::String(path.clone());
            st.execute(params![
                id,
                node,
                account,
                format!("call-{i}"),
                path,
                m.to_string(),
                now
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn checked(name: &str) -> Result<&str, StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Corrupt(format!(
            "database name {name:?}: only [a-z0-9_], at most 63 bytes"
        )))
    }
}

/// Runs `sql` against `url` on a thread and runtime of its own.
fn admin(url: &str, sql: String) -> Result<(), StoreError> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        rt.block_on(async {
            let mut config: tokio_postgres::Config = url
                .parse()
                .map_err(|e| StoreError::Unreachable(format!("admin url: {e}")))?;
            config.connect_timeout(super::postgres::CONNECT_TIMEOUT);
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| StoreError::Unreachable(e.to_string()))?;
            let task = tokio::spawn(conn);
            let r = client.batch_execute(&sql).await;
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            r.map_err(StoreError::from)
        })
    })
    .join()
    .map_err(|_| StoreError::Poisoned)?
}

/// Creates database `name` on the server `admin_url` points at; returns its URL (the admin
/// URL with the database replaced).
pub fn create_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
    let name = checked(name)?;
    admin(admin_url, format!("CREATE DATABASE {name}"))?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    Ok(format!("{base}/{name}"))
}

/// Drops database `name` (and its sessions), if it exists.
pub fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let name = checked(name)?;
    admin(
        admin_url,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
}

/// The unindexed document lookups of schema version 3, on the SQLite file of a data directory,
/// kept open so a measurement times the query, not the open. The planner now asks indexes
/// (`Store::any_recording_settings`, `Store::accounts_with_number`).
pub struct Unindexed(Connection);

impl Unindexed {
    pub fn open(data_dir: &Path) -> Result<Unindexed, StoreError> {
        Ok(Unindexed(Connection::open(data_dir.join("callrec.db"))?))
    }

    /// "Does any document mention recording settings?", a scan of every document.
    pub fn recording_settings(&self) -> Result<bool, StoreError> {
        Ok(self.0.query_row(
            "SELECT EXISTS(SELECT 1 FROM documents
             WHERE instr(body, '\"record_call\"') > 0 OR instr(body, '\"call_recording\"') > 0)",
            [],
            |r| r.get(0),
        )?)
    }

    /// "Which accounts have a callflow for this number?", a scan of every callflow's numbers:
    /// how many accounts.
    pub fn accounts_with_number(&self, number: &str) -> Result<u64, StoreError> {
        let n: i64 = self.0.query_row(
            "SELECT COUNT(DISTINCT d.account_id) FROM documents d, json_each(d.body, '$.numbers') n
             WHERE d.kind = 'callflow' AND n.value = ?1",
            [number],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

/// Adds `n` recordings and `n` decision records on `node` to the SQLite file of `data_dir`,
/// shaped like a site's month: 10 accounts (`acc-0` holds 90% of the rows), callers from
/// 10,000 numbers (`+1555000xxxx`), callees from 1,000 (`1xxx`), created over 30 days before
/// now (newest last), 80% `stored`, 15% `delivered`, 5% `failed`. Each recording's metadata is
/// `meta` with its ids, numbers and path set; each decision's body is a small record. One
/// transaction: what the console's benchmark lists from.
pub fn console_rows(
    data_dir: &Path,
    node: &str,
    n: usize,
    meta: &serde_json::Value,
) -> Result<(), StoreError> {
    let mut c = Connection::open(data_dir.join("callrec.db"))?;
    let tx = c.transaction()?;
    {
        let mut rec = tx.prepare(
            "INSERT INTO recordings (id, node, account_id, call_id, file_path, state, meta,
                                     created_us, updated_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )?;
        let mut dec = tx.prepare(
            "INSERT INTO decisions (id, call_id, account_id, node, created_us, caller, callee,
                                    planned, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let now = super::now_us() as i64;
        let span: i64 = 30 * 86_400 * 1_000_000;
        let mut m = meta.clone();
        for i in 0..n {
            // A cheap, fixed scramble: the same rows every run.
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
            let account = if h.is_multiple_of(10) {
                format!("acc-{}", 1 + (h / 10) % 9)
            } else {
                "acc-0".to_string()
            };
            let caller = format!("+1555000{:04}", h % 10_000);
            let callee = format!("1{:03}", (h / 7) % 1000);
            let state = match (h >> 8) % 20 {
                0 => "failed",
                1..=3 => "delivered",
                _ => "stored",
            };
            let at = now - span + (i as i64) * span / (n.max(1) as i64);
            let id = format!("rec-{i:07}");
            let call = format!("call-{i:07}");
            let path = format!("/nowhere/{id}.wav");
            for (k, v) in [
                ("recording_id", &id),
                ("call_id", &call),
                ("file_path", &path),
                ("caller_id_number", &caller),
                ("callee_number", &callee),
                ("account_id", &account),
            ] {
                m[k] = serde_json::Value::String(v.clone());
            }
            rec.execute(params![
                id,
                node,
                account,
                call,
                path,
                state,
                m.to_string(),
                at
            ])?;
            let body = serde_json::json!({"call_id": call, "caller": {"number": caller},
                "callee": {"number": callee}, "rules": [], "planned": []});
            dec.execute(params![
                format!("d-{i:07}"),
                call,
                account,
                node,
                at,
                caller,
                callee,
                i64::from(!h.is_multiple_of(3)),
                body.to_string()
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_change_a_statement_are_refused() {
        for bad in ["", "a b", "x;drop", "Upper", &"a".repeat(64)] {
            assert!(checked(bad).is_err(), "{bad:?}");
        }
        assert!(checked("bench_0af3").is_ok());
    }

    #[tokio::test]
    async fn a_first_release_file_is_migrated_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        first_release_file(dir.path(), &[("account", "A", "A", 1, "{\"id\":\"A\"}")]).unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        let doc = store
            .get(super::super::Kind::Account, "A", "A")
            .await
            .unwrap()
            .expect("kept");
        assert_eq!(doc.rev.0, 1);
        assert_eq!(store.integrity_check().await.unwrap(), "ok");
        let scan = Unindexed::open(dir.path()).unwrap();
        assert!(!scan.recording_settings().unwrap());
        assert_eq!(scan.accounts_with_number("1000").unwrap(), 0);
    }
}
