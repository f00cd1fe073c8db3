//! The PostgreSQL backend: the same documents, tokens and recordings as the SQLite file, in one
//! database that the callrec instances of several FreeSWITCH nodes share.
//!
//! Calls block like the SQLite backend's: each runs its future on this backend's own small
//! runtime (the pool's connections live there), so a caller inside another runtime, or none,
//! waits without stalling anything but itself. The pool gives up on a connection after
//! [`CONNECT_TIMEOUT`]: an unreachable database is an error ([`StoreError::Unreachable`]), never
//! a hang.
//!
//! After a call finds the database unreachable, calls fail at once for [`DOWN_FOR`] (no caller
//! waits out the connect timeout again and again); the first call after that tries again. While
//! it is down, the planner's lookups answer from what they last read ([`Seen`]), and recordings
//! go to the node's local journal (`fallback`).
//!
//! Schema versions live in `callrec_schema`; instances starting at once migrate under an
//! advisory lock, one after the other.
//!
//! Invariants (as the SQLite backend's, plus): a claim takes rows with `FOR UPDATE SKIP LOCKED`,
//! so two workers never hold the same delivery; every claim, recovery and orphan lookup names
//! the node; a node is held by at most one live instance ([`Pg::hold_node`]).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use serde_json::Value;
use tokio_postgres::config::SslMode;
use tokio_postgres::{NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::documents::{mentions_recording, numbers_of, row_to_doc, Doc, Expect, Kind, Revision};
use super::fallback::Moved;
use super::recordings::{Filter, Outcome, RawClaim, RawDelivery, RawNew, RawRecording};
use super::{RecordingState, StoreError};
use crate::values::Destination;

/// How long the pool waits for a connection to the database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// After the database was found unreachable, how long calls fail at once without trying.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// Lookups remembered for an outage at most (then the memory starts again, empty).
const SEEN_MAX: usize = 50_000;

/// What a planner lookup last read, answered while the database is down.
#[derive(Clone)]
enum Seen {
    Doc(Option<Doc>),
    Docs(Vec<Doc>),
    Names(Vec<String>),
    Flag(bool),
}

/// A lookup's result, as remembered in [`Seen`].
trait Memo: Sized {
    fn seen(&self) -> Seen;
    fn from_seen(s: Seen) -> Option<Self>;
}

macro_rules! memo {
    ($t:ty, $v:ident) => {
        impl Memo for $t {
            fn seen(&self) -> Seen {
                Seen::$v(self.clone())
            }
            fn from_seen(s: Seen) -> Option<Self> {
                match s {
                    Seen::$v(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

memo!(Option<Doc>, Doc);
memo!(Vec<Doc>, Docs);
memo!(Vec<String>, Names);
memo!(bool, Flag);

/// The schema version this callrec writes.
pub const CURRENT: i32 = 1;

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

/// The advisory lock migrations run under (any fixed number; "callrec" in ASCII).
const MIGRATION_LOCK: i64 = 0x0063_616c_6c72_6563;

/// The backend's runtime, shut down without waiting when the last handle goes (dropping a
/// runtime the ordinary way inside another one's task would panic). Used through [`Pg::rt`].
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Connects and tries the advisory lock of `node`: `Some` (resolving when that connection ends,
/// which releases the lock) when this connection holds it, `None` when another does.
async fn lock_node(
    mut config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    node: &str,
) -> Result<Option<tokio::sync::oneshot::Receiver<()>>, StoreError> {
    config.connect_timeout(CONNECT_TIMEOUT);
    let client = match tls {
        Some(t) => {
            let (client, conn) = config.connect(t).await.map_err(down)?;
            (client, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
        None => {
            let (client, conn) = config.connect(NoTls).await.map_err(down)?;
            (client, tokio::spawn(async move { conn.await.map(|_| ()) }))
        }
    };
    let (client, conn) = client;
    let held: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended('callrec-node:' || $1, 0))",
            &[&node],
        )
        .await?
        .get(0);
    if !held {
        return Ok(None); // dropping the client ends the session
    }
    let (ended, done) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // The session, and with it the lock, lasts as long as this client and its connection.
        let _client = client;
        let _ = conn.await;
        let _ = ended.send(());
    });
    Ok(Some(done))
}

/// The TLS connector for `sslmode=require`: the server's certificate is verified against the
/// web PKI's roots and, when given, the CA certificates of `ca_file` (PEM; a private CA). Other
/// modes connect in plain text (`prefer` does not try TLS: a server's self-signed certificate
/// would fail verification).
fn tls_for(
    config: &tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, StoreError> {
    if config.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Unreachable(format!("database_ca_file {}: {e}", path.display()))
        };
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
        for cert in certs {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unreachable(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(tls)))
}

/// A handle on the shared database; clone freely.
#[derive(Clone)]
pub struct Pg {
    /// Kept for its lifetime: the last handle's drop shuts the runtime down.
    _own: Arc<OwnRuntime>,
    rt: tokio::runtime::Handle,
    pool: Pool,
    /// The connection holding this instance's node lock, once taken.
    config: tokio_postgres::Config,
    /// With `sslmode=require`: the verifying TLS connector.
    tls: Option<MakeRustlsConnect>,
    /// Until when (µs since the epoch) the database counts as unreachable.
    down_until: Arc<AtomicU64>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

/// Whether an error means the database could not be reached or the connection broke (class 08,
/// connection exception, or 57P0x, the server shutting down or starting), not that a statement
/// was wrong.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P0")
        }
        None => {
            e.as_db_error().is_none()
                && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// An unreachable database, with every cause in the error's chain (a pool's "cannot create"
/// names the TLS or network failure only in its sources).
fn down(e: impl std::error::Error) -> StoreError {
    StoreError::Unreachable(crate::telemetry::error_chain(&e))
}

fn revision(rev: i64) -> Revision {
    Revision(rev as u64)
}

impl Pg {
    /// Connects, checks the database answers, and migrates it.
    pub(super) fn connect(url: &str, ca_file: Option<&Path>) -> Result<Pg, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unreachable(format!("database_url: {e}")))?;
        let tls = tls_for(&config, ca_file)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("callrec-pg")
            .enable_all()
            .build()
            .map_err(down)?;
        let mut cfg = config.clone();
        cfg.connect_timeout(CONNECT_TIMEOUT);
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(t) => Manager::from_config(cfg, t.clone(), mc),
            None => Manager::from_config(cfg, NoTls, mc),
        };
        let pool = {
            let _g = rt.enter();
            Pool::builder(manager)
                .max_size(16)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .timeouts(Timeouts {
                    wait: Some(CONNECT_TIMEOUT),
                    create: Some(CONNECT_TIMEOUT),
                    recycle: Some(CONNECT_TIMEOUT),
                })
                .build()
                .map_err(down)?
        };
        let pg = Pg {
            rt: rt.handle().clone(),
            _own: Arc::new(OwnRuntime(Some(rt))),
            pool,
            config,
            tls,
            down_until: Arc::new(AtomicU64::new(0)),
            seen: Arc::new(Mutex::new(HashMap::new())),
        };
        pg.migrate()?;
        Ok(pg)
    }

    /// Runs `fut` to completion on this backend's runtime, blocking the caller; fails at once
    /// while the database counts as down.
    fn run<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let now = super::now_us();
        if now < self.down_until.load(Ordering::Acquire) {
            return Err(StoreError::Unreachable(
                "the database did not answer a moment ago".into(),
            ));
        }
        let r = {
            let _g = self.rt.enter();
            // Unconstrained: a caller that is itself a tokio task has a cooperative budget that
            // only refills when it yields, which a blocked thread never does.
            futures::executor::block_on(tokio::task::unconstrained(fut))
        };
        let r = match r {
            Err(StoreError::Postgres(e)) if connection_lost(&e) => {
                Err(StoreError::Unreachable(e.to_string()))
            }
            other => other,
        };
        if matches!(r, Err(StoreError::Unreachable(_))) {
            self.down_until.store(
                super::now_us() + DOWN_FOR.as_micros() as u64,
                Ordering::Release,
            );
        }
        r
    }

    /// `r` remembered under `key`; when the database is unreachable, what was remembered.
    fn remembered<T: Memo>(&self, key: String, r: Result<T, StoreError>) -> Result<T, StoreError> {
        let Ok(mut seen) = self.seen.lock() else {
            return r;
        };
        match r {
            Ok(v) => {
                if seen.len() >= SEEN_MAX {
                    seen.clear();
                }
                seen.insert(key, v.seen());
                Ok(v)
            }
            Err(StoreError::Unreachable(e)) => match seen.get(&key).cloned().and_then(T::from_seen)
            {
                Some(v) => Ok(v),
                None => Err(StoreError::Unreachable(e)),
            },
            Err(e) => Err(e),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(down)
    }

    fn migrate(&self) -> Result<(), StoreError> {
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
                tracing::info!(schema_version = CURRENT, "database schema created");
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Takes the session-level advisory lock of `node` on a connection of its own, kept open
    /// for as long as this handle lives. Another live instance holding it is an error. When
    /// that connection breaks (the database restarted, the network failed), the lock is taken
    /// again in the background once the database answers.
    pub(super) fn hold_node(&self, node: &str) -> Result<(), StoreError> {
        let (config, tls, n) = (self.config.clone(), self.tls.clone(), node.to_string());
        let held = self.run(async move { lock_node(config, tls, &n).await })?;
        let Some(done) = held else {
            return Err(StoreError::Corrupt(format!(
                "node_id {node:?} is held by another running callrec on this database; \
                 every instance needs its own node_id"
            )));
        };
        let (config, tls, node) = (self.config.clone(), self.tls.clone(), node.to_string());
        self.rt.spawn(async move {
            let mut done = done;
            loop {
                let _ = done.await;
                tracing::warn!(node_id = %node, "lost the database connection holding this node; taking it again when the database answers");
                loop {
                    tokio::time::sleep(DOWN_FOR).await;
                    match lock_node(config.clone(), tls.clone(), &node).await {
                        Ok(Some(d)) => {
                            tracing::info!(node_id = %node, "node held again");
                            done = d;
                            break;
                        }
                        Ok(None) => tracing::error!(node_id = %node, "another callrec took this node_id while the database was unreachable"),
                        Err(_) => {}
                    }
                }
            }
        });
        Ok(())
    }

    pub(super) fn check_writable(&self) -> Result<(), StoreError> {
        self.run(async {
            let c = self.client().await?;
            let ro: String = cached_query_one(&c, "SHOW transaction_read_only", &[])
                .await?
                .get(0);
            if ro == "on" {
                return Err(StoreError::Corrupt(
                    "the database is read-only (a standby?)".into(),
                ));
            }
            Ok(())
        })
    }
}

// --- statements ------------------------------------------------------------------------------
//
// Every statement is prepared once per connection (deadpool's statement cache), so each one
// afterwards costs one round trip, not two.

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

async fn cached_query<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, p).await
}

async fn cached_query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Option<Row>, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, p).await
}

async fn cached_query_one<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Row, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.query_one(&st, p).await
}

