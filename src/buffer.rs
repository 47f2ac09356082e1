//! The replay buffer of Adjoint Sampling: FIFO pairs (X₁, a = ∇g(X₁)) of simulated end points
//! and their adjoint targets. Only end points are stored, never trajectories.
//!
//! Each row also keeps the log importance weight of the path that made it, so that training can
//! draw rows in proportion to their weights ([`ReplayBuffer::sample_weighted`]).

use rand::Rng;

/// A fixed-capacity FIFO of (end point, adjoint target) rows of `dim` values each.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    dim: usize,
    capacity: usize,
    x: Vec<f32>,
    a: Vec<f32>,
    /// Log importance weight of each row (0 where pushed without one).
    log_w: Vec<f64>,
    /// Cumulative truncated weights for weighted draws; rebuilt after a change.
    cdf: Option<Vec<f64>>,
    /// Row that the next push overwrites once the buffer is full.
    head: usize,
}

impl ReplayBuffer {
    pub fn new(dim: usize, capacity: usize) -> Self {
        assert!(dim > 0 && capacity > 0);
        Self {
            dim,
            capacity,
            x: Vec::new(),
            a: Vec::new(),
            log_w: Vec::new(),
            cdf: None,
            head: 0,
        }
    }

    /// Rows stored.
    pub fn len(&self) -> usize {
        self.x.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends rows, overwriting the oldest once full.
    pub fn push(&mut self, x: &[f32], a: &[f32]) {
        self.push_weighted(x, a, &vec![0.0; x.len() / self.dim]);
    }

    /// Appends rows with their log importance weights.
    pub fn push_weighted(&mut self, x: &[f32], a: &[f32], log_w: &[f64]) {
        assert_eq!(x.len(), a.len());
        assert_eq!(x.len(), log_w.len() * self.dim);
        let d = self.dim;
        self.cdf = None;
        // The whole capacity at once (the scene's limits bound it): growing by doubling would
        // reallocate up to the cap, and on long runs the freed blocks fragment the heap.
        if self.x.capacity() < self.capacity * d && !log_w.is_empty() {
            let rows = self.capacity - self.len();
            self.x.reserve_exact(rows * d);
            self.a.reserve_exact(rows * d);
            self.log_w.reserve_exact(rows);
        }
        for ((xr, ar), &lw) in x.chunks(d).zip(a.chunks(d)).zip(log_w) {
            if self.len() < self.capacity {
                self.x.extend_from_slice(xr);
                self.a.extend_from_slice(ar);
                self.log_w.push(lw);
            } else {
                let k = self.head * d;
                self.x[k..k + d].copy_from_slice(xr);
                self.a[k..k + d].copy_from_slice(ar);
                self.log_w[self.head] = lw;
                self.head = (self.head + 1) % self.capacity;
            }
        }
    }

    /// `n` rows drawn uniformly with replacement: (x, a), each `n × dim`.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
        assert!(!self.is_empty(), "sampling from an empty replay buffer");
        self.gather((0..n).map(|_| rng.random_range(0..self.len())))
    }

    /// `n` rows drawn with replacement in proportion to their importance weights, truncated at
    /// √N times the mean weight (Ionides 2008): rows from the model's path measure, reweighted
    /// towards the target, without letting a single lucky path fill every batch.
    pub fn sample_weighted(&mut self, n: usize, rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
        assert!(!self.is_empty(), "sampling from an empty replay buffer");
        let cdf = self
            .cdf
            .get_or_insert_with(|| truncated_cdf(&self.log_w))
            .clone();
        let total = *cdf.last().expect("a non-empty buffer");
        self.gather((0..n).map(|_| {
            let u = rng.random::<f64>() * total;
            cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
        }))
    }

    /// Normalised effective sample size of the truncated weights (1 = all equal).
    pub fn weight_ess(&self) -> f64 {
        let w = truncated_weights(&self.log_w);
        let (s, s2) = w.iter().fold((0.0, 0.0), |(s, s2), v| (s + v, s2 + v * v));
        if s2 > 0.0 {
            s * s / (w.len() as f64 * s2)
        } else {
            0.0
        }
    }

    fn gather(&self, rows: impl Iterator<Item = usize>) -> (Vec<f32>, Vec<f32>) {
        let d = self.dim;
        let (mut xs, mut as_) = (Vec::new(), Vec::new());
        for r in rows {
            let k = r * d;
            xs.extend_from_slice(&self.x[k..k + d]);
            as_.extend_from_slice(&self.a[k..k + d]);
        }
        (xs, as_)
    }

    /// Changes the capacity, keeping the newest rows.
    pub fn set_capacity(&mut self, capacity: usize) {
        assert!(capacity > 0);
        let (x, a, log_w) = self.ordered();
        let keep = log_w.len().min(capacity);
        let start = log_w.len() - keep;
        *self = Self::from_ordered(
            self.dim,
            capacity,
            x[start * self.dim..].to_vec(),
            a[start * self.dim..].to_vec(),
            log_w[start..].to_vec(),
        );
    }

    /// Rows oldest first: (x, a, log w), for checkpoints.
    pub fn ordered(&self) -> (Vec<f32>, Vec<f32>, Vec<f64>) {
        let k = self.head * self.dim;
        let rot = |v: &Vec<f32>| [&v[k..], &v[..k]].concat();
        (
            rot(&self.x),
            rot(&self.a),
            [&self.log_w[self.head..], &self.log_w[..self.head]].concat(),
        )
    }

