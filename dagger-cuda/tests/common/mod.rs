//! Running CUDA C on the CPU: the source is compiled with the host's C++
//! compiler behind a few lines that stand in for CUDA's built-ins (block
//! and thread indices, `atomicAdd`, `__int_as_float`), and
//! every thread of the launch runs, one after the other.

#![allow(dead_code)] // each test binary uses some of the helpers

use std::fmt::Write;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Stand-ins for the CUDA built-ins generated and hand-written kernels use.
const SHIM: &str = r#"
#include <math.h>
#include <stdio.h>
#include <string.h>
// NVRTC compiles without the C library's headers: none of their macros.
#undef INFINITY
#undef NAN
#undef HUGE_VALF
struct Dim { unsigned x, y, z; };
static Dim blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __restrict__
static float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
static float atomicAdd(float* a, float v) { float old = *a; *a += v; return old; }
"#;

/// Runs `entry` of `source` over a `(grid, block)` launch with the
/// operands (`const float*`), the result (`float*`, `out_len` zeros) and
/// then `args` (C expressions) as its parameters; returns the result, or
/// `None` (saying why) without a C++ compiler.
pub fn run_cuda_on_cpu(
    source: &str,
    entry: &str,
    (grid, block): (u32, u32),
    operands: &[Vec<f32>],
    args: &str,
    out_len: usize,
) -> Option<Vec<f32>> {
    let mut src = String::from(SHIM);
    src.push_str(source);
    src.push_str("int main() {\n");
    for (i, data) in operands.iter().enumerate() {
        let values: Vec<String> = data.iter().map(|v| format!("{v:e}f")).collect();
        let _ = writeln!(
            src,
            "    static const float a{i}[] = {{{}}};",
            values.join(", ")
        );
    }
    let _ = writeln!(src, "    static float out[{out_len}] = {{0}};");
    let _ = writeln!(src, "    gridDim.x = {grid}; blockDim.x = {block};");
    let mut params: Vec<String> = (0..operands.len()).map(|i| format!("a{i}")).collect();
    params.push("out".into());
    if !args.is_empty() {
        params.push(args.into());
    }
    let _ = writeln!(
        src,
        "    for (unsigned b = 0; b < gridDim.x; b++) for (unsigned t = 0; t < blockDim.x; t++) {{\n        blockIdx.x = b; threadIdx.x = t;\n        {entry}({});\n    }}",
        params.join(", ")
    );
    let _ = writeln!(
        src,
        "    for (int i = 0; i < {out_len}; i++) printf(\"%.9g\\n\", out[i]);\n    return 0;\n}}"
    );
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dagger-cuda-on-cpu-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (file, exe) = (dir.join("k.cpp"), dir.join("k"));
    std::fs::write(&file, &src).unwrap();
    let compiled = match Command::new("c++")
        .args(["-O1", "-o"])
        .arg(&exe)
        .arg(&file)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("skipping: no C++ compiler to check the CUDA C ({e})");
            return None;
        }
    };
    assert!(
        compiled.status.success(),
        "the CUDA C does not compile:\n{src}\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let ran = Command::new(&exe).output().unwrap();
    assert!(ran.status.success());
    Some(
        String::from_utf8_lossy(&ran.stdout)
            .lines()
            .map(|l| l.parse().unwrap())
            .collect(),
    )
}

/// Deterministic values spread over about [-6, 6].
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1200) as f32 / 100.0 - 6.0)
        .collect()
}

/// `got` equals `want` within 1e-5, relative (absolute near zero).
pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: element {k}: {g} vs {w}"
        );
    }
}
