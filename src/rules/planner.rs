//! [`DocumentPlanner`]: finds the parties' documents in the store, then decides with
//! [`resolve::plan`](super::resolve::plan). Changes to documents apply to the next call.
//!
//! Identification: the configured channel variables (`callrec_account_id`, `callrec_user_id`,
//! `callrec_device_id`) first; else the device whose `sip.username` is the caller's
//! `sip_auth_username` (or `sip_from_user`), its owner and its account. The callee is the
//! account's device whose `sip.username` is the destination number.

use futures::future::BoxFuture;
use tracing::Instrument;

use super::decision::{DecisionSink, Identification};
use super::lookups::{Lookups, Memory, Remembering};
use super::resolve::{self, Found, Parties, Party};
use super::{CallInfo, Plan, PlanError, Planner, RecordCall};
use crate::store::{Doc, Kind, Store, StoreError};

pub struct DocumentPlanner {
    pub store: Store,
    /// callrec's own `[record_call]`, applied to every call like an account-wide rule.
    pub global: Option<RecordCall>,
    /// What the lookups last read, answered while a shared database is unreachable.
    pub memory: std::sync::Arc<Memory>,
    /// Where each call's decision record goes (`None`: nowhere).
    pub decisions: Option<std::sync::Arc<dyn DecisionSink>>,
}

impl Planner for DocumentPlanner {
    fn plan<'a>(&'a self, call: &'a CallInfo) -> BoxFuture<'a, Result<Plan, PlanError>> {
        let store = self.store.clone();
        let memory = self.memory.clone();
        let call = call.clone();
        let global = self.global.clone();
        let decisions = self.decisions.clone();
        // The call's span follows the lookups, so a document that does not parse is logged
        // with the call it affected.
        let span = tracing::Span::current();
        Box::pin(async move {
            let found = async {
                let store = Remembering {
                    store: &store,
                    memory: &memory,
                };
                let parties = Parties {
                    global,
                    ..find_parties(&store, &call).await?
                };
                let explained = resolve::explain(&parties);
                if let Some(sink) = &decisions {
                    sink.keep(super::decision::record(
                        &call,
                        &parties,
                        &explained,
                        crate::store::now_us(),
                    ));
                }
                let recordings = explained.recordings;
                // Only a call with nothing planned asks whether any document could record a
                // bridged callee (the answer lets it go unfollowed).
                let never = recordings.is_empty()
                    && parties.global.is_none()
                    && parties.callflow.is_none()
                    && !store.any_recording_settings().await?;
                Ok::<_, StoreError>((parties, recordings, never))
            };
            let (parties, recordings, callee_never_records) = found
                .instrument(span)
                .await
                .map_err(|e| PlanError::Store(e.to_string()))?;
            let callflow = parties.callflow.clone();
            let encrypt_to = parties
                .account
                .as_ref()
                .and_then(|a| a.settings.as_ref())
                .and_then(|a| a.recording_public_key.as_ref())
                .map(|k| k.as_str().to_string());
            Ok(Plan {
                encrypt_to,
                recordings,
                callflow,
                account_id: parties.account_id,
                user_id: parties.caller.user.as_ref().map(|u| u.id.clone()),
                device_id: parties.caller.device.as_ref().map(|d| d.id.clone()),
                callee_never_records,
            })
        })
    }
}

/// Checks every stored document with the same parser the API uses and logs each one that no
/// longer parses (written by an older version, or by hand): its recording settings are not
/// applied to calls until it is saved again. Returns how many there are.
pub async fn report_invalid_documents(store: &Store) -> Result<usize, StoreError> {
    let mut invalid = 0;
    for doc in store.all_documents().await? {
        if let Err(e) = super::documents::parse(doc.kind, &doc.body) {
            invalid += 1;
            resolve::warn_unparsable(&doc, &e);
        }
    }
    Ok(invalid)
}

