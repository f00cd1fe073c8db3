//! API tokens. A token is 64 random hex characters shown once at creation; the store keeps only
//! its SHA-256 and, to find the row, the first 16 hex characters of that hash.
//!
//! Invariants: the secret is never stored or logged; a presented token is accepted only when
//! the whole hash of what was presented equals a stored hash, compared in constant time (the
//! indexed lookup uses the 64-bit prefix of the hash, never the secret).

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

/// What a backend does with tokens: rows of a hash, its lookup prefix and the account (none:
/// an admin token). Hashing and the comparison are the rules above, written once.
#[async_trait::async_trait]
pub(super) trait TokenRows {
    async fn create_token(
        &self,
        hash: &str,
        lookup: &str,
        account: Option<&str>,
        created: i64,
    ) -> Result<(), StoreError>;
    /// Every `(hash, account)` whose hash starts with `lookup`.
    async fn token_candidates(
        &self,
        lookup: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError>;
}

impl Store {
    /// Creates a token; returns the secret, which is not stored and cannot be shown again.
    pub async fn create_token(&self, scope: &Scope) -> Result<String, StoreError> {
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
        self.db()
            .create_token(&hash, lookup_of(&hash), account.as_deref(), now_s())
            .await?;
        Ok(secret)
    }

    /// The scope of a presented token, if it is known.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<Scope>, StoreError> {
        let presented = hash_token(secret);
        let candidates = self.db().token_candidates(lookup_of(&presented)).await?;
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
