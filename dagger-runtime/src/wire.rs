//! How task arguments and results cross processes: per-type codecs.
//!
//! A vector of plain numbers (`Vec<f32>`, `Vec<u64>`, ...: [`Plain`]) crosses
//! as its raw bytes, one copy each way; any other value crosses when its type
//! implements serde's `Serialize` and `DeserializeOwned` (encoded with
//! postcard). `#[task]` records, for each parameter and the result, a
//! [`Codec`] if the type has one, found at compile time by autoref
//! specialization ([`Probe`], most specific first): a type without
//! serde support still works in a single process, and sending it to another
//! rank fails with an error naming the type, instead of a compile error in
//! every program that never goes multi-process.

use crate::datum::{Data, Datum};
use crate::probe_type::Probe;
use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// Codecs and sizes of a task's parameters (in order) and result; `None`
/// for a type that cannot cross processes or does not tell its size.
#[derive(Clone, Debug, Default)]
pub struct TaskWire {
    /// One codec per parameter.
    pub params: Vec<Option<Codec>>,
    /// The result's codec.
    pub output: Option<Codec>,
    /// One size function per parameter (see [`crate::size`]).
    pub param_sizes: Vec<Option<crate::size::SizeFn>>,
    /// The result's size function.
    pub output_size: Option<crate::size::SizeFn>,
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

/// Numbers whose vectors cross processes as raw bytes (native byte order:
/// the ranks of a cluster run the same binary on the same architecture).
///
/// # Safety
/// Every bit pattern of the type's size must be a valid value, and it must
/// have no padding.
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

macro_rules! plain {
    ($($t:ty),*) => { $(unsafe impl Plain for $t {})* };
}
plain!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, usize, isize);

fn encode_raw<T: Plain>(d: &Datum) -> Result<Vec<u8>, String> {
    let v = d
        .downcast_ref::<Vec<T>>()
        .ok_or_else(|| format!("expected a Vec<{}>", std::any::type_name::<T>()))?;
    // SAFETY: `T: Plain` has no padding, so its elements are plain bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(&v[..]))
    };
    Ok(bytes.to_vec())
}

fn decode_raw<T: Plain>(bytes: &[u8]) -> Result<Datum, String> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(format!(
            "{} bytes is not a whole number of {} ({size} bytes each)",
            bytes.len(),
            std::any::type_name::<T>()
        ));
    }
    let mut v: Vec<T> = Vec::with_capacity(bytes.len() / size);
    // SAFETY: the capacity holds `bytes.len()` bytes, and any bytes make valid `T`s.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, bytes.len());
        v.set_len(bytes.len() / size);
    }
    Ok(Datum::new(v))
}

/// The raw codec of `Vec<T>`.
pub fn raw_codec<T: Plain>() -> Codec {
    Codec {
        type_name: std::any::type_name::<Vec<T>>(),
        encode: encode_raw::<T>,
        decode: decode_raw::<T>,
    }
}

/// The probe's answer for a vector of plain numbers.
pub trait HasRawCodec {
    /// `Some(raw codec)`.
    fn codec(&self) -> Option<Codec>;
}

impl<T: Plain> HasRawCodec for &&Probe<Vec<T>> {
    fn codec(&self) -> Option<Codec> {
        Some(raw_codec::<T>())
    }
}

/// The probe's answer for a type with serde support.
pub trait HasCodec {
    /// `Some(codec)`.
    fn codec(&self) -> Option<Codec>;
}

impl<T: Serialize + DeserializeOwned + Data> HasCodec for &Probe<T> {
    fn codec(&self) -> Option<Codec> {
        Some(codec::<T>())
    }
}

/// The probe's answer for any other type.
pub trait NoCodec {
    /// `None`.
    fn codec(&self) -> Option<Codec>;
}

impl<T> NoCodec for Probe<T> {
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
        let c = (&&Probe::<Vec<String>>::new()).codec().expect("serde type");
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
        assert!((&&&Probe::<Opaque>::new()).codec().is_none());
        let raw = (&&&Probe::<Vec<f64>>::new()).codec().expect("raw");
        assert!(raw.type_name.contains("Vec<f64>"));
        let v = vec![1.5f64, -2.0, f64::MAX];
        let bytes = (raw.encode)(&Datum::new(v.clone())).unwrap();
        assert_eq!(bytes.len(), 24, "raw: 8 bytes per element");
        assert_eq!(
            (raw.decode)(&bytes).unwrap().downcast_ref::<Vec<f64>>(),
            Some(&v)
        );
        assert!((raw.decode)(&bytes[..5])
            .unwrap_err()
            .contains("whole number"));
        let serde_u64 = (&&Probe::<Vec<u64>>::new()).codec().unwrap();
        let raw_u64 = (&&&Probe::<Vec<u64>>::new()).codec().unwrap();
        let small = Datum::new(vec![1u64, 2, 3]);
        assert_eq!(
            (serde_u64.encode)(&small).unwrap().len(),
            4,
            "serde: varints"
        );
        assert_eq!(
            (raw_u64.encode)(&small).unwrap().len(),
            24,
            "raw wins for vectors"
        );
    }
}