/// The account's callflow for `number`: a callflow whose `numbers` hold it exactly first, then
/// patterns (callflows in id order, each one's patterns in their order; the first that matches
/// wins). A matching callflow whose document does not parse is logged and not run.
pub async fn find_callflow(
    store: &(impl Lookups + ?Sized),
    account_id: &str,
    number: &str,
) -> Result<Option<super::CallflowPlan>, StoreError> {
    if number.is_empty() {
        return Ok(None);
    }
    let docs = store.list(Kind::Callflow, account_id).await?;
    let holds = |d: &Doc| {
        d.body
            .get("numbers")
            .and_then(|n| n.as_array())
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(number)))
    };
    let parsed = |d: &Doc| match super::documents::parse(Kind::Callflow, &d.body) {
        Ok(super::documents::Settings::Callflow(cf)) => Some(cf),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(
                callflow_id = %d.id,
                field = %e.path,
                error = %e.message,
                "callflow does not parse; it is not run"
            );
            None
        }
    };
    let to_plan = |d: &Doc, cf: super::documents::CallflowSettings| {
        cf.flow.map(|flow| super::CallflowPlan {
            id: d.id.clone(),
            flow,
            endpoints: Default::default(),
        })
    };
    if let Some(d) = docs.iter().find(|d| holds(d)) {
        return Ok(parsed(d).and_then(|cf| to_plan(d, cf)));
    }
    for d in &docs {
        let has_patterns = d.body.get("patterns").is_some_and(|p| p.is_array());
        if !has_patterns {
            continue;
        }
        if let Some(cf) = parsed(d) {
            if cf.patterns.iter().flatten().any(|p| p.matches(number)) {
                return Ok(to_plan(d, cf));
            }
        }
    }
    Ok(None)
}

/// The devices a callflow's `device` and `user` modules ring, from the account's documents.
pub async fn resolve_endpoints(
    store: &(impl Lookups + ?Sized),
    account_id: &str,
    plan: &mut super::CallflowPlan,
) -> Result<(), StoreError> {
    use super::documents::{DeviceSettings, Settings};
    use crate::callflow::{endpoint_keys, Endpoint};
    let keys = endpoint_keys(&plan.flow);
    if keys.is_empty() {
        return Ok(());
    }
    let realm = store
        .get(Kind::Account, account_id, account_id)
        .await?
        .and_then(|d| match super::documents::parse(Kind::Account, &d.body) {
            Ok(Settings::Account(a)) => a.realm.map(|r| r.as_str().to_string()),
            _ => None,
        });
    let endpoint = |d: &DeviceSettings| {
        let sip = d.sip.as_ref()?;
        Some(Endpoint {
            username: sip.username.as_ref()?.as_str().to_string(),
            realm: sip
                .realm
                .as_ref()
                .map(|r| r.as_str().to_string())
                .or_else(|| realm.clone()),
            invite_format: sip.invite_format.unwrap_or_default(),
            route: sip.route.as_ref().map(|r| r.as_str().to_string()),
        })
    };
    let devices: Vec<(String, DeviceSettings)> = store
        .list(Kind::Device, account_id)
        .await?
        .into_iter()
        .filter_map(|d| match super::documents::parse(Kind::Device, &d.body) {
            Ok(Settings::Device(s)) => Some((d.id, s)),
            _ => None,
        })
        .collect();
    for key in keys {
        let found: Vec<Endpoint> = match key.split_once(':') {
            Some(("device", id)) => devices
                .iter()
                .filter(|(d, _)| d == id)
                .filter_map(|(_, s)| endpoint(s))
                .collect(),
            Some(("user", id)) => devices
                .iter()
                .filter(|(_, s)| s.owner_id.as_deref() == Some(id))
                .filter_map(|(_, s)| endpoint(s))
                .collect(),
            _ => vec![],
        };
        if !found.is_empty() {
            plan.endpoints.insert(key, found);
        }
    }
    Ok(())
}

/// The owner of a device, looked up in the device's own account.
async fn owner(
    store: &(impl Lookups + ?Sized),
    doc: &Doc,
    device: &Found<super::documents::DeviceSettings>,
) -> Result<Option<Found<super::documents::EndpointSettings>>, StoreError> {
    match device.settings.as_ref().and_then(|s| s.owner_id.as_deref()) {
        Some(u) => Ok(store
            .get(Kind::User, &doc.account_id, u)
            .await?
            .map(|d| Found::user(&d))),
        None => Ok(None),
    }
}

