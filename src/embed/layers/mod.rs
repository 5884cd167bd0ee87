//! Building blocks the models share: linear projections, pooling, and the fused CPU kernels
//! of the Qwen3 forward.

pub mod cpu_kernels;
pub mod linear;
pub mod pooling;
