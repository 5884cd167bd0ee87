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
//! Every random choice (weight init, shuffling, masks, dead-code resets) comes from one seeded
//! ChaCha8 stream: the same data, config and seed give the same model and codes on CPU, for
//! any thread count. Across CPUs that get different GEMM kernels (AVX-512 or AVX2, picked at
//! run time) the weights may round differently.

mod arch;
mod dense;
mod eval;
mod model;
mod store;
mod trainer;

pub use model::RqVae;
pub use store::{Evaluation, RqVaeSaved};

#[cfg(test)]
mod tests;