async fn cached_execute<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<u64, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, p).await
}

// --- documents -------------------------------------------------------------------------------

/// A document from its `id, rev, body` columns, starting at column `i`.
fn doc_of(kind: Kind, account: String, r: &Row, i: usize) -> Result<Doc, StoreError> {
    row_to_doc(kind, account, r.get(i), r.get(i + 1), r.get(i + 2))
}

impl Pg {
    pub(super) fn get(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
    ) -> Result<Option<Doc>, StoreError> {
        let r = self.get_now(kind, account_id, id);
        let key = format!("get\0{}\0{account_id}\0{id}", kind.as_str());
        self.remembered(key, r)
    }

    fn get_now(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError> {
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
    }

    pub(super) fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        let r = self.list_now(kind, account_id);
        let key = format!("list\0{}\0{account_id}", kind.as_str());
        self.remembered(key, r)
    }

    fn list_now(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
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
    }

    pub(super) fn all_documents(&self) -> Result<Vec<Doc>, StoreError> {
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
                    doc_of(super::documents::parse_kind(&kind)?, r.get(0), r, 2)
                })
                .collect()
        })
    }

    pub(super) fn put(
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
                    &super::now_s(),
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
    }

    pub(super) fn delete(
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
            if let Some(want) = expect {
                if cur != want.0 as i64 {
                    return Err(StoreError::Conflict {
                        current: cur.to_string(),
                    });
                }
            }
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
    }

    pub(super) fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        let r = self.accounts_with_number_now(number);
        self.remembered(format!("number\0{number}"), r)
    }

    fn accounts_with_number_now(&self, number: &str) -> Result<Vec<String>, StoreError> {
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
    }

    pub(super) fn any_recording_settings(&self) -> Result<bool, StoreError> {
        let r = self.any_recording_settings_now();
        self.remembered("records".into(), r)
    }

    fn any_recording_settings_now(&self) -> Result<bool, StoreError> {
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
    }

    pub(super) fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        let r = self.devices_by_sip_username_now(account_id, username);
        let key = format!("sip\0{}\0{username}", account_id.unwrap_or("\u{1}"));
        self.remembered(key, r)
    }

    fn devices_by_sip_username_now(
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

// --- tokens ----------------------------------------------------------------------------------

impl Pg {
    pub(super) fn create_token(
        &self,
        hash: &str,
        lookup: &str,
        account: Option<&str>,
        created: i64,
    ) -> Result<(), StoreError> {
        self.run(async {
            let c = self.client().await?;
            cached_execute(
                &c,
                "INSERT INTO tokens (hash, lookup, account_id, created) VALUES ($1, $2, $3, $4)",
                &[&hash, &lookup, &account, &created],
            )
            .await?;
            Ok(())
        })
    }

    pub(super) fn token_candidates(
        &self,
        lookup: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT hash, account_id FROM tokens WHERE lookup = $1",
                &[&lookup],
            )
            .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

// --- recordings ------------------------------------------------------------------------------

/// Recomputes a recording's state from its deliveries and returns it (one statement).
async fn refresh(c: &impl GenericClient, id: &str) -> Result<RecordingState, StoreError> {
    let row = cached_query_opt(
        c,
        "UPDATE recordings r SET updated_us = $2, state = CASE
             WHEN d.total = 0 THEN 'stored' WHEN d.uploading > 0 THEN 'uploading'
             WHEN d.pending > 0 THEN 'pending' WHEN d.failed > 0 THEN 'failed'
             ELSE 'delivered' END
         FROM (SELECT COUNT(*) AS total,
                      COUNT(*) FILTER (WHERE state = 'pending') AS pending,
                      COUNT(*) FILTER (WHERE state = 'uploading') AS uploading,
                      COUNT(*) FILTER (WHERE state = 'failed') AS failed
               FROM deliveries WHERE recording_id = $1) d
         WHERE r.id = $1 RETURNING r.state",
        &[&id, &(super::now_us() as i64)],
    )
    .await?;
    let state: String = match row {
        Some(r) => r.get(0),
        None => return Ok(RecordingState::Stored),
    };
    RecordingState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))
}

