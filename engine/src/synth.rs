//! Synthetic traffic generator (placeholder until the generator lands).
#[derive(Clone, Debug, Default)]
pub struct SynthConfig {
    pub seed: u64,
    pub packets: u64,
    pub concurrent: u32,
    pub start_ns: u64,
    pub failure_share: f64,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub packets: u64,
    pub bytes: u64,
    pub sessions: u64,
}
pub fn write_pcap<W: std::io::Write>(_cfg: &SynthConfig, _out: W) -> std::io::Result<SynthSummary> {
    Err(std::io::Error::other("generator not built yet"))
}
