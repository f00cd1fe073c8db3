//! Outbound event socket: FreeSWITCH connects to callrec once per call.
//!
//! - [`listener`]: accepts connections, enforces the concurrency limit;
//! - [`session`]: drives one call from `connect` to its last recording.

pub mod listener;
pub mod session;

pub use session::SessionContext;
