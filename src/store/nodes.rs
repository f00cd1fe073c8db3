//! Where each node's API answers, on a shared database: a node writes its own at start-up, and
//! a request for a recording another node records is forwarded to that node's.
//!
//! Invariants: a node writes only its own row; with the SQLite file there is one node, so
//! there is nothing to record and no other node to find.

use super::{Store, StoreError};

impl Store {
    /// Records that this node's API answers at `url`.
    pub fn register_api(&self, url: &str) -> Result<(), StoreError> {
        match &self.pg {
            Some(pg) => pg.register_api(&self.node, url),
            None => Ok(()),
        }
    }

    /// Where node `node`'s API answers, when it said so.
    pub fn node_api(&self, node: &str) -> Result<Option<String>, StoreError> {
        match &self.pg {
            Some(pg) => pg.node_api(node),
            None => Ok(None),
        }
    }
}
