//! [`Value`]: the typed handle of a graph value, what [`GraphBuilder`](crate::builder::GraphBuilder)
//! hands out and a [`Dag`](crate::Dag)'s
//! outputs are made of. Its own module, so that the builder and the graph
//! type can both use it without importing each other.

use dagger_ir::NodeId;
use std::marker::PhantomData;

/// A typed handle to the value a node of a graph under construction will hold.
pub struct Value<T> {
    id: NodeId,
    _type: PhantomData<fn() -> T>,
}

impl<T> Value<T> {
    /// Wraps a node id; the caller vouches that the node produces a `T`.
    pub fn from_id(id: NodeId) -> Self {
        Value {
            id,
            _type: PhantomData,
        }
    }

    /// The IR node behind the handle.
    pub fn id(self) -> NodeId {
        self.id
    }
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Value<T> {}

impl<T> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value<{}>({:?})", dagger_ir::type_name::<T>(), self.id)
    }
}
