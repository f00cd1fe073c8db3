//! API tokens in the SQLite file: the statements behind [`TokenRows`].

use rusqlite::params;

use super::Sqlite;
use crate::store::tokens::TokenRows;
use crate::store::StoreError;

#[async_trait::async_trait]
impl TokenRows for Sqlite {
    async fn create_token(
        &self,
        hash: &str,
        lookup: &str,
        account: Option<&str>,
        created: i64,
    ) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        let lookup = lookup.to_owned();
        let account = account.map(str::to_owned);
        self.quick(move |c| {
            let hash = hash.as_str();
            let lookup = lookup.as_str();
            let account = account.as_deref();
            c.prepare_cached(
                "INSERT INTO tokens (hash, lookup, account_id, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![hash, lookup, account, created])?;
            Ok(())
        })
        .await
    }

    async fn token_candidates(
        &self,
        lookup: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let lookup = lookup.to_owned();
        self.quick(move |c| {
            let lookup = lookup.as_str();
            let mut st =
                c.prepare_cached("SELECT hash, account_id FROM tokens WHERE lookup = ?1")?;
            let rows = st.query_map(params![lookup], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
