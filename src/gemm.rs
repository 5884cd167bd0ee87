//! Dense f32 GEMM, the one place that knows the backend: candle-core's `gemm` kernel by
//! default, the system OpenBLAS with `--features openblas`. The k-means distance searches,
//! the Qwen3 encoder's projections and RQ-VAE's layers all run through [`sgemm_ex`]; the
//! randomized SVD of the collaborative embeddings through its f64 twin [`dgemm_ex`].

/// `out` (m × n, row-major) = [`out` +] A · B for row-major A (m × k). B is row-major (k × n),
/// or, with `b_is_nk`, given as its row-major transpose (n × k), e.g. a centroid matrix or a
/// transformers `(out, in)` weight. `accumulate` adds the product to `out` (a fused residual add).
///
/// The one place that knows the GEMM backend: candle-core's `gemm` kernel by default, the
/// system OpenBLAS with `--features openblas`. Both use all of rayon's threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    a: &[f32],
    m: usize,
    k: usize,
    b: &[f32],
    n: usize,
    b_is_nk: bool,
    out: &mut [f32],
    accumulate: bool,
) {
    sgemm_ex(a, m, k, false, b, n, b_is_nk, out, accumulate);
}

/// The shapes no kernel is asked for: an empty output, or k = 0 (a zero product, written
/// unless accumulating). True when handled here.
fn degenerate<T: Copy + Default>(
    m: usize,
    n: usize,
    k: usize,
    out: &mut [T],
    accumulate: bool,
) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(T::default());
        }
        return true;
    }
    false
}

/// [`sgemm`] where A may also be given as its row-major transpose (k × m) (`a_is_km`), as
/// weight gradients `Gᵀ·X` need.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_ex(
    a: &[f32],
    m: usize,
    k: usize,
    a_is_km: bool,
    b: &[f32],
    n: usize,
    b_is_nk: bool,
    out: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && out.len() >= m * n);
    if degenerate(m, n, k, out, accumulate) {
        return;
    }
    // SAFETY: `out` holds at least m × n initialised values, checked above.
    unsafe {
        sgemm_raw(
            a,
            m,
            k,
            a_is_km,
            b,
            n,
            b_is_nk,
            out.as_mut_ptr(),
            accumulate,
        )
    }
}

/// A new (m × n) product `A · B`, as [`sgemm_ex`] without `accumulate`, in a buffer that is
/// not zero-filled first: with β = 0 both backends write every element and read none, and
/// training allocates several MiB of such products per step (the fill showed as 3% of a
/// profile).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_new(
    a: &[f32],
    m: usize,
    k: usize,
    a_is_km: bool,
    b: &[f32],
    n: usize,
    b_is_nk: bool,
) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 || k == 0 {
        return vec![0.0; m * n];
    }
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: the capacity is m × n; with `accumulate` false the GEMM writes all m × n
    // elements without reading them (BLAS: C need not be set when β = 0; `gemm`: read_dst
    // false), so every element is initialised before `set_len`.
    unsafe {
        sgemm_raw(a, m, k, a_is_km, b, n, b_is_nk, out.as_mut_ptr(), false);
        out.set_len(m * n);
    }
    out
}

/// The backend call behind [`sgemm_ex`] and [`sgemm_new`].
///
/// # Safety
/// `out` must be valid for writes of m × n values (and reads, when `accumulate`); A and B must
/// hold m × k and k × n values; m, n, k > 0.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_raw(
    a: &[f32],
    m: usize,
    k: usize,
    a_is_km: bool,
    b: &[f32],
    n: usize,
    b_is_nk: bool,
    out: *mut f32,
    accumulate: bool,
) {
    #[cfg(feature = "openblas")]
    {
        use cblas_sys::{CBLAS_LAYOUT, CBLAS_TRANSPOSE, cblas_sgemm};
        let (tb, ldb) = if b_is_nk {
            (CBLAS_TRANSPOSE::CblasTrans, k)
        } else {
            (CBLAS_TRANSPOSE::CblasNoTrans, n)
        };
        let (ta, lda) = if a_is_km {
            (CBLAS_TRANSPOSE::CblasTrans, m)
        } else {
            (CBLAS_TRANSPOSE::CblasNoTrans, k)
        };
        // SAFETY: row-major A (m × k, ld k), B as described by (tb, ldb), out (m × n, ld n),
        // as the caller guarantees.
        unsafe {
            cblas_sgemm(
                CBLAS_LAYOUT::CblasRowMajor,
                ta,
                tb,
                m as i32,
                n as i32,
                k as i32,
                1.0,
                a.as_ptr(),
                lda as i32,
                b.as_ptr(),
                ldb as i32,
                if accumulate { 1.0 } else { 0.0 },
                out,
                n as i32,
            );
        }
        #[allow(clippy::needless_return)]
        return;
    }
    #[cfg(not(feature = "openblas"))]
    // SAFETY: as the caller guarantees.
    unsafe {
        gemm_crate(a, m, k, a_is_km, b, n, b_is_nk, out, accumulate, 1.0)
    };
}

// The system OpenBLAS (Debian/Ubuntu: libopenblas-dev). Linked by name: openblas-src's
// "system" mode still builds a downloader with a TLS stack, for nothing.
#[cfg(feature = "openblas")]
#[link(name = "openblas")]
unsafe extern "C" {
    fn openblas_get_corename() -> *const std::ffi::c_char;
}