/// [`refresh`] for each recording named in `ids` (once each, duplicates allowed).
async fn refresh_each(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if seen.insert(id) {
            refresh(c, id).await?;
        }
    }
    Ok(())
}

async fn put_recording(
    c: &impl GenericClient,
    node: &str,
    rec: &RawNew<'_>,
    state: RecordingState,
    now: i64,
) -> Result<(), StoreError> {
    cached_execute(
        c,
        "INSERT INTO recordings
         (id, node, account_id, call_id, file_path, state, meta, created_us, updated_us)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (id) DO UPDATE SET node = $2, account_id = $3, call_id = $4,
           file_path = $5, state = $6, meta = $7, created_us = $8, updated_us = $8",
        &[
            &rec.id,
            &node,
            &rec.account_id,
            &rec.call_id,
            &rec.file_path,
            &state.as_str(),
            &rec.meta,
            &now,
        ],
    )
    .await?;
    // A replaced row starts again without deliveries, as SQLite's INSERT OR REPLACE leaves it.
    cached_execute(
        c,
        "DELETE FROM deliveries WHERE recording_id = $1",
        &[&rec.id],
    )
    .await?;
    Ok(())
}

async fn deliveries(c: &impl GenericClient, id: &str) -> Result<Vec<RawDelivery>, StoreError> {
    let rows = cached_query(c,
            "SELECT url, method, state, attempts, next_attempt_us, last_error, last_status,
                    delivered_us
             FROM deliveries WHERE recording_id = $1 ORDER BY url COLLATE \"C\", method COLLATE \"C\"",
            &[&id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RawDelivery {
            url: r.get(0),
            method: r.get(1),
            state: r.get(2),
            attempts: i64::from(r.get::<_, i32>(3)),
            next: r.get(4),
            last_error: r.get(5),
            last_status: r.get::<_, Option<i32>>(6).map(i64::from),
            delivered: r.get(7),
        })
        .collect())
}

