//! TLS observation (issue 3). Sans-IO: in-order stream bytes in, events out.
//!
//! [`record::RecordReader`] follows the record layer of one direction of one session.
//! What is still to come: the in-order delivery of TCP payload from segments in any
//! order (a bounded reassembler fed by the worker), message parsing with tls-parser,
//! fingerprints, and the verdicts (see docs/design/tls-observation.md).

pub mod record;