/// Which GEMM runs, for logs and benchmark reports.
pub fn gemm_backend() -> String {
    #[cfg(feature = "openblas")]
    {
        // SAFETY: OpenBLAS returns a static NUL-terminated string.
        let core = unsafe { std::ffi::CStr::from_ptr(openblas_get_corename()) }
            .to_string_lossy()
            .into_owned();
        format!("openblas ({core})")
    }
    #[cfg(not(feature = "openblas"))]
    {
        "gemm (candle-core's kernel)".to_string()
    }
}

/// Warn when OpenBLAS did not recognise the CPU and fell back to its generic kernel, which
/// runs 4× slower than its AVX-512 one (seen with Debian's 0.3.21 on virtualised Xeons).
pub fn check_gemm_backend() {
    #[cfg(feature = "openblas")]
    {
        let b = gemm_backend();
        if b.to_lowercase().contains("prescott") && std::arch::is_x86_feature_detected!("avx2") {
            tracing::warn!(
                "OpenBLAS chose its generic kernel ({b}) on a CPU with AVX2; set \
                 OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) for full speed"
            );
        }
    }
}

/// The pure-Rust path: candle-core's kernel, for f32 and f64. Its k loop runs in one fixed
/// order whatever the thread count (threads split the output's rows and columns), so results
/// are bit-identical under any rayon pool size. The kernel itself (AVX-512 with the crate's
/// `x86-v4` feature, else AVX2/FMA) is picked at run time from the CPU, so two kinds of CPU may
/// round differently.
///
/// # Safety
/// As [`sgemm_raw`]: `out` valid for m × n writes (and reads when `accumulate`).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_crate<T: Copy + 'static>(
    a: &[T],
    m: usize,
    k: usize,
    a_is_km: bool,
    b: &[T],
    n: usize,
    b_is_nk: bool,
    out: *mut T,
    accumulate: bool,
    one: T,
) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // Element (p, j) of B: at j·k + p when given as (n × k), at p·n + j when (k × n).
    let (b_cs, b_rs) = if b_is_nk {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    // Element (i, p) of A: at p·m + i when given as (k × m), at i·k + p when (m × k).
    let (a_cs, a_rs) = if a_is_km {
        (m as isize, 1)
    } else {
        (1, k as isize)
    };
    // SAFETY: the strides describe exactly the buffers checked by the callers: A row-major
    // (m × k) or its transpose, B as above, out row-major (m × n).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            one,
            one,
            false,
            false,
            false,
            par,
        );
    }
}

/// [`sgemm_ex`] in f64, for the thin products of the randomized SVD (`collab/rsvd.rs`).
///
/// Always candle-core's kernel, also in `openblas` builds: these products are n × (k+p) by
/// (k+p) × (k+p) with k+p ≈ 74, a small share of a `collab` run next to the sparse products,
/// and one kernel keeps collaborative embeddings bit-identical across builds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dgemm_ex(
    a: &[f64],
    m: usize,
    k: usize,
    a_is_km: bool,
    b: &[f64],
    n: usize,
    b_is_nk: bool,
    out: &mut [f64],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && out.len() >= m * n);
    if degenerate(m, n, k, out, accumulate) {
        return;
    }
    // SAFETY: `out` holds at least m × n initialised values, checked above.
    unsafe {
        gemm_crate(
            a,
            m,
            k,
            a_is_km,
            b,
            n,
            b_is_nk,
            out.as_mut_ptr(),
            accumulate,
            1.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout of [`sgemm_ex`] and [`sgemm_new`] against a naive triple loop, on shapes
    /// that are not multiples of any kernel's tile.
    #[test]
    fn products_match_a_naive_reference() {
        let (m, k, n) = (37, 53, 29);
        let val = |i: usize, p: usize| ((i * 31 + p * 17) % 23) as f32 / 7.0 - 1.5;
        for a_is_km in [false, true] {
            for b_is_nk in [false, true] {
                // A[i][p] and B[p][j] stored as asked.
                let a: Vec<f32> = (0..m * k)
                    .map(|t| {
                        let (r, c) = if a_is_km {
                            (t % m, t / m)
                        } else {
                            (t / k, t % k)
                        };
                        val(r, c)
                    })
                    .collect();
                let b: Vec<f32> = (0..k * n)
                    .map(|t| {
                        let (p, j) = if b_is_nk {
                            (t % k, t / k)
                        } else {
                            (t / n, t % n)
                        };
                        val(p + 3, j + 5)
                    })
                    .collect();
                let want: Vec<f64> = (0..m * n)
                    .map(|t| {
                        let (i, j) = (t / n, t % n);
                        (0..k)
                            .map(|p| val(i, p) as f64 * val(p + 3, j + 5) as f64)
                            .sum()
                    })
                    .collect();
                let fresh = sgemm_new(&a, m, k, a_is_km, &b, n, b_is_nk);
                let mut acc = vec![1f32; m * n];
                sgemm_ex(&a, m, k, a_is_km, &b, n, b_is_nk, &mut acc, true);
                for t in 0..m * n {
                    let tol = 1e-4 * (1.0 + want[t].abs());
                    assert!(
                        (fresh[t] as f64 - want[t]).abs() < tol,
                        "{a_is_km} {b_is_nk} {t}"
                    );
                    assert!(
                        (acc[t] as f64 - 1.0 - want[t]).abs() < tol,
                        "accumulate {t}"
                    );
                }
            }
        }
        assert_eq!(sgemm_new(&[], 3, 0, false, &[], 4, false), vec![0.0; 12]);
    }
}
