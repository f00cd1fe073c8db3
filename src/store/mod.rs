//! The store: the only place that speaks SQL. It holds the documents (accounts, users, devices,
//! callflows), the API tokens and the recordings with their deliveries (the durable spool), in
//! one of two backends behind the same methods:
//!
//! - SQLite (default): one file in the data directory, nothing to set up; one callrec owns it;
//! - PostgreSQL ([`postgres`], `database_url = "postgres://…"`): one database shared by the
//!   callrec instances of several FreeSWITCH nodes.
//!
//! Every recording belongs to a **node** (`node_id`, the callrec beside the FreeSWITCH that
//! wrote its file): a handle speaks for one node, and the journal, the claims and the orphan
//! scan see only that node's recordings; listings show every node's.
//!
//! - [`documents`]: JSON documents keyed by `(account, kind, id)`, with revisions;
//! - [`tokens`]: API tokens, stored hashed, verified in constant time;
//! - [`recordings`]: every kept recording and the state of each of its deliveries;
//! - [`webhooks`]: the queue of webhook events (any node may send any of them);
//! - [`retention`]: recordings taken out (erasure on request, retention), their files left to
//!   the caller;
//! - [`decisions`]: each call's decision record and the outcomes of its recordings;
//! - [`fallback`]: a shared-database node's local journal while the database is unreachable;
//! - [`sqlite`] and [`postgres`]: the two backends, a file per concept each (plus schema,
//!   opening; PostgreSQL's pool, TLS and node lock);
//! - [`inspect`]: counts and the integrity check, read-only;
//! - [`nodes`]: where each node's API answers (shared database only);
//! - [`scratch`]: stores made on purpose by tests and benchmarks (new databases, a first-release
//!   file, the unindexed lookups the benchmarks compare against): the suite writes no SQL. Its
//!   database administration runs on a thread of its own (a test's database is dropped in
//!   `Drop`); nothing that serves uses it.
//!
//! Invariants: a document belongs to exactly one account and nothing reached through one
//! account reads or writes another's; every write bumps a document's revision by one,
//! atomically with the write; a token's secret is never stored; a delivery moves between
//! states only inside a transaction that also recomputes its recording's state; a delivery is
//! claimed by one worker at a time (SQLite: one writer; PostgreSQL: `FOR UPDATE SKIP LOCKED`).

/// `as_str`, `parse`, `Display` and comparison with a name for a state enum stored as text.
macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        /// Compares with the state's name (`"pending"`…), as shown in the API and CLI.
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod decisions;
pub mod documents;
mod fallback;
mod inspect;
mod listing;
mod nodes;
mod postgres;
pub mod recordings;
pub mod retention;
pub mod scratch;
mod sqlite;
pub mod tokens;
pub mod webhooks;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use documents::{Doc, Kind, Revision};
pub use recordings::{DeliveryState, RecordingState};
pub use tokens::Scope;

/// The one interface both backends implement ([`sqlite`] and [`postgres`]): a trait per
/// concept, declared beside the rules it serves, every method async
/// ([`documents::DocumentRows`], [`tokens::TokenRows`], [`recordings::RecordingRows`],
/// [`webhooks::HookRows`], [`decisions::DecisionRows`], [`retention::RemovalRows`],
/// [`inspect::Census`], [`nodes::NodeRows`]). A concept's rules are written once, in its module,
/// above both (revisions, a recording's state from its deliveries, what may be erased, pruning's
/// cutoff, fairness of webhook claims); the backends hold statements only. The one rule that
/// needs both backends at once, the local journal while a shared database is unreachable, is
/// [`fallback`]'s.
trait Backend:
    documents::DocumentRows
    + tokens::TokenRows
    + decisions::DecisionRows
    + webhooks::HookRows
    + retention::RemovalRows
    + inspect::Census
    + nodes::NodeRows
    + recordings::RecordingRows
    + Send
    + Sync
{
}

