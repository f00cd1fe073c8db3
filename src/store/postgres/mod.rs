//! The PostgreSQL backend: the same documents, tokens and recordings as the SQLite file, in one
//! database that the callrec instances of several FreeSWITCH nodes share.
//!
//! Calls are the caller's futures, on the caller's runtime (the pool's connections are driven
//! there too): this backend has no runtime or thread of its own. The pool gives up on a
//! connection after [`CONNECT_TIMEOUT`]: an unreachable database is an error
//! ([`StoreError::Unreachable`]), never a hang.
//!
//! After a call finds the database unreachable, calls fail at once for [`DOWN_FOR`] (no caller
//! waits out the connect timeout again and again); the first call after that tries again. While
//! it is down, the planner's lookups answer from what they last read (`rules::lookups`), and recordings
//! go to the node's local journal (`fallback`).
//!
//! Schema versions live in `callrec_schema`; instances starting at once migrate under an
//! advisory lock, one after the other.
//!
//! Invariants (as the SQLite backend's, plus): a claim takes rows with `FOR UPDATE SKIP LOCKED`,
//! so two workers never hold the same delivery; every claim, recovery and orphan lookup names
//! the node; a node is held by at most one live instance ([`Pg::hold_node`]).
//!
//! Layout, one job a file: `mod.rs` (the handle, its pool, the statement helpers),
//! [`migrations`] (the schema and
//! its versions), [`tls`] (the verifying connector), [`nodes`] (the node lock, read-only check, API addresses), [`inspect`] (counts),
//! [`documents`], [`tokens`], [`recordings`] (spool, journal, deliveries, claims), [`webhooks`]
//! (the webhook events' queue), [`retention`] (erasure and retention).

mod decisions;
mod documents;
mod inspect;
mod migrations;
mod nodes;
mod recordings;
mod retention;
mod tls;
mod tokens;
mod webhooks;

use tls::tls_for;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// A handle on the shared database; clone freely.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    /// The connection holding this instance's node lock, once taken.
    config: tokio_postgres::Config,
    /// With `sslmode=require`: the verifying TLS connector.
    tls: Option<MakeRustlsConnect>,
    /// Until when (µs since the epoch) the database counts as unreachable.
    down_until: Arc<AtomicU64>,
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
    pub(super) async fn connect(url: &str, ca_file: Option<&Path>) -> Result<Pg, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unreachable(format!("database_url: {e}")))?;
        let tls = tls_for(&config, ca_file)?;
        let mut cfg = config.clone();
        cfg.connect_timeout(CONNECT_TIMEOUT);
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(t) => Manager::from_config(cfg, t.clone(), mc),
            None => Manager::from_config(cfg, NoTls, mc),
        };
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(CONNECT_TIMEOUT),
                create: Some(CONNECT_TIMEOUT),
                recycle: Some(CONNECT_TIMEOUT),
            })
            .build()
            .map_err(down)?;
        let pg = Pg {
            pool,
            config,
            tls,
            down_until: Arc::new(AtomicU64::new(0)),
        };
        pg.migrate().await?;
        Ok(pg)
    }

    /// Awaits `fut`, a statement's work; fails at once while the database counts as down, and
    /// counts it down for [`DOWN_FOR`] when `fut` finds it unreachable.
    async fn run<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let now = crate::store::now_us();
        if now < self.down_until.load(Ordering::Acquire) {
            return Err(StoreError::Unreachable(
                "the database did not answer a moment ago".into(),
            ));
        }
        let r = match fut.await {
            Err(StoreError::Postgres(e)) if connection_lost(&e) => {
                Err(StoreError::Unreachable(e.to_string()))
            }
            other => other,
        };
        if matches!(r, Err(StoreError::Unreachable(_))) {
            self.down_until.store(
                crate::store::now_us() + DOWN_FOR.as_micros() as u64,
                Ordering::Release,
            );
        }
        r
    }
}

impl Pg {
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(down)
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
