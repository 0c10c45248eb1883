//! Helpers shared by the tensor tests.

/// `n` deterministic values in `lo..hi` (xorshift from `seed`).
pub fn values(n: usize, lo: f32, hi: f32, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            lo + (hi - lo) * (s as f32 / u32::MAX as f32)
        })
        .collect()
}
