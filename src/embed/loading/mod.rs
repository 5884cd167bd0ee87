//! Finding and opening a model: the Hugging Face hub cache or a local folder, the safetensors
//! weights (the one loader every model reads through). The device lives in `crate::device`.

pub mod hub;
pub mod weights;
