//! The embedded store: JSON documents (accounts, users, devices, callflows) with revisions, and
//! API tokens (stored hashed), in one SQLite file in the data directory.
//!
//! Invariants: every write bumps the document's revision by one, atomically with the write; a
//! write with an expected revision fails with [`StoreError::Conflict`] if another write came
//! first; a token's secret is never stored, only its SHA-256.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Document kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Account,
    User,
    Device,
    Callflow,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::User => "user",
            Kind::Device => "device",
            Kind::Callflow => "callflow",
        }
    }
}

/// A stored document. `body` is a JSON object; its `id` member always equals `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub kind: Kind,
    pub id: String,
    pub account_id: String,
    pub rev: u64,
    pub body: Value,
}

impl Doc {
    pub fn revision(&self) -> String {
        self.rev.to_string()
    }
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Account(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("revision conflict: the document is at revision {current}")]
    Conflict { current: String },
    #[error("stored document is not valid JSON: {0}")]
    Corrupt(String),
    #[error("store lock poisoned")]
    Poisoned,
}

/// Thread-safe handle; clone freely. Calls block: use them from `spawn_blocking` in async code.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    rev INTEGER NOT NULL,
    body TEXT NOT NULL,
    modified INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS documents_account ON documents (account_id, kind);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    call_id TEXT NOT NULL,
    state TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_account ON recordings (account_id, created_us);
CREATE INDEX IF NOT EXISTS recordings_call ON recordings (call_id);
CREATE TABLE IF NOT EXISTS deliveries (
    recording_id TEXT NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    since_us INTEGER NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    delivered_us INTEGER,
    PRIMARY KEY (recording_id, url)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_us);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    account_id TEXT,
    created INTEGER NOT NULL
);
";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/callrec.db`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(data_dir.join("callrec.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Store::init(conn)
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut c)
    }

    fn row_to_doc(
        kind: Kind,
        id: String,
        account_id: String,
        rev: i64,
        body: String,
    ) -> Result<Doc, StoreError> {
        let body = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Doc {
            kind,
            id,
            account_id,
            rev: rev as u64,
            body,
        })
    }

    pub fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT rev, body FROM documents WHERE kind = ?1 AND id = ?2 AND account_id = ?3",
                    params![kind.as_str(), id, account_id],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            row.map(|(rev, body)| Store::row_to_doc(kind, id.into(), account_id.into(), rev, body))
                .transpose()
        })
    }

    pub fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, rev, body FROM documents WHERE kind = ?1 AND account_id = ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![kind.as_str(), account_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, rev, body) = row?;
                out.push(Store::row_to_doc(kind, id, account_id.into(), rev, body)?);
            }
            Ok(out)
        })
    }

    /// Creates or replaces a document. With `expect_rev`, fails unless the stored revision is
    /// that one (`Some("0")`... is never a stored revision; absent documents have none).
    pub fn put(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        mut body: Value,
        expect_rev: Option<&str>,
    ) -> Result<Doc, StoreError> {
        if let Value::Object(m) = &mut body {
            m.insert("id".into(), Value::String(id.to_string()));
        }
        let text = body.to_string();
        self.with(|c| {
            let tx = c.transaction()?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT rev FROM documents WHERE kind = ?1 AND id = ?2",
                    params![kind.as_str(), id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(expected) = expect_rev {
                let cur = current.map(|r| r.to_string()).unwrap_or_default();
                if cur != expected {
                    return Err(StoreError::Conflict { current: cur });
                }
            }
            let rev = current.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO documents (kind, id, account_id, rev, body, modified) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (kind, id) DO UPDATE SET account_id = ?3, rev = ?4, body = ?5, modified = ?6",
                params![kind.as_str(), id, account_id, rev, text, now()],
            )?;
            tx.commit()?;
            Ok(Doc {
                kind,
                id: id.into(),
                account_id: account_id.into(),
                rev: rev as u64,
                body,
            })
        })
    }

    /// Deletes a document; false when it did not exist.
    pub fn delete(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        expect_rev: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT rev FROM documents WHERE kind = ?1 AND id = ?2 AND account_id = ?3",
                    params![kind.as_str(), id, account_id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(cur) = current else { return Ok(false) };
            if let Some(expected) = expect_rev {
                if cur.to_string() != expected {
                    return Err(StoreError::Conflict {
                        current: cur.to_string(),
                    });
                }
            }
            tx.execute(
                "DELETE FROM documents WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    /// Devices whose `sip.username` is `username`, in `account_id` or in any account.
    pub fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, account_id, rev, body FROM documents
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
                let (id, acc, rev, body) = row?;
                out.push(Store::row_to_doc(Kind::Device, id, acc, rev, body)?);
            }
            Ok(out)
        })
    }

    /// Creates a token; returns the secret, which is not stored and cannot be shown again.
    pub fn create_token(&self, scope: &Scope) -> Result<String, StoreError> {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let account = match scope {
            Scope::Admin => None,
            Scope::Account(a) => Some(a.clone()),
        };
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (hash, account_id, created) VALUES (?1, ?2, ?3)",
                params![hash_token(&secret), account, now()],
            )?;
            Ok(())
        })?;
        Ok(secret)
    }

    /// The scope of a presented token, if it is known.
    pub fn verify_token(&self, secret: &str) -> Result<Option<Scope>, StoreError> {
        self.with(|c| {
            let row: Option<Option<String>> = c
                .query_row(
                    "SELECT account_id FROM tokens WHERE hash = ?1",
                    params![hash_token(secret)],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(row.map(|a| match a {
                None => Scope::Admin,
                Some(a) => Scope::Account(a),
            }))
        })
    }
}

