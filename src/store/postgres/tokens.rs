//! API tokens on PostgreSQL: created with their hash, found by hash prefix.

use super::*;
use crate::store::tokens::TokenRows;

// --- tokens ----------------------------------------------------------------------------------

#[async_trait::async_trait]
impl TokenRows for Pg {
    async fn create_token(
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
        .await
    }

    async fn token_candidates(
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
        .await
    }
}
