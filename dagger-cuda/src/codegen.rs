//! CUDA C for fused elementwise kernels: the GPU back end of the IR's
//! [`Kernel`] (the CPU one is the Cranelift JIT).
//!
//! [`cuda_source`] writes one `extern "C" __global__` function per kernel,
//! which NVRTC compiles once ([`crate::fused`]). Its parameters are the
//! operands (`const float*`, each read by its [`Broadcast`] pattern), the
//! result (`float*`) and the `rows x cols` matrix view of the domain
//! ([`matrix_view`](dagger_tensor::matrix_view)). Work is split by
//! [`LaunchShape::of`]:
//! - no reduction: one thread per element;
//! - sums per row: one thread per row, looping over the row's columns;
//! - sums per column: one thread per column, looping over rows (adjacent
//!   threads read adjacent addresses);
//! - the sum of everything: a grid-stride loop per thread, its partial sum
//!   added to the (zeroed) result with `atomicAdd`.
//!
//! Constants are written as their exact bits (`__int_as_float(0x...)`), so
//! the GPU computes with the very numbers the IR holds; each op is the
//! same formula as [`Unary::apply`] / [`Binary::apply`], the reference.

use dagger_tensor::{Binary, Broadcast, Kernel, KernelStep, Reduction, Unary};
use std::fmt::Write;

/// Threads per block of every launch.
pub const BLOCK: u32 = 256;

/// Grid and block sizes of a kernel's launch (one-dimensional).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchShape {
    /// Blocks.
    pub grid: u32,
    /// Threads per block.
    pub block: u32,
}

impl LaunchShape {
    /// The launch of `kernel` over a `rows x cols` domain.
    pub fn of(kernel: &Kernel, rows: usize, cols: usize) -> LaunchShape {
        let threads = match kernel.reduce.as_ref().map(|r| r.kind) {
            None => rows * cols,
            Some(Reduction::Rows) => rows,
            Some(Reduction::Columns) => cols,
            // Enough threads to fill a GPU, each summing a stretch.
            Some(Reduction::All) => (rows * cols).min(1 << 16),
        };
        LaunchShape {
            grid: (threads.max(1) as u32).div_ceil(BLOCK),
            block: BLOCK,
        }
    }
}

