//! Nodes in the SQLite file: one host's file, so one node, whose name the rows take.

use super::Sqlite;
use crate::store::nodes::NodeRows;
use crate::store::StoreError;

#[async_trait::async_trait]
impl NodeRows for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn speak_for(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_owned();
        self.run(move |c| {
            let node = node.as_str();
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let owner: String = tx.query_row("SELECT node FROM owner", [], |r| r.get(0))?;
            // Rows change hands only when the node's name does: no scan at every start.
            if owner != node {
                tx.execute("UPDATE recordings SET node = ?1 WHERE node <> ?1", [node])?;
                tx.execute("UPDATE deliveries SET node = ?1 WHERE node <> ?1", [node])?;
                tx.execute("UPDATE owner SET node = ?1", [node])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn hold_node(&self, _node: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.quick(move |c| {
            c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
            Ok(())
        })
        .await
    }

    async fn register_api(&self, _node: &str, _url: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn node_api(&self, _node: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}
