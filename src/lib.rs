//! callrec: records phone calls on FreeSWITCH through the outbound event socket.
//!
//! # Layout
//! - [`esl`]: the Event Socket protocol: the `callrec-esl` crate (sans-IO; re-exported), with
//!   [`event`]s (plain, JSON, XML, channel data), values decoded when read;
//! - [`connection`]: one socket: commands out, replies matched in order, events in;
//! - [`inbound`]: the one long-lived link to FreeSWITCH's event socket, following calls by UUID;
//! - [`outbound`]: the listener and the per-call session;
//! - [`rules`]: recording settings and the decision which recordings a call gets, with its
//!   record (each call's "why (not) recorded", kept off the call's path);
//! - [`recorder`]: recordings of a call, their `uuid_record` commands and files;
//! - [`store`]: the embedded SQLite store, the only place that speaks SQL;
//! - [`uploader`]: delivery of finished recordings (durable spool, HTTP PUT/POST, local store);
//! - [`hooks`]: webhooks (notices queued in the store, signed POSTs to each account's receivers);
//! - [`media`]: reading a kept recording's audio (the console's waveform);
//! - [`admin`]: the HTTP API and the operators' console (`/ui/`);
//! - [`net`]: what outgoing HTTP shares (the retry schedule, the connect-time destination
//!   guard, credentials in URLs);
//! - [`settings`]: the typed settings model (documents, recording parameters, flows,
//!   destinations), parsed once where it enters; it imports nothing above [`values`];
//! - [`values`]: small value types every layer shares;
//! - [`supervisor`]: recordings a previous run journaled, finished after a restart;
//! - [`config`], [`telemetry`], [`app`] (wiring and graceful shutdown);
//! - [`tools`]: operator tools such as `callrec esl decode`;
//! - [`cli`]: the command line.
//!
//! Data flows one way: socket → `esl` frames → `event`s → per-call sessions → recorder →
//! spool → uploader → hooks (sessions and the uploader raise webhook notices; the hooks never
//! call back into either). Nothing imports "upward". The layers, lowest first (a module names
//! only modules of lower layers; `tests/layering.rs` checks it from the source):
//! `values`, `telemetry`, `esl`, `event`, `media` → `settings` → `net`, `store`, `callflow`,
//! `connection` → `rules`, `hooks`, `inbound` → `recorder` → `uploader` → `outbound` →
//! `supervisor` → `admin`, `tools`, `config` → `cli`, `app`.

pub use callrec_esl as esl;
pub use callrec_esl::event;

pub mod admin;
pub mod app;
pub mod callflow;
pub mod cli;
pub mod config;
pub mod connection;
pub mod hooks;
pub mod inbound;
pub mod media;
pub mod net;
pub mod outbound;
pub mod recorder;
pub mod rules;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod tools;
pub mod uploader;
pub mod values;
