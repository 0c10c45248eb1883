//! Cranelift JIT for fused elementwise kernels.
//!
//! Each [`Kernel`] becomes one native function
//! `fn(rows, cols, operands: *const *const f32, out: *mut f32)` that walks
//! the result as a `rows x cols` matrix: per row, a loop of four `f32x4`
//! vectors (16 elements) per iteration, then one vector, then scalars. Operands are
//! loaded by their [`Broadcast`] pattern: a full operand at the element's
//! offset, a row (bias) at the column, a column at the row (splat), a scalar
//! once. `exp` and `log` are computed inline by range reduction and a
//! polynomial (Cephes' coefficients), in vectors like the rest, and `tanh`,
//! `sigmoid` and `gelu` from `exp`: there are no calls in a kernel's loop.
//! Accuracy: a few ulp inside `exp`'s range; `exp` saturates below -87.3 (to
//! about 1e-38) and above 88 (to about 1.7e38); `log` treats subnormal inputs
//! as 2^-127.

use crate::{Binary, Broadcast, Kernel, KernelStep, Reduction, Unary};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};

/// A compiled kernel: `rows`, `cols`, operand pointers, output pointer.
pub type KernelFn = unsafe extern "C" fn(usize, usize, *const *const f32, *mut f32);

/// A JIT module holding compiled kernels; their code lives as long as it does.
pub struct Jit {
    module: std::mem::ManuallyDrop<JITModule>,
    pending: Vec<FuncId>,
    builder_ctx: FunctionBuilderContext,
}

/// Why a kernel could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("Cranelift could not compile a fused kernel: {0}")]
pub struct JitError(pub(crate) String);

impl Jit {
    /// A JIT for the host CPU.
    pub fn new() -> Result<Jit, JitError> {
        let err = |e: &dyn std::fmt::Display| JitError(e.to_string());
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").map_err(|e| err(&e))?;
        flags.set("is_pic", "false").map_err(|e| err(&e))?;
        let isa = cranelift_native::builder()
            .map_err(|e| err(&e))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| err(&e))?;
        let module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        Ok(Jit {
            module: std::mem::ManuallyDrop::new(module),
            pending: Vec::new(),
            builder_ctx: FunctionBuilderContext::new(),
        })
    }

    /// Compiles `kernel` for operands read by `patterns`; the function is
    /// usable after [`Jit::finish`].
    pub fn declare(&mut self, kernel: &Kernel, patterns: &[Broadcast]) -> Result<usize, JitError> {
        let ptr = self.module.target_config().pointer_type();
        let mut ctx = self.module.make_context();
        for _ in 0..4 {
            ctx.func.signature.params.push(AbiParam::new(ptr));
        }
        let name = format!("fused{}", self.pending.len());
        let id = self
            .module
            .declare_function(&name, Linkage::Local, &ctx.func.signature)
            .map_err(|e| JitError(e.to_string()))?;
        let frontend = self.module.target_config();
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut self.builder_ctx);
        emit_function(&mut b, ptr, kernel, patterns);
        b.finalize(frontend);
        self.module
            .define_function(id, &mut ctx)
            .map_err(|e| JitError(format!("{e:?}")))?;
        self.module.clear_context(&mut ctx);
        self.pending.push(id);
        Ok(self.pending.len() - 1)
    }

    /// Links every declared kernel and returns their entry points in order.
    pub fn finish(&mut self) -> Result<Vec<KernelFn>, JitError> {
        self.module
            .finalize_definitions()
            .map_err(|e| JitError(e.to_string()))?;
        Ok(self
            .pending
            .iter()
            .map(|&id| {
                let code = self.module.get_finalized_function(id);
                // SAFETY: the function was built with exactly this signature.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(code) }
            })
            .collect())
    }
}

