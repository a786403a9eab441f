//! tapwatch engine: the sans-IO core of a passive TLS-failure sensor.
//!
//! Layers depend one way, top to bottom:
//!
//! - [`capture`]: capture-file framing (pcap, pcapng) over a byte slice;
//! - [`wire`]: link, network and TCP decoding of one frame into a [`wire::Packet`];
//! - [`flow`]: the session key and its symmetric hash;
//! - [`clock`]: the clock offset between capture points, estimated once before a
//!   replay from packets seen at both (the pipeline corrects it as it merges them);
//! - [`tcp`]: per-direction TCP observation;
//! - [`session`] and [`table`]: sessions per capture point, the bounded flow table
//!   and its timers;
//! - [`tls`]: TLS observation per point and direction, and its judgement;
//! - [`correlate`]: what two capture points around a middlebox show together;
//! - [`pairing`]: joining the legs of a session a proxy re-originated;
//! - [`verdict`]: classification of an ended session and the verdict record;
//! - [`worker`]: the per-core state machine that ties the above together.
//!
//! None of these reads a clock or does I/O: bytes and capture timestamps go in,
//! verdict records come out, so a replay is deterministic. [`pipeline`] is the only
//! module that starts threads; it moves packets from a reader to the workers over
//! bounded lock-free rings and verdicts (and pairing notices) from the workers to
//! one exporter.

pub mod capture;
pub mod clock;
pub mod correlate;
pub mod flow;
pub mod json;
pub mod metrics;
mod outbox;
pub mod pairing;
pub mod pipeline;
pub mod session;
pub mod stats;
pub mod synth;
pub mod table;
pub mod tcp;
pub mod time;
pub mod tls;
pub mod verdict;
pub mod wire;
pub mod worker;
