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
    gpu(
        "CUDA",
        || Device::new_cuda(0),
        "--device cuda needs an NVIDIA GPU, its driver (libcuda.so.1) and the CUDA 13 libraries \
         (libcublas, libcublasLt, libcurand, libnvrtc) where the dynamic loader finds them, \
         e.g. through LD_LIBRARY_PATH (docs/gpu.md)",
    )
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    Err(Error::Config(
        "--device cuda: this sidtool was built without CUDA support; rebuild with \
         `cargo build --release --features cuda`, or build the one binary that runs anywhere \
         with scripts/cuda-toolchain.sh and scripts/cuda-build.sh (docs/gpu.md)"
            .into(),
    ))
}

#[cfg(feature = "metal")]
fn metal() -> Result<Device> {
    gpu(
        "Metal",
        || Device::new_metal(0),
        "--device metal needs a Mac with a Metal GPU",
    )
}

#[cfg(not(feature = "metal"))]
fn metal() -> Result<Device> {
    Err(Error::Config(
        "--device metal: this sidtool was built without Metal support; rebuild on macOS with \
         `cargo build --release --features metal`"
            .into(),
    ))
}

/// Open a GPU device; its error, or its panic, becomes a configuration error that says what the
/// device needs. cudarc loads libcuda.so.1 and the CUDA libraries at run time, so the binary
/// starts on any machine, and *panics* inside `Device::new_cuda` when one is missing: the panic
/// is caught, with the panic hook silenced meanwhile so that no panic text reaches stderr.
#[cfg(any(feature = "cuda", feature = "metal"))]
fn gpu(
    name: &str,
    open: impl FnOnce() -> candle_core::Result<Device> + std::panic::UnwindSafe,
    needs: &str,
) -> Result<Device> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(open);
    std::panic::set_hook(hook);
    let reason = match opened {
        Ok(Ok(device)) => return Ok(device),
        Ok(Err(e)) => e.to_string(),
        Err(panic) => {
            let message = match panic.downcast::<String>() {
                Ok(message) => *message,
                Err(panic) => match panic.downcast::<&str>() {
                    Ok(message) => message.to_string(),
                    Err(_) => "the driver library panicked".into(),
                },
            };
            tracing::debug!("{name} device 0: {message}");
            // cudarc's "Unable to dynamically load the \"cuda\" shared library - searched for
            // library names: [34 names]. …": the first clause (the whole with -vv).
            match message.split_once(" - searched for") {
                Some((first, _)) => first.to_string(),
                None => message,
            }
        }
    };
    Err(Error::Config(format!(
        "cannot open {name} device 0: {reason}\n{needs}"
    )))
}