/// Builds the body: the row loop, and in it the column loops.
fn emit_function(b: &mut FunctionBuilder, ptr: Type, kernel: &Kernel, patterns: &[Broadcast]) {
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let [rows, cols, operands, out] = b.block_params(entry).try_into().expect("four parameters");
    let flags = MemFlagsData::trusted();
    let bases: Vec<Value> = (0..patterns.len())
        .map(|k| b.ins().load(ptr, flags, operands, (k * 8) as i32))
        .collect();
    let scalars: Vec<Option<Value>> = patterns
        .iter()
        .zip(&bases)
        .map(|(p, &base)| {
            (*p == Broadcast::Scalar).then(|| b.ins().load(types::F32, flags, base, 0))
        })
        .collect();
    let zero = b.ins().iconst(ptr, 0);
    let (row_head, row_body, next_row, exit) = (
        b.create_block(),
        b.create_block(),
        b.create_block(),
        b.create_block(),
    );
    b.append_block_param(row_head, ptr);
    b.ins().jump(row_head, &[zero.into()]);

    b.switch_to_block(row_head);
    let r = b.block_params(row_head)[0];
    let more_rows = b.ins().icmp(IntCC::UnsignedLessThan, r, rows);
    b.ins().brif(more_rows, row_body, &[], exit, &[]);

    b.switch_to_block(row_body);
    let row_off = b.ins().imul(r, cols);
    let row_bytes = b.ins().ishl_imm_u(row_off, 2);
    let r_bytes = b.ins().ishl_imm_u(r, 2);
    let out_row = b.ins().iadd(out, row_bytes);
    // Per operand: the address of element (r, 0), and the value of a
    // column or scalar operand for this row, as a scalar and splat.
    let row_ptrs: Vec<Value> = patterns
        .iter()
        .zip(&bases)
        .map(|(p, &base)| match p {
            Broadcast::Full => b.ins().iadd(base, row_bytes),
            Broadcast::Column => b.ins().iadd(base, r_bytes),
            Broadcast::Row | Broadcast::Scalar => base,
        })
        .collect();
    let fixed: Vec<Option<(Value, Value)>> = patterns
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let v = match p {
                Broadcast::Column => b.ins().load(types::F32, flags, row_ptrs[k], 0),
                Broadcast::Scalar => scalars[k].expect("scalar"),
                Broadcast::Full | Broadcast::Row => return None,
            };
            Some((v, b.ins().splat(types::F32X4, v)))
        })
        .collect();
    // Column loops, widest first: 4 vectors per iteration, then 1, then
    // scalars. A row or total reduction carries accumulators through them.
    let reduction = kernel.reduce.as_ref().map(|r| r.kind);
    let accumulate = matches!(reduction, Some(Reduction::Rows | Reduction::All));
    let mut c = zero;
    let mut accs: Vec<Value> = Vec::new();
    for (ty, copies) in [(types::F32X4, 4), (types::F32X4, 1), (types::F32, 1)] {
        let lanes = Lanes { ty };
        if accumulate {
            accs = match (accs.len(), ty.is_vector()) {
                (0, _) => (0..copies).map(|_| lanes.f(b, 0.0)).collect(),
                (4, true) => {
                    let s01 = b.ins().fadd(accs[0], accs[1]);
                    let s23 = b.ins().fadd(accs[2], accs[3]);
                    vec![b.ins().fadd(s01, s23)]
                }
                (_, false) => vec![horizontal_sum(b, accs[0])],
                _ => accs,
            };
        }
        let (head, body, done) = (b.create_block(), b.create_block(), b.create_block());
        for block in [head, done] {
            b.append_block_param(block, ptr);
            for _ in &accs {
                b.append_block_param(block, ty);
            }
        }
        let carried = |at: Value, accs: &[Value]| -> Vec<BlockArg> {
            std::iter::once(at)
                .chain(accs.iter().copied())
                .map(BlockArg::from)
                .collect()
        };
        b.ins().jump(head, &carried(c, &accs));
        b.switch_to_block(head);
        let at = b.block_params(head)[0];
        let head_accs: Vec<Value> = b.block_params(head)[1..].to_vec();
        let width = (ty.lane_count() as usize * copies) as u64;
        let end = b.ins().iadd_imm_u(at, width as i64);
        let fits = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, end, cols);
        b.ins()
            .brif(fits, body, &[], done, &carried(at, &head_accs));

        b.switch_to_block(body);
        let at_bytes = b.ins().ishl_imm_u(at, 2);
        let lane_bytes = (ty.bytes()) as i32;
        let load = |b: &mut FunctionBuilder, k: usize, copy: usize| -> Value {
            match (patterns[k], fixed[k]) {
                (_, Some((scalar, splat))) => {
                    if ty.is_vector() {
                        splat
                    } else {
                        scalar
                    }
                }
                _ => {
                    let addr = b.ins().iadd(row_ptrs[k], at_bytes);
                    b.ins().load(ty, flags, addr, copy as i32 * lane_bytes)
                }
            }
        };
        let results = lanes.emit(b, kernel, copies, load);
        let mut next_accs = Vec::new();
        match reduction {
            None => {
                let addr = b.ins().iadd(out_row, at_bytes);
                for (copy, v) in results.into_iter().enumerate() {
                    b.ins().store(flags, v, addr, copy as i32 * lane_bytes);
                }
            }
            Some(Reduction::Columns) => {
                // out[c] += value: the program zeroes `out` first.
                let addr = b.ins().iadd(out, at_bytes);
                for (copy, v) in results.into_iter().enumerate() {
                    let offset = copy as i32 * lane_bytes;
                    let old = b.ins().load(ty, flags, addr, offset);
                    let sum = b.ins().fadd(old, v);
                    b.ins().store(flags, sum, addr, offset);
                }
            }
            Some(Reduction::Rows | Reduction::All) => {
                for (acc, v) in head_accs.iter().zip(results) {
                    next_accs.push(b.ins().fadd(*acc, v));
                }
            }
        }
        b.ins().jump(head, &carried(end, &next_accs));
        b.switch_to_block(done);
        c = b.block_params(done)[0];
        accs = b.block_params(done)[1..].to_vec();
    }
    match reduction {
        Some(Reduction::Rows) => {
            let addr = b.ins().iadd(out, r_bytes);
            b.ins().store(flags, accs[0], addr, 0);
        }
        Some(Reduction::All) => {
            let old = b.ins().load(types::F32, flags, out, 0);
            let sum = b.ins().fadd(old, accs[0]);
            b.ins().store(flags, sum, out, 0);
        }
        None | Some(Reduction::Columns) => {}
    }
    b.ins().jump(next_row, &[]);

    b.switch_to_block(next_row);
    let r1 = b.ins().iadd_imm_u(r, 1);
    b.ins().jump(row_head, &[r1.into()]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
}

