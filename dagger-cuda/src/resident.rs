//! Values that live where they are used: host memory, GPU memory, or both.
//!
//! A value that flows between tasks is immutable once made, so it may have
//! a copy in host memory and one on each GPU at the same time, all equal
//! (StarPU's data handles, without invalidation: a task that "updates" a
//! value makes a new one). A [`Resident`] holds those copies and makes a
//! missing one on first use:
//!
//! - a GPU task's result stays on its GPU ([`Resident::on_gpu`]); the next
//!   GPU task there uses it where it is ([`Resident::on`]), and a task that
//!   updates it in place takes it without a copy when nothing else reads it
//!   ([`Resident::into_device`]);
//! - a CPU task reads the host copy ([`Resident::host`],
//!   [`Resident::into_host`]), which is downloaded once, on first use;
//! - when the runtime queues a task on a GPU, the GPU's worker starts
//!   uploading the task's inputs on the device's copy stream
//!   ([`Resident::prefetch`], through
//!   [`Accelerator::prefetch`](dagger_runtime::device::Accelerator::prefetch)),
//!   so the copy runs while the GPU computes the tasks ahead of it; cudarc's
//!   stream events order the kernel that reads it after the copy.
//!
//! What a value is on the host and on a device, and how it crosses, is the
//! value type's [`Transfer`] implementation (here for `Vec<f32>` and
//! `Vec<f64>`; `examples/cholesky.rs` has one for column-major tiles).
//!
//! The runtime sees values only as type-erased data. So that a GPU worker
//! can find the residency of a `Resident<H>` among them, each `H` used in a
//! `Resident` registers itself once in a table by type ([`erased`]).

use crate::pool::Pooled;
use crate::{call, CudaError, GpuDevice, PoolElement};
use cudarc::driver::CudaSlice;
use dagger_runtime::device::Residency;
use dagger_runtime::size::ByteSize;
use dagger_runtime::Datum;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// A value type that can live in GPU memory: its device form and the
/// copies between the two.
pub trait Transfer: Clone + Send + Sync + 'static {
    /// The value in device memory.
    type Device: Send + Sync + 'static;

    /// Bytes one copy moves.
    fn bytes(&self) -> u64;

    /// Bytes of a device form.
    fn device_bytes(data: &Self::Device) -> u64;

    /// Copies the value to `gpu`, queued on its [copy
    /// stream](GpuDevice::copy_stream); may return before the copy is done.
    fn upload(&self, gpu: &GpuDevice) -> Result<Self::Device, CudaError>;

    /// Copies a device form on `gpu` back to host memory (waits for it).
    fn download(gpu: &GpuDevice, data: &Self::Device) -> Result<Self, CudaError>;

    /// A second device form on `gpu` equal to `data`, for a task that
    /// updates a value in place while others still read it.
    fn duplicate(gpu: &GpuDevice, data: &Self::Device) -> Result<Self::Device, CudaError>;
}

/// One device's copy.
struct DeviceCopy<D> {
    gpu: GpuDevice,
    data: Arc<D>,
}

struct Copies<H: Transfer> {
    bytes: u64,
    host: OnceLock<H>,
    devices: Mutex<Vec<DeviceCopy<H::Device>>>,
}

/// An immutable value with copies in host memory and on GPUs, each made on
/// first use (see the [module docs](self)). Cloning shares the copies.
pub struct Resident<H: Transfer> {
    copies: Arc<Copies<H>>,
}

impl<H: Transfer> Clone for Resident<H> {
    fn clone(&self) -> Self {
        Resident {
            copies: self.copies.clone(),
        }
    }
}

