//! Progress reporting seam: the library says what it is doing, the binary decides how to
//! show it (a bar on a terminal, plain lines in a log, nothing with --quiet).

/// Receives progress of long stages. Implementations must be cheap to call.
pub trait Progress: Sync {
    /// A new stage begins; `total` is the number of units if known.
    fn start(&self, stage: &str, total: Option<u64>);
    fn advance(&self, units: u64);
    /// A short status for the running stage (e.g. current loss terms); may be ignored.
    fn note(&self, _msg: &str) {}
    fn finish(&self);
}

/// Reports nothing (library callers and tests).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