/// The sum of an `f32x4`'s four lanes.
fn horizontal_sum(b: &mut FunctionBuilder, v: Value) -> Value {
    let lanes: Vec<Value> = (0..4).map(|i| b.ins().extractlane(v, i)).collect();
    let s01 = b.ins().fadd(lanes[0], lanes[1]);
    let s23 = b.ins().fadd(lanes[2], lanes[3]);
    b.ins().fadd(s01, s23)
}

/// Code generation of one kernel step at a lane width (`f32` or `f32x4`).
#[derive(Clone, Copy)]
struct Lanes {
    ty: Type,
}

impl Lanes {
    fn vector(self) -> bool {
        self.ty.is_vector()
    }

    fn int(self) -> Type {
        if self.vector() {
            types::I32X4
        } else {
            types::I32
        }
    }

    fn bits_flags(self) -> MemFlagsData {
        MemFlagsData::new().with_endianness(Endianness::Little)
    }

    fn f(self, b: &mut FunctionBuilder, v: f32) -> Value {
        let s = b.ins().f32const(v);
        if self.vector() {
            b.ins().splat(self.ty, s)
        } else {
            s
        }
    }

    fn i(self, b: &mut FunctionBuilder, v: i32) -> Value {
        let s = b.ins().iconst(types::I32, v as i64);
        if self.vector() {
            b.ins().splat(self.int(), s)
        } else {
            s
        }
    }

    fn bits_of_float(self, b: &mut FunctionBuilder, x: Value) -> Value {
        b.ins().bitcast(self.int(), self.bits_flags(), x)
    }

    fn float_of_bits(self, b: &mut FunctionBuilder, x: Value) -> Value {
        b.ins().bitcast(self.ty, self.bits_flags(), x)
    }

    /// `cond(x, y) ? a : b`, lane by lane.
    fn select(
        self,
        b: &mut FunctionBuilder,
        cc: FloatCC,
        x: Value,
        y: Value,
        then: Value,
        other: Value,
    ) -> Value {
        let mask = b.ins().fcmp(cc, x, y);
        if self.vector() {
            let mask = b.ins().bitcast(self.ty, self.bits_flags(), mask);
            b.ins().bitselect(mask, then, other)
        } else {
            b.ins().select(mask, then, other)
        }
    }

