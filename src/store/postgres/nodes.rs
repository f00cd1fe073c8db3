//! Nodes on PostgreSQL: the node lock (a node is held by at most one live instance: a
//! session-level advisory lock on a connection of its own, taken again after that connection
//! breaks), the check that the database takes writes, and where each node's API answers.

use super::*;
use crate::store::nodes::NodeRows;

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

#[async_trait::async_trait]
impl NodeRows for Pg {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    async fn speak_for(&self, _node: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes the session-level advisory lock of `node` on a connection of its own, kept open
    /// for as long as this handle lives. Another live instance holding it is an error. When
    /// that connection breaks (the database restarted, the network failed), the lock is taken
    /// again in the background once the database answers.
    async fn hold_node(&self, node: &str) -> Result<(), StoreError> {
        let (config, tls, n) = (self.config.clone(), self.tls.clone(), node.to_string());
        let held = self
            .run(async move { lock_node(config, tls, &n).await })
            .await?;
        let Some(done) = held else {
            return Err(StoreError::Corrupt(format!(
                "node_id {node:?} is held by another running callrec on this database; \
                 every instance needs its own node_id"
            )));
        };
        let (config, tls, node) = (self.config.clone(), self.tls.clone(), node.to_string());
        tokio::spawn(async move {
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
                        Ok(None) => {
                            tracing::error!(node_id = %node, "another callrec took this node_id while the database was unreachable")
                        }
                        Err(_) => {}
                    }
                }
            }
        });
        Ok(())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
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
        .await
    }

    async fn register_api(&self, node: &str, url: &str) -> Result<(), StoreError> {
        self.run(async {
            let c = self.client().await?;
            cached_execute(
                &c,
                "INSERT INTO nodes (node, api_url, seen_us) VALUES ($1, $2, $3)
                 ON CONFLICT (node) DO UPDATE SET api_url = $2, seen_us = $3",
                &[&node, &url, &(crate::store::now_us() as i64)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn node_api(&self, node: &str) -> Result<Option<String>, StoreError> {
        self.run(async {
            let c = self.client().await?;
            Ok(
                cached_query_opt(&c, "SELECT api_url FROM nodes WHERE node = $1", &[&node])
                    .await?
                    .map(|r| r.get(0)),
            )
        })
        .await
    }
}