/// The party a user or device document stands for, as the planner finds it for a call (a
/// device brings its owner), put as the caller beside the account's document; `None` when
/// there is no such document. What effective settings are computed from.
pub async fn party_of(
    store: &(impl Lookups + ?Sized),
    kind: Kind,
    account_id: &str,
    id: &str,
) -> Result<Option<Parties>, StoreError> {
    let account = store
        .get(Kind::Account, account_id, account_id)
        .await?
        .map(|d| Found::account(&d));
    let Some(doc) = store.get(kind, account_id, id).await? else {
        return Ok(None);
    };
    let party = match kind {
        Kind::Device => {
            let device = Found::device(&doc);
            Party {
                user: owner(store, &doc, &device).await?,
                device: Some(device),
            }
        }
        _ => Party {
            device: None,
            user: Some(Found::user(&doc)),
        },
    };
    Ok(Some(Parties {
        account_id: Some(account_id.to_string()),
        account,
        caller: party,
        ..Parties::default()
    }))
}

/// Looks up the documents of a call's parties.
pub async fn find_parties(
    store: &(impl Lookups + ?Sized),
    call: &CallInfo,
) -> Result<Parties, StoreError> {
    let mut how = Identification::default();
    let mut account_id = call.call.account_id.clone();
    if account_id.is_some() {
        how.account = "channel variable".into();
    }
    let mut caller_doc = None;
    if let (Some(a), Some(d)) = (&account_id, &call.call.device_id) {
        caller_doc = store.get(Kind::Device, a, d).await?;
        how.caller = match caller_doc {
            Some(_) => "device from channel variable".into(),
            None => format!("channel variable names device {d}, which does not exist"),
        };
    }
    if caller_doc.is_none() {
        let sip = match (&call.sip_auth_username, &call.sip_from_user) {
            (Some(u), _) => Some((u, "sip_auth_username")),
            (None, Some(u)) => Some((u, "sip_from_user")),
            _ => None,
        };
        if let Some((user, var)) = sip {
            let found = store
                .devices_by_sip_username(account_id.as_deref(), user)
                .await?;
            // Only an unambiguous match identifies the caller.
            match found.as_slice() {
                [d] => {
                    caller_doc = Some(d.clone());
                    how.caller = format!("device sip.username = {var}");
                }
                [] => how.caller = format!("no device has sip.username = {var}"),
                many => {
                    how.caller = format!(
                        "{} devices have sip.username = {var}: not guessed",
                        many.len()
                    )
                }
            }
        } else if how.caller.is_empty() {
            how.caller = "no sip_auth_username or sip_from_user".into();
        }
    }
    if account_id.is_none() {
        account_id = caller_doc.as_ref().map(|d| d.account_id.clone());
        if account_id.is_some() {
            how.account = "the caller's device".into();
        }
    }
    if account_id.is_none() && !call.call.callee_number.is_empty() {
        // An outside caller dialling a DID: the number identifies the account when exactly one
        // account's callflow holds it (as Kazoo's number database does).
        match store
            .accounts_with_number(&call.call.callee_number)
            .await?
            .as_slice()
        {
            [only] => {
                account_id = Some(only.clone());
                how.account = "the one callflow holding the destination number".into();
            }
            [] => {}
            many => {
                how.account = format!(
                    "{} accounts' callflows hold the destination number: not guessed",
                    many.len()
                )
            }
        }
    }
    let Some(account_id) = account_id else {
        if how.account.is_empty() {
            how.account =
                "not identified (no channel variable, no known device, no callflow number)".into();
        }
        how.callee = "no account to look in".into();
        return Ok(Parties {
            how,
            ..Parties::default()
        });
    };
    let mut caller = Party {
        device: caller_doc.as_ref().map(Found::device),
        user: None,
    };
    caller.user = match (&call.call.user_id, &caller_doc, &caller.device) {
        (Some(u), _, _) => store
            .get(Kind::User, &account_id, u)
            .await?
            .map(|d| Found::user(&d)),
        (None, Some(doc), Some(dev)) => owner(store, doc, dev).await?,
        _ => None,
    };
    let mut callee = Party::default();
    if !call.call.callee_number.is_empty() {
        match store
            .devices_by_sip_username(Some(&account_id), &call.call.callee_number)
            .await?
            .as_slice()
        {
            [d] => {
                let dev = Found::device(d);
                callee.user = owner(store, d, &dev).await?;
                callee.device = Some(dev);
                how.callee = "device sip.username = destination number".into();
            }
            [] => {
                how.callee =
                    "no device of the account has the destination number as sip.username".into()
            }
            many => {
                how.callee = format!(
                    "{} devices have the destination number as sip.username: not guessed",
                    many.len()
                )
            }
        }
    } else {
        how.callee = "no destination number".into();
    }
    let mut callflow = find_callflow(store, &account_id, &call.call.callee_number).await?;
    if let Some(cf) = callflow.as_mut() {
        resolve_endpoints(store, &account_id, cf).await?;
    }
    Ok(Parties {
        callflow,
        account: store
            .get(Kind::Account, &account_id, &account_id)
            .await?
            .map(|d| Found::account(&d)),
        account_id: Some(account_id),
        caller,
        callee,
        global: None,
        how,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::documents::Expect;
    use crate::values::CallMeta;
    use serde_json::json;

    async fn store() -> Store {
        let s = Store::open_in_memory().unwrap();
        s.put(Kind::Account, "acc", "acc", json!({}), Expect::Any)
            .await
            .unwrap();
        s.put(Kind::User, "acc", "u-a", json!({}), Expect::Any)
            .await
            .unwrap();
        s.put(Kind::User, "acc", "u-b", json!({}), Expect::Any)
            .await
            .unwrap();
        s.put(
            Kind::Device,
            "acc",
            "d-a",
            json!({"owner_id": "u-a", "sip": {"username": "alice"}}),
            Expect::Any,
        )
        .await
        .unwrap();
        s.put(
            Kind::Device,
            "acc",
            "d-b",
            json!({"owner_id": "u-b", "sip": {"username": "bob"}}),
            Expect::Any,
        )
        .await
        .unwrap();
        s
    }

    #[tokio::test]
    async fn channel_variables_come_first() {
        let s = store().await;
        let call = CallInfo {
            call: CallMeta {
                account_id: Some("acc".into()),
                device_id: Some("d-b".into()),
                ..CallMeta::default()
            },
            sip_auth_username: Some("alice".into()),
            ..CallInfo::default()
        };
        let p = find_parties(&s, &call).await.unwrap();
        assert_eq!(p.caller.device.unwrap().id, "d-b");
        assert_eq!(
            p.caller.user.unwrap().id,
            "u-b",
            "owner of the named device"
        );
    }

    #[tokio::test]
    async fn sip_username_finds_device_owner_and_account() {
        let s = store().await;
        for call in [
            CallInfo {
                sip_auth_username: Some("alice".into()),
                call: CallMeta {
                    callee_number: "bob".into(),
                    ..CallMeta::default()
                },
                ..CallInfo::default()
            },
            CallInfo {
                sip_from_user: Some("alice".into()),
                call: CallMeta {
                    callee_number: "bob".into(),
                    ..CallMeta::default()
                },
                ..CallInfo::default()
            },
        ] {
            let p = find_parties(&s, &call).await.unwrap();
            assert_eq!(p.account.unwrap().id, "acc");
            assert_eq!(p.caller.device.unwrap().id, "d-a");
            assert_eq!(p.caller.user.unwrap().id, "u-a");
            assert_eq!(p.callee.device.unwrap().id, "d-b");
            assert_eq!(p.callee.user.unwrap().id, "u-b");
        }
    }

    #[tokio::test]
    async fn unknown_or_ambiguous_callers_are_not_guessed() {
        let s = store().await;
        s.put(Kind::Account, "other", "other", json!({}), Expect::Any)
            .await
            .unwrap();
        s.put(
            Kind::Device,
            "other",
            "d-x",
            json!({"sip": {"username": "alice"}}),
            Expect::Any,
        )
        .await
        .unwrap();
        let p = find_parties(
            &s,
            &CallInfo {
                sip_from_user: Some("alice".into()),
                ..CallInfo::default()
            },
        )
        .await
        .unwrap();
        assert!(
            p.account.is_none() && p.caller.device.is_none(),
            "alice exists in two accounts"
        );
        let p = find_parties(
            &s,
            &CallInfo {
                call: CallMeta {
                    account_id: Some("acc".into()),
                    ..CallMeta::default()
                },
                sip_from_user: Some("alice".into()),
                ..CallInfo::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            p.caller.device.unwrap().id,
            "d-a",
            "the account narrows it down"
        );
        let p = find_parties(
            &s,
            &CallInfo {
                sip_from_user: Some("mallory".into()),
                ..CallInfo::default()
            },
        )
        .await
        .unwrap();
        assert!(p.account.is_none());
    }
}