    /// Horner evaluation of `c[0] x^n + ... + c[n]`.
    fn poly(self, b: &mut FunctionBuilder, x: Value, coeffs: &[f32]) -> Value {
        let mut p = self.f(b, coeffs[0]);
        for &c in &coeffs[1..] {
            let k = self.f(b, c);
            p = b.ins().fma(p, x, k);
        }
        p
    }

    fn exp(self, b: &mut FunctionBuilder, x: Value) -> Value {
        let (lo, hi) = (self.f(b, -87.336_54), self.f(b, 88.0));
        let x = b.ins().fmax(x, lo);
        let x = b.ins().fmin(x, hi);
        let log2e = self.f(b, std::f32::consts::LOG2_E);
        let t = b.ins().fmul(x, log2e);
        let n = b.ins().nearest(t);
        let (c1, c2) = (self.f(b, -0.693_359_4), self.f(b, 2.121_944_4e-4));
        let r = b.ins().fma(n, c1, x);
        let r = b.ins().fma(n, c2, r);
        let p = self.poly(
            b,
            r,
            &[
                1.987_569_1e-4,
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                0.166_666_65,
                0.5,
            ],
        );
        let r2 = b.ins().fmul(r, r);
        let one = self.f(b, 1.0);
        let y = b.ins().fma(p, r2, r);
        let y = b.ins().fadd(y, one);
        let ni = b.ins().fcvt_to_sint_sat(self.int(), n);
        let bias = self.i(b, 127);
        let e = b.ins().iadd(ni, bias);
        let e = b.ins().ishl_imm_u(e, 23);
        let scale = self.float_of_bits(b, e);
        b.ins().fmul(y, scale)
    }

    fn log(self, b: &mut FunctionBuilder, x: Value) -> Value {
        let bits = self.bits_of_float(b, x);
        let e = b.ins().sshr_imm_u(bits, 23);
        let bias = self.i(b, 127);
        let e = b.ins().isub(e, bias);
        let (mant, one_bits) = (self.i(b, 0x007f_ffff), self.i(b, 0x3f80_0000));
        let m = b.ins().band(bits, mant);
        let m = b.ins().bor(m, one_bits);
        let m = self.float_of_bits(b, m); // in [1, 2)
        let (sqrt2, half, one, zero) = (
            self.f(b, std::f32::consts::SQRT_2),
            self.f(b, 0.5),
            self.f(b, 1.0),
            self.f(b, 0.0),
        );
        let m_half = b.ins().fmul(m, half);
        let ef = b.ins().fcvt_from_sint(self.ty, e);
        let ef_next = b.ins().fadd(ef, one);
        let ef = self.select(b, FloatCC::GreaterThan, m, sqrt2, ef_next, ef);
        let m = self.select(b, FloatCC::GreaterThan, m, sqrt2, m_half, m);
        // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172.
        let num = b.ins().fsub(m, one);
        let den = b.ins().fadd(m, one);
        let s = b.ins().fdiv(num, den);
        let s2 = b.ins().fmul(s, s);
        let p = self.poly(b, s2, &[2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0, 2.0]);
        let ln_m = b.ins().fmul(p, s);
        let ln2 = self.f(b, std::f32::consts::LN_2);
        let y = b.ins().fma(ef, ln2, ln_m);
        let (inf, neg_inf, nan) = (
            self.f(b, f32::INFINITY),
            self.f(b, f32::NEG_INFINITY),
            self.f(b, f32::NAN),
        );
        let y = self.select(b, FloatCC::Equal, x, inf, inf, y);
        let nonpos = self.select(b, FloatCC::Equal, x, zero, neg_inf, nan);
        self.select(b, FloatCC::GreaterThan, x, zero, y, nonpos)
    }

    fn tanh(self, b: &mut FunctionBuilder, x: Value) -> Value {
        // 1 - 2 / (exp(2x) + 1)
        let two = self.f(b, 2.0);
        let one = self.f(b, 1.0);
        let x2 = b.ins().fmul(x, two);
        let e = self.exp(b, x2);
        let d = b.ins().fadd(e, one);
        let q = b.ins().fdiv(two, d);
        b.ins().fsub(one, q)
    }

