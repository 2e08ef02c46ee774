//! Key and value-size distributions, sampled from one seeded RNG per worker.
//!
//! Key indexes are always in `0..keyspace`. rand_distr's Zipf returns ranks `1..=n` as
//! floats; we subtract one, so rank 1 (the hottest) is key 0 and no index reaches `n`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Zipf};
use serde::{Deserialize, Serialize};

/// How key indexes are drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// 0, 1, 2, ... wrapping at the keyspace; each worker starts at its own offset.
    Sequential,
    /// Zipf with exponent `s` (> 0; 0.99 is the YCSB default): key 0 is the hottest.
    Zipf { s: f64 },
    /// Normal around `mean` × keyspace with standard deviation `stddev` × keyspace,
    /// redrawn when outside the keyspace.
    Gaussian { mean: f64, stddev: f64 },
}

/// How value sizes are drawn, in bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ValueSize {
    Fixed {
        bytes: u32,
    },
    /// Uniform in `min..=max`.
    Uniform {
        min: u32,
        max: u32,
    },
    /// Each size with a relative weight.
    Weighted {
        sizes: Vec<(u32, u32)>,
    },
}

impl ValueSize {
    /// The largest size this can produce.
    pub fn max(&self) -> u32 {
        match self {
            ValueSize::Fixed { bytes } => *bytes,
            ValueSize::Uniform { max, .. } => *max,
            ValueSize::Weighted { sizes } => sizes.iter().map(|s| s.0).max().unwrap_or(0),
        }
    }
}

/// Draws key indexes for one worker.
pub struct KeySampler {
    keyspace: u64,
    next: u64,
    kind: KeyKind,
}

enum KeyKind {
    Uniform,
    Sequential,
    Zipf(Zipf<f64>),
    Gaussian(Normal<f64>),
}

impl KeySampler {
    /// `worker` and `workers` spread sequential starts over the keyspace.
    pub fn new(
        dist: &KeyDistribution,
        keyspace: u64,
        worker: u64,
        workers: u64,
    ) -> Result<KeySampler, String> {
        if keyspace == 0 {
            return Err("keyspace must be at least 1".into());
        }
        let kind = match dist {
            KeyDistribution::Uniform => KeyKind::Uniform,
            KeyDistribution::Sequential => KeyKind::Sequential,
            KeyDistribution::Zipf { s } => KeyKind::Zipf(
                Zipf::new(keyspace as f64, *s).map_err(|e| format!("zipf s = {s}: {e}"))?,
            ),
            KeyDistribution::Gaussian { mean, stddev } => {
                // Both are fractions of the keyspace. A mean far outside it would make
                // almost every draw a rejection: the sampler would spin.
                if !(0.0..=1.0).contains(mean) {
                    return Err(format!(
                        "gaussian mean = {mean}: the mean is a fraction of the keyspace, from 0 \
                         to 1 (0.5 is the middle key)"
                    ));
                }
                if !(*stddev > 0.0 && *stddev <= 1.0) {
                    return Err(format!(
                        "gaussian stddev = {stddev}: a fraction of the keyspace, above 0 and at \
                         most 1 (0.1 puts 68% of requests on a fifth of the keys)"
                    ));
                }
                KeyKind::Gaussian(
                    Normal::new(mean * keyspace as f64, stddev * keyspace as f64)
                        .map_err(|e| format!("gaussian stddev = {stddev}: {e}"))?,
                )
            }
        };
        let next = keyspace / workers.max(1) * worker % keyspace;
        Ok(KeySampler {
            keyspace,
            next,
            kind,
        })
    }

    pub fn sample(&mut self, rng: &mut SmallRng) -> u64 {
        match &self.kind {
            KeyKind::Uniform => rng.random_range(0..self.keyspace),
            KeyKind::Sequential => {
                let k = self.next;
                self.next = (self.next + 1) % self.keyspace;
                k
            }
            // Ranks are 1..=n; key indexes 0..n. The min guards float rounding at n.
            KeyKind::Zipf(z) => (z.sample(rng) as u64)
                .saturating_sub(1)
                .min(self.keyspace - 1),
            // Draws outside the keyspace are redrawn. With the mean inside it and stddev at
            // most the keyspace, at least a third land inside (the half-normal's mass within
            // one stddev), so 64 misses in a row (odds below 1e-11) end in a clamped draw:
            // this always ends.
            KeyKind::Gaussian(n) => {
                let top = self.keyspace as f64;
                for _ in 0..64 {
                    let x = n.sample(rng);
                    if (0.0..top).contains(&x) {
                        return x as u64;
                    }
                }
                (n.sample(rng).max(0.0) as u64).min(self.keyspace - 1)
            }
        }
    }
}

/// Draws value sizes for one worker.
pub struct SizeSampler {
    dist: ValueSize,
    total_weight: u64,
}

impl SizeSampler {
    pub fn new(dist: &ValueSize) -> SizeSampler {
        let total_weight = match dist {
            ValueSize::Weighted { sizes } => sizes.iter().map(|s| u64::from(s.1)).sum(),
            _ => 0,
        };
        SizeSampler {
            dist: dist.clone(),
            total_weight,
        }
    }

