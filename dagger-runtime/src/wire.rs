//! How task arguments and results cross processes: per-type codecs.
//!
//! A value crosses as bytes when its type implements serde's `Serialize`
//! and `DeserializeOwned` (encoded with postcard). `#[task]` records, for
//! each parameter and the result, a [`Codec`] if the type has one, found at
//! compile time by autoref specialization ([`CodecProbe`]): a type without
//! serde support still works in a single process, and sending it to another
//! rank fails with an error naming the type, instead of a compile error in
//! every program that never goes multi-process.

use crate::datum::{Data, Datum};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;

/// Encodes and decodes values of one type.
#[derive(Clone, Copy, Debug)]
pub struct Codec {
    /// The type's name.
    pub type_name: &'static str,
    /// Value to bytes.
    pub encode: fn(&Datum) -> Result<Vec<u8>, String>,
    /// Bytes to value.
    pub decode: fn(&[u8]) -> Result<Datum, String>,
}

/// Codecs of a task's parameters (in order) and result; `None` for a type
/// that cannot cross processes.
#[derive(Clone, Debug, Default)]
pub struct TaskWire {
    /// One per parameter.
    pub params: Vec<Option<Codec>>,
    /// The result's.
    pub output: Option<Codec>,
}

fn encode<T: Serialize + 'static>(d: &Datum) -> Result<Vec<u8>, String> {
    let value = d
        .downcast_ref::<T>()
        .ok_or_else(|| format!("expected a {}", std::any::type_name::<T>()))?;
    postcard::to_stdvec(value)
        .map_err(|e| format!("cannot encode {}: {e}", std::any::type_name::<T>()))
}

fn decode<T: DeserializeOwned + Data>(bytes: &[u8]) -> Result<Datum, String> {
    postcard::from_bytes::<T>(bytes)
        .map(Datum::new)
        .map_err(|e| format!("cannot decode {}: {e}", std::any::type_name::<T>()))
}

/// The codec of `T`, which must support serde.
pub fn codec<T: Serialize + DeserializeOwned + Data>() -> Codec {
    Codec {
        type_name: std::any::type_name::<T>(),
        encode: encode::<T>,
        decode: decode::<T>,
    }
}

/// Finds `T`'s codec if it has one: `(&&CodecProbe::<T>::new()).codec()`
/// with [`HasCodec`] and [`NoCodec`] in scope picks the serde codec when
/// `T` supports serde and `None` otherwise (generated code uses this).
pub struct CodecProbe<T>(PhantomData<fn() -> T>);

impl<T> CodecProbe<T> {
    /// A probe for `T`.
    pub fn new() -> Self {
        CodecProbe(PhantomData)
    }
}

impl<T> Default for CodecProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The probe's answer for a type with serde support.
pub trait HasCodec {
    /// `Some(codec)`.
    fn codec(&self) -> Option<Codec>;
}

impl<T: Serialize + DeserializeOwned + Data> HasCodec for &CodecProbe<T> {
    fn codec(&self) -> Option<Codec> {
        Some(codec::<T>())
    }
}

/// The probe's answer for any other type.
pub trait NoCodec {
    /// `None`.
    fn codec(&self) -> Option<Codec>;
}

impl<T> NoCodec for CodecProbe<T> {
    fn codec(&self) -> Option<Codec> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Opaque;

    #[test]
    #[allow(clippy::needless_borrow)] // the probe's `&&` is what picks the impl
    fn serde_types_get_a_codec_and_others_none() {
        #[allow(unused_imports)]
        use super::{HasCodec as _, NoCodec as _};
        let c = (&&CodecProbe::<Vec<String>>::new())
            .codec()
            .expect("serde type");
        let v = vec!["a".to_string(), "bc".to_string()];
        let bytes = (c.encode)(&Datum::new(v.clone())).unwrap();
        let back = (c.decode)(&bytes).unwrap();
        assert_eq!(back.downcast_ref::<Vec<String>>(), Some(&v));
        assert!((c.decode)(&[0xff, 0xff])
            .unwrap_err()
            .contains("cannot decode"));
        assert!((c.encode)(&Datum::new(3u8))
            .unwrap_err()
            .contains("expected a"));
        assert!((&&CodecProbe::<Opaque>::new()).codec().is_none());
    }
}
