//! Type-erased values flowing between tasks.
//!
//! Every value a task produces becomes a [`Datum`]: a reference-counted box
//! that remembers its type's name. A value with one consumer is *moved* into it
//! (the count is one, so [`Datum::take`] unwraps the box without copying); a
//! value with several consumers is shared, and each consumer that needs an
//! owned copy clones it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// What a value must be to flow through a graph: owned, shareable across
/// threads, and cloneable (a value read by several tasks is cloned for each
/// owner that still needs it when others hold it too).
pub trait Data: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Data for T {}

trait Erased: Any + Send + Sync {
    fn type_name(&self) -> &'static str;
}

impl<T: Any + Send + Sync> Erased for T {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// A type-erased, reference-counted value. Cloning a `Datum` shares the value.
#[derive(Clone)]
pub struct Datum(Arc<dyn Erased>);

impl Datum {
    /// Boxes a value.
    pub fn new<T: Send + Sync + 'static>(value: T) -> Self {
        Datum(Arc::new(value))
    }

    /// The full Rust name of the value's type.
    pub fn type_name(&self) -> &'static str {
        self.0.as_ref().type_name()
    }

    /// The value as `dyn Any` (its `type_id` is the value's type's).
    pub fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self.0.as_ref()
    }

    /// Borrows the value as a `T`, if it is one.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        let any: &dyn Any = self.0.as_ref();
        any.downcast_ref()
    }

    /// Takes the value out as an owned `T`: moved when this is the only
    /// reference, cloned otherwise. Gives the datum back when it holds another type.
    pub fn take<T: Clone + Send + Sync + 'static>(self) -> Result<T, Datum> {
        if self.downcast_ref::<T>().is_none() {
            return Err(self);
        }
        let any: Arc<dyn Any + Send + Sync> = self.0;
        let arc = any.downcast::<T>().expect("the type was checked");
        Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone()))
    }
}

impl fmt::Debug for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Datum<{}>", self.type_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_moves_a_unique_value_and_clones_a_shared_one() {
        let d = Datum::new(vec![1u8, 2, 3]);
        let ptr = d.downcast_ref::<Vec<u8>>().unwrap().as_ptr();
        let v: Vec<u8> = d.take().unwrap();
        assert_eq!(v.as_ptr(), ptr, "unique value must be moved, not copied");

        let d = Datum::new(vec![7u8]);
        let other = d.clone();
        let v: Vec<u8> = d.take().unwrap();
        assert_ne!(
            v.as_ptr(),
            other.downcast_ref::<Vec<u8>>().unwrap().as_ptr()
        );
        assert_eq!(v, vec![7]);
    }

    #[test]
    fn take_of_the_wrong_type_gives_the_datum_back() {
        let d = Datum::new(5u32);
        let back = d.take::<String>().unwrap_err();
        assert_eq!(back.type_name(), "u32");
        assert_eq!(back.take::<u32>().unwrap(), 5);
    }
}