    pub fn sample(&self, rng: &mut SmallRng) -> u32 {
        match &self.dist {
            ValueSize::Fixed { bytes } => *bytes,
            ValueSize::Uniform { min, max } => rng.random_range(*min..=*max),
            ValueSize::Weighted { sizes } => {
                let mut pick = rng.random_range(0..self.total_weight.max(1));
                for &(size, weight) in sizes {
                    if pick < u64::from(weight) {
                        return size;
                    }
                    pick -= u64::from(weight);
                }
                sizes.last().map_or(0, |s| s.0)
            }
        }
    }
}

/// The RNG of worker `worker` under master seed `seed`: independent streams, replayable.
pub fn worker_rng(seed: u64, worker: u64) -> SmallRng {
    // SplitMix64 of (seed, worker) so nearby seeds and workers do not give related streams.
    let mut z = seed ^ worker.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(dist: &KeyDistribution, keyspace: u64, draws: usize) -> Vec<u64> {
        let mut sampler = KeySampler::new(dist, keyspace, 0, 1).unwrap();
        let mut rng = worker_rng(7, 0);
        let mut counts = vec![0u64; keyspace as usize];
        for _ in 0..draws {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipf_uses_every_index_from_zero_and_ranks_frequencies() {
        let n = 10;
        let c = counts(&KeyDistribution::Zipf { s: 1.0 }, n, 200_000);
        assert!(c.iter().all(|&x| x > 0), "every key drawn: {c:?}");
        // Zipf(s=1): P(rank k) = (1/k) / H(n). Key 0 is rank 1, key 1 rank 2.
        let h: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        for (i, &observed) in c.iter().enumerate() {
            let expected = 200_000.0 / ((i + 1) as f64 * h);
            assert!(
                (observed as f64 - expected).abs() < 0.05 * expected + 200.0,
                "key {i}: {observed} vs {expected:.0}"
            );
        }
    }

    #[test]
    fn a_gaussian_outside_the_keyspace_is_refused_not_spun_on() {
        for (mean, stddev, why) in [
            (50.0, 0.1, "mean = 50"),
            (-0.1, 0.1, "mean = -0.1"),
            (0.5, 0.0, "stddev = 0"),
            (0.5, 5.0, "stddev = 5"),
            (f64::NAN, 0.1, "mean = NaN"),
        ] {
            let err = KeySampler::new(&KeyDistribution::Gaussian { mean, stddev }, 100, 0, 1)
                .err()
                .unwrap_or_else(|| panic!("mean {mean} stddev {stddev} accepted"));
            assert!(err.contains(why), "{err}");
        }
        // The edges are allowed and end: half the draws fall outside and are redrawn.
        let c = counts(
            &KeyDistribution::Gaussian {
                mean: 1.0,
                stddev: 1.0,
            },
            10,
            10_000,
        );
        assert_eq!(c.iter().sum::<u64>(), 10_000);
    }

    #[test]
    fn uniform_and_gaussian_stay_in_bounds() {
        let c = counts(&KeyDistribution::Uniform, 100, 100_000);
        assert!(c.iter().all(|&x| (700..1300).contains(&x)), "{c:?}");
        let g = counts(
            &KeyDistribution::Gaussian {
                mean: 0.5,
                stddev: 0.1,
            },
            100,
            100_000,
        );
        assert!(
            g[50] > 10 * g[15].max(1),
            "peaks at the mean: {} vs {}",
            g[50],
            g[15]
        );
    }

    #[test]
    fn sequential_wraps_and_spreads_workers() {
        let mut s = KeySampler::new(&KeyDistribution::Sequential, 4, 0, 1).unwrap();
        let mut rng = worker_rng(1, 0);
        let keys: Vec<u64> = (0..6).map(|_| s.sample(&mut rng)).collect();
        assert_eq!(keys, [0, 1, 2, 3, 0, 1]);
        let mut second = KeySampler::new(&KeyDistribution::Sequential, 100, 1, 2).unwrap();
        assert_eq!(second.sample(&mut rng), 50);
    }

    #[test]
    fn weighted_sizes_follow_weights_and_seeds_replay() {
        let sizes = SizeSampler::new(&ValueSize::Weighted {
            sizes: vec![(10, 3), (1000, 1)],
        });
        let mut rng = worker_rng(42, 3);
        let small = (0..40_000).filter(|_| sizes.sample(&mut rng) == 10).count();
        assert!((29_000..31_000).contains(&small), "{small}");
        let a: Vec<u32> = {
            let mut r = worker_rng(5, 1);
            (0..5).map(|_| sizes.sample(&mut r)).collect()
        };
        let b: Vec<u32> = {
            let mut r = worker_rng(5, 1);
            (0..5).map(|_| sizes.sample(&mut r)).collect()
        };
        assert_eq!(a, b);
        let uniform = SizeSampler::new(&ValueSize::Uniform { min: 3, max: 5 });
        assert!(
            (0..1000)
                .map(|_| uniform.sample(&mut rng))
                .all(|s| (3..=5).contains(&s))
        );
    }

    #[test]
    fn invalid_parameters_are_reported() {
        assert!(KeySampler::new(&KeyDistribution::Zipf { s: -1.0 }, 10, 0, 1).is_err());
        assert!(KeySampler::new(&KeyDistribution::Uniform, 0, 0, 1).is_err());
    }
}
