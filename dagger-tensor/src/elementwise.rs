//! The elementwise ops of a tensor graph: [`Unary`] functions of one
//! tensor and [`Binary`] ones of two (broadcast), with their names and
//! their math on one element. They are what the [fusion
//! pass](mod@super::fuse) merges into one [`Kernel`](super::kernel::Kernel),
//! whose steps are made of them; [`TensorOp`](super::op::TensorOp) holds
//! them as ops of their own before fusion.

use serde::{Deserialize, Serialize};

/// An elementwise function of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unary {
    /// `-x`
    Neg,
    /// `max(x, 0)`
    Relu,
    /// `1` where `x > 0`, else `0` (the derivative of relu).
    Step,
    /// GELU, tanh approximation: `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    Gelu,
    /// The derivative of [`Unary::Gelu`].
    GeluGrad,
    /// `tanh(x)`
    Tanh,
    /// `1 / (1 + exp(-x))`
    Sigmoid,
    /// `exp(x)`
    Exp,
    /// Natural logarithm.
    Log,
    /// Square root.
    Sqrt,
    /// `1 / x`
    Recip,
    /// `x * x`
    Square,
}

impl Unary {
    /// Every unary op, for tests and tables.
    pub const ALL: [Unary; 12] = [
        Unary::Neg,
        Unary::Relu,
        Unary::Step,
        Unary::Gelu,
        Unary::GeluGrad,
        Unary::Tanh,
        Unary::Sigmoid,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Recip,
        Unary::Square,
    ];

    /// The op applied to one number: the reference every kernel is tested against.
    pub fn apply(self, x: f32) -> f32 {
        const C: f32 = 0.797_884_6; // sqrt(2/pi)
        match self {
            Unary::Neg => -x,
            Unary::Relu => x.max(0.0),
            Unary::Step => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::Gelu => 0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh()),
            Unary::GeluGrad => {
                let inner = C * (x + 0.044715 * x * x * x);
                let t = inner.tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044715 * x * x)
            }
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Recip => 1.0 / x,
            Unary::Square => x * x,
        }
    }

    /// Name in the text form.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Neg => "neg",
            Unary::Relu => "relu",
            Unary::Step => "step",
            Unary::Gelu => "gelu",
            Unary::GeluGrad => "gelu_grad",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Sqrt => "sqrt",
            Unary::Recip => "recip",
            Unary::Square => "square",
        }
    }
}

/// An elementwise function of two tensors (broadcast against each other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binary {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)`
    Max,
}

impl Binary {
    /// Every binary op, for tests and tables.
    pub const ALL: [Binary; 5] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
    ];

    /// The op applied to two numbers.
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Max => a.max(b),
        }
    }

    /// Name in the text form.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::Max => "max",
        }
    }
}
