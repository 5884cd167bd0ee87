//! Finding and opening a model: the Hugging Face hub cache or a local folder, the safetensors
//! weights (the one loader every model reads through), and the device and dtype to run on.

pub mod device;
pub mod hub;
pub mod weights;