impl<H: Transfer> Resident<H> {
    /// A value in host memory.
    pub fn new(host: H) -> Self {
        erased::register::<H>();
        let bytes = host.bytes();
        Resident {
            copies: Arc::new(Copies {
                bytes,
                host: OnceLock::from(host),
                devices: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A value made on `gpu` (a GPU task's result): it stays there until
    /// something elsewhere reads it.
    pub fn on_gpu(gpu: &GpuDevice, data: H::Device) -> Self {
        erased::register::<H>();
        Resident {
            copies: Arc::new(Copies {
                bytes: H::device_bytes(&data),
                host: OnceLock::new(),
                devices: Mutex::new(vec![DeviceCopy {
                    gpu: gpu.clone(),
                    data: Arc::new(data),
                }]),
            }),
        }
    }

    /// Bytes one copy moves.
    pub fn bytes(&self) -> u64 {
        self.copies.bytes
    }

    /// Whether host memory holds a copy.
    pub fn is_on_host(&self) -> bool {
        self.copies.host.get().is_some()
    }

    /// Whether GPU `ordinal` holds a copy.
    pub fn is_on(&self, ordinal: usize) -> bool {
        self.device_copy(ordinal).is_some()
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, Vec<DeviceCopy<H::Device>>> {
        self.copies
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn device_copy(&self, ordinal: usize) -> Option<Arc<H::Device>> {
        self.devices()
            .iter()
            .find(|c| c.gpu.ordinal() == ordinal)
            .map(|c| c.data.clone())
    }

    /// The host copy, downloaded from a GPU that holds one if there is
    /// none yet.
    pub fn host(&self) -> Result<&H, CudaError> {
        if let Some(h) = self.copies.host.get() {
            return Ok(h);
        }
        let (gpu, data) = {
            let devices = self.devices();
            let copy = devices
                .first()
                .expect("a value without a host copy has a device copy");
            (copy.gpu.clone(), copy.data.clone())
        };
        let host = H::download(&gpu, &data)?;
        // Another reader may have downloaded it meanwhile: either copy will do.
        let _ = self.copies.host.set(host);
        Ok(self.copies.host.get().expect("just set"))
    }

    /// The host value, owned: moved out when nothing else shares this
    /// value, cloned otherwise (downloaded first if need be).
    pub fn into_host(self) -> Result<H, CudaError> {
        self.host()?;
        match Arc::try_unwrap(self.copies) {
            Ok(copies) => Ok(copies.host.into_inner().expect("downloaded above")),
            Err(shared) => Ok(shared.host.get().expect("downloaded above").clone()),
        }
    }

    /// The copy on `gpu`, uploaded (from the host copy, downloaded first if
    /// only another GPU holds one) if there is none yet.
    pub fn on(&self, gpu: &GpuDevice) -> Result<Arc<H::Device>, CudaError> {
        if let Some(data) = self.device_copy(gpu.ordinal()) {
            return Ok(data);
        }
        let data = Arc::new(self.host()?.upload(gpu)?);
        let mut devices = self.devices();
        if let Some(c) = devices.iter().find(|c| c.gpu.ordinal() == gpu.ordinal()) {
            return Ok(c.data.clone());
        }
        devices.push(DeviceCopy {
            gpu: gpu.clone(),
            data: data.clone(),
        });
        Ok(data)
    }

    /// The copy on `gpu`, owned, for a task that updates it in place:
    /// taken without a copy when nothing else shares this value, duplicated
    /// on the device otherwise.
    pub fn into_device(self, gpu: &GpuDevice) -> Result<H::Device, CudaError> {
        let data = self.on(gpu)?;
        let ordinal = gpu.ordinal();
        match Arc::try_unwrap(self.copies) {
            Ok(copies) => {
                let mut devices = copies
                    .devices
                    .into_inner()
                    .unwrap_or_else(|p| p.into_inner());
                devices.retain(|c| c.gpu.ordinal() == ordinal);
                drop(devices);
                Arc::try_unwrap(data).or_else(|data| H::duplicate(gpu, &data))
            }
            Err(_) => H::duplicate(gpu, &data),
        }
    }

    /// Starts copying the value to `gpu` if it is not there yet.
    pub fn prefetch(&self, gpu: &GpuDevice) -> Result<(), CudaError> {
        self.on(gpu).map(drop)
    }

    /// Where the copies are, as GPU `ordinal` sees them.
    pub fn residency(&self, ordinal: usize) -> Residency {
        Residency {
            bytes: self.bytes(),
            on_host: self.is_on_host(),
            on_device: self.is_on(ordinal),
        }
    }
}

impl<H: Transfer> ByteSize for Resident<H> {
    fn byte_size(&self) -> u64 {
        self.bytes()
    }
}

impl<H: Transfer + std::fmt::Debug> std::fmt::Debug for Resident<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.copies.host.get() {
            Some(h) => write!(f, "Resident({h:?})"),
            None => write!(f, "Resident(<{} bytes on a GPU>)", self.bytes()),
        }
    }
}

/// Values cross processes as their host form (downloaded first if need be).
impl<H: Transfer + serde::Serialize> serde::Serialize for Resident<H> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.host().map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

impl<'de, H: Transfer + serde::Deserialize<'de>> serde::Deserialize<'de> for Resident<H> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        H::deserialize(d).map(Resident::new)
    }
}

/// Vectors of `f32` and `f64` as pooled device buffers of the same length.
impl<T: PoolElement + Clone + Default + Send + Sync + 'static> Transfer for Vec<T> {
    type Device = Pooled<CudaSlice<T>>;

    fn bytes(&self) -> u64 {
        std::mem::size_of_val(self.as_slice()) as u64
    }

    fn device_bytes(data: &Self::Device) -> u64 {
        (data.len() * std::mem::size_of::<T>()) as u64
    }

    fn upload(&self, gpu: &GpuDevice) -> Result<Self::Device, CudaError> {
        let mut data = gpu.device_buffer::<T>(self.len())?;
        gpu.copy_stream()
            .memcpy_htod(self.as_slice(), &mut *data)
            .map_err(call)?;
        Ok(data)
    }

    fn download(gpu: &GpuDevice, data: &Self::Device) -> Result<Self, CudaError> {
        let mut host = vec![T::default(); data.len()];
        let stream = gpu.copy_stream();
        stream.memcpy_dtoh(&**data, &mut host).map_err(call)?;
        stream.synchronize().map_err(call)?;
        Ok(host)
    }

    fn duplicate(gpu: &GpuDevice, data: &Self::Device) -> Result<Self::Device, CudaError> {
        let mut copy = gpu.device_buffer::<T>(data.len())?;
        gpu.copy_stream()
            .memcpy_dtod(&**data, &mut *copy)
            .map_err(call)?;
        Ok(copy)
    }
}

/// The table by type that lets a GPU worker see a [`Resident`] in a
/// type-erased [`Datum`].
pub mod erased {
    use super::*;

    /// What a GPU worker can do with one `Resident<H>` type, erased.
    #[derive(Clone, Copy)]
    struct Entry {
        residency: fn(&dyn Any, usize) -> Residency,
        prefetch: fn(&dyn Any, &GpuDevice) -> Result<(), CudaError>,
    }

    fn table() -> &'static RwLock<HashMap<TypeId, Entry>> {
        static TABLE: OnceLock<RwLock<HashMap<TypeId, Entry>>> = OnceLock::new();
        TABLE.get_or_init(Default::default)
    }

    fn entry(value: &Datum) -> Option<Entry> {
        let id = value.as_any().type_id();
        table()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    fn downcast<H: Transfer>(value: &dyn Any) -> &Resident<H> {
        value
            .downcast_ref::<Resident<H>>()
            .expect("the table is keyed by type")
    }

    /// Enters `Resident<H>` in the table (once; later calls only look).
    pub fn register<H: Transfer>() {
        let id = TypeId::of::<Resident<H>>();
        if table()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id)
        {
            return;
        }
        table().write().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Entry {
                residency: |value, ordinal| downcast::<H>(value).residency(ordinal),
                prefetch: |value, gpu| downcast::<H>(value).prefetch(gpu),
            },
        );
    }

