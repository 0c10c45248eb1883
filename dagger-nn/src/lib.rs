//! Neural networks on tensor graphs: layers, losses, optimizers, training.
//!
//! A [`Net`] is a [`TensorGraph`](dagger_tensor::TensorGraph) that also
//! knows how to initialize its parameters; layer builders
//! ([`Net::linear`], [`Net::mlp`]) add ops to it. [`Net::train_step`] runs
//! the autodiff pass and appends an [`Optimizer`]'s update rule, giving one
//! graph for the whole step, which [`Program::compile`] fuses, plans and
//! JIT-compiles.
//!
//! Training on several workers (threads, or the ranks of a cluster started
//! by `dagger run`), each equal to one device's training up to summation
//! order:
//! - [`DataParallel`]: replicas, each batch split between them, gradients
//!   averaged by a bucketed ring all-reduce overlapping backward;
//! - [`Pipeline`]: an MLP's layers in balanced stages, micro-batches in
//!   GPipe or 1F1B order, optionally replicated
//!   ([`Pipeline::with_data_parallel`]);
//! - [`TensorParallel`]: Megatron blocks split by columns then rows,
//!   optionally replicated ([`TensorParallel::with_data_parallel`]);
//! - all three at once: [`Pipeline::megatron`], copies of a pipeline whose
//!   stages of Megatron blocks are split over tensor-parallel shards (a
//!   pipeline cuts any [`StageModel`]: an [`MlpSpec`] or a [`BlockStack`]).
//!
//! Tensor ops are also tasks ([`ops`], over [`Array`]), so a model can be
//! written in `dag!{}` and brought back to a tensor graph with [`lower()`].
//! A user's own `#[task]` of `Array`s in such a graph becomes a custom op,
//! called by name when the program runs and differentiated with the
//! gradient task it declares (`#[task(grad = ...)]`).
//!
//! ```
//! use dagger_nn::{Activation, Adam, Net, Program, CompileOptions};
//!
//! let mut net = Net::new();
//! let x = net.input("x", [4, 2]);
//! let y = net.input("y", [4, 2]);
//! let logits = net.mlp(x, &[8, 2], Activation::Relu).unwrap();
//! let loss = net.cross_entropy(logits, y).unwrap();
//! let step = net.train_step(loss, &[], &Adam::new(0.05)).unwrap();
//! let mut program = Program::compile(&step, CompileOptions::default()).unwrap();
//! step.init_params(&mut program, 1).unwrap();
//! // XOR, one-hot labels.
//! program.set("x", &[0., 0., 0., 1., 1., 0., 1., 1.]).unwrap();
//! program.set("y", &[1., 0., 0., 1., 0., 1., 1., 0.]).unwrap();
//! let mut first = 0.0;
//! for i in 0..300 {
//!     program.run().unwrap();
//!     if i == 0 { first = program.output(0)[0]; }
//! }
//! assert!(program.output(0)[0] < first * 0.1);
//! ```
//!
//! Every call that can fail returns [`Result`]: one [`Error`], whose
//! variants say what failed (a tensor graph or its backend, lowering, a
//! parameters file, a trainer's settings or workers).
//!
//! Programs reach this crate as `dagger::nn` (the facade's `nn` feature);
//! its `cuda` and `cluster` features (turned on by the facade's) add the
//! trainers on GPUs and across ranks.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod array;
#[cfg(feature = "cluster")]
mod cluster_links;
pub mod data_parallel;
pub mod error;
pub mod gpt_plan;
pub mod init;
pub mod io;
pub mod lower;
pub mod net;
pub mod ops;
pub mod optim;
pub mod pipeline;
mod replica;
mod replies;
mod stage;
mod stage_link;
mod stage_model;
mod step;
pub mod tensor_parallel;

pub use array::Array;
pub use dagger_tensor::{CompileOptions, Program, ProgramError, ProgramStats};
pub use data_parallel::{DataParallel, DataParallelOptions, Workers};
pub use error::{Error, Result};
pub use init::{Init, SeededRng};
pub use io::{load_params, save_params, NamedParams};
pub use lower::lower;
pub use net::{Activation, Net};
pub use optim::{Adam, Momentum, Optimizer, Sgd};
pub use pipeline::{Pipeline, PipelineOptions};
pub use stage_model::MlpSpec;
pub use stage_model::StageModel;
pub use tensor_parallel::{BlockStack, TensorParallel};
