//! callrec: records phone calls on FreeSWITCH through the outbound event socket.
//!
//! # Layout
//! - [`esl`]: the Event Socket wire protocol, sans-IO under a thin tokio-util codec;
//! - [`event`]: events (plain, JSON, XML, channel data), values decoded when read;
//! - [`tools`]: operator tools such as `callrec esl decode`;
//! - [`cli`]: the command line.
//!
//! Data flows one way: socket → `esl` frames → `event`s → per-call sessions → recorder →
//! spool → uploader. Nothing imports "upward".

pub mod cli;
pub mod esl;
pub mod event;
pub mod tools;
