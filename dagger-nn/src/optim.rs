//! Optimizers as graph ops: each appends its update rule to the training
//! step, so the update is fused and run like the rest of the step.
//!
//! State (momentum buffers, Adam's moments and step count) lives in
//! parameters named after the optimizer and the parameter, initialized to
//! zero, so it is saved and loaded with the model.

use super::error::Result;
use super::init::Init;
use super::net::Net;
use dagger_tensor::{Tensor, Unary};

/// An update rule for parameters given their gradients.
pub trait Optimizer {
    /// Appends the updates of `params` from `grads` to `net`.
    fn apply(&self, net: &mut Net, params: &[Tensor], grads: &[Tensor]) -> Result<()>;
}

fn param_name(net: &Net, p: Tensor) -> String {
    match &net.node(p).op {
        dagger_tensor::TensorOp::Param { name } => name.clone(),
        _ => format!("%{}", p.0),
    }
}

/// Plain stochastic gradient descent: `p -= lr * g`.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
}

impl Optimizer for Sgd {
    fn apply(&self, net: &mut Net, params: &[Tensor], grads: &[Tensor]) -> Result<()> {
        for (&p, &g) in params.iter().zip(grads) {
            let step = net.scale(g, self.lr)?;
            let new = net.sub(p, step)?;
            net.add_update(p, new)?;
        }
        Ok(())
    }
}

/// SGD with momentum, as PyTorch: `v = mu v + g; p -= lr v`.
#[derive(Clone, Copy, Debug)]
pub struct Momentum {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor.
    pub mu: f32,
}

impl Optimizer for Momentum {
    fn apply(&self, net: &mut Net, params: &[Tensor], grads: &[Tensor]) -> Result<()> {
        for (&p, &g) in params.iter().zip(grads) {
            let shape = net.shape(p).clone();
            let v = net.param_init(
                &format!("momentum.{}", param_name(net, p)),
                shape,
                Init::Zeros,
            );
            let decayed = net.scale(v, self.mu)?;
            let v_new = net.add(decayed, g)?;
            let step = net.scale(v_new, self.lr)?;
            let p_new = net.sub(p, step)?;
            net.add_update(v, v_new)?;
            net.add_update(p, p_new)?;
        }
        Ok(())
    }
}

/// Adam (Kingma and Ba), with PyTorch's placement of `eps`.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
}

impl Adam {
    /// Adam with the usual betas (0.9, 0.999) and eps 1e-8.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl Optimizer for Adam {
    fn apply(&self, net: &mut Net, params: &[Tensor], grads: &[Tensor]) -> Result<()> {
        // Step count t (after this step) and the bias corrections 1 - beta^t.
        let t = net.param_init("adam.step", [], Init::Zeros);
        let one = net.scalar(1.0);
        let t_new = net.add(t, one)?;
        net.add_update(t, t_new)?;
        let correction = |net: &mut Net, beta: f32| -> Result<Tensor> {
            let log_beta_t = net.scale(t_new, beta.ln())?;
            let beta_t = net.unary(Unary::Exp, log_beta_t)?;
            let one = net.scalar(1.0);
            Ok(net.sub(one, beta_t)?)
        };
        let c1 = correction(net, self.beta1)?;
        let c2 = correction(net, self.beta2)?;
        let root_c2 = net.unary(Unary::Sqrt, c2)?;
        let lr = net.scalar(self.lr);
        let step_size = net.div(lr, c1)?;
        for (&p, &g) in params.iter().zip(grads) {
            let name = param_name(net, p);
            let shape = net.shape(p).clone();
            let m = net.param_init(&format!("adam.m.{name}"), shape.clone(), Init::Zeros);
            let v = net.param_init(&format!("adam.v.{name}"), shape, Init::Zeros);
            let m_keep = net.scale(m, self.beta1)?;
            let g_part = net.scale(g, 1.0 - self.beta1)?;
            let m_new = net.add(m_keep, g_part)?;
            let v_keep = net.scale(v, self.beta2)?;
            let g2 = net.unary(Unary::Square, g)?;
            let g2_part = net.scale(g2, 1.0 - self.beta2)?;
            let v_new = net.add(v_keep, g2_part)?;
            let root_v = net.unary(Unary::Sqrt, v_new)?;
            let denom = net.div(root_v, root_c2)?;
            let eps = net.scalar(self.eps);
            let denom = net.add(denom, eps)?;
            let ratio = net.div(m_new, denom)?;
            let step = net.mul(ratio, step_size)?;
            let p_new = net.sub(p, step)?;
            net.add_update(m, m_new)?;
            net.add_update(v, v_new)?;
            net.add_update(p, p_new)?;
        }
        Ok(())
    }
}
