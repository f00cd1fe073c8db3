//! Operator tools that work on captures and live sockets.

pub mod esl_decode;
pub mod recordings;
pub mod webhooks;
pub use callrec_esl::transcript;
