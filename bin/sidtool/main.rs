//! The `sidtool` command line: parses arguments, lays them over the config file, calls the
//! library, and reports. All real work lives in the library.

mod args;
mod commands;
mod inspect;
mod man;
mod overlay;
mod report;
mod stdout;

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Keep large freed buffers in the heap instead of returning them to the kernel: the k-means
/// and encode loops allocate multi-MiB blocks (also inside the GEMM kernel), and glibc's
/// default of unmapping them made every reuse pay page faults and cross-core TLB flushes
/// (measured: 11 s of system time in a 27 s benchmark run).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 31);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = args::Cli::parse();
    if let Some(t) = cli.threads {
        // Candle's CPU kernels size their own pool from RAYON_NUM_THREADS.
        // SAFETY: the environment may only change while no other thread can read it: this runs
        // before the logger, rayon's global pool or candle start any thread, so the process
        // is still single-threaded.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
        // Must happen before candle or rayon start their pools.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| format!("sidtool={level}").into()),
        )
        // Through the bars: a log line while a bar is drawn clears it, prints, and redraws it.
        .with_writer(report::LogWriter::stderr())
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    sidtool::gemm::check_gemm_backend();
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `sidtool inspect … | head` closing the pipe is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
