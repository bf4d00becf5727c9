//! A log-linear latency histogram: exact below 128 ns, then 64 buckets per power of two
//! (under 1.6 % relative error), fixed size, one increment per recorded value. Shared with
//! `benches/cluster`.

const SUB: u32 = 6;
const HALF: usize = 1 << SUB; // 64
const BUCKETS: usize = (64 - SUB as usize) * HALF + HALF;

#[derive(Clone)]
pub(crate) struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Hist {
    pub(crate) fn new() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 2 * HALF as u64 {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros(); // >= SUB + 1
        let shift = msb - SUB;
        (shift as usize + 1) * HALF + ((v >> shift) as usize - HALF)
    }

    /// The smallest value in bucket `i` and the bucket's width.
    fn bounds(i: usize) -> (u64, u64) {
        if i < 2 * HALF {
            return (i as u64, 1);
        }
        let shift = (i / HALF - 1) as u32;
        let mantissa = (i % HALF + HALF) as u64;
        (mantissa << shift, 1 << shift)
    }

    #[inline]
    pub(crate) fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        if v > self.max {
            self.max = v;
        }
    }

    pub(crate) fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the middle of the bucket holding that rank,
    /// capped at the largest value recorded. 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = Self::bounds(i);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }
}

/// Checks the bucket arithmetic (run by `--self-test`).
pub(crate) fn self_test() {
    let mut last = 0;
    for v in (0..1_000_000u64).chain([1 << 40, u64::MAX / 3, u64::MAX]) {
        let i = Hist::index(v);
        assert!(i >= last && i < BUCKETS, "bucket order at {v}");
        let (low, width) = Hist::bounds(i);
        assert!(
            low <= v && v - low < width,
            "{v} in bucket {i} [{low}, +{width})"
        );
        last = i;
    }
    let mut h = Hist::new();
    for v in 1..=1000u64 {
        h.record(v * 1000);
    }
    let p50 = h.quantile(0.5) as f64;
    assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.02, "p50 {p50}");
    assert_eq!(h.quantile(1.0), 1_000_000);
}
