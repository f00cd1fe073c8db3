//! Counts of the shared database: the statements behind `Census` (`store::inspect`).

use super::*;
use crate::store::inspect::Census;

#[async_trait::async_trait]
impl Census for Pg {
    async fn count_recordings(&self, state: RecordingState) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let n: i64 = cached_query_one(
                &c,
                "SELECT COUNT(*) FROM recordings WHERE state = $1",
                &[&state.as_str()],
            )
            .await?
            .get(0);
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn size_bytes(&self) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.client().await?;
            let n: i64 = cached_query_one(&c, "SELECT pg_database_size(current_database())", &[])
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })
        .await
    }
}
