//! TLS observation (issue 3). Sans-IO: in-order stream bytes in, events out.
//!
//! [`reassembly::Reassembler`] turns one direction's TCP segments, in any order, into
//! its byte stream; [`record::RecordReader`] follows that stream's record layer. Still
//! to come: feeding them from the worker, message parsing with tls-parser,
//! fingerprints, and the verdicts (see docs/design/tls-observation.md).

pub mod reassembly;
pub mod record;
