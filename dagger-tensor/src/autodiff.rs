//! Reverse-mode automatic differentiation as a graph transformation.
//!
//! [`grad`] walks the nodes from the loss back to the parameters and
//! appends, for every node on a path between them, the nodes computing its
//! operands' gradients from its own (its vector-Jacobian product, `vjp`).
//! Gradients reaching one value from several users are summed. Only values
//! that depend on a parameter get gradients, so a graph's data inputs cost
//! nothing. The result is an ordinary tensor graph: every later pass (fusion,
//! memory planning) and back end treats the backward nodes like any others.

use super::elementwise::{Binary, Unary};
use super::error::{shape_error, TensorError, TensorResult};
use super::graph::{Tensor, TensorGraph};
use super::op::{CustomOp, ParallelGroup, TensorOp};

/// A copy of `graph` that also computes the gradient of the scalar `loss`
/// with respect to each of `params`; its outputs are `loss` then the
/// gradients in the order of `params`, which are also returned.
pub fn grad(
    graph: &TensorGraph,
    loss: Tensor,
    params: &[Tensor],
) -> TensorResult<(TensorGraph, Vec<Tensor>)> {
    let mut g = graph.clone();
    let grads = append_grad(&mut g, loss, params)?;
    let mut outputs = vec![loss];
    outputs.extend(&grads);
    g.set_outputs(outputs)?;
    Ok((g, grads))
}

/// Appends the backward nodes of `loss` to `g` and returns the gradient of
/// each of `params` (zeros for one the loss does not depend on).
pub fn append_grad(
    g: &mut TensorGraph,
    loss: Tensor,
    params: &[Tensor],
) -> TensorResult<Vec<Tensor>> {
    for &v in params.iter().chain([&loss]) {
        if v.index() >= g.nodes.len() {
            return Err(TensorError::UnknownTensor(v.0));
        }
    }
    if g.shape(loss).rank() != 0 {
        return Err(TensorError::LossNotScalar {
            value: loss.0,
            shape: g.shape(loss).clone(),
        });
    }
    // Which values depend on some parameter asked for.
    let mut wanted = vec![false; g.nodes.len()];
    for &p in params {
        wanted[p.index()] = true;
    }
    for i in 0..=loss.index() {
        if g.nodes[i].inputs.iter().any(|v| wanted[v.index()]) {
            wanted[i] = true;
        }
    }
    let mut grads: Vec<Option<Tensor>> = vec![None; loss.index() + 1];
    grads[loss.index()] = Some(g.scalar(1.0));
    for i in (0..=loss.index()).rev() {
        let Some(gy) = grads[i] else { continue };
        let node = g.nodes[i].clone();
        if node.inputs.iter().all(|v| !wanted[v.index()]) {
            continue;
        }
        let contributions = vjp(g, Tensor(i as u32), &node.op, &node.inputs, gy, &wanted)?;
        for (input, contribution) in node.inputs.iter().zip(contributions) {
            let Some(c) = contribution else { continue };
            let slot = &mut grads[input.index()];
            *slot = Some(match *slot {
                Some(previous) => g.add(previous, c)?,
                None => c,
            });
        }
    }
    params
        .iter()
        .map(|&p| match grads.get(p.index()).copied().flatten() {
            Some(v) => Ok(v),
            None => Ok(g.full(0.0, g.shape(p).clone())),
        })
        .collect()
}