    /// Rebuilds a buffer from rows oldest first (as [`ordered`](Self::ordered) returns them).
    pub fn from_ordered(
        dim: usize,
        capacity: usize,
        x: Vec<f32>,
        a: Vec<f32>,
        log_w: Vec<f64>,
    ) -> Self {
        let mut b = Self::new(dim, capacity);
        b.push_weighted(&x, &a, &log_w);
        b
    }
}

/// Weights exp(log w − max), non-finite ones as 0, capped at √N × the mean of the capped
/// weights (iterated to its fixed point, so that one weight far above the rest cannot set its
/// own cap); all equal when none is positive.
fn truncated_weights(log_w: &[f64]) -> Vec<f64> {
    let max = log_w
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return vec![1.0; log_w.len()];
    }
    let mut w: Vec<f64> = log_w
        .iter()
        .map(|&v| if v.is_finite() { (v - max).exp() } else { 0.0 })
        .collect();
    let k = (w.len() as f64).sqrt() / w.len() as f64;
    let mut cap = f64::INFINITY;
    for _ in 0..100 {
        let next = k * w.iter().map(|v| v.min(cap)).sum::<f64>();
        if next >= cap * (1.0 - 1e-9) {
            break;
        }
        cap = next;
    }
    w.iter_mut().for_each(|v| *v = v.min(cap));
    w
}

fn truncated_cdf(log_w: &[f64]) -> Vec<f64> {
    truncated_weights(log_w)
        .into_iter()
        .scan(0.0, |acc, v| {
            *acc += v;
            Some(*acc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn fifo_keeps_the_newest_rows() {
        let mut b = ReplayBuffer::new(2, 3);
        for i in 0..5 {
            let v = i as f32;
            b.push(&[v, v], &[-v, -v]);
        }
        assert_eq!(b.len(), 3);
        let (x, a, w) = b.ordered();
        assert_eq!(x, vec![2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
        assert_eq!(a, vec![-2.0, -2.0, -3.0, -3.0, -4.0, -4.0]);
        assert_eq!(
            ReplayBuffer::from_ordered(2, 3, x.clone(), a.clone(), w.clone()).ordered(),
            (x, a, w)
        );
        b.set_capacity(2);
        assert_eq!(b.ordered().0, vec![3.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn storage_is_allocated_once() {
        // Long runs must not reallocate the buffer as it fills (the soak's memory series).
        let mut b = ReplayBuffer::new(3, 100);
        b.push(&[0.0; 3], &[0.0; 3]);
        let at = (b.x.as_ptr(), b.a.as_ptr(), b.log_w.as_ptr());
        for _ in 0..250 {
            b.push(&[1.0; 6], &[1.0; 6]);
        }
        assert_eq!(b.len(), 100);
        assert_eq!((b.x.as_ptr(), b.a.as_ptr(), b.log_w.as_ptr()), at);
        assert_eq!(b.x.capacity(), 300);
    }

    #[test]
    fn samples_keep_pairs_together() {
        let mut b = ReplayBuffer::new(1, 10);
        b.push(&[1.0, 2.0, 3.0], &[-1.0, -2.0, -3.0]);
        let (x, a) = b.sample(50, &mut ChaCha8Rng::seed_from_u64(0));
        assert!(x.iter().zip(&a).all(|(p, q)| p == &-q));
        assert!(x.contains(&1.0) && x.contains(&3.0));
    }

    #[test]
    fn weighted_draws_follow_the_weights_and_keep_them_through_the_fifo() {
        let mut b = ReplayBuffer::new(1, 3);
        // Row 0 falls out of the FIFO; rows 1, 2, 3 have weights 1 : 2 : 1 (log 0, ln 2, 0).
        b.push_weighted(&[0.0, 1.0, 2.0], &[0.0; 3], &[5.0, 0.0, 2f64.ln()]);
        b.push_weighted(&[3.0], &[0.0], &[0.0]);
        let (x, _) = b.sample_weighted(40_000, &mut ChaCha8Rng::seed_from_u64(1));
        let frac = |v: f32| x.iter().filter(|&&p| p == v).count() as f64 / x.len() as f64;
        // Binomial standard error at n = 40 000 is ≤ 0.0025; 0.01 is four of them.
        assert_eq!(frac(0.0), 0.0);
        for (v, p) in [(1.0, 0.25), (2.0, 0.5), (3.0, 0.25)] {
            assert!(
                (frac(v) - p).abs() < 0.01,
                "row {v}: {} (expected {p})",
                frac(v)
            );
        }
        assert!((b.weight_ess() - 16.0 / 18.0).abs() < 1e-12);
    }

    #[test]
    fn one_huge_weight_is_capped() {
        // 100 rows, one with weight e^50 over the rest: the cap's fixed point c = √100 × mean
        // gives c ≈ 11 × the others, a share of about 11/110 instead of all the draws.
        let mut lw = vec![0.0; 100];
        lw[7] = 50.0;
        let w = truncated_weights(&lw);
        let share = w[7] / w.iter().sum::<f64>();
        assert!(share < 0.2 && share > 0.05, "share {share}");
        assert_eq!(
            truncated_weights(&[f64::NAN, f64::NEG_INFINITY]),
            vec![1.0, 1.0]
        );
    }
}
