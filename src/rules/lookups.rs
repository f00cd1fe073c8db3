//! The planner's questions to the store ([`Lookups`]), and its memory of the answers for an
//! outage ([`Remembering`]): while a shared database cannot be reached, a call is still planned
//! from what its lookups last read, rather than recorded by no rule. The store itself answers
//! only what the database says (an unreachable one is an error, for the API too).
//!
//! Invariants: only an unreachable database is answered from memory (any other error is
//! returned); the memory holds at most [`MEMORY_MAX`] answers, and starts again empty past it;
//! an answer read is remembered whatever it was (an empty one too).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{Doc, Kind, Store, StoreError};

/// Answers remembered for an outage at most.
pub const MEMORY_MAX: usize = 50_000;

/// What the planner asks of the documents.
#[async_trait::async_trait]
pub trait Lookups: Sync {
    async fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError>;
    async fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError>;
    async fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError>;
    async fn any_recording_settings(&self) -> Result<bool, StoreError>;
    async fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError>;
}

#[async_trait::async_trait]
impl Lookups for Store {
    async fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        Store::get(self, kind, account_id, id).await
    }
    async fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        Store::list(self, kind, account_id).await
    }
    async fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        Store::accounts_with_number(self, number).await
    }
    async fn any_recording_settings(&self) -> Result<bool, StoreError> {
        Store::any_recording_settings(self).await
    }
    async fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        Store::devices_by_sip_username(self, account_id, username).await
    }
}

/// One remembered answer.
#[derive(Clone)]
enum Answer {
    Doc(Option<Doc>),
    Docs(Vec<Doc>),
    Names(Vec<String>),
    Flag(bool),
}

/// The planner's memory of its lookups; one per planner.
#[derive(Default)]
pub struct Memory(Mutex<HashMap<String, Answer>>);

impl Memory {
    fn keep<T>(
        &self,
        key: String,
        r: Result<T, StoreError>,
        into: impl Fn(&T) -> Answer,
        from: impl Fn(Answer) -> Option<T>,
    ) -> Result<T, StoreError> {
        let Ok(mut m) = self.0.lock() else {
            return r;
        };
        match r {
            Ok(v) => {
                if m.len() >= MEMORY_MAX {
                    m.clear();
                }
                m.insert(key, into(&v));
                Ok(v)
            }
            Err(StoreError::Unreachable(e)) => match m.get(&key).cloned().and_then(from) {
                Some(v) => Ok(v),
                None => Err(StoreError::Unreachable(e)),
            },
            Err(e) => Err(e),
        }
    }
}

/// The store's answers, remembered; an unreachable database answered from memory.
pub struct Remembering<'a> {
    pub store: &'a Store,
    pub memory: &'a Memory,
}

#[async_trait::async_trait]
impl Lookups for Remembering<'_> {
    async fn get(&self, kind: Kind, account_id: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        let key = format!("get\0{}\0{account_id}\0{id}", kind.as_str());
        self.memory.keep(
            key,
            self.store.get(kind, account_id, id).await,
            |v| Answer::Doc(v.clone()),
            |a| match a {
                Answer::Doc(v) => Some(v),
                _ => None,
            },
        )
    }
    async fn list(&self, kind: Kind, account_id: &str) -> Result<Vec<Doc>, StoreError> {
        let key = format!("list\0{}\0{account_id}", kind.as_str());
        self.memory.keep(
            key,
            self.store.list(kind, account_id).await,
            |v| Answer::Docs(v.clone()),
            |a| match a {
                Answer::Docs(v) => Some(v),
                _ => None,
            },
        )
    }
    async fn accounts_with_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        self.memory.keep(
            format!("number\0{number}"),
            self.store.accounts_with_number(number).await,
            |v| Answer::Names(v.clone()),
            |a| match a {
                Answer::Names(v) => Some(v),
                _ => None,
            },
        )
    }
    async fn any_recording_settings(&self) -> Result<bool, StoreError> {
        self.memory.keep(
            "records".into(),
            self.store.any_recording_settings().await,
            |v| Answer::Flag(*v),
            |a| match a {
                Answer::Flag(v) => Some(v),
                _ => None,
            },
        )
    }
    async fn devices_by_sip_username(
        &self,
        account_id: Option<&str>,
        username: &str,
    ) -> Result<Vec<Doc>, StoreError> {
        let key = format!("sip\0{}\0{username}", account_id.unwrap_or("\u{1}"));
        self.memory.keep(
            key,
            self.store
                .devices_by_sip_username(account_id, username)
                .await,
            |v| Answer::Docs(v.clone()),
            |a| match a {
                Answer::Docs(v) => Some(v),
                _ => None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(m: &Memory, r: Result<bool, StoreError>) -> Result<bool, StoreError> {
        m.keep(
            "k".into(),
            r,
            |v| Answer::Flag(*v),
            |a| match a {
                Answer::Flag(v) => Some(v),
                _ => None,
            },
        )
    }

    #[test]
    fn an_unreachable_database_is_answered_from_what_was_last_read() {
        let m = Memory::default();
        let down = || Err(StoreError::Unreachable("cut".into()));
        assert!(
            flag(&m, down()).is_err(),
            "nothing read yet: the error stands"
        );
        assert!(flag(&m, Ok(true)).unwrap());
        assert!(flag(&m, down()).unwrap(), "remembered");
        assert!(!flag(&m, Ok(false)).unwrap());
        assert!(!flag(&m, down()).unwrap(), "the last answer, not the first");
        assert!(
            matches!(
                flag(&m, Err(StoreError::Corrupt("x".into()))),
                Err(StoreError::Corrupt(_))
            ),
            "only an unreachable database is answered from memory"
        );
    }
}
