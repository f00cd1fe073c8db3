//! The schema and its versions (`PRAGMA user_version`).
//!
//! - version 0 without tables: a new file, created at the current version;
//! - version 0 with a `documents` table: the first release's schema (documents keyed by
//!   `(kind, id)` with the account as a column an upsert rewrote; one method per recording).
//!   It is migrated in one transaction: every document keeps its account and is keyed by
//!   `(account, kind, id)`; deliveries get their method; tokens get their lookup prefix;
//! - version 2: the indexes of version 3 are added, then version 4's;
//! - version 3: version 4 adds what per-call lookups need to stay indexed: a `records` flag on
//!   each document (it mentions recording settings) and the `callflow_numbers` table (each
//!   callflow's numbers), both filled from the stored documents;
//! - version 4: version 5 gives every recording and delivery its node (`node_id`); rows
//!   from before belong to the default node, `callrec`, until `Store::for_node` names another;
//! - version 5: version 6 adds the webhook events' queue (`webhook_events`);
//! - [`CURRENT`]: nothing to do; a newer version is refused (a newer callrec wrote it).
//!
//! Invariant: a migration either completes or leaves the file as it was.

use rusqlite::{Connection, OptionalExtension};

use crate::store::StoreError;

pub const CURRENT: i64 = 7;

const SCHEMA: &str = "
CREATE TABLE documents (
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    rev INTEGER NOT NULL,
    body TEXT NOT NULL,
    modified INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, id)
);
CREATE INDEX documents_sip ON documents (kind, json_extract(body, '$.sip.username'));
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    lookup TEXT NOT NULL,
    account_id TEXT,
    created INTEGER NOT NULL
);
CREATE INDEX tokens_lookup ON tokens (lookup);
CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    call_id TEXT NOT NULL,
    file_path TEXT NOT NULL,
    state TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL
);
CREATE INDEX recordings_account ON recordings (account_id, created_us);
CREATE INDEX recordings_call ON recordings (call_id);
CREATE INDEX recordings_path ON recordings (file_path);
CREATE TABLE deliveries (
    recording_id TEXT NOT NULL,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    since_us INTEGER NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    delivered_us INTEGER,
    PRIMARY KEY (recording_id, url, method)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_us);
";

/// Version 3: the start-up and listing queries stay indexed with a million rows in the spool
/// (`WHERE state = 'recording'`, newest first).
const V3_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS recordings_state ON recordings (state, created_us);
CREATE INDEX IF NOT EXISTS recordings_created ON recordings (created_us);
";

/// Version 4: the planner's per-call questions ("does any document mention recording?", "which
/// account has a callflow for this number?") answered from an index, not a scan of every
/// document. The store keeps both in step with every document write.
const V4_LOOKUPS: &str = "
ALTER TABLE documents ADD COLUMN records INTEGER NOT NULL DEFAULT 0;
UPDATE documents SET records = (instr(body, '\"record_call\"') > 0 OR instr(body, '\"call_recording\"') > 0);
CREATE INDEX documents_records ON documents (records) WHERE records = 1;
CREATE TABLE callflow_numbers (
    number TEXT NOT NULL,
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (number, account_id, id)
);
INSERT OR IGNORE INTO callflow_numbers (number, account_id, id)
    SELECT n.value, d.account_id, d.id FROM documents d, json_each(d.body, '$.numbers') n
    WHERE d.kind = 'callflow' AND n.type = 'text';
";

/// Version 5: recordings and deliveries belong to a node; claims are indexed per node; `owner`
/// names the node the file's rows were last given to (so opening it again changes nothing).
const V5_NODES: &str = "
CREATE TABLE owner (node TEXT NOT NULL);
INSERT INTO owner (node) VALUES ('callrec');
ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT 'callrec';
ALTER TABLE deliveries ADD COLUMN node TEXT NOT NULL DEFAULT 'callrec';
DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX deliveries_node_due ON deliveries (node, state, next_attempt_us);
";

/// Version 6: the durable queue of webhook events ([`crate::store::webhooks`]).
pub(super) const V6_WEBHOOKS: &str = "
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    node TEXT NOT NULL,
    type TEXT NOT NULL,
    recording_id TEXT,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    since_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    claimed_by TEXT,
    claim_until_us INTEGER,
    last_status INTEGER,
    last_error TEXT,
    delivered_us INTEGER
);
CREATE INDEX webhook_events_due ON webhook_events (state, next_attempt_us, account_id, webhook_id);
CREATE INDEX webhook_events_hook ON webhook_events (account_id, webhook_id, state, next_attempt_us);
CREATE INDEX webhook_events_created ON webhook_events (created_us);
";