fn hash_token(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revisions_and_conflicts() {
        let s = Store::open_in_memory().unwrap();
        let d = s
            .put(Kind::User, "a", "u1", json!({"first_name": "Ann"}), None)
            .unwrap();
        assert_eq!(d.rev, 1);
        assert_eq!(d.body["id"], "u1");
        let d = s
            .put(
                Kind::User,
                "a",
                "u1",
                json!({"first_name": "Bo"}),
                Some("1"),
            )
            .unwrap();
        assert_eq!(d.rev, 2);
        let e = s
            .put(Kind::User, "a", "u1", json!({}), Some("1"))
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict { current } if current == "2"));
        assert_eq!(
            s.get(Kind::User, "a", "u1").unwrap().unwrap().body["first_name"],
            "Bo"
        );
        assert!(
            s.get(Kind::User, "other", "u1").unwrap().is_none(),
            "scoped to the account"
        );
        assert_eq!(s.list(Kind::User, "a").unwrap().len(), 1);
        assert!(s.delete(Kind::User, "a", "u1", Some("2")).unwrap());
        assert!(!s.delete(Kind::User, "a", "u1", None).unwrap());
    }

    #[test]
    fn devices_by_sip_and_tokens() {
        let s = Store::open_in_memory().unwrap();
        s.put(
            Kind::Device,
            "a",
            "d1",
            json!({"sip": {"username": "alice"}}),
            None,
        )
        .unwrap();
        s.put(
            Kind::Device,
            "b",
            "d2",
            json!({"sip": {"username": "alice"}}),
            None,
        )
        .unwrap();
        assert_eq!(s.devices_by_sip_username(None, "alice").unwrap().len(), 2);
        assert_eq!(
            s.devices_by_sip_username(Some("b"), "alice").unwrap()[0].id,
            "d2"
        );
        let t = s.create_token(&Scope::Account("a".into())).unwrap();
        assert_eq!(
            s.verify_token(&t).unwrap(),
            Some(Scope::Account("a".into()))
        );
        assert_eq!(s.verify_token("nope").unwrap(), None);
        let admin = s.create_token(&Scope::Admin).unwrap();
        assert_eq!(s.verify_token(&admin).unwrap(), Some(Scope::Admin));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put(Kind::Account, "a", "a", json!({"name": "A"}), None)
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get(Kind::Account, "a", "a").unwrap().unwrap().rev, 1);
    }
}
