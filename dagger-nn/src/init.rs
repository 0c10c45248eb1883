//! Parameter initialization from a seeded random generator.
//!
//! [`SeededRng`] is SplitMix64: tiny, fast and the same on every platform,
//! so a seed fixes a model's initial parameters everywhere (the data-parallel
//! tests compare runs parameter for parameter).

/// How a parameter's first values are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros (biases, optimizer state).
    Zeros,
    /// Every element equal to a value.
    Const(f32),
    /// Uniform in `-bound..bound` (PyTorch's `Linear` default uses
    /// `1 / sqrt(fan_in)`).
    Uniform(f32),
    /// Normal with mean 0 and this standard deviation.
    Normal(f32),
}

impl Init {
    /// `n` values drawn from `rng`.
    pub fn sample(self, n: usize, rng: &mut SeededRng) -> Vec<f32> {
        match self {
            Init::Zeros => vec![0.0; n],
            Init::Const(v) => vec![v; n],
            Init::Uniform(bound) => (0..n).map(|_| (rng.unit() * 2.0 - 1.0) * bound).collect(),
            Init::Normal(std) => (0..n).map(|_| rng.normal() * std).collect(),
        }
    }
}

/// SplitMix64: a seeded generator of 64-bit values.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_values_and_bounds_hold() {
        let a = Init::Uniform(0.5).sample(1000, &mut SeededRng::new(3));
        let b = Init::Uniform(0.5).sample(1000, &mut SeededRng::new(3));
        assert_eq!(a, b);
        assert!(a.iter().all(|v| v.abs() <= 0.5));
        let n = Init::Normal(2.0).sample(20_000, &mut SeededRng::new(4));
        let mean = n.iter().sum::<f32>() / n.len() as f32;
        let var = n.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05,
            "mean {mean}, std {}",
            var.sqrt()
        );
        let mut items: Vec<u32> = (0..50).collect();
        SeededRng::new(5).shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
