//! Two capture points, one on each side of a middlebox: what comparing them shows
//! (DESIGN.md, "Two capture points"). Resets and FINs that appear on one side only
//! (forged or absorbed by the middlebox), TLS interception (the ClientHello random
//! or the leaf certificate differs between the points), a TLS version downgrade,
//! and which leg a failed handshake failed on.
//!
//! Sans-IO like the rest of the core: it reads the per-point state of one ended
//! session (timestamps already corrected for the clock offset between the points)
//! and returns plain data for the verdict record.

use crate::session::PointId;
use crate::time::Nanos;

/// Which point faces the clients and how closely copies must match in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorrelateConfig {
    /// The point on the clients' side of the middlebox (`--client-side`; default
    /// the first point). The first other point is the server side.
    pub client_side: PointId,
    /// An RST or FIN seen at one point matches its copy at the other if their
    /// capture times differ by at most this (`--match-window`, default 50 ms).
    pub window: Nanos,
}

impl Default for CorrelateConfig {
    fn default() -> Self {
        CorrelateConfig {
            client_side: PointId(0),
            window: Nanos::from_millis(50),
        }
    }
}
