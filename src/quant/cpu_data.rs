//! Borrowing the f32 data of CPU tensors inside sidtool's custom candle ops (the MLPs with
//! their reconstruction loss, AdamW): copying multi-MiB activations each step cost measurable time.

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// The elements of a contiguous f32 storage under `l`.
pub fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("sidtool's training ops need contiguous tensors");
    };
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// `f` on a CPU f32 tensor's data, borrowed (copied only when the tensor is not contiguous).
pub(crate) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("sidtool's training ops run on the CPU");
    };
    Ok(f(slice(cpu, layout)?))
}
