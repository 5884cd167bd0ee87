//! The encoder architectures, each loaded from its Hugging Face checkpoint through one
//! [`candle_nn::VarBuilder`] (see `loading::weights`): Qwen3 (our own stateless, batched
//! encoder) and the BERT family (candle-transformers' model).

pub mod bert;
pub mod qwen3;
