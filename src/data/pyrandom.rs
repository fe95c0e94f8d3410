//! CPython's `random.Random`, as far as the card harness uses it: seeding with an int, `getrandbits`,
//! `_randbelow` and `shuffle`, bit for bit. lm-evaluation-harness 9c89d1fc (`evaluator.py`) does
//! `rnd = random.Random(); rnd.seed(42); rnd.shuffle(task_docs)` before `--limit` (TASKS_SPEC
//! §1.2), so reproducing its `--limit N` documents needs exactly this generator.
//!
//! The generator is MT19937 (`Modules/_randommodule.c`): an int seed `s` is turned into the
//! little-endian 32-bit words of `|s|` (one zero word for 0) and fed to `init_by_array`.
//! `getrandbits(k)` takes `k ≤ 32` bits from the top of one output word, and wider values from
//! successive words, least significant first (the last word keeps its top `k mod 32` bits).
//! `_randbelow(n)` draws `getrandbits(n.bit_length())` until the value is below `n`, and `shuffle`
//! is the Fisher–Yates loop `for i in reversed(range(1, len(x))): j = _randbelow(i + 1)`.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// `random.Random(seed)` of CPython 3 (int seeds).
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// `random.Random(seed)` / `rnd.seed(seed)` for an int seed (its absolute value is used, as
    /// CPython does).
    pub fn new(seed: i128) -> Self {
        let mut n = seed.unsigned_abs();
        let mut key = Vec::new();
        while n > 0 {
            key.push(n as u32);
            n >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        Self::from_key(&key)
    }

    /// `init_by_array(key)`: the MT19937 reference seeding from 32-bit words.
    pub fn from_key(key: &[u32]) -> Self {
        let mut mt = [0u32; N];
        mt[0] = 19_650_218;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        let key: &[u32] = if key.is_empty() { &[0] } else { key };
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        PyRandom { mt, index: N }
    }

    /// `genrand_uint32`: the next 32-bit output word.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            let mag = |y: u32| if y & 1 == 1 { MATRIX_A } else { 0 };
            for k in 0..N {
                let y = (self.mt[k] & UPPER_MASK) | (self.mt[(k + 1) % N] & LOWER_MASK);
                self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ mag(y);
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for `k ≤ 128` (0 gives 0 without drawing, as CPython ≥ 3.9).
    pub fn getrandbits(&mut self, k: u32) -> u128 {
        assert!(k <= 128, "getrandbits({k}): at most 128 bits");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u128::from(self.next_u32() >> (32 - k));
        }
        let (mut out, mut left, mut shift) = (0u128, k, 0u32);
        while left > 0 {
            let mut r = self.next_u32();
            if left < 32 {
                r >>= 32 - left;
            }
            out |= u128::from(r) << shift;
            shift += 32;
            left = left.saturating_sub(32);
        }
        out
    }

    /// `_randbelow_with_getrandbits(n)`: uniform in `[0, n)`; `n` must be positive.
    pub fn randbelow(&mut self, n: u128) -> u128 {
        assert!(n > 0, "_randbelow(0)");
        let k = 128 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `shuffle(x)` in place.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u128 + 1) as usize;
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use sha2::{Digest, Sha256};

    /// Printed by the real python3 (`tests/fixtures/pyrandom/make_cases.py`).
    fn cases() -> Value {
        serde_json::from_str(include_str!("../../tests/fixtures/pyrandom/cases.json")).unwrap()
    }

    #[test]
    fn words_bits_and_randbelow_equal_cpython() {
        let c = cases();
        let seeds = c["seeds"].as_array().unwrap();
        assert!(seeds.len() >= 8);
        for s in seeds {
            let seed: i128 = s["seed"].as_str().unwrap().parse().unwrap();
            let mut r = PyRandom::new(seed);
            let u32s: Vec<u64> = (0..5).map(|_| u64::from(r.next_u32())).collect();
            let want: Vec<u64> = s["u32"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(u32s, want, "seed {seed}: first words");
            // The fixture's dict keeps Python's insertion order (1, 5, 31, 33, 64, 65, 100).
            for (k, v) in s["bits"].as_object().unwrap() {
                let got = r.getrandbits(k.parse().unwrap());
                assert_eq!(
                    got.to_string(),
                    v.as_str().unwrap(),
                    "seed {seed}: getrandbits({k})"
                );
            }
            for (n, v) in [1u128, 2, 3, 10, 1000, (1 << 31) + 1, (1 << 40) - 3]
                .into_iter()
                .zip(s["randbelow"].as_array().unwrap())
            {
                assert_eq!(
                    r.randbelow(n).to_string(),
                    v.as_str().unwrap(),
                    "seed {seed}: _randbelow({n})"
                );
            }
        }
    }

    #[test]
    fn shuffle_of_range_equals_cpython() {
        for s in cases()["shuffles"].as_array().unwrap() {
            let n = s["n"].as_u64().unwrap() as usize;
            let mut x: Vec<usize> = (0..n).collect();
            PyRandom::new(s["seed"].as_i64().unwrap().into()).shuffle(&mut x);
            let first: Vec<u64> = s["first"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let got: Vec<u64> = x.iter().take(12).map(|&v| v as u64).collect();
            assert_eq!(got, first, "shuffle of range({n})");
            let joined = x
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(
                hex::encode(Sha256::digest(joined.as_bytes())),
                s["sha256"].as_str().unwrap(),
                "shuffle of range({n})"
            );
        }
    }
}