/// Version 7: the console's questions. Every call's decision record and what became of its
/// recordings ([`crate::store::decisions`]); the recordings listing filtered by state, caller or callee
/// stays indexed at a million rows. The listing's indexes leave out recordings still recording
/// (partial): the journal row a call writes before FreeSWITCH records costs them nothing (with
/// them it did: answer → `uuid_record` p99 +1.5 ms in the load bench); a kept recording enters
/// them when it is kept.
pub(super) const V7_DECISIONS: &str = "
CREATE TABLE decisions (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    account_id TEXT,
    node TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    planned INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX decisions_call ON decisions (call_id, created_us);
CREATE INDEX decisions_account ON decisions (account_id, created_us);
CREATE INDEX decisions_created ON decisions (created_us);
CREATE INDEX decisions_caller ON decisions (account_id, caller, created_us);
CREATE INDEX decisions_callee ON decisions (account_id, callee, created_us);
CREATE TABLE decision_outcomes (
    call_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    event TEXT NOT NULL,
    recording_id TEXT,
    reason TEXT
);
CREATE INDEX decision_outcomes_call ON decision_outcomes (call_id, at_us);
CREATE INDEX decision_outcomes_at ON decision_outcomes (at_us);
CREATE INDEX recordings_account_state ON recordings (account_id, state, created_us)
    WHERE state != 'recording';
CREATE INDEX recordings_caller
    ON recordings (account_id, json_extract(meta, '$.caller_id_number'), created_us)
    WHERE state != 'recording';
CREATE INDEX recordings_callee
    ON recordings (account_id, json_extract(meta, '$.callee_number'), created_us)
    WHERE state != 'recording';
";

/// From the first release's tables (renamed to `*_v1`) into [`SCHEMA`].
const FROM_V1: &str = "
INSERT INTO documents (account_id, kind, id, rev, body, modified)
    SELECT account_id, kind, id, rev, body, modified FROM documents_v1;
INSERT INTO tokens (hash, lookup, account_id, created)
    SELECT hash, substr(hash, 1, 16), account_id, created FROM tokens_v1;
INSERT INTO deliveries (recording_id, url, method, state, attempts, next_attempt_us, since_us,
                        last_error, last_status, delivered_us)
    SELECT d.recording_id, d.url, coalesce(json_extract(r.meta, '$.method'), 'put'), d.state,
           d.attempts, d.next_attempt_us, d.since_us, d.last_error, d.last_status, d.delivered_us
    FROM deliveries_v1 d LEFT JOIN recordings_v1 r ON r.id = d.recording_id;
INSERT INTO recordings (id, account_id, call_id, file_path, state, meta, created_us, updated_us)
    SELECT id, account_id, call_id, coalesce(json_extract(meta, '$.file_path'), ''), state,
           json_set(json_remove(meta, '$.urls', '$.method'), '$.destinations', json((
               SELECT json_group_array(json_object(
                   'url', u.value,
                   'method', coalesce(json_extract(r.meta, '$.method'), 'put')))
               FROM json_each(r.meta, '$.urls') u))),
           created_us, updated_us
    FROM recordings_v1 r;
DROP TABLE documents_v1;
DROP TABLE tokens_v1;
DROP TABLE deliveries_v1;
DROP TABLE recordings_v1;
";

fn has_table(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Brings the file to [`CURRENT`].
pub fn run(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == CURRENT {
        return Ok(());
    }
    if version > CURRENT {
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {version}, newer than this callrec ({CURRENT}); \
             run the newer callrec or restore a backup"
        )));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if version >= 2 {
        if version < 3 {
            tx.execute_batch(V3_INDEXES)?;
        }
        if version < 4 {
            tx.execute_batch(V4_LOOKUPS)?;
        }
        if version < 5 {
            tx.execute_batch(V5_NODES)?;
        }
        if version < 6 {
            tx.execute_batch(V6_WEBHOOKS)?;
        }
        tx.execute_batch(V7_DECISIONS)?;
        tracing::info!(
            from_version = version,
            schema_version = CURRENT,
            "store migrated: spool queries indexed; per-call document lookups indexed; recordings carry their node; webhook events queue; decision records"
        );
    } else if has_table(&tx, "documents")? {
        let docs: i64 = tx.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))?;
        for t in ["documents", "tokens", "deliveries", "recordings"] {
            tx.execute_batch(&format!("ALTER TABLE {t} RENAME TO {t}_v1"))?;
        }
        for i in [
            "documents_account",
            "recordings_account",
            "recordings_call",
            "deliveries_due",
        ] {
            tx.execute_batch(&format!("DROP INDEX IF EXISTS {i}"))?;
        }
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(V3_INDEXES)?;
        tx.execute_batch(FROM_V1)?;
        tx.execute_batch(V4_LOOKUPS)?;
        tx.execute_batch(V5_NODES)?;
        tx.execute_batch(V6_WEBHOOKS)?;
        tx.execute_batch(V7_DECISIONS)?;
        tracing::info!(
            documents = docs,
            schema_version = CURRENT,
            "store migrated: documents are now keyed by account, deliveries carry their method"
        );
    } else {
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(V3_INDEXES)?;
        tx.execute_batch(V4_LOOKUPS)?;
        tx.execute_batch(V5_NODES)?;
        tx.execute_batch(V6_WEBHOOKS)?;
        tx.execute_batch(V7_DECISIONS)?;
    }
    tx.pragma_update(None, "user_version", CURRENT)?;
    tx.commit()?;
    Ok(())
}

