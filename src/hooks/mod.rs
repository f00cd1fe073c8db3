//! Webhooks: signed, durable notifications of a recording's life to the receivers an account
//! names in its webhook documents (`settings::webhook`).
//!
//! - [`notifier`]: sessions and the uploader raise [`Notice`]s (never waiting); one writer turns
//!   each into one queued event per subscribed webhook (the store's `webhook_events`), and into
//!   one outcome row of the call's decision record;
//! - [`sender`]: takes due events, fairly across webhooks, and posts each, signed, retried on
//!   the spool's schedule;
//! - [`sign`]: Standard Webhooks 1.0 signatures.
//!
//! Data flows one way: session / uploader → notifier → store → sender → receiver. This module
//! imports the store, settings, `net` and telemetry, never the session or the uploader.
//!
//! Invariants: an event's `webhook-id` and body are fixed when it is queued, so every retry of
//! one event is the same message; a webhook's secret is read from its document at send time and
//! never logged; delivery is at least once (a crash between a receiver's 2xx and the settle
//! sends it again, with the same `webhook-id`, for the receiver to de-duplicate).

pub mod notifier;
pub mod sender;
pub mod sign;

pub use notifier::{Notice, Notifier};
