//! RQ-VAE (TIGER): an MLP autoencoder whose latent is residual-quantized, trained end to end
//! with candle's autograd; docs/methods.md §3, with PLUM's progressive prefix masking and
//! co-occurrence contrastive alignment (§4).
//!
//! The same engine trains GenSAR's dual quantizer (§5, [`crate::quant::gensar`]): an [`Arch`]
//! says which input columns each encoder reads, which latent columns each codebook level
//! quantizes, and which latent and input columns each decoder maps between. Plain RQ-VAE is
//! one encoder, full-width levels and one decoder; GenSAR is two encoders, shared full-width
//! levels, then semantic and collaborative levels on the two halves, and two decoders.
//!
//! Training runs on candle tensors (autograd; AdamW fused in `adamw.rs`). Inference (`encode`, `decode`) runs on
//! plain matrices through the same GEMM seam and exact nearest-codeword search as RQ-KMeans, so
//! `assign` is fast, multi-threaded and bit-identical however rows are batched.
//!
//! Devices (`[quantizer] device`, `--device`): on `cpu` training takes the tuned CPU path
//! (each MLP one fused custom op, `quant/mlp.rs`; AdamW one in-place op; exact host search for
//! the nearest codeword). On any other device it takes the device-generic path (`generic.rs`):
//! the same model, initial weights (uploaded from the same seeded RNG), batches, PLUM masks,
//! contrastive pairs, losses, schedule, clipping, AdamW arithmetic and dead-code resets, built
//! from ordinary candle ops and autograd with every variable on the device; the nearest
//! codeword is the argmin of a distance GEMM, and nothing comes back to the host inside an
//! epoch. Evaluations then run on the device too, and the saved model is the same format.
//! `Quantizer::encode_on` (assign) encodes on the device with the CPU path's codes
//! (`device.rs`: rows whose two nearest codewords are close calls are settled on the host). The
//! generic path also runs on candle's CPU backend in the tests, which hold it to the tuned
//! path: one step's loss and gradients to rounding, whole runs' per-epoch losses within a
//! stated tolerance, encoding to identical codes (`tests.rs`, `generic`).
//! Every random choice (weight init, shuffling, masks, dead-code resets) comes from one seeded
//! ChaCha8 stream: the same data, config and seed give the same model and codes on CPU, for
//! any thread count. Across CPUs that get different GEMM kernels (AVX-512 or AVX2, picked at
//! run time) the weights may round differently.

mod arch;
mod dense;
mod device;
mod eval;
mod generic;
mod losses;
mod model;
mod store;
mod trainer;

pub use model::RqVae;
pub use store::{Evaluation, RqVaeSaved};

#[cfg(test)]
mod tests;
