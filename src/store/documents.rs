//! Documents: accounts, users, devices and callflows as JSON objects with revisions.
//!
//! Invariants: a document's key is `(account, kind, id)`: the same id in two accounts is two
//! documents, and every statement here names the account, so nothing reached through one
//! account can read, change, move or reveal another account's document. An account's own
//! document is `(account, Account, account)`. A write with an expected revision fails with
//! [`StoreError::Conflict`] unless the stored document is at exactly that revision; the
//! revision goes up by one with every write, in the same transaction. `body.id` always equals
//! the key's id.
//!
//! The rules are written here once ([`Expect::next_revision`], [`may_delete`],
//! [`mentions_recording`], [`numbers_of`]); each backend's [`DocumentRows`] applies them inside
//! the transaction that writes (`store::sqlite::documents`, `store::postgres::documents`).

use serde_json::Value;

use super::{Store, StoreError};

pub use crate::settings::documents::Kind;

/// The kind a stored row names.
pub(super) fn parse_kind(s: &str) -> Result<Kind, StoreError> {
    Kind::from_name(s).ok_or_else(|| StoreError::Corrupt(format!("unknown kind {s:?}")))
}

/// A document's revision: 1 after the first write, one more after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl Revision {
    /// An `If-Match` value (`3` or `"3"`); `None` when it is not a revision at all.
    pub fn parse(s: &str) -> Option<Revision> {
        s.trim().trim_matches('"').parse().ok().map(Revision)
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored document. `body` is a JSON object; its `id` member always equals `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub kind: Kind,
    pub id: String,
    pub account_id: String,
    pub rev: Revision,
    pub body: Value,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Create or replace, whatever is there.
    Any,
    /// Only if the document is at this revision (`If-Match`); an absent one never is.
    Revision(Revision),
    /// Only if there is no such document (create with an explicit id).
    Absent,
}

pub(super) fn row_to_doc(
    kind: Kind,
    account_id: String,
    id: String,
    rev: i64,
    body: &str,
) -> Result<Doc, StoreError> {
    let body = serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("document {id}: {e}")))?;
    Ok(Doc {
        kind,
        id,
        account_id,
        rev: Revision(rev as u64),
        body,
    })
}

impl Expect {
    /// The revision a write makes of a document now at `current` (`None`: there is none), or
    /// why the write may not happen. The one rule of conditional writes: each backend applies
    /// it inside the transaction that writes.
    pub(super) fn next_revision(self, current: Option<i64>) -> Result<i64, StoreError> {
        match (self, current) {
            (Expect::Absent, Some(_)) => Err(StoreError::Exists),
            (Expect::Revision(want), cur) if cur != Some(want.0 as i64) => {
                Err(StoreError::Conflict {
                    current: cur.map(|r| r.to_string()).unwrap_or_default(),
                })
            }
            _ => Ok(current.unwrap_or(0) + 1),
        }
    }
}

/// Whether a delete that expects `expect` may remove the document at revision `current`.
pub(super) fn may_delete(expect: Option<Revision>, current: i64) -> Result<(), StoreError> {
    match expect {
        Some(want) if current != want.0 as i64 => Err(StoreError::Conflict {
            current: current.to_string(),
        }),
        _ => Ok(()),
    }
}

/// What a backend does with documents: statements only, the rules above applied as they say.
/// Every method names the account it reads or writes, except the whole-store reads (the
/// start-up check, retention's limits, identification of a caller in any account).
#[async_trait::async_trait]
pub(super) trait DocumentRows {
    async fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError>;
    /// The account's documents of `kind`, by id.
    async fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError>;
    async fn documents_of_kind(&self, kind: Kind) -> Result<Vec<Doc>, StoreError>;
    async fn all_documents(&self) -> Result<Vec<Doc>, StoreError>;
    /// Writes `body` (whose `id` is already `id`; `text` is its JSON) as the next revision
    /// ([`Expect::next_revision`]), with the `records` flag and a callflow's numbers, in one
    /// transaction.
    async fn put(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        body: Value,
        text: &str,
        expect: Expect,
    ) -> Result<Doc, StoreError>;
    /// Removes it ([`may_delete`]) with a callflow's numbers; false when there was none.
    async fn delete(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        expect: Option<Revision>,
    ) -> Result<bool, StoreError>;
    async fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError>;
    async fn any_recording_settings(&self) -> Result<bool, StoreError>;
    async fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError>;
}

impl Store {
    pub async fn get(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
    ) -> Result<Option<Doc>, StoreError> {
        self.db().get(kind, account_id, id).await
    }

    /// The account's documents of `kind`, by id.
    pub async fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        self.db().list(kind, account_id).await
    }

    /// Every document of `kind`, of every account (retention reads the accounts' limits).
    pub async fn documents_of_kind(&self, kind: Kind) -> Result<Vec<Doc>, StoreError> {
        self.db().documents_of_kind(kind).await
    }

    /// Every document of every account (the start-up check of stored settings).
    pub async fn all_documents(&self) -> Result<Vec<Doc>, StoreError> {
        self.db().all_documents().await
    }

    /// Writes a document of `account_id` if `expect` holds; returns it at its new revision.
    pub async fn put(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        mut body: Value,
        expect: Expect,
    ) -> Result<Doc, StoreError> {
        if let Value::Object(m) = &mut body {
            m.insert("id".into(), Value::String(id.to_string()));
        }
        let text = body.to_string();
        self.db()
            .put(kind, account_id, id, body, &text, expect)
            .await
    }

    /// Deletes a document of `account_id`; false when it did not exist there.
    pub async fn delete(
        &self,
        kind: Kind,
        account_id: &str,
        id: &str,
        expect: Option<Revision>,
    ) -> Result<bool, StoreError> {
        self.db().delete(kind, account_id, id, expect).await
    }

    /// The accounts with a callflow whose `numbers` hold `number` exactly (identifying the
    /// account of a call to a DID whose channel does not name it).
    pub async fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        self.db().accounts_with_number(number).await
    }

    /// Whether any stored document mentions recording settings (`record_call`, as settings or as
    /// a callflow module, or `call_recording`), enabled or not. When none does, no document can
    /// make any party of any call recorded.
    pub async fn any_recording_settings(&self) -> Result<bool, StoreError> {
        self.db().any_recording_settings().await
    }

    /// Devices whose `sip.username` is `username`, in `account_id` or (identification of a
    /// caller whose account the channel does not name) in any account.
    pub async fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        self.db()
            .devices_by_sip_username(account_id, username)
            .await
    }
}

/// The `records` flag of a document's stored text: it names recording settings (`record_call`,
/// as settings or as a callflow module, or `call_recording`), enabled or not.
pub(super) fn mentions_recording(text: &str) -> bool {
    text.contains("\"record_call\"") || text.contains("\"call_recording\"")
}

/// A callflow's `numbers` that are text (the ones a call can match).
pub(super) fn numbers_of(body: Option<&Value>) -> Vec<&str> {
    body.and_then(|b| b.get("numbers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