/// A recording from its `id, node, state, created_us, updated_us, meta` columns.
async fn recording_of(c: &impl GenericClient, r: &Row) -> Result<RawRecording, StoreError> {
    let id: String = r.get(0);
    Ok(RawRecording {
        node: r.get(1),
        state: r.get(2),
        created: r.get(3),
        updated: r.get(4),
        meta: r.get(5),
        deliveries: deliveries(c, &id).await?,
    })
}

fn status_of(s: &Option<u16>) -> Option<i32> {
    s.map(i32::from)
}

impl Pg {
    pub(super) fn add_recording(
        &self,
        node: &str,
        rec: &RawNew<'_>,
        now: i64,
    ) -> Result<RecordingState, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            put_recording(&tx, node, rec, RecordingState::Stored, now).await?;
            for d in rec.destinations {
                cached_execute(
                    &tx,
                    "INSERT INTO deliveries
                     (recording_id, node, url, method, state, attempts, next_attempt_us, since_us)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) ON CONFLICT DO NOTHING",
                    &[&rec.id, &node, &d.url, &d.method.as_str(), &now],
                )
                .await?;
            }
            let state = refresh(&tx, rec.id).await?;
            tx.commit().await?;
            Ok(state)
        })
    }

    pub(super) fn journal_recording(
        &self,
        node: &str,
        rec: &RawNew<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            put_recording(&tx, node, rec, RecordingState::Recording, now).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub(super) fn forget_recording(&self, id: &str) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.client().await?;
            Ok(cached_execute(
                &c,
                "DELETE FROM recordings WHERE id = $1 AND state = 'recording'",
                &[&id],
            )
            .await?
                > 0)
        })
    }

    pub(super) fn journaled(&self, node: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT id, meta FROM recordings WHERE node = $1 AND state = 'recording'
                     ORDER BY created_us",
                &[&node],
            )
            .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    pub(super) fn mentioning_since(
        &self,
        node: &str,
        since_us: i64,
        needle: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT id, meta FROM recordings
                     WHERE created_us >= $2 AND node = $1 AND strpos(meta, $3) > 0
                     ORDER BY created_us",
                &[&node, &since_us, &needle],
            )
            .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    pub(super) fn recover_deliveries(&self, node: &str) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let ids: Vec<String> = cached_query(
                &tx,
                "UPDATE deliveries SET state = 'pending' WHERE node = $1 AND state = 'uploading'
                     RETURNING recording_id",
                &[&node],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            refresh_each(&tx, &ids).await?;
            tx.commit().await?;
            Ok(ids.len())
        })
    }

    pub(super) fn claim_due(
        &self,
        node: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<RawClaim>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            // One statement: rows another worker holds are skipped, not waited for (each
            // claim is one worker's alone); a recording with a delivery `uploading` is
            // `uploading` whatever its others are, so its state is set, not recomputed.
            let rows = cached_query(
                &c,
                "WITH due AS (
                     SELECT recording_id, url, method FROM deliveries
                     WHERE node = $1 AND state = 'pending' AND next_attempt_us <= $2
                     ORDER BY next_attempt_us LIMIT $3
                     FOR UPDATE SKIP LOCKED),
                 claimed AS (
                     UPDATE deliveries d SET state = 'uploading' FROM due
                     WHERE d.recording_id = due.recording_id AND d.url = due.url
                       AND d.method = due.method
                     RETURNING d.recording_id, d.url, d.method, d.attempts, d.since_us,
                               d.next_attempt_us),
                 marked AS (
                     UPDATE recordings SET state = 'uploading', updated_us = $4
                     WHERE id IN (SELECT recording_id FROM claimed))
                 SELECT c.recording_id, c.url, c.method, c.attempts, c.since_us, r.meta,
                        c.next_attempt_us
                 FROM claimed c JOIN recordings r ON r.id = c.recording_id
                 ORDER BY c.next_attempt_us",
                &[&node, &now, &limit, &(super::now_us() as i64)],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| RawClaim {
                    url: r.get(1),
                    method: r.get(2),
                    attempts: i64::from(r.get::<_, i32>(3)),
                    since: r.get(4),
                    meta: r.get(5),
                })
                .collect())
        })
    }

    pub(super) fn next_due(&self, node: &str) -> Result<Option<u64>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let v: Option<i64> = cached_query_one(
                &c,
                "SELECT MIN(next_attempt_us) FROM deliveries WHERE node = $1 AND state = 'pending'",
                &[&node],
            )
            .await?
            .get(0);
            Ok(v.map(|v| v as u64))
        })
    }

    pub(super) fn settle(
        &self,
        id: &str,
        dest: &Destination,
        outcome: &Outcome,
    ) -> Result<RecordingState, StoreError> {
        let (url, method) = (dest.url.as_str(), dest.method.as_str());
        let now = super::now_us() as i64;
        // One statement (so one round trip, atomically): the delivery's update, and the
        // recording's state from its deliveries as they are after it (the statement's snapshot
        // predates the update, so the settled delivery counts with its new state, `$4`).
        const STATE: &str = "
             counts AS (
                 SELECT COUNT(*) AS total,
                        COUNT(*) FILTER (WHERE s = 'pending') AS pending,
                        COUNT(*) FILTER (WHERE s = 'uploading') AS uploading,
                        COUNT(*) FILTER (WHERE s = 'failed') AS failed
                 FROM (SELECT CASE WHEN url = $2 AND method = $3 THEN $4 ELSE state END AS s
                       FROM deliveries WHERE recording_id = $1) x)
             UPDATE recordings r SET updated_us = $5, state = CASE
                 WHEN c.total = 0 THEN 'stored' WHEN c.uploading > 0 THEN 'uploading'
                 WHEN c.pending > 0 THEN 'pending' WHEN c.failed > 0 THEN 'failed'
                 ELSE 'delivered' END
             FROM counts c WHERE r.id = $1 RETURNING r.state";
        // The outcome's columns: the new state, and what it leaves of the last attempt
        // (`$8`, the next attempt, only for a retry; `$9`, when delivered, only for a delivery).
        let (state, status, error, next, delivered) = match outcome {
            Outcome::Delivered { status } => ("delivered", Some(*status), None, None, Some(now)),
            Outcome::Retry {
                next_us,
                error,
                status,
            } => (
                "pending",
                *status,
                Some(error.as_str()),
                Some(*next_us as i64),
                None,
            ),
            Outcome::Failed { error, status } => {
                ("failed", *status, Some(error.as_str()), None, None)
            }
        };
        let sql = format!(
            "WITH upd AS (UPDATE deliveries SET state = $4, attempts = attempts + 1,
                 last_status = $6, last_error = $7,
                 next_attempt_us = coalesce($8, next_attempt_us),
                 delivered_us = coalesce($9, delivered_us)
                 WHERE recording_id = $1 AND url = $2 AND method = $3), {STATE}"
        );
        self.run(async {
            let c = self.client().await?;
            let row = cached_query_opt(
                &c,
                &sql,
                &[
                    &id,
                    &url,
                    &method,
                    &state,
                    &now,
                    &status_of(&status),
                    &error,
                    &next,
                    &delivered,
                ],
            )
            .await?;
            let state: String = match row {
                Some(r) => r.get(0),
                None => return Ok(RecordingState::Stored),
            };
            RecordingState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))
        })
    }

    pub(super) fn recording(&self, id: &str) -> Result<Option<RawRecording>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let row = cached_query_opt(
                &c,
                "SELECT id, node, state, created_us, updated_us, meta FROM recordings
                     WHERE id = $1",
                &[&id],
            )
            .await?;
            match row {
                Some(r) => Ok(Some(recording_of(&c, &r).await?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn recordings(&self, f: &Filter) -> Result<Vec<RawRecording>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(&c,
                    "SELECT id, node, state, created_us, updated_us, meta FROM recordings
                     WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR account_id = $2)
                       AND ($3::text IS NULL OR call_id = $3)
                       AND ($4::bigint IS NULL OR created_us >= $4)
                       AND ($5::bigint IS NULL OR created_us < $5)
                       AND ($6::text IS NULL OR node = $6)
                     ORDER BY created_us DESC LIMIT $7",
                    &[
                        &f.state.map(|s| s.as_str()),
                        &f.account_id,
                        &f.call_id,
                        &f.since_us.map(|v| v as i64),
                        &f.until_us.map(|v| v as i64),
                        &f.node,
                        &i64::from(f.limit.unwrap_or(1000)),
                    ],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(recording_of(&c, r).await?);
            }
            Ok(out)
        })
    }

    pub(super) fn retry_failed(&self, id: Option<&str>, now: i64) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let ids: Vec<String> = cached_query(
                &tx,
                "UPDATE deliveries SET state = 'pending', next_attempt_us = $2, since_us = $2
                     WHERE state = 'failed' AND ($1::text IS NULL OR recording_id = $1)
                     RETURNING recording_id",
                &[&id, &now],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            refresh_each(&tx, &ids).await?;
            tx.commit().await?;
            Ok(ids.len())
        })
    }

    pub(super) fn reassign(
        &self,
        from: &str,
        to: &str,
        id: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let ids: Vec<String> = cached_query(
                &tx,
                "UPDATE recordings SET node = $2
                     WHERE node = $1 AND ($3::text IS NULL OR id = $3) RETURNING id",
                &[&from, &to, &id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for r in &ids {
                cached_execute(
                    &tx,
                    "UPDATE deliveries SET node = $2,
                       state = CASE state WHEN 'uploading' THEN 'pending' ELSE state END
                     WHERE recording_id = $1",
                    &[r, &to],
                )
                .await?;
                refresh(&tx, r).await?;
            }
            tx.commit().await?;
            Ok(ids.len())
        })
    }

    pub(super) fn has_recording_path(&self, node: &str, path: &str) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.client().await?;
            Ok(cached_query_opt(
                &c,
                "SELECT 1 FROM recordings WHERE node = $1 AND file_path = $2 LIMIT 1",
                &[&node, &path],
            )
            .await?
            .is_some())
        })
    }

    pub(super) fn recording_paths_in(
        &self,
        node: &str,
        prefix: &str,
        end: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let rows = cached_query(
                &c,
                "SELECT file_path FROM recordings
                     WHERE node = $1 AND file_path ~>=~ $2 AND file_path ~<~ $3
                       AND strpos(substr(file_path, char_length($2) + 1), '/') = 0",
                &[&node, &prefix, &end],
            )
            .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Writes recordings moved from a node's local journal, replacing the database's rows of
    /// the same ids (the local ones are newer), in one transaction.
    pub(super) fn import(&self, node: &str, batch: &[Moved]) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            for m in batch {
                cached_execute(
                    &tx,
                    "INSERT INTO recordings
                     (id, node, account_id, call_id, file_path, state, meta, created_us, updated_us)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (id) DO UPDATE SET node = $2, account_id = $3, call_id = $4,
                       file_path = $5, state = $6, meta = $7, created_us = $8, updated_us = $9",
                    &[
                        &m.id,
                        &node,
                        &m.account_id,
                        &m.call_id,
                        &m.file_path,
                        &m.state,
                        &m.meta,
                        &m.created,
                        &m.updated,
                    ],
                )
                .await?;
                cached_execute(
                    &tx,
                    "DELETE FROM deliveries WHERE recording_id = $1",
                    &[&m.id],
                )
                .await?;
                for d in &m.deliveries {
                    cached_execute(
                        &tx,
                        "INSERT INTO deliveries
                         (recording_id, node, url, method, state, attempts, next_attempt_us,
                          since_us, last_error, last_status, delivered_us)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        &[
                            &m.id,
                            &node,
                            &d.url,
                            &d.method,
                            // A local `uploading` was cut short: try it again.
                            &if d.state == "uploading" {
                                "pending"
                            } else {
                                d.state.as_str()
                            },
                            &(d.attempts as i32),
                            &d.next,
                            &d.since,
                            &d.last_error,
                            &d.last_status.map(|s| s as i32),
                            &d.delivered,
                        ],
                    )
                    .await?;
                }
                refresh(&tx, &m.id).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
