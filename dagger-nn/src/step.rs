//! Training steps: a [`Net`] computing a loss, then the gradients of every
//! parameter (reverse-mode autodiff) and an [`Optimizer`]'s updates of
//! them, appended to the same graph; for data parallelism, each gradient
//! all-reduced in buckets before its update.
//!
//! Here rather than in `net.rs`, so that the net (which optimizers build
//! on) does not depend on the optimizers.

use super::error::Result;
use super::net::Net;
use super::optim::Optimizer;
use dagger_tensor::{insert_all_reduce, Tensor};

impl Net {
    /// The training step: a net computing `loss`, the gradients of every
    /// parameter, and `optimizer`'s updates of them (its state becomes
    /// parameters too). Returns `loss` and `extra` as outputs.
    pub fn train_step(
        &self,
        loss: Tensor,
        extra: &[Tensor],
        optimizer: &dyn Optimizer,
    ) -> Result<Net> {
        self.build_step(loss, extra, optimizer, None)
    }

    /// The training step of one data-parallel worker: as
    /// [`train_step`](Self::train_step), with each gradient averaged over
    /// the workers (all-reduce, in buckets of about `bucket_bytes`) before
    /// the update, and the loss averaged too.
    pub fn data_parallel_step(
        &self,
        loss: Tensor,
        optimizer: &dyn Optimizer,
        bucket_bytes: usize,
    ) -> Result<Net> {
        self.build_step(loss, &[], optimizer, Some(bucket_bytes))
    }

    fn build_step(
        &self,
        loss: Tensor,
        extra: &[Tensor],
        optimizer: &dyn Optimizer,
        bucket_bytes: Option<usize>,
    ) -> Result<Net> {
        let mut step = self.clone();
        let params = step.params();
        let mut grads = dagger_tensor::autodiff::append_grad(&mut step, loss, &params)?;
        let mut shown_loss = loss;
        if let Some(bytes) = bucket_bytes {
            grads = insert_all_reduce(&mut step, &grads, bytes)?;
            shown_loss = insert_all_reduce(&mut step, &[loss], 0)?[0];
        }
        optimizer.apply(&mut step, &params, &grads)?;
        let mut outputs = vec![shown_loss];
        outputs.extend(extra);
        step.set_outputs(outputs)?;
        Ok(step)
    }
}