impl<T> Backend for T where
    T: documents::DocumentRows
        + tokens::TokenRows
        + decisions::DecisionRows
        + webhooks::HookRows
        + retention::RemovalRows
        + inspect::Census
        + nodes::NodeRows
        + recordings::RecordingRows
        + recordings::RecordingRows
        + Send
        + Sync
{
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// PostgreSQL cannot be reached (no connection within the pool's timeout).
    #[error("database unreachable: {0}")]
    Unreachable(String),
    #[error("revision conflict: the document is at revision {current}")]
    Conflict { current: String },
    #[error("a document with this id exists")]
    Exists,
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("store lock poisoned")]
    Poisoned,
    /// A store call's task ended without an answer (it panicked).
    #[error("store call failed: {0}")]
    Panicked(String),
}

/// Thread-safe handle; clone freely. Every call is async and runs on the caller's runtime
/// (SQLite's statements on its blocking pool, PostgreSQL's as the caller's futures).
#[derive(Clone)]
pub struct Store {
    /// The SQLite file; with PostgreSQL, the node's local journal ([`fallback`]).
    sqlite: sqlite::Sqlite,
    pg: Option<postgres::Pg>,
    node: Arc<str>,
    /// With PostgreSQL: the local journal may hold recordings.
    local: Arc<AtomicBool>,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/callrec.db`, migrating an older schema.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::init(sqlite::Sqlite::open(&data_dir.join("callrec.db"))?)
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(sqlite::Sqlite::open_in_memory()?)
    }

    fn init(sqlite: sqlite::Sqlite) -> Result<Store, StoreError> {
        // A file speaks for the node its rows were last given to (see `for_node`).
        let owner = sqlite.owner()?;
        Ok(Store {
            sqlite,
            pg: None,
            node: owner.into(),
            local: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user:password@host:port/db`), bringing its
    /// schema to the current version. Its local journal is in memory: see
    /// [`Store::connect_with_local`] for the durable one `serve` uses.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut s = Store::open_in_memory()?;
        s.pg = Some(postgres::Pg::connect(url, None).await?);
        Ok(s)
    }

    /// [`Store::connect`] with the CA certificates of `ca_file` trusted for a URL with
    /// `sslmode=require` (besides the web PKI's roots).
    pub async fn connect_tls(url: &str, ca_file: Option<&Path>) -> Result<Store, StoreError> {
        let mut s = Store::open_in_memory()?;
        s.pg = Some(postgres::Pg::connect(url, ca_file).await?);
        Ok(s)
    }

    /// [`Store::connect`], with the local journal ([`fallback`]) in `<data_dir>/callrec.db`.
    pub async fn connect_with_local(
        url: &str,
        ca_file: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Store, StoreError> {
        let mut s = Store::open(data_dir)?;
        s.pg = Some(postgres::Pg::connect(url, ca_file).await?);
        s.check_local().await?;
        Ok(s)
    }

    /// This handle, speaking for `node` (a new file's rows belong to `callrec`, the default
    /// `node_id`, until then). An SQLite file belongs to one host, so every recording
    /// in it is taken over by the node that opens it; in PostgreSQL other nodes' recordings stay
    /// theirs.
    pub async fn for_node(mut self, node: &str) -> Result<Store, StoreError> {
        self.node = node.into();
        self.db().speak_for(node).await?;
        Ok(self)
    }

    /// The node this handle speaks for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `"postgresql"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        self.db().name()
    }

    /// Makes sure no other live callrec speaks for this node on a shared database (two would
    /// both take up the node's journal and claims at start-up). The hold lasts as long as
    /// this handle's clones; SQLite files have one owner by construction.
    pub async fn hold_node(&self) -> Result<(), StoreError> {
        self.db().hold_node(&self.node).await
    }

    /// The backend that holds the data: PostgreSQL when configured, else the SQLite file.
    fn db(&self) -> &dyn Backend {
        match &self.pg {
            Some(pg) => pg,
            None => &self.sqlite,
        }
    }
}

impl Store {
    /// The store takes writes (the write lock can be had).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.db().check_writable().await
    }
}

/// Seconds since the epoch.
fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as u64
}