    /// Where `value`'s copies are as GPU `ordinal` sees them, if it is a
    /// `Resident` of a registered type.
    pub fn residency(value: &Datum, ordinal: usize) -> Option<Residency> {
        entry(value).map(|e| (e.residency)(value.as_any(), ordinal))
    }

    /// Starts copying `value` to `gpu` if it is a `Resident` of a
    /// registered type not there yet; `Ok` for any other value.
    pub fn prefetch(value: &Datum, gpu: &GpuDevice) -> Result<(), CudaError> {
        entry(value).map_or(Ok(()), |e| (e.prefetch)(value.as_any(), gpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_value_is_read_moved_and_shared_without_a_gpu() {
        let r = Resident::new(vec![1.0f32, 2.0, 3.0]);
        assert!(r.is_on_host() && !r.is_on(0));
        assert_eq!(r.bytes(), 12);
        assert_eq!(r.byte_size(), 12);
        assert_eq!(r.host().unwrap(), &[1.0, 2.0, 3.0]);
        let ptr = r.host().unwrap().as_ptr();
        let shared = r.clone();
        let copy = shared.into_host().unwrap();
        assert_ne!(copy.as_ptr(), ptr, "a shared value is cloned");
        let moved = r.into_host().unwrap();
        assert_eq!(moved.as_ptr(), ptr, "a unique one is moved");
    }

    #[test]
    fn the_table_finds_residents_among_type_erased_values() {
        let value = Datum::new(Resident::new(vec![0.5f64; 4]));
        assert_eq!(
            erased::residency(&value, 0),
            Some(Residency {
                bytes: 32,
                on_host: true,
                on_device: false
            })
        );
        assert_eq!(erased::residency(&Datum::new(vec![0.5f64; 4]), 0), None);
    }
}
