//! Callflows: the flow model is [`crate::settings::flow`] (typed and validated where documents
//! enter); the session core runs a flow one module at a time.

pub use crate::settings::flow::*;
