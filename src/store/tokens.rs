//! API tokens. A token is 64 random hex characters shown once at creation; the store keeps only
//! its SHA-256 and, to find the row, the first 16 hex characters of that hash.
//!
//! Invariants: the secret is never stored or logged; a presented token is accepted only when
//! the whole hash of what was presented equals a stored hash, compared in constant time (the
//! indexed lookup uses the 64-bit prefix of the hash, never the secret).

use rusqlite::params;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{now_s, Store, StoreError};

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Account(String),
}

fn hash_token(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn lookup_of(hash: &str) -> &str {
    &hash[..16]
}

/// A token's id for audit trails: its hash's 64-bit lookup prefix (what the store indexes it
/// by; it reveals nothing of the secret).
pub fn token_id(secret: &str) -> String {
    lookup_of(&hash_token(secret)).to_string()
}

impl Store {
    /// Creates a token; returns the secret, which is not stored and cannot be shown again.
    pub fn create_token(&self, scope: &Scope) -> Result<String, StoreError> {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let account = match scope {
            Scope::Admin => None,
            Scope::Account(a) => Some(a.clone()),
        };
        let hash = hash_token(&secret);
        if let Some(pg) = &self.pg {
            pg.create_token(&hash, lookup_of(&hash), account.as_deref(), now_s())?;
            return Ok(secret);
        }
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (hash, lookup, account_id, created) VALUES (?1, ?2, ?3, ?4)",
                params![hash, lookup_of(&hash), account, now_s()],
            )?;
            Ok(())
        })?;
        Ok(secret)
    }

    /// The scope of a presented token, if it is known.
    pub fn verify_token(&self, secret: &str) -> Result<Option<Scope>, StoreError> {
        let presented = hash_token(secret);
        let candidates: Vec<(String, Option<String>)> = if let Some(pg) = &self.pg {
            pg.token_candidates(lookup_of(&presented))?
        } else {
            self.with(|c| {
                let mut st = c.prepare("SELECT hash, account_id FROM tokens WHERE lookup = ?1")?;
                let rows = st.query_map(params![lookup_of(&presented)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })?
        };
        let mut found = None;
        for (hash, account) in candidates {
            if bool::from(hash.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(match account {
                    None => Scope::Admin,
                    Some(a) => Scope::Account(a),
                });
            }
        }
        Ok(found)
    }
}

/// The stored hash of a secret (for building old-format files in migration tests).
#[cfg(test)]
pub(super) fn tests_hash(secret: &str) -> String {
    hash_token(secret)
}
