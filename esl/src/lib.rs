//! FreeSWITCH's Event Socket protocol (ESL), sans-IO: bytes in, typed frames, events and
//! messages out; commands encoded so no value can break the framing. No runtime, no sockets:
//! the optional `tokio` feature adds `EslCodec` (module `codec`), a `tokio_util` codec that
//! only finds frame boundaries.
//!
//! Layering is one-way, each module using only those before it:
//! [`error`] → [`header`] → [`frame`] → [`parse`] (the decoder) → [`event`] → [`message`];
//! [`command`] (what a client sends) stands alone; [`transcript`] (the capture format used by
//! tests and tools) and [`corpus`] (frames cut from a folder of captures) sit on top.
//!
//! ```
//! use bytes::BytesMut;
//! use callrec_esl::{FrameDecoder, Message};
//!
//! let wire = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n\
//!              Content-Type: text/event-plain\nContent-Length: 45\n\n\
//!              Event-Name: HEARTBEAT\nCore-UUID: 1c2d%203e4f\n\n";
//! let mut buf = BytesMut::from(&wire[..]);
//! let mut decoder = FrameDecoder::default();
//! let mut names = vec![];
//! while let Some(frame) = decoder.decode(&mut buf).unwrap() {
//!     match Message::from_frame(frame).unwrap() {
//!         Message::Reply(r) => names.push(r.text().into_owned()),
//!         Message::Event(e) => names.push(e.get("Core-UUID").unwrap().into_owned()),
//!         _ => {}
//!     }
//! }
//! assert_eq!(names, ["+OK accepted", "1c2d 3e4f"]);
//! ```
#![deny(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "tokio")]
pub mod codec;
pub mod command;
pub mod corpus;
pub mod error;
pub mod event;
pub mod frame;
pub mod header;
pub mod message;
pub mod parse;
pub mod transcript;

#[cfg(feature = "tokio")]
pub use codec::EslCodec;
pub use command::{CallCommand, Command, EventFormat, SendMsg};
pub use error::{CommandError, ProtocolError, ProtocolErrorKind};
pub use event::Event;
pub use frame::{ContentType, Frame};
pub use message::{ApiResponse, CommandReply, DisconnectNotice, Disposition, LogData, Message};
pub use parse::{FrameDecoder, Limits};
