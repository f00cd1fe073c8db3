//! callrec-sim: a scripted FreeSWITCH for callrec's tests, benchmarks and `callrec lab`.
//!
//! It plays FreeSWITCH's side of the outbound event socket the way the captures in
//! `tests/fixtures/esl/` show it, byte for byte where they show bytes: it dials the controller,
//! answers `connect` with channel data, answers every command with FreeSWITCH's exact reply
//! texts, emits channel events in the captured order and shape, and implements `uuid_record`
//! (real WAV/MP3 files, limits, per-recording variables, RECORD_START/STOP).
//!
//! A call is either [`dial`]led straight into the controller (the test plays the rest of the
//! dialplan) or [`place`]d through a [`Dialplan`] built from real dialplan files, which the
//! channel runs as FreeSWITCH would, sockets included.
//!
//! Time is virtual: a call's clock moves only when the test says so ([`CallHandle::advance`]),
//! so recording durations and limits are exact and no test depends on wall-clock timing. The
//! test plays the caller and the rest of the dialplan through [`CallHandle`] (answer, bridge,
//! hang up, kill the socket) and synchronises on what the controller sent
//! ([`CallHandle::wait_for_command`]).
//!
//! Layout, each module importing only those before it: `spec` (what call to place), `clock`
//! (virtual time and dates), `wire` (FreeSWITCH's serialisations, and a command as read off a
//! socket), `bus` (what the parts of a switch share: channels by UUID, the event bus, `api`
//! against any channel), `channel` (channel state → event headers), `media` (recording files),
//! `dialplan` (XML dialplan files and hunting, pure), `call/` (one channel, by concern:
//! `socket` (commands, subscriptions, replies), `apps` (dialplan applications), `media_bugs`
//! (`uuid_record` and `record`), `route` (the channel running its own dialplan: hunting again,
//! the `socket` application's park and `resume`), `controls` (the test's handle)), `inbound` (the inbound event socket: auth, subscriptions, filters, `api`/`bgapi`
//! against any channel) and `switch` (a whole FreeSWITCH: the channels' registry, restarts),
//! [`scenario`] (named call scripts), [`load`] (many calls at a rate, for the load
//! benchmark and `callrec-lab`). The simulator depends on the protocol crate (`callrec-esl`)
//! only, never on the application it tests.

mod bus;
mod call;
mod channel;
mod clock;
mod dialplan;
mod inbound;
pub mod load;
mod media;
pub mod scenario;
mod spec;
mod switch;
mod wire;

pub use bus::InboundStats;
pub use call::{dial, place, CallHandle, CallReport, Command, RecordingReport};
pub use dialplan::{Dialplan, DialplanAction};
pub use spec::CallSpec;
pub use switch::Switch;
pub use wire::json_escape;
