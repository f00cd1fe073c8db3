//! The calls this process follows now, by call id and by recording id: how the control API
//! reaches a live recording (the call's own session answers, through its driver) and what the
//! `channels` resource lists.
//!
//! Invariants: a call is registered from its channel data until its session is done, and no
//! longer; a recording id maps to its call while that call's session runs; a message to a call
//! whose session has just ended gets no answer, which the API treats as "not live here".

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use super::session::{CallView, ControlOutcome, Want};

/// What the API asks of a live call's session.
#[derive(Debug)]
pub enum LiveMsg {
    Control {
        recording_id: String,
        want: Want,
        by: Option<String>,
        reply: oneshot::Sender<ControlOutcome>,
    },
    View(oneshot::Sender<CallView>),
}

struct Entry {
    account_id: Option<String>,
    /// Boxed: a channel's first block holds 32 messages, and most calls never get one.
    tx: mpsc::UnboundedSender<Box<LiveMsg>>,
    /// Its recordings' ids (what to take out of the index when it ends).
    recordings: Vec<String>,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, Entry>,
    /// Recording id → call id.
    recordings: HashMap<String, String>,
}

/// The registry; one per process, shared by the outbound listener and the API.
#[derive(Default)]
pub struct LiveCalls {
    inner: Mutex<Inner>,
}

impl LiveCalls {
    /// A call's session starts; its driver reads what the API sends on the receiver.
    pub fn register(
        &self,
        call_id: &str,
        account_id: Option<String>,
    ) -> mpsc::UnboundedReceiver<Box<LiveMsg>> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut i) = self.inner.lock() {
            i.calls.insert(
                call_id.to_string(),
                Entry {
                    account_id,
                    tx,
                    recordings: Vec::new(),
                },
            );
        }
        rx
    }

    /// What the session knows now: the account (once the rules identified it) and its
    /// recordings' ids.
    pub fn update<'a>(
        &self,
        call_id: &str,
        account_id: Option<&str>,
        recordings: impl Iterator<Item = &'a str>,
    ) {
        if let Ok(mut guard) = self.inner.lock() {
            let i = &mut *guard;
            let Some(e) = i.calls.get_mut(call_id) else {
                return;
            };
            if e.account_id.as_deref() != account_id {
                e.account_id = account_id.map(str::to_string);
            }
            for r in recordings {
                if !i.recordings.contains_key(r) {
                    i.recordings.insert(r.to_string(), call_id.to_string());
                    e.recordings.push(r.to_string());
                }
            }
        }
    }

    /// The call's session is done.
    pub fn remove(&self, call_id: &str) {
        if let Ok(mut i) = self.inner.lock() {
            if let Some(e) = i.calls.remove(call_id) {
                for r in e.recordings {
                    // Only this call's: the same id never belongs to two calls, but a second
                    // registration of a call id (a re-adopted call) must not lose the other's.
                    if i.recordings.get(&r).is_some_and(|c| c == call_id) {
                        i.recordings.remove(&r);
                    }
                }
            }
        }
    }

    /// The live call recording `recording_id`, when it belongs to `account_id` (any account
    /// for `None`: an admin asking).
    fn call_of(
        &self,
        recording_id: &str,
        account_id: Option<&str>,
    ) -> Option<mpsc::UnboundedSender<Box<LiveMsg>>> {
        let i = self.inner.lock().ok()?;
        let call = i.recordings.get(recording_id)?;
        let e = i.calls.get(call)?;
        if account_id.is_some() && e.account_id.as_deref() != account_id {
            return None;
        }
        Some(e.tx.clone())
    }

    /// Asks the session recording `recording_id` to change it. `None`: no live call of
    /// `account_id` here records it (finished, another node's, or unknown).
    pub async fn control(
        &self,
        recording_id: &str,
        account_id: Option<&str>,
        want: Want,
        by: Option<String>,
    ) -> Option<ControlOutcome> {
        let tx = self.call_of(recording_id, account_id)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Box::new(LiveMsg::Control {
            recording_id: recording_id.to_string(),
            want,
            by,
            reply,
        }))
        .ok()?;
        rx.await.ok()
    }

    /// The live calls of `account_id` (every account's for `None`), each as its session sees it.
    pub async fn views(&self, account_id: Option<&str>) -> Vec<CallView> {
        let senders: Vec<_> = match self.inner.lock() {
            Ok(i) => i
                .calls
                .values()
                .filter(|e| account_id.is_none() || e.account_id.as_deref() == account_id)
                .map(|e| e.tx.clone())
                .collect(),
            Err(_) => vec![],
        };
        let mut out = Vec::with_capacity(senders.len());
        for tx in senders {
            let (reply, rx) = oneshot::channel();
            if tx.send(Box::new(LiveMsg::View(reply))).is_ok() {
                // A session answers from its loop at once; one that does not is left out.
                if let Ok(Ok(v)) = tokio::time::timeout(std::time::Duration::from_secs(2), rx).await
                {
                    out.push(v);
                }
            }
        }
        out.sort_by(|a, b| {
            a.started_us
                .cmp(&b.started_us)
                .then(a.call_id.cmp(&b.call_id))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_ending_takes_only_its_own_recordings_out_and_accounts_are_kept_apart() {
        let live = LiveCalls::default();
        let _a = live.register("call-a", Some("acc-1".into()));
        let _b = live.register("call-b", None);
        live.update("call-a", Some("acc-1"), ["r1", "r2"].into_iter());
        live.update("call-b", Some("acc-2"), ["r3"].into_iter());
        assert!(live.call_of("r1", Some("acc-1")).is_some());
        assert!(
            live.call_of("r3", Some("acc-1")).is_none(),
            "another account's"
        );
        assert!(
            live.call_of("r3", Some("acc-2")).is_some(),
            "the account found later counts"
        );
        assert!(live.call_of("r3", None).is_some(), "an admin reaches any");
        live.remove("call-a");
        assert!(live.call_of("r1", None).is_none() && live.call_of("r2", None).is_none());
        assert!(live.call_of("r3", None).is_some(), "the other call's stays");
        let i = live.inner.lock().unwrap();
        assert_eq!((i.calls.len(), i.recordings.len()), (1, 1));
    }
}
