//! The schema and its versions (`callrec_schema`); instances starting at once migrate under an
//! advisory lock, one after the other; a database newer than this callrec is refused.

use super::*;

/// The schema version this callrec writes.
pub(super) const CURRENT: i32 = 4;

const SCHEMA_V1: &str = "
CREATE TABLE documents (
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    rev BIGINT NOT NULL,
    body TEXT NOT NULL,
    modified BIGINT NOT NULL,
    records BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (account_id, kind, id)
);
CREATE INDEX documents_sip ON documents (((body::jsonb) #>> '{sip,username}')) WHERE kind = 'device';
CREATE INDEX documents_records ON documents (records) WHERE records;
CREATE TABLE callflow_numbers (
    number TEXT NOT NULL,
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (number, account_id, id)
);
CREATE INDEX callflow_numbers_doc ON callflow_numbers (account_id, id);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    lookup TEXT NOT NULL,
    account_id TEXT,
    created BIGINT NOT NULL
);
CREATE INDEX tokens_lookup ON tokens (lookup);
CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    account_id TEXT,
    call_id TEXT NOT NULL,
    file_path TEXT NOT NULL,
    state TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL
);
CREATE INDEX recordings_account ON recordings (account_id, created_us);
CREATE INDEX recordings_call ON recordings (call_id);
CREATE INDEX recordings_path ON recordings (node, file_path text_pattern_ops);
CREATE INDEX recordings_state ON recordings (node, state, created_us);
CREATE INDEX recordings_created ON recordings (created_us);
CREATE TABLE deliveries (
    recording_id TEXT NOT NULL,
    node TEXT NOT NULL,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us BIGINT NOT NULL,
    since_us BIGINT NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    delivered_us BIGINT,
    PRIMARY KEY (recording_id, url, method)
);
CREATE INDEX deliveries_node_due ON deliveries (node, state, next_attempt_us);
";

/// Version 2: where each node's API answers, so a request for a recording another node records
/// reaches it.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY,
    api_url TEXT NOT NULL,
    seen_us BIGINT NOT NULL
);
";

/// Version 4: decision records, their outcomes, and the listing by caller or callee
/// (SQLite's version 7).
const SCHEMA_V4: &str = "
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    account_id TEXT,
    node TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    planned INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_call ON decisions (call_id, created_us);
CREATE INDEX IF NOT EXISTS decisions_account ON decisions (account_id, created_us);
CREATE INDEX IF NOT EXISTS decisions_created ON decisions (created_us);
CREATE INDEX IF NOT EXISTS decisions_caller ON decisions (account_id, caller, created_us);
CREATE INDEX IF NOT EXISTS decisions_callee ON decisions (account_id, callee, created_us);
CREATE TABLE IF NOT EXISTS decision_outcomes (
    call_id TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    event TEXT NOT NULL,
    recording_id TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS decision_outcomes_call ON decision_outcomes (call_id, at_us);
CREATE INDEX IF NOT EXISTS decision_outcomes_at ON decision_outcomes (at_us);
CREATE INDEX IF NOT EXISTS recordings_account_state ON recordings (account_id, state, created_us)
    WHERE state <> 'recording';
CREATE INDEX IF NOT EXISTS recordings_caller
    ON recordings (account_id, ((meta::jsonb) ->> 'caller_id_number'), created_us)
    WHERE state <> 'recording';
CREATE INDEX IF NOT EXISTS recordings_callee
    ON recordings (account_id, ((meta::jsonb) ->> 'callee_number'), created_us)
    WHERE state <> 'recording';
";

/// Version 3: the durable queue of webhook events (`store::webhooks`).
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS webhook_events (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    node TEXT NOT NULL,
    type TEXT NOT NULL,
    recording_id TEXT,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us BIGINT NOT NULL,
    since_us BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    claimed_by TEXT,
    claim_until_us BIGINT,
    last_status INTEGER,
    last_error TEXT,
    delivered_us BIGINT
);
CREATE INDEX IF NOT EXISTS webhook_events_due
    ON webhook_events (state, next_attempt_us, account_id, webhook_id);
CREATE INDEX IF NOT EXISTS webhook_events_hook
    ON webhook_events (account_id, webhook_id, state, next_attempt_us);
CREATE INDEX IF NOT EXISTS webhook_events_created ON webhook_events (created_us);
";

/// The advisory lock migrations run under (any fixed number; "callrec" in ASCII).
const MIGRATION_LOCK: i64 = 0x0063_616c_6c72_6563;

impl Pg {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            cached_execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS callrec_schema (version INTEGER NOT NULL)",
            )
            .await?;
            let version: i32 = cached_query_opt(&tx, "SELECT version FROM callrec_schema", &[])
                .await?
                .map(|r| r.get(0))
                .unwrap_or(0);
            if version > CURRENT {
                return Err(StoreError::Corrupt(format!(
                    "the database is at schema version {version}, newer than this callrec \
                     ({CURRENT}); run the newer callrec"
                )));
            }
            if version < 1 {
                tx.batch_execute(SCHEMA_V1).await?;
                cached_execute(&tx, "INSERT INTO callrec_schema (version) VALUES (1)", &[]).await?;
                tracing::info!(schema_version = 1, "database schema created");
            }
            if version < 2 {
                tx.batch_execute(SCHEMA_V2).await?;
                cached_execute(&tx, "UPDATE callrec_schema SET version = 2", &[]).await?;
                tracing::info!(
                    schema_version = 2,
                    "database schema migrated: nodes say where their API answers"
                );
            }
            if version < 3 {
                tx.batch_execute(SCHEMA_V3).await?;
                cached_execute(&tx, "UPDATE callrec_schema SET version = 3", &[]).await?;
                tracing::info!(
                    schema_version = 3,
                    "database schema migrated: webhook events queue"
                );
            }
            if version < 4 {
                tx.batch_execute(SCHEMA_V4).await?;
                cached_execute(&tx, "UPDATE callrec_schema SET version = 4", &[]).await?;
                tracing::info!(
                    schema_version = 4,
                    "database schema migrated: decision records"
                );
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
