//! Outbound event socket: FreeSWITCH connects to callrec once per call.
//!
//! - [`listener`]: accepts connections from allowed peers ([`allow`]), enforces the
//!   concurrency limit;
//! - [`session`]: one call as a pure state machine (inputs in, actions out; no IO);
//! - [`driver`]: the IO around a session: socket, timers, rules, disk, delivery.

pub mod allow;
pub mod driver;
pub mod listener;
pub mod live;
pub mod session;

pub use driver::SessionContext;