    fn unary(self, b: &mut FunctionBuilder, op: Unary, x: Value) -> Value {
        const C: f32 = 0.797_884_6; // sqrt(2/pi)
        match op {
            Unary::Neg => b.ins().fneg(x),
            Unary::Relu => {
                // A compare and a mask: NaN and negatives give 0. (`fmax`
                // would cost a NaN-propagating sequence on x86.)
                let zero = self.f(b, 0.0);
                self.select(b, FloatCC::GreaterThan, x, zero, x, zero)
            }
            Unary::Step => {
                let (zero, one) = (self.f(b, 0.0), self.f(b, 1.0));
                self.select(b, FloatCC::GreaterThan, x, zero, one, zero)
            }
            Unary::Exp => self.exp(b, x),
            Unary::Log => self.log(b, x),
            Unary::Tanh => self.tanh(b, x),
            Unary::Sigmoid => {
                let one = self.f(b, 1.0);
                let nx = b.ins().fneg(x);
                let e = self.exp(b, nx);
                let d = b.ins().fadd(e, one);
                b.ins().fdiv(one, d)
            }
            Unary::Gelu | Unary::GeluGrad => {
                let (c, k, half, one) = (
                    self.f(b, C),
                    self.f(b, 0.044715),
                    self.f(b, 0.5),
                    self.f(b, 1.0),
                );
                let x2 = b.ins().fmul(x, x);
                let inner = b.ins().fma(k, x2, one); // 1 + k x^2
                let inner = b.ins().fmul(inner, x);
                let inner = b.ins().fmul(inner, c);
                let t = self.tanh(b, inner);
                let one_t = b.ins().fadd(one, t);
                if op == Unary::Gelu {
                    let hx = b.ins().fmul(half, x);
                    b.ins().fmul(hx, one_t)
                } else {
                    // 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3k x^2)
                    let left = b.ins().fmul(half, one_t);
                    let t2 = b.ins().fmul(t, t);
                    let sech2 = b.ins().fsub(one, t2);
                    let k3 = self.f(b, 3.0 * 0.044715);
                    let d = b.ins().fma(k3, x2, one);
                    let d = b.ins().fmul(d, c);
                    let right = b.ins().fmul(sech2, d);
                    let hx = b.ins().fmul(half, x);
                    b.ins().fma(hx, right, left)
                }
            }
            Unary::Sqrt => b.ins().sqrt(x),
            Unary::Recip => {
                let one = self.f(b, 1.0);
                b.ins().fdiv(one, x)
            }
            Unary::Square => b.ins().fmul(x, x),
        }
    }

    /// The kernel's results for `copies` independent groups of lanes, from
    /// operand loads made by `load(operand, copy)`. Each step is emitted for
    /// every copy before the next step, so the copies' dependency chains
    /// interleave and the CPU overlaps their latencies.
    fn emit(
        self,
        b: &mut FunctionBuilder,
        kernel: &Kernel,
        copies: usize,
        mut load: impl FnMut(&mut FunctionBuilder, usize, usize) -> Value,
    ) -> Vec<Value> {
        let mut values: Vec<Vec<Value>> = Vec::with_capacity(kernel.steps.len());
        for step in &kernel.steps {
            let row = (0..copies)
                .map(|copy| match *step {
                    KernelStep::Load(n) => load(b, n as usize, copy),
                    KernelStep::Const(c) => self.f(b, c),
                    KernelStep::Unary(op, a) => self.unary(b, op, values[a as usize][copy]),
                    KernelStep::Binary(op, x, y) => {
                        let (x, y) = (values[x as usize][copy], values[y as usize][copy]);
                        match op {
                            Binary::Add => b.ins().fadd(x, y),
                            Binary::Sub => b.ins().fsub(x, y),
                            Binary::Mul => b.ins().fmul(x, y),
                            Binary::Div => b.ins().fdiv(x, y),
                            Binary::Max => b.ins().fmax(x, y),
                        }
                    }
                })
                .collect();
            values.push(row);
        }
        values.pop().expect("a kernel has at least one step")
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        // SAFETY: the module is not used again, and programs drop their
        // kernel pointers together with their Jit.
        unsafe { std::mem::ManuallyDrop::take(&mut self.module).free_memory() };
    }
}