/// The CUDA C source of `kernel` as a function called `name`, reading
/// operand `i` by `patterns[i]`.
pub fn cuda_source(name: &str, kernel: &Kernel, patterns: &[Broadcast]) -> String {
    let mut params: Vec<String> = (0..patterns.len())
        .map(|i| format!("const float* __restrict__ a{i}"))
        .collect();
    params.push("float* __restrict__ out".into());
    params.push("unsigned long long rows".into());
    params.push("unsigned long long cols".into());
    let mut src = String::new();
    let _ = writeln!(src, "// {kernel}");
    let _ = writeln!(
        src,
        "extern \"C\" __global__ void {name}({}) {{",
        params.join(", ")
    );
    src.push_str(
        "    unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    );
    let body = element(kernel, patterns, "        ");
    match kernel.reduce.as_ref().map(|r| r.kind) {
        None => {
            src.push_str("    if (t >= rows * cols) return;\n");
            src.push_str("    unsigned long long r = t / cols, c = t % cols;\n    {\n");
            src.push_str(&body);
            src.push_str("        out[t] = v;\n    }\n");
        }
        // One thread per kept index, looping over the summed one.
        Some(Reduction::Rows) => sum_along(&mut src, &body, ("r", "rows"), ("c", "cols")),
        Some(Reduction::Columns) => sum_along(&mut src, &body, ("c", "cols"), ("r", "rows")),
        Some(Reduction::All) => {
            src.push_str(
                "    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;\n",
            );
            src.push_str("    float sum = 0.0f;\n");
            src.push_str("    for (unsigned long long i = t; i < rows * cols; i += stride) {\n");
            src.push_str("        unsigned long long r = i / cols, c = i % cols;\n");
            src.push_str(&body);
            src.push_str("        sum += v;\n    }\n    atomicAdd(out, sum);\n");
        }
    }
    src.push_str("}\n");
    src
}

/// The body of a sum per `kept` index (a thread each) over the `summed`
/// one: each is (index variable, its bound).
fn sum_along(src: &mut String, body: &str, kept: (&str, &str), summed: (&str, &str)) {
    let ((k, kn), (s, sn)) = (kept, summed);
    let _ = writeln!(
        src,
        "    if (t >= {kn}) return;\n    unsigned long long {k} = t;"
    );
    src.push_str("    float sum = 0.0f;\n");
    let _ = writeln!(
        src,
        "    for (unsigned long long {s} = 0; {s} < {sn}; {s}++) {{"
    );
    src.push_str(body);
    let _ = writeln!(src, "        sum += v;\n    }}\n    out[{k}] = sum;");
}

/// Statements computing the element at `(r, c)` into `float v`.
fn element(kernel: &Kernel, patterns: &[Broadcast], indent: &str) -> String {
    let mut s = String::new();
    for (i, step) in kernel.steps.iter().enumerate() {
        let value = match *step {
            KernelStep::Load(n) => {
                let index = match patterns[n as usize] {
                    Broadcast::Full => "r * cols + c",
                    Broadcast::Scalar => "0",
                    Broadcast::Row => "c",
                    Broadcast::Column => "r",
                };
                format!("a{n}[{index}]")
            }
            KernelStep::Const(c) => format!("__int_as_float(0x{:08x})", c.to_bits()),
            KernelStep::Unary(op, a) => unary(op, &format!("t{a}")),
            KernelStep::Binary(op, a, b) => binary(op, &format!("t{a}"), &format!("t{b}")),
        };
        let _ = writeln!(s, "{indent}float t{i} = {value};");
    }
    let last = kernel.steps.len().saturating_sub(1);
    if kernel.steps.is_empty() {
        let _ = writeln!(s, "{indent}float v = 0.0f;");
    } else {
        let _ = writeln!(s, "{indent}float v = t{last};");
    }
    s
}

/// `op(x)` in CUDA C, the formula of [`Unary::apply`].
fn unary(op: Unary, x: &str) -> String {
    const C: &str = "0.7978846f"; // sqrt(2/pi)
    match op {
        Unary::Neg => format!("-{x}"),
        Unary::Relu => format!("fmaxf({x}, 0.0f)"),
        Unary::Step => format!("({x} > 0.0f ? 1.0f : 0.0f)"),
        Unary::Gelu => {
            format!("0.5f * {x} * (1.0f + tanhf({C} * ({x} + 0.044715f * {x} * {x} * {x})))")
        }
        Unary::GeluGrad => format!(
            "0.5f * (1.0f + tanhf({C} * ({x} + 0.044715f * {x} * {x} * {x}))) \
             + 0.5f * {x} * (1.0f - tanhf({C} * ({x} + 0.044715f * {x} * {x} * {x})) \
             * tanhf({C} * ({x} + 0.044715f * {x} * {x} * {x}))) \
             * {C} * (1.0f + 3.0f * 0.044715f * {x} * {x})"
        ),
        Unary::Tanh => format!("tanhf({x})"),
        Unary::Sigmoid => format!("1.0f / (1.0f + expf(-{x}))"),
        Unary::Exp => format!("expf({x})"),
        Unary::Log => format!("logf({x})"),
        Unary::Sqrt => format!("sqrtf({x})"),
        Unary::Recip => format!("1.0f / {x}"),
        Unary::Square => format!("{x} * {x}"),
    }
}

/// `op(a, b)` in CUDA C, the formula of [`Binary::apply`].
fn binary(op: Binary, a: &str, b: &str) -> String {
    match op {
        Binary::Add => format!("{a} + {b}"),
        Binary::Sub => format!("{a} - {b}"),
        Binary::Mul => format!("{a} * {b}"),
        Binary::Div => format!("{a} / {b}"),
        Binary::Max => format!("fmaxf({a}, {b})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagger_tensor::{Reduce, Shape};

    fn bias_relu() -> Kernel {
        let mut k = Kernel::default();
        let x = k.push(KernelStep::Load(0));
        let b = k.push(KernelStep::Load(1));
        let s = k.push(KernelStep::Binary(Binary::Add, x, b));
        k.push(KernelStep::Unary(Unary::Relu, s));
        k
    }

    #[test]
    fn an_elementwise_kernel_is_one_thread_per_element() {
        let src = cuda_source("k0", &bias_relu(), &[Broadcast::Full, Broadcast::Row]);
        assert!(src.contains("extern \"C\" __global__ void k0(const float* __restrict__ a0, const float* __restrict__ a1, float* __restrict__ out, unsigned long long rows, unsigned long long cols)"), "{src}");
        assert!(src.contains("float t0 = a0[r * cols + c];"), "{src}");
        assert!(src.contains("float t1 = a1[c];"), "{src}");
        assert!(src.contains("float t3 = fmaxf(t2, 0.0f);"), "{src}");
        assert!(src.contains("out[t] = v;"), "{src}");
        assert_eq!(
            LaunchShape::of(&bias_relu(), 100, 10),
            LaunchShape {
                grid: 4,
                block: 256
            }
        );
    }

    #[test]
    fn constants_keep_their_bits_and_reductions_their_loops() {
        let mut k = Kernel::default();
        let x = k.push(KernelStep::Load(0));
        let half = k.push(KernelStep::Const(0.1));
        k.push(KernelStep::Binary(Binary::Mul, x, half));
        let src = cuda_source("k", &k, &[Broadcast::Column]);
        assert!(src.contains("__int_as_float(0x3dcccccd)"), "{src}");
        assert!(src.contains("a0[r]"), "{src}");
        for (kind, marker, threads) in [
            (Reduction::Rows, "out[r] = sum;", 3),
            (Reduction::Columns, "out[c] = sum;", 5),
            (Reduction::All, "atomicAdd(out, sum);", 15),
        ] {
            k.reduce = Some(Reduce {
                kind,
                domain: Shape::of(&[3, 5]),
            });
            assert!(cuda_source("k", &k, &[Broadcast::Full]).contains(marker));
            let launch = LaunchShape::of(&k, 3, 5);
            assert_eq!(launch.grid, (threads as u32).div_ceil(BLOCK));
        }
    }
}
