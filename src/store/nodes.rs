//! Nodes: which node a handle speaks for and that no other live instance does, whether the
//! database takes writes, and where each node's API answers (on a shared database a node writes
//! its own at start-up, and a request for a recording another node records is forwarded to
//! that node's).
//!
//! Invariants: a node writes only its own row; with the SQLite file there is one node, so
//! there is nothing to record, no other node to find and nothing to hold.

use super::{Store, StoreError};

/// What a backend does for nodes.
#[async_trait::async_trait]
pub(super) trait NodeRows {
    /// `"postgresql"` or `"sqlite"`.
    fn name(&self) -> &'static str;
    /// The handle now speaks for `node`. SQLite: the file's rows become `node`'s (a file
    /// belongs to one host); PostgreSQL: nothing (other nodes' rows stay theirs).
    async fn speak_for(&self, node: &str) -> Result<(), StoreError>;
    /// PostgreSQL: `node`'s lock, held for the handle's life; SQLite: nothing.
    async fn hold_node(&self, node: &str) -> Result<(), StoreError>;
    async fn check_writable(&self) -> Result<(), StoreError>;
    async fn register_api(&self, node: &str, url: &str) -> Result<(), StoreError>;
    async fn node_api(&self, node: &str) -> Result<Option<String>, StoreError>;
}

impl Store {
    /// Records that this node's API answers at `url`.
    pub async fn register_api(&self, url: &str) -> Result<(), StoreError> {
        self.db().register_api(&self.node, url).await
    }

    /// Where node `node`'s API answers, when it said so.
    pub async fn node_api(&self, node: &str) -> Result<Option<String>, StoreError> {
        self.db().node_api(node).await
    }
}
