//! Where the heavy stages run (embedding, quantizer training and encoding, tier-2 eval) and in
//! which precision the encoder runs. The only place that knows about the `cuda` and `metal`
//! cargo features; everything else takes a `candle_core::Device` from [`open`].

use crate::error::{Error, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl std::str::FromStr for DeviceKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            "metal" => Ok(DeviceKind::Metal),
            _ => Err(Error::Config(format!(
                "unknown device `{s}` (expected cpu, cuda or metal)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedDType {
    F32,
    F16,
    Bf16,
}

impl std::str::FromStr for EmbedDType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(EmbedDType::F32),
            "f16" => Ok(EmbedDType::F16),
            "bf16" => Ok(EmbedDType::Bf16),
            _ => Err(Error::Config(format!(
                "unknown dtype `{s}` (expected f32, f16 or bf16)"
            ))),
        }
    }
}

impl EmbedDType {
    pub fn candle(self) -> DType {
        match self {
            EmbedDType::F32 => DType::F32,
            EmbedDType::F16 => DType::F16,
            EmbedDType::Bf16 => DType::BF16,
        }
    }

    /// f32 on CPU (exact, and CPU GEMMs gain little from halves), bf16 on GPUs.
    pub(crate) fn default_for(device: DeviceKind) -> EmbedDType {
        match device {
            DeviceKind::Cpu => EmbedDType::F32,
            _ => EmbedDType::Bf16,
        }
    }
}

/// Open the device, or say how to get a binary that can.
pub fn open(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda => cuda(),
        DeviceKind::Metal => metal(),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    Device::new_cuda(0).map_err(|e| Error::Config(format!("cannot open CUDA device 0: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    Err(Error::Config(
        "--device cuda: this sidtool was built without CUDA support; rebuild with \
         `cargo build --release --features cuda` (needs the CUDA toolkit)"
            .into(),
    ))
}

#[cfg(feature = "metal")]
fn metal() -> Result<Device> {
    Device::new_metal(0).map_err(|e| Error::Config(format!("cannot open Metal device 0: {e}")))
}

#[cfg(not(feature = "metal"))]
fn metal() -> Result<Device> {
    Err(Error::Config(
        "--device metal: this sidtool was built without Metal support; rebuild on macOS with \
         `cargo build --release --features metal`"
            .into(),
    ))
}
