//! The types the core and the edges share, below both: what a session's time looks like in
//! output ([`times`]), and the figures a capture and its source count ([`stats`]).
//!
//! Contract: this module imports only [`crate::time`]; the pipeline fills these types, the
//! sinks print them, the sources count into them, and none of those has to import another to
//! do so (the layer rule is kept by `tests/layers.rs`). Session records stay with the session
//! ([`crate::session::record`]), which is below the tracker, the pipeline and every sink.

pub mod stats;
pub mod times;

pub use stats::{CaptureStats, EbpfStats, KernelStats, OTHER_PORTS_LISTED, PortSegments, SourceStats};
