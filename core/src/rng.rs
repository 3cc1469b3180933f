//! The seeded random source: jitter and ids come from here, never from the OS.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use uuid::Uuid;

/// A deterministic random number generator (ChaCha8). The same seed gives the same sequence on every host.
#[derive(Clone, Debug)]
pub struct DetRng(ChaCha8Rng);

impl DetRng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform integer in `[0, bound)`; 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift keeps the bias below 2^-64 per draw, well under anything observable here.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A uniform float in `[0, 1)`.
    #[cfg(feature = "sim")]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p`.
    #[cfg(feature = "sim")]
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A random (version 4) UUID drawn from this generator.
    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.0.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (DetRng::new(7), DetRng::new(7));
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(a.uuid(), b.uuid());
        assert_eq!(a.uuid().get_version_num(), 4);
        assert_ne!(DetRng::new(8).next_u64(), DetRng::new(7).next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = DetRng::new(1);
        for _ in 0..1000 {
            assert!(r.below(1000) < 1000);
        }
        assert_eq!(r.below(0), 0);
    }
}
