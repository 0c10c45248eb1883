//! Recording dynamic spawns as an IR graph.
//!
//! While recording is on, every spawn adds a call node to one [`Graph`]: an
//! edge from the producer of each handle argument, a constant node for each
//! argument given as a value. The result is the graph `dag!` would have built
//! for the same calls, so it can be printed, verified and optimised like one.

use dagger_ir::{ConstValue, Graph, NodeId, TaskSig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The graph of the spawns made while recording was on.
#[derive(Default)]
pub(crate) struct Recorder {
    active: AtomicBool,
    state: Mutex<RecordState>,
}

#[derive(Default)]
struct RecordState {
    graph: Graph,
    consts: u32,
}

impl Recorder {
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Starts a new recording, dropping any graph recorded before.
    pub(crate) fn start(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = RecordState::default();
        self.active.store(true, Ordering::SeqCst);
    }

    /// Stops recording and returns the graph; `outputs` become its outputs.
    pub(crate) fn stop(&self, outputs: Vec<NodeId>) -> Graph {
        self.active.store(false, Ordering::SeqCst);
        let mut state = std::mem::take(&mut *self.state.lock().unwrap_or_else(|p| p.into_inner()));
        state.graph.set_outputs(outputs);
        state.graph
    }

    /// Adds a call of `name`; `args[i]` is the node making argument `i`, or
    /// `None` for a value given directly (recorded as a constant).
    pub(crate) fn record_call(
        &self,
        name: &str,
        params: Vec<String>,
        output: String,
        args: &[Option<NodeId>],
    ) -> NodeId {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let RecordState { graph, consts } = &mut *state;
        let ids: Vec<NodeId> = args
            .iter()
            .zip(&params)
            .map(|(a, ty)| {
                a.unwrap_or_else(|| {
                    *consts += 1;
                    graph.add_const(ty.clone(), ConstValue::Host(*consts - 1), None)
                })
            })
            .collect();
        let task = match graph.task_by_name(name) {
            Some(t) => t,
            None => graph.intern_task(match crate::task::lookup(name) {
                Some(def) => def.sig(),
                None => TaskSig {
                    params,
                    ..TaskSig::new(name, &[], output)
                },
            }),
        };
        graph.add_call(task, &ids, None)
    }
}