/// The gradients of a node's operands given the gradient `gy` of its
/// result `y` (`None` for operands that need none).
fn vjp(
    g: &mut TensorGraph,
    y: Tensor,
    op: &TensorOp,
    inputs: &[Tensor],
    gy: Tensor,
    wanted: &[bool],
) -> TensorResult<Vec<Option<Tensor>>> {
    let want = |k: usize| wanted[inputs[k].index()];
    let shape = |g: &TensorGraph, k: usize| g.shape(inputs[k]).clone();
    Ok(match op {
        TensorOp::Input { .. } | TensorOp::Param { .. } | TensorOp::Const { .. } => vec![],
        TensorOp::Unary(u) => vec![Some(unary_vjp(g, *u, inputs[0], y, gy)?)],
        TensorOp::Binary(b) => {
            let (a, bb) = (inputs[0], inputs[1]);
            let (ga, gb) = match b {
                Binary::Add => (Some(gy), Some(gy)),
                Binary::Sub => (
                    Some(gy),
                    want(1).then(|| g.unary(Unary::Neg, gy)).transpose()?,
                ),
                Binary::Mul => (
                    want(0).then(|| g.mul(gy, bb)).transpose()?,
                    want(1).then(|| g.mul(gy, a)).transpose()?,
                ),
                Binary::Div => {
                    let ga = g.div(gy, bb)?;
                    let gb = if want(1) {
                        let t = g.mul(ga, y)?;
                        Some(g.unary(Unary::Neg, t)?)
                    } else {
                        None
                    };
                    (Some(ga), gb)
                }
                Binary::Max => {
                    let d = g.sub(a, bb)?;
                    let mask = g.unary(Unary::Step, d)?;
                    let ga = g.mul(gy, mask)?;
                    (Some(ga), want(1).then(|| g.sub(gy, ga)).transpose()?)
                }
            };
            let ga = match ga.filter(|_| want(0)) {
                Some(v) => Some(g.sum_to(v, shape(g, 0))?),
                None => None,
            };
            let gb = match gb.filter(|_| want(1)) {
                Some(v) => Some(g.sum_to(v, shape(g, 1))?),
                None => None,
            };
            vec![ga, gb]
        }
        TensorOp::MatMul { trans_a, trans_b } => {
            let (a, b) = (inputs[0], inputs[1]);
            // C = op(A) op(B); dA and dB by the four transpose cases.
            let ga = if want(0) {
                Some(match (trans_a, trans_b) {
                    (false, false) => g.matmul_t(gy, b, false, true)?,
                    (false, true) => g.matmul_t(gy, b, false, false)?,
                    (true, false) => g.matmul_t(b, gy, false, true)?,
                    (true, true) => g.matmul_t(b, gy, true, true)?,
                })
            } else {
                None
            };
            let gb = if want(1) {
                Some(match (trans_a, trans_b) {
                    (false, false) => g.matmul_t(a, gy, true, false)?,
                    (false, true) => g.matmul_t(gy, a, true, false)?,
                    (true, false) => g.matmul_t(a, gy, false, false)?,
                    (true, true) => g.matmul_t(gy, a, true, true)?,
                })
            } else {
                None
            };
            vec![ga, gb]
        }
        TensorOp::Sum { axes, .. } => {
            let kept = shape(g, 0).reduced_keep(axes);
            let r = g.reshape(gy, kept)?;
            vec![Some(g.broadcast_to(r, shape(g, 0))?)]
        }
        TensorOp::Softmax { axis } => {
            let gyy = g.mul(gy, y)?;
            let s = g.sum(gyy, &[*axis], true)?;
            let ys = g.mul(y, s)?;
            vec![Some(g.sub(gyy, ys)?)]
        }
        TensorOp::LogSoftmax { axis } => {
            let p = g.unary(Unary::Exp, y)?;
            let s = g.sum(gy, &[*axis], true)?;
            let ps = g.mul(p, s)?;
            vec![Some(g.sub(gy, ps)?)]
        }
        TensorOp::CrossEntropy => {
            let s = shape(g, 0);
            let last = s.rank() - 1;
            let rows = (s.numel() / s.0[last]) as f32;
            let scale = g.scale(gy, 1.0 / rows)?;
            let ga = if want(0) {
                let p = g.softmax(inputs[0], last)?;
                let d = g.sub(p, inputs[1])?;
                Some(g.mul(d, scale)?)
            } else {
                None
            };
            let gb = if want(1) {
                let l = g.log_softmax(inputs[0], last)?;
                let n = g.unary(Unary::Neg, l)?;
                Some(g.mul(n, scale)?)
            } else {
                None
            };
            vec![ga, gb]
        }
        TensorOp::Mse => {
            let n = shape(g, 0).numel() as f32;
            let d = g.sub(inputs[0], inputs[1])?;
            let k = g.scale(gy, 2.0 / n)?;
            let ga = g.mul(d, k)?;
            let gb = if want(1) {
                Some(g.unary(Unary::Neg, ga)?)
            } else {
                None
            };
            vec![want(0).then_some(ga), gb]
        }
        TensorOp::Reshape => vec![Some(g.reshape(gy, shape(g, 0))?)],
        TensorOp::Transpose { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![Some(g.transpose(gy, &inverse)?)]
        }
        TensorOp::Slice { axis, start, end } => {
            let extent = shape(g, 0).0[*axis];
            let pad = TensorOp::Pad {
                axis: *axis,
                before: *start,
                after: extent - end,
            };
            vec![Some(g.apply(pad, &[gy], None)?)]
        }
        TensorOp::Pad { axis, before, .. } => {
            let extent = shape(g, 0).0[*axis];
            vec![Some(g.slice(gy, *axis, *before, before + extent)?)]
        }
        TensorOp::Concat { axis } => {
            let mut start = 0;
            let mut out = Vec::new();
            for k in 0..inputs.len() {
                let extent = shape(g, k).0[*axis];
                out.push(if want(k) {
                    Some(g.slice(gy, *axis, start, start + extent)?)
                } else {
                    None
                });
                start += extent;
            }
            out
        }
        TensorOp::BroadcastTo => vec![Some(g.sum_to(gy, shape(g, 0))?)],
        TensorOp::SumTo => vec![Some(g.broadcast_to(gy, shape(g, 0))?)],
        // Megatron's g and f: the sum's gradient passes through, the
        // identity's is summed over the workers.
        TensorOp::AllReduce {
            group: ParallelGroup::Tensor,
            ..
        } => vec![Some(gy)],
        TensorOp::EnterParallel => vec![Some(super::allreduce::all_reduce_sum(g, gy)?)],
        TensorOp::AllReduce {
            group: ParallelGroup::Data,
            ..
        } => {
            return Err(shape_error(
                "grad",
                "cannot differentiate a mean all-reduce: insert it after autodiff",
            ))
        }
        TensorOp::Fused(_) => {
            return Err(shape_error(
                "grad",
                "cannot differentiate a fused node: run autodiff before fusion",
            ))
        }
        TensorOp::Custom(c) => custom_vjp(g, c, inputs, gy, wanted)?,
    })
}

