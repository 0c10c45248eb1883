//! How big values are: what the cost model buckets measurements by and
//! what transfers between processes are charged for.
//!
//! A type tells its size by implementing [`ByteSize`] (done here for numbers,
//! strings, vectors, maps, options, boxes and tuples; implement it for your
//! own types, e.g. a matrix newtype). `#[task]` records, for each parameter
//! and the result, whether its type does ([`Probe`], by autoref
//! specialization as for [codecs](crate::wire)); values of other types
//! count as size 0 (unknown).

use crate::datum::Datum;
use crate::probe_type::Probe;
use std::collections::{BTreeMap, HashMap};

/// The number of bytes a value holds (heap included), roughly what moving
/// it costs.
pub trait ByteSize {
    /// Bytes of every value of the type, when it is the same for all
    /// (lets a `Vec` of them count in O(1)).
    const FIXED: Option<u64> = None;
    /// This value's bytes.
    fn byte_size(&self) -> u64;
}

macro_rules! fixed {
    ($($t:ty),*) => {$(
        impl ByteSize for $t {
            const FIXED: Option<u64> = Some(std::mem::size_of::<$t>() as u64);
            fn byte_size(&self) -> u64 {
                std::mem::size_of::<$t>() as u64
            }
        }
    )*};
}
fixed!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

impl ByteSize for String {
    fn byte_size(&self) -> u64 {
        self.len() as u64
    }
}

impl<T: ByteSize> ByteSize for Vec<T> {
    fn byte_size(&self) -> u64 {
        match T::FIXED {
            Some(each) => each * self.len() as u64,
            None => self.iter().map(ByteSize::byte_size).sum(),
        }
    }
}

impl<T: ByteSize> ByteSize for Option<T> {
    fn byte_size(&self) -> u64 {
        self.as_ref().map_or(0, ByteSize::byte_size)
    }
}

impl<T: ByteSize> ByteSize for Box<T> {
    fn byte_size(&self) -> u64 {
        (**self).byte_size()
    }
}

impl<K: ByteSize, V: ByteSize, S> ByteSize for HashMap<K, V, S> {
    fn byte_size(&self) -> u64 {
        self.iter()
            .map(|(k, v)| k.byte_size() + v.byte_size())
            .sum()
    }
}

impl<K: ByteSize, V: ByteSize> ByteSize for BTreeMap<K, V> {
    fn byte_size(&self) -> u64 {
        self.iter()
            .map(|(k, v)| k.byte_size() + v.byte_size())
            .sum()
    }
}

macro_rules! tuple {
    ($($t:ident . $i:tt),*) => {
        impl<$($t: ByteSize),*> ByteSize for ($($t,)*) {
            fn byte_size(&self) -> u64 {
                0 $(+ self.$i.byte_size())*
            }
        }
    };
}
tuple!(A.0);
tuple!(A.0, B.1);
tuple!(A.0, B.1, C.2);
tuple!(A.0, B.1, C.2, D.3);

/// Reads the size of a value of one (erased) type.
pub type SizeFn = fn(&Datum) -> u64;

fn size_of_datum<T: ByteSize + 'static>(d: &Datum) -> u64 {
    d.downcast_ref::<T>().map_or(0, ByteSize::byte_size)
}

/// The probe's answer for a type that implements [`ByteSize`].
pub trait HasSize {
    /// `Some(size function)`.
    fn size_fn(&self) -> Option<SizeFn>;
}

impl<T: ByteSize + 'static> HasSize for &Probe<T> {
    fn size_fn(&self) -> Option<SizeFn> {
        Some(size_of_datum::<T>)
    }
}

/// The probe's answer for any other type.
pub trait NoSize {
    /// `None`.
    fn size_fn(&self) -> Option<SizeFn>;
}

impl<T> NoSize for Probe<T> {
    fn size_fn(&self) -> Option<SizeFn> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_borrow)] // the probe's `&&` is what picks the impl
    fn sizes_count_heap_bytes_and_unknown_types_have_none() {
        assert_eq!(vec![0f64; 1000].byte_size(), 8000);
        assert_eq!(vec!["ab".to_string(), "cde".to_string()].byte_size(), 5);
        let mut m = HashMap::new();
        m.insert("word".to_string(), 3u64);
        assert_eq!(m.byte_size(), 12);
        assert_eq!((1u32, Some(2u8)).byte_size(), 5);
        #[allow(unused_imports)]
        use super::{HasSize as _, NoSize as _};
        let f = (&&Probe::<Vec<u16>>::new()).size_fn().expect("sized");
        assert_eq!(f(&Datum::new(vec![1u16, 2, 3])), 6);
        struct Opaque;
        assert!((&&Probe::<Opaque>::new()).size_fn().is_none());
    }
}
