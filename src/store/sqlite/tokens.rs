//! API tokens in the SQLite file: the statements behind [`TokenRows`].

use rusqlite::params;

use super::Sqlite;
use crate::store::tokens::TokenRows;
use crate::store::StoreError;

impl TokenRows for Sqlite {
    fn create_token(
        &self,
        hash: &str,
        lookup: &str,
        account: Option<&str>,
        created: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (hash, lookup, account_id, created) VALUES (?1, ?2, ?3, ?4)",
                params![hash, lookup, account, created],
            )?;
            Ok(())
        })
    }

    fn token_candidates(&self, lookup: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
        self.with(|c| {
            let mut st =
                c.prepare_cached("SELECT hash, account_id FROM tokens WHERE lookup = ?1")?;
            let rows = st.query_map(params![lookup], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