/// The gradients of a custom op's operands: its gradient task applied to
/// the operands and `gy`, one node per wanted operand.
fn custom_vjp(
    g: &mut TensorGraph,
    op: &CustomOp,
    inputs: &[Tensor],
    gy: Tensor,
    wanted: &[bool],
) -> TensorResult<Vec<Option<Tensor>>> {
    let Some(grad) = &op.grad else {
        let what = match op.output {
            Some(k) => format!("result {k} of task `{}` (a gradient task)", op.task),
            None => format!("task `{}`", op.task),
        };
        return Err(shape_error(
            "grad",
            format!("{what} declares no gradient task: give it one with #[task(grad = ...)]"),
        ));
    };
    let mut operands = inputs.to_vec();
    operands.push(gy);
    let mut out = Vec::with_capacity(inputs.len());
    for (k, &x) in inputs.iter().enumerate() {
        out.push(if wanted[x.index()] {
            let gradient = CustomOp {
                task: grad.clone(),
                grad: None,
                output: (inputs.len() > 1).then_some(k),
            };
            let shape = g.shape(x).clone();
            Some(g.apply(TensorOp::Custom(gradient), &operands, Some(&shape))?)
        } else {
            None
        });
    }
    Ok(out)
}

/// The gradient of `x` through `y = op(x)`.
fn unary_vjp(
    g: &mut TensorGraph,
    op: Unary,
    x: Tensor,
    y: Tensor,
    gy: Tensor,
) -> TensorResult<Tensor> {
    let one = |g: &mut TensorGraph| g.scalar(1.0);
    match op {
        Unary::Neg => g.unary(Unary::Neg, gy),
        Unary::Relu => {
            let mask = g.unary(Unary::Step, x)?;
            g.mul(gy, mask)
        }
        Unary::Step => Ok(g.full(0.0, g.shape(x).clone())),
        Unary::Gelu => {
            let d = g.unary(Unary::GeluGrad, x)?;
            g.mul(gy, d)
        }
        Unary::GeluGrad => Err(shape_error(
            "grad",
            "gelu_grad has no derivative (second derivative of gelu)",
        )),
        Unary::Tanh => {
            let y2 = g.unary(Unary::Square, y)?;
            let o = one(g);
            let d = g.sub(o, y2)?;
            g.mul(gy, d)
        }
        Unary::Sigmoid => {
            let o = one(g);
            let c = g.sub(o, y)?;
            let d = g.mul(y, c)?;
            g.mul(gy, d)
        }
        Unary::Exp => g.mul(gy, y),
        Unary::Log => g.div(gy, x),
        Unary::Sqrt => {
            let q = g.div(gy, y)?;
            g.scale(q, 0.5)
        }
        Unary::Recip => {
            let y2 = g.unary(Unary::Square, y)?;
            let t = g.mul(gy, y2)?;
            g.unary(Unary::Neg, t)
        }
        Unary::Square => {
            let t = g.mul(gy, x)?;
            g.scale(t, 2.0)
        }
    }
}

impl TensorGraph {
    /// A graph computing `loss` and its gradients with respect to `params`;
    /// see [`grad`].
    pub fn grad(
        &self,
        loss: Tensor,
        params: &[Tensor],
    ) -> TensorResult<(TensorGraph, Vec<Tensor>)> {
        grad(self, loss, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;

    #[test]
    fn gradients_of_a_linear_layer_have_the_parameters_shapes() {
        let mut g = TensorGraph::new();
        let x = g.input("x", [8, 3]);
        let t = g.input("t", [8, 2]);
        let w = g.param("w", [3, 2]);
        let b = g.param("b", [2]);
        let h = g.matmul(x, w).unwrap();
        let z = g.add(h, b).unwrap();
        let loss = g.cross_entropy(z, t).unwrap();
        let (dg, grads) = g.grad(loss, &[w, b]).unwrap();
        assert_eq!(dg.shape(grads[0]), &Shape::of(&[3, 2]));
        assert_eq!(dg.shape(grads[1]), &Shape::of(&[2]));
        assert_eq!(dg.outputs(), &[loss, grads[0], grads[1]]);
        // No gradient flows into the data: no transposed product with x's gradient.
        assert!(!dg.nodes().iter().any(|n| n.op
            == TensorOp::MatMul {
                trans_a: false,
                trans_b: true
            }));
    }

    #[test]
    fn a_non_scalar_loss_is_refused() {
        let mut g = TensorGraph::new();
        let w = g.param("w", [2]);
        let err = g.grad(w, &[w]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "grad: the loss %0 must be a scalar, but its shape is [2]"
        );
    }
}
