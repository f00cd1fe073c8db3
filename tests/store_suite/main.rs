//! The store's behaviour, the same on both backends: every test here runs once against a new
//! SQLite file and once against a new PostgreSQL database (see `support::pg` for how the
//! database is found). A test gets a way to open handles on its store, so it can also check
//! what one handle writes and another reads, as two callrec instances would.

#[path = "../support/mod.rs"]
mod support;

mod documents;
mod erasure;
mod recordings;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Barrier;

use callrec::store::documents::Expect;
use callrec::store::recordings::{Claim, Filter, NewRecording, Outcome};
use callrec::store::webhooks::{
    ClaimLimits, HookFilter, HookOutcome, HookRow, HookState, NewHookEvent,
};
use callrec::store::{
    now_us, DeliveryState, Kind, RecordingState, Revision, Scope, Store, StoreError,
};
use callrec::values::{Destination, UploadMethod};
use serde_json::{json, Value};

/// Opens handles on one test's store: the same SQLite file, or the same PostgreSQL database.
enum Opener {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Opener {
    async fn open(&self) -> Store {
        match self {
            Opener::Sqlite(path) => Store::open(path).unwrap(),
            Opener::Postgres(url) => Store::connect(url).await.unwrap(),
        }
    }
}

/// Runs `claimer` on `workers` tasks released at once by a barrier, alternating between the two
/// handles (two nodes on one store); each task's result, in task order.
async fn racing<T, F, Fut>(handles: &[Store; 2], workers: usize, claimer: F) -> Vec<T>
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(workers));
    let joins: Vec<_> = (0..workers)
        .map(|w| {
            let claims = claimer(handles[w % 2].clone());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                claims.await
            })
        })
        .collect();
    let mut got = Vec::with_capacity(workers);
    for j in joins {
        got.push(j.await.unwrap());
    }
    got
}

macro_rules! both {
    ($($module:ident::$name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$module::$name(&super::Opener::Sqlite(dir.path().to_path_buf())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::support::pg::new_db() else { return };
                    super::$module::$name(&super::Opener::Postgres(db.url.clone())).await;
                    drop(db);
                }
            )*
        }
    };
}

both!(
    documents::revisions_and_conflicts,
    documents::the_same_id_in_two_accounts_is_two_documents,
    documents::devices_by_sip_username_in_one_or_every_account,
    documents::any_recording_settings_sees_settings_and_callflow_modules,
    documents::the_per_call_lookups_follow_every_write,
    documents::every_document_in_key_order,
    documents::racing_creates_of_one_document_make_one,
    documents::a_write_through_one_handle_is_read_through_another,
    documents::tokens_verify_by_scope,
    recordings::a_recording_follows_its_deliveries,
    recordings::the_journal_is_per_node,
    recordings::claims_recovery_and_orphans_are_per_node_listing_is_not,
    recordings::reassigning_a_gone_node,
    recordings::racing_claims_never_share_a_delivery,
    recordings::a_replaced_recording_starts_without_its_old_deliveries,
    recordings::rows_mentioning_a_field_are_found_per_node_and_by_age,
    webhooks::webhook_claims_are_fair_skip_busy_hooks_and_settle,
    webhooks::racing_webhook_claims_never_share_an_event,
    erasure::erasure_refuses_busy_foreign_and_other_nodes_recordings,
    erasure::retention_takes_only_kept_recordings_past_their_cutoff,
    erasure::decision_records_are_found_by_party_call_and_outcome_and_pruned,
);
