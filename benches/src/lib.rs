//! Benchmarks of tapwatch: criterion micro-benchmarks in `benches/` and the
//! end-to-end replay benchmark driven by `scripts/bench-replay`.
