//! TLS observation (issue 3). Sans-IO: in-order stream bytes in, events out.
//!
//! [`reassembly::Reassembler`] turns one direction's TCP segments, in any order, into
//! its byte stream; [`record::RecordReader`] follows that stream's record layer;
//! [`hello`], [`cert`] and [`fingerprint`] read the handshake messages; [`names`]
//! names what they find (see docs/design/tls-observation.md).

pub mod cert;
pub mod fingerprint;
pub mod hello;
pub mod names;
pub mod reassembly;
pub mod record;
