//! The planner's outage memory: what each lookup last read, answered while the database is
//! unreachable (so calls keep their recording rules through a database outage). Bounded: past
//! [`SEEN_MAX`] entries the memory starts again, empty.

use super::*;

/// Lookups remembered for an outage at most (then the memory starts again, empty).
const SEEN_MAX: usize = 50_000;

/// What a planner lookup last read, answered while the database is down.
#[derive(Clone)]
pub(super) enum Seen {
    Doc(Option<Doc>),
    Docs(Vec<Doc>),
    Names(Vec<String>),
    Flag(bool),
}

/// A lookup's result, as remembered in [`Seen`].
pub(super) trait Memo: Sized {
    fn seen(&self) -> Seen;
    fn from_seen(s: Seen) -> Option<Self>;
}

macro_rules! memo {
    ($t:ty, $v:ident) => {
        impl Memo for $t {
            fn seen(&self) -> Seen {
                Seen::$v(self.clone())
            }
            fn from_seen(s: Seen) -> Option<Self> {
                match s {
                    Seen::$v(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

memo!(Option<Doc>, Doc);
memo!(Vec<Doc>, Docs);
memo!(Vec<String>, Names);
memo!(bool, Flag);

impl Pg {
    /// `r` remembered under `key`; when the database is unreachable, what was remembered.
    pub(super) fn remembered<T: Memo>(
        &self,
        key: String,
        r: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Ok(mut seen) = self.seen.lock() else {
            return r;
        };
        match r {
            Ok(v) => {
                if seen.len() >= SEEN_MAX {
                    seen.clear();
                }
                seen.insert(key, v.seen());
                Ok(v)
            }
            Err(StoreError::Unreachable(e)) => match seen.get(&key).cloned().and_then(T::from_seen)
            {
                Some(v) => Ok(v),
                None => Err(StoreError::Unreachable(e)),
            },
            Err(e) => Err(e),
        }
    }
}
