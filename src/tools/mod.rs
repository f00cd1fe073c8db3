//! Operator tools that work on captures and live sockets.

pub mod corpus;
pub mod esl_decode;
pub mod recordings;
pub mod transcript;
