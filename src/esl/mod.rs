//! The Event Socket wire layer.
//!
//! - [`parse`]: sans-IO frame decoder (bytes in, [`Frame`]s out; no tokio);
//! - [`codec`]: the tokio-util adapter over it (frame boundaries only);
//! - [`message`]: what a frame means (reply, API response, event, notice);
//! - [`command`]: what callrec sends, encoded so no value can break the framing.

pub mod codec;
pub mod command;
pub mod error;
pub mod frame;
pub mod header;
pub mod message;
pub mod parse;

pub use codec::EslCodec;
pub use command::{CallCommand, Command, EventFormat, SendMsg};
pub use error::{CommandError, ProtocolError, ProtocolErrorKind};
pub use frame::{ContentType, Frame};
pub use message::{ApiResponse, CommandReply, DisconnectNotice, Disposition, LogData, Message};
pub use parse::{FrameDecoder, Limits};
