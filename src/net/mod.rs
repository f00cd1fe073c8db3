//! Outgoing HTTP building blocks the uploader and the webhook sender share: when to try again
//! ([`retry`]), which addresses a connection may reach ([`guard`], the destination policy at
//! connect time) and credentials in URLs, split off or redacted ([`userinfo`]).
//!
//! Invariant: pure policy plus name resolution; it imports nothing of callrec but
//! [`crate::settings`].

pub mod guard;
pub mod retry;
pub mod userinfo;
