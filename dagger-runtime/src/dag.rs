//! A typed, runnable graph: [`Dag<I, O>`] takes inputs `I` and yields `O`.

use crate::datum::{Data, Datum};
use crate::error::RunError;
use crate::plan::Plan;
use crate::task::Bodies;
use crate::value::Value;
use dagger_ir::{Graph, NodeId};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

/// A graph with its constants, typed by its inputs `I` (a tuple) and outputs
/// `O` (a value or a tuple). Made by `dag!{}` or [`GraphBuilder`](crate::GraphBuilder);
/// run by [`Runtime::run`](crate::Runtime::run). Compiled once, on first run.
pub struct Dag<I, O> {
    graph: Graph,
    consts: Vec<Datum>,
    /// The bodies of its tasks made at run time, by name.
    bodies: Bodies,
    plan: OnceLock<Result<Arc<Plan>, RunError>>,
    unbox: fn(Vec<Datum>) -> Result<O, RunError>,
    _inputs: PhantomData<fn(I)>,
}

impl<I, O> Dag<I, O> {
    pub(crate) fn new(
        graph: Graph,
        consts: Vec<Datum>,
        bodies: Bodies,
        unbox: fn(Vec<Datum>) -> Result<O, RunError>,
    ) -> Self {
        Dag {
            graph,
            consts,
            bodies,
            plan: OnceLock::new(),
            unbox,
            _inputs: PhantomData,
        }
    }

    /// Turns a run's output values into `O`.
    pub fn unbox(&self, outputs: Vec<Datum>) -> Result<O, RunError> {
        (self.unbox)(outputs)
    }

    /// The graph as built, before any pass.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The constants the graph's `Host` constant nodes refer to, by slot.
    pub fn constants(&self) -> &[Datum] {
        &self.consts
    }

    /// The compiled plan (passes run, kernels resolved), compiling on first use.
    pub fn plan(&self) -> Result<Arc<Plan>, RunError> {
        self.plan
            .get_or_init(|| {
                Plan::compile_with(&self.graph, &self.consts, &self.bodies).map(Arc::new)
            })
            .clone()
    }
}

/// A tuple of input values.
pub trait Inputs {
    /// Boxes the inputs, in order.
    fn into_data(self) -> Vec<Datum>;
}

/// A handle or a tuple of handles naming a graph's outputs.
pub trait Outputs {
    /// The value (or tuple of values) a run returns.
    type Output;
    /// The output nodes, in order.
    fn ids(&self) -> Vec<NodeId>;
    /// Unboxes a run's results, in order.
    fn from_data(data: Vec<Datum>) -> Result<Self::Output, RunError>;
}

fn unbox<T: Data>(d: Option<Datum>, index: usize) -> Result<T, RunError> {
    let d = d.ok_or_else(|| RunError::Unsupported(format!("output {index} is missing")))?;
    d.take::<T>().map_err(|d| RunError::WrongType {
        context: format!("output {index}"),
        expected: dagger_ir::type_name::<T>(),
        found: dagger_ir::short_type_name(d.type_name()),
    })
}

impl<T: Data> Outputs for Value<T> {
    type Output = T;
    fn ids(&self) -> Vec<NodeId> {
        vec![self.id()]
    }
    fn from_data(data: Vec<Datum>) -> Result<T, RunError> {
        unbox(data.into_iter().next(), 0)
    }
}

/// Any number of outputs of one type (a graph built in a loop).
impl<T: Data> Outputs for Vec<Value<T>> {
    type Output = Vec<T>;
    fn ids(&self) -> Vec<NodeId> {
        self.iter().map(|v| v.id()).collect()
    }
    fn from_data(data: Vec<Datum>) -> Result<Vec<T>, RunError> {
        data.into_iter()
            .enumerate()
            .map(|(i, d)| unbox(Some(d), i))
            .collect()
    }
}

macro_rules! tuple_impls {
    ($($T:ident $i:tt),*) => {
        impl<$($T: Send + Sync + 'static),*> Inputs for ($($T,)*) {
            #[allow(unused_variables)]
            fn into_data(self) -> Vec<Datum> {
                vec![$(Datum::new(self.$i)),*]
            }
        }
        impl<$($T: Data),*> Outputs for ($(Value<$T>,)*) {
            type Output = ($($T,)*);
            fn ids(&self) -> Vec<NodeId> {
                vec![$(self.$i.id()),*]
            }
            #[allow(unused_variables, unused_mut)]
            fn from_data(data: Vec<Datum>) -> Result<Self::Output, RunError> {
                let mut it = data.into_iter();
                Ok(($(unbox::<$T>(it.next(), $i)?,)*))
            }
        }
    };
}

tuple_impls!();
tuple_impls!(A 0);
tuple_impls!(A 0, B 1);
tuple_impls!(A 0, B 1, C 2);
tuple_impls!(A 0, B 1, C 2, D 3);
tuple_impls!(A 0, B 1, C 2, D 3, E 4);
tuple_impls!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_impls!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_impls!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
