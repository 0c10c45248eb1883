//! GEMM and host-to-device copies on a GPU, against PyTorch on the same GPU
//! in the same run.
//!
//! ```text
//! cargo run --release --example gpu_gemm
//! ```
//!
//! Prints TFLOP/s of f32 GEMM at 4096 and 8192 through `dagger::cuda`
//! (cuBLAS) and through `torch.matmul` (run by `python3`, when PyTorch with
//! CUDA is installed), and the pinned host-to-device bandwidth of both.
//! Without a GPU it says that it skips, and why, and exits successfully.

use dagger::cuda::{CudaError, GpuDevice};
use std::process::Command;
use std::time::Instant;

/// PyTorch's numbers for the same measurements, or why there are none.
const TORCH: &str = r#"
import torch, time
torch.backends.cuda.matmul.allow_tf32 = False
for n in (4096, 8192):
    a = torch.randn(n, n, device="cuda"); b = torch.randn(n, n, device="cuda")
    for _ in range(3): torch.matmul(a, b)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(10): torch.matmul(a, b)
    torch.cuda.synchronize(); s = (time.perf_counter() - t) / 10
    print(f"gemm {n} {2 * n**3 / s / 1e12}")
h = torch.empty(256 << 20, dtype=torch.uint8).pin_memory(); d = torch.empty_like(h, device="cuda")
best = 1e9
for _ in range(5):
    torch.cuda.synchronize(); t = time.perf_counter(); d.copy_(h); torch.cuda.synchronize()
    best = min(best, time.perf_counter() - t)
print(f"h2d {h.numel() / best / 1e9}")
"#;

fn torch() -> Result<Vec<(String, f64)>, String> {
    let out = Command::new("python3")
        .args(["-c", TORCH])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// The command line: no options (`--help` says what the program does).
#[derive(clap::Parser, Debug)]
#[command(
    name = "gpu_gemm",
    about = "f32 GEMM and pinned host-to-device copies on GPU 0, against PyTorch on the same GPU"
)]
pub struct Cli {}

/// Why nothing was measured, when GPU 0 cannot be opened.
pub fn skipped(why: &CudaError) -> String {
    let reason = match why {
        CudaError::NoDriver => "no GPU found (no CUDA driver on this machine)".to_string(),
        CudaError::NoDevice(_, 0) => "no GPU found (the CUDA driver sees no device)".to_string(),
        other => format!("GPU 0 cannot be used ({other})"),
    };
    format!("gpu_gemm: skipped: {reason}; nothing was measured")
}

fn main() -> Result<(), CudaError> {
    dagger::pipe::end_quietly_on_closed_pipe();
    <Cli as clap::Parser>::parse();
    let gpu = match GpuDevice::open(0, 2) {
        Ok(g) => g,
        Err(e) => {
            println!("{}", skipped(&e));
            return Ok(());
        }
    };
    println!("GPU 0: {}\n", gpu.name()?);
    let torch = torch();
    let theirs = |key: &str| match &torch {
        Ok(v) => v.iter().find(|(k, _)| k == key).map(|(_, x)| *x),
        Err(_) => None,
    };
    println!("| measure | dagger::cuda | PyTorch | ratio |");
    println!("|---|---|---|---|");
    for n in [4096usize, 8192] {
        let a: Vec<f32> = (0..n * n).map(|i| ((i % 13) as f32 - 6.0) / 7.0).collect();
        let (ga, gb) = (gpu.upload(n, n, &a)?, gpu.upload(n, n, &a)?);
        let mut gc = gpu.zeros::<f32>(n, n)?;
        for _ in 0..3 {
            gpu.gemm(1.0, &ga, &gb, 0.0, &mut gc)?;
        }
        gpu.synchronize()?;
        let t = Instant::now();
        for _ in 0..10 {
            gpu.gemm(1.0, &ga, &gb, 0.0, &mut gc)?;
        }
        gpu.synchronize()?;
        let tflops = 2.0 * (n as f64).powi(3) / (t.elapsed().as_secs_f64() / 10.0) / 1e12;
        let other = theirs(&format!("gemm {n}"));
        println!(
            "| f32 GEMM {n} (TFLOP/s) | {tflops:.1} | {} | {} |",
            other.map_or("-".into(), |x| format!("{x:.1}")),
            other.map_or("-".into(), |x| format!("{:.2}x", tflops / x))
        );
    }
    let link = gpu.measure_host_link(256 << 20, 5)?;
    let other = theirs("h2d");
    println!(
        "| pinned host-to-device, 256 MiB (GB/s) | {:.1} | {} | {} |",
        link.bandwidth / 1e9,
        other.map_or("-".into(), |x| format!("{x:.1}")),
        other.map_or("-".into(), |x| format!("{:.2}x", link.bandwidth / 1e9 / x))
    );
    if let Err(why) = torch {
        println!("\n(PyTorch not measured: {why})");
    }
    Ok(())
}