/// The first release's schema (for the migration tests and [`crate::store::scratch`]).
pub(in crate::store) const V1_SCHEMA: &str = "
CREATE TABLE documents (kind TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL,
    rev INTEGER NOT NULL, body TEXT NOT NULL, modified INTEGER NOT NULL, PRIMARY KEY (kind, id));
CREATE INDEX documents_account ON documents (account_id, kind);
CREATE TABLE recordings (id TEXT PRIMARY KEY, account_id TEXT, call_id TEXT NOT NULL,
    state TEXT NOT NULL, meta TEXT NOT NULL, created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL);
CREATE INDEX recordings_account ON recordings (account_id, created_us);
CREATE INDEX recordings_call ON recordings (call_id);
CREATE TABLE deliveries (recording_id TEXT NOT NULL, url TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_us INTEGER NOT NULL, since_us INTEGER NOT NULL,
    last_error TEXT, last_status INTEGER, delivered_us INTEGER, PRIMARY KEY (recording_id, url));
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_us);
CREATE TABLE tokens (hash TEXT PRIMARY KEY, account_id TEXT, created INTEGER NOT NULL);
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::documents::Expect;
    use crate::store::{Kind, RecordingState, Revision, Scope, Store};
    use crate::values::UploadMethod;
    use serde_json::{json, Value};

    /// A `callrec.db` as the first release left it: two accounts' documents, a token, a
    /// recording with a POST delivery.
    fn v1_file(dir: &std::path::Path) -> String {
        let c = Connection::open(dir.join("callrec.db")).unwrap();
        c.execute_batch(V1_SCHEMA).unwrap();
        c.execute_batch(
            "INSERT INTO documents VALUES ('account', 'A', 'A', 1, '{\"id\":\"A\"}', 0);
             INSERT INTO documents VALUES ('account', 'B', 'B', 1, '{\"id\":\"B\"}', 0);
             INSERT INTO documents VALUES ('user', 'u1', 'B', 3, '{\"id\":\"u1\",\"first_name\":\"Bob\"}', 0);
             INSERT INTO recordings VALUES ('r1', 'B', 'c1', 'pending',
               '{\"recording_id\":\"r1\",\"file_path\":\"/d/r1.wav\",\"urls\":[\"http://x/\"],\"method\":\"post\"}', 1, 1);
             INSERT INTO deliveries VALUES ('r1', 'http://x/', 'pending', 2, 5, 1, 'e', 500, NULL);",
        )
        .unwrap();
        let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        c.execute(
            "INSERT INTO tokens VALUES (?1, 'B', 0)",
            [crate::store::tokens::tests_hash(secret)],
        )
        .unwrap();
        secret.to_string()
    }

    #[tokio::test]
    async fn first_release_files_are_migrated_keeping_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let secret = v1_file(dir.path());
        let s = Store::open(dir.path()).unwrap();
        let u = s.get(Kind::User, "B", "u1").await.unwrap().unwrap();
        assert_eq!((u.rev, &u.body["first_name"]), (Revision(3), &json!("Bob")));
        assert!(s.get(Kind::User, "A", "u1").await.unwrap().is_none());
        // The bug the migration ends: account A writing "u1" no longer takes B's document.
        s.put(
            Kind::User,
            "A",
            "u1",
            json!({"first_name": "Mallory"}),
            Expect::Any,
        )
        .await
        .unwrap();
        assert_eq!(
            s.get(Kind::User, "B", "u1").await.unwrap().unwrap().body,
            u.body
        );
        assert_eq!(
            s.verify_token(&secret).await.unwrap(),
            Some(Scope::Account("B".into()))
        );
        let r = s.recording::<Value>("r1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordingState::Pending);
        assert_eq!(
            r.meta["destinations"],
            json!([{"url": "http://x/", "method": "post"}])
        );
        assert!(r.meta.get("urls").is_none());
        let d = &r.deliveries[0];
        assert_eq!(
            (d.method, d.attempts, d.last_status),
            (UploadMethod::Post, 2, Some(500))
        );
        assert!(s.has_recording_path("/d/r1.wav").await.unwrap());
        drop(s);
        // Opening again finds the current version: nothing to do.
        let s = Store::open(dir.path()).unwrap();
        assert!(s.get(Kind::User, "B", "u1").await.unwrap().is_some());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("callrec.db")).unwrap();
        c.pragma_update(None, "user_version", CURRENT + 1).unwrap();
        drop(c);
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("newer than this callrec"), "{e}");
    }

    #[test]
    fn a_version_2_file_gains_the_spool_indexes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join("callrec.db")).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.pragma_update(None, "user_version", 2).unwrap();
        }
        let _s = crate::store::Store::open(dir.path()).unwrap();
        let c = Connection::open(dir.path().join("callrec.db")).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT);
        for i in ["recordings_state", "recordings_created"] {
            assert!(
                c.query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1",
                    [i],
                    |_| Ok(())
                )
                .is_ok(),
                "{i}"
            );
        }
        // The start-up query uses it rather than scanning the table.
        let plan: String = c
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id, meta FROM recordings WHERE state = 'recording' ORDER BY created_us",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("recordings_state"), "{plan}");
    }

    #[tokio::test]
    async fn a_version_3_file_gains_the_per_call_lookups_filled_from_its_documents() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join("callrec.db")).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute_batch(V3_INDEXES).unwrap();
            c.execute_batch(
                r#"INSERT INTO documents (account_id, kind, id, rev, body, modified) VALUES
                   ('a', 'callflow', 'cf', 1, '{"numbers":["100","200"],"flow":{"module":"device"}}', 0),
                   ('b', 'user', 'u', 1, '{"record_call":{"format":"wav"}}', 0)"#,
            )
            .unwrap();
            c.pragma_update(None, "user_version", 3).unwrap();
        }
        let s = crate::store::Store::open(dir.path()).unwrap();
        assert_eq!(s.accounts_with_number("200").await.unwrap(), ["a"]);
        assert!(s.any_recording_settings().await.unwrap());
        s.put(
            crate::store::Kind::User,
            "b",
            "u",
            serde_json::json!({"first_name": "Bo"}),
            crate::store::documents::Expect::Any,
        )
        .await
        .unwrap();
        assert!(!s.any_recording_settings().await.unwrap());
        let c = Connection::open(dir.path().join("callrec.db")).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT);
    }

    #[tokio::test]
    async fn a_version_4_file_gives_its_recordings_to_the_node_that_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join("callrec.db")).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute_batch(V3_INDEXES).unwrap();
            c.execute_batch(V4_LOOKUPS).unwrap();
            c.execute_batch(
                "INSERT INTO recordings VALUES ('r1', 'acc', 'c1', '/d/r1.wav', 'pending', '{}', 1, 1);
                 INSERT INTO deliveries (recording_id, url, method, state, attempts, next_attempt_us, since_us)
                   VALUES ('r1', 'http://x/', 'put', 'pending', 0, 1, 1);",
            )
            .unwrap();
            c.pragma_update(None, "user_version", 4).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let r = s.recording::<Value>("r1").await.unwrap().unwrap();
        assert_eq!(r.node, "callrec", "the default node until one is named");
        let s = s.for_node("fs-7").await.unwrap();
        assert_eq!(
            s.recording::<Value>("r1").await.unwrap().unwrap().node,
            "fs-7"
        );
        let claims: Vec<crate::store::recordings::Claim<Value>> =
            s.claim_due(crate::store::now_us(), 10).await.unwrap();
        assert_eq!(claims.len(), 1, "its deliveries are the node's too");
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.node(), "fs-7", "the file speaks for its last owner");
    }
}
