//! The typed settings model, at the bottom of the crate: what an admin writes (account, user,
//! device and callflow documents, the config file's `[record_call]`) parsed once, where it
//! enters, into types that only hold values FreeSWITCH and the uploader accept.
//!
//! - [`model`]: recording parameters (`record_call`, Kazoo 4 `call_recording` cells) and the
//!   newtypes they are made of;
//! - [`documents`]: the typed parts of documents, their [`documents::Kind`], and the one parser
//!   the API and the planner share ([`documents::FieldError`] names the field);
//! - [`flow`]: callflows (modules, invite formats, endpoints and dial strings);
//! - [`destination`]: where a recording may go (`s3://bucket/prefix/` parsed here);
//! - [`policy`]: the destination policy (which addresses a written URL may lead to);
//! - [`webhook`]: webhook documents (events, signing secrets).
//!
//! Invariant: this module imports nothing of callrec but [`crate::values`]; `rules`,
//! `callflow`, `config`, `admin`, the store and the uploader use it.

pub mod destination;
pub mod documents;
pub mod flow;
pub mod model;
pub mod policy;
pub mod webhook;
