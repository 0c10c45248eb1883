//! Buffer pools: device memory and pinned host staging buffers kept for reuse.
//!
//! Allocating device memory (`cuMemAlloc`) or page-locked host memory
//! (`cuMemHostAlloc`) costs from microseconds to milliseconds and may
//! synchronize the device, while the tasks of a graph ask for the same few
//! sizes again and again (every tile of a tiled factorization, every
//! activation of a training step). A [`BufferPool`] keeps released buffers
//! by their length and hands them out again, up to a cap on the bytes it
//! holds; a [`Pooled`] buffer goes back to its pool when dropped.
//!
//! A [`GpuDevice`](crate::GpuDevice) keeps one pool of device buffers per
//! element type and one of pinned staging buffers
//! ([`GpuDevice::device_buffer`](crate::GpuDevice::device_buffer),
//! [`GpuDevice::staging_buffer`](crate::GpuDevice::staging_buffer)).
//! cudarc records an event on every use of a slice and waits on it before
//! the memory is touched again, so a buffer handed out again is never
//! written while a copy or kernel of its previous owner still reads it.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Released buffers by length, with counters.
pub struct BufferPool<B> {
    free: Mutex<Free<B>>,
    /// Most bytes the pool keeps; buffers released beyond it are freed.
    limit_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Free<B> {
    by_len: HashMap<usize, Vec<B>>,
    bytes: usize,
}

/// What a pool did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests served by a kept buffer.
    pub hits: u64,
    /// Requests that allocated.
    pub misses: u64,
    /// Bytes held for reuse now.
    pub cached_bytes: usize,
}

impl<B> BufferPool<B> {
    /// An empty pool that keeps at most `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        BufferPool {
            free: Mutex::new(Free {
                by_len: HashMap::new(),
                bytes: 0,
            }),
            limit_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A buffer of `len` elements of `element_bytes` each: a kept one, or
    /// a new one from `alloc`. It returns to the pool when dropped.
    pub fn take<E>(
        self: &Arc<Self>,
        len: usize,
        element_bytes: usize,
        alloc: impl FnOnce(usize) -> Result<B, E>,
    ) -> Result<Pooled<B>, E> {
        let kept = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let kept = free.by_len.get_mut(&len).and_then(Vec::pop);
            if kept.is_some() {
                free.bytes -= len * element_bytes;
            }
            kept
        };
        let buffer = match kept {
            Some(b) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                b
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                alloc(len)?
            }
        };
        Ok(Pooled {
            buffer: Some(buffer),
            len,
            bytes: len * element_bytes,
            pool: self.clone(),
        })
    }

    /// Hits, misses and the bytes kept.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            cached_bytes: self.free.lock().unwrap_or_else(|p| p.into_inner()).bytes,
        }
    }

    /// Frees every kept buffer.
    pub fn trim(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.by_len.clear();
        free.bytes = 0;
    }

    fn give_back(&self, len: usize, bytes: usize, buffer: B) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.bytes + bytes <= self.limit_bytes {
            free.bytes += bytes;
            free.by_len.entry(len).or_default().push(buffer);
        }
    }
}

/// A buffer on loan from a [`BufferPool`]: derefs to the buffer, goes
/// back to the pool when dropped.
pub struct Pooled<B> {
    buffer: Option<B>,
    len: usize,
    bytes: usize,
    pool: Arc<BufferPool<B>>,
}

impl<B> Pooled<B> {
    /// Its length in elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<B> Deref for Pooled<B> {
    type Target = B;
    fn deref(&self) -> &B {
        self.buffer.as_ref().expect("present until dropped")
    }
}

impl<B> DerefMut for Pooled<B> {
    fn deref_mut(&mut self) -> &mut B {
        self.buffer.as_mut().expect("present until dropped")
    }
}

impl<B> Drop for Pooled<B> {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool.give_back(self.len, self.bytes, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(len: usize) -> Result<Vec<u8>, ()> {
        Ok(vec![0; len])
    }

    #[test]
    fn a_released_buffer_of_the_same_length_is_handed_out_again() {
        let pool = Arc::new(BufferPool::new(1 << 20));
        let mut a = pool.take(1000, 1, host).unwrap();
        a[0] = 7;
        let addr = a.as_ptr();
        drop(a);
        assert_eq!(pool.stats().cached_bytes, 1000);
        let b = pool.take(1000, 1, host).unwrap();
        assert_eq!(b.as_ptr(), addr, "the same memory");
        assert_eq!(b[0], 7, "kept as it was: callers overwrite what they use");
        let c = pool.take(500, 1, host).unwrap();
        assert_ne!(c.as_ptr(), addr);
        assert_eq!(
            pool.stats(),
            PoolStats {
                hits: 1,
                misses: 2,
                cached_bytes: 0
            }
        );
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_limit() {
        let pool = Arc::new(BufferPool::new(3000));
        let loans: Vec<_> = (0..5).map(|_| pool.take(1000, 1, host).unwrap()).collect();
        drop(loans);
        assert_eq!(pool.stats().cached_bytes, 3000);
        pool.trim();
        assert_eq!(pool.stats().cached_bytes, 0);
        let failed: Result<Pooled<Vec<u8>>, &str> = pool.take(10, 1, |_| Err("out of memory"));
        assert_eq!(failed.err(), Some("out of memory"));
    }
}
