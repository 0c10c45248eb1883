//! Asking, in generated code, whether a type implements a trait, and
//! getting `None` instead of a compile error when it does not: autoref
//! specialization. `(&&Probe::<T>::new()).method()` with a "yes" trait
//! implemented for `&Probe<T>` where `T` has the capability and a "no"
//! trait for `Probe<T>` picks the "yes" method when it applies (method
//! lookup tries `&&Probe` before dereferencing to `&Probe`). The
//! [codecs](crate::wire) and [sizes](crate::size) of task values are found
//! this way.

use std::marker::PhantomData;

/// A stand-in for the type `T` to ask questions about.
pub struct Probe<T>(PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// A probe for `T`.
    pub fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}
