//! Randomized tests' generator and seed: SOUK_TEST_SEED replays a run, and
//! the seed is printed at the start and again next to a failure.

use std::time::{SystemTime, UNIX_EPOCH};

/// A small deterministic generator (splitmix64): the tests need no crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `len` characters drawn from `alphabet` (ASCII).
    pub fn text(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len).map(|_| char::from(*self.pick(alphabet))).collect()
    }
}

/// The seed of a randomized test: SOUK_TEST_SEED, or the clock; printed.
pub fn test_seed() -> u64 {
    let seed = match std::env::var("SOUK_TEST_SEED") {
        Ok(text) => text.trim().parse().expect("SOUK_TEST_SEED is a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64,
    };
    eprintln!("seed {seed} (SOUK_TEST_SEED={seed} replays it)");
    seed
}

/// Prints the seed again if the test panics, next to the failure.
pub struct SeedOnFailure(pub u64);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed with seed {} (SOUK_TEST_SEED={})", self.0, self.0);
        }
    }
}
