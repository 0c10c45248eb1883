//! Tasks: what `#[task]` registers, and the registry that finds them by name.
//!
//! `#[task] fn count(words: Vec<String>) -> usize` keeps `count` callable as a
//! plain function and adds a [`TaskDef`]: the task's stable name
//! (`module::path::count`), its signature, its hints, and an erased entry point
//! that takes [`Datum`]s. The definition is submitted to a registry collected
//! at start-up (the `inventory` crate), so a task can be found by name at run
//! time: the same binary on another node resolves the same name to the same code.

use crate::datum::Datum;
use dagger_ir::{Cost, Device, TaskSig};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The erased entry point of a task: it takes its arguments out of the
/// slots (in parameter order) and returns its result or an error message.
pub type Invoke = fn(&mut [Option<Datum>]) -> Result<Datum, String>;

/// The entry point of a task made at run time (a closure), in the form of
/// [`Invoke`]: graphs built by code, such as a lowered tensor step, give
/// their kernel groups these instead of registered `#[task]`s.
pub type Body = Arc<dyn Fn(&mut [Option<Datum>]) -> Result<Datum, String> + Send + Sync>;

/// A task made at run time: its body, and the seconds its maker predicts
/// for one call on a CPU worker (what schedulers use until the cost model
/// has measured it).
#[derive(Clone)]
pub struct TaskBody {
    /// What a call runs.
    pub body: Body,
    /// Predicted seconds of one call.
    pub seconds: Option<f64>,
}

/// The tasks of a graph that are made at run time, by the name their
/// signatures carry; every other task is found in the registry.
pub type Bodies = HashMap<String, TaskBody>;

/// A cost hint as written in `#[task(cost = ...)]`.
#[derive(Clone, Copy, Debug)]
pub enum CostHint {
    /// No hint.
    Unknown,
    /// A constant number of seconds.
    Seconds(f64),
    /// An expression of the arguments, evaluated when they are known.
    Dynamic(fn(&[Datum]) -> f64),
}

/// Everything the runtime knows about one task.
#[derive(Debug)]
pub struct TaskDef {
    /// Stable registered name: module path and function name.
    pub name: &'static str,
    /// Parameter types and result type, as IR type names.
    pub signature: fn() -> (Vec<String>, String),
    /// Cost hint.
    pub cost: CostHint,
    /// Device hint.
    pub device: Device,
    /// Whether the task is pure (no side effects).
    pub pure: bool,
    /// Its gradient task (`#[task(grad = ...)]`): given the task's
    /// arguments and the gradient of its result, the gradient of each
    /// argument. Autodiff of tensor graphs calls it.
    pub grad: Option<fn() -> &'static TaskDef>,
    /// Erased entry point.
    pub invoke: Invoke,
    /// Its device body (`#[task(gpu = ...)]`), run instead of `invoke`
    /// when the task is placed on an accelerator (see [`crate::device`]).
    pub device_body: Option<crate::device::DeviceInvoke>,
    /// How its arguments and result cross processes (see [`crate::wire`]).
    pub wire: fn() -> crate::wire::TaskWire,
}

impl TaskDef {
    /// The task's signature as the IR records it.
    pub fn sig(&self) -> TaskSig {
        let (params, output) = (self.signature)();
        TaskSig {
            name: self.name.to_string(),
            params,
            output,
            cost: match self.cost {
                CostHint::Unknown => Cost::Unknown,
                CostHint::Seconds(s) => Cost::Seconds(s),
                CostHint::Dynamic(_) => Cost::Dynamic,
            },
            device: self.device,
            pure: self.pure,
        }
    }
}

/// Implemented by the type `#[task]` generates next to each task function
/// (a struct of the same name): the static, typed view of a task.
pub trait Task: 'static {
    /// Parameter types as a tuple.
    type Params;
    /// Result type (for a function returning `Result<T, E>`, it is `T`).
    type Output;
    /// The task's definition.
    fn def() -> &'static TaskDef;
}

/// A registry entry; `#[task]` submits one per task.
pub struct TaskRegistration(pub &'static TaskDef);

inventory::collect!(TaskRegistration);

fn registry() -> &'static HashMap<&'static str, &'static TaskDef> {
    static REGISTRY: OnceLock<HashMap<&'static str, &'static TaskDef>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        inventory::iter::<TaskRegistration>
            .into_iter()
            .map(|r| (r.0.name, r.0))
            .collect()
    })
}

/// Finds a registered task by name.
pub fn lookup(name: &str) -> Option<&'static TaskDef> {
    registry().get(name).copied()
}

/// All registered tasks, sorted by name.
pub fn registered() -> Vec<&'static TaskDef> {
    let mut v: Vec<_> = registry().values().copied().collect();
    v.sort_by_key(|d| d.name);
    v
}

/// Takes argument `port` of `task` out of its datum as a `T`, with an error
/// naming both types when it is something else. Used by generated code.
pub fn take_arg<T: Clone + Send + Sync + 'static>(
    arg: Option<Datum>,
    task: &str,
    port: usize,
) -> Result<T, String> {
    let datum = arg.ok_or_else(|| format!("argument {port} of `{task}` is missing"))?;
    datum.take::<T>().map_err(|d| {
        format!(
            "argument {port} of `{task}` should be {} but is {}",
            dagger_ir::type_name::<T>(),
            dagger_ir::short_type_name(d.type_name())
        )
    })
}
