//! The replay buffer of Adjoint Sampling: FIFO pairs (X₁, a = ∇g(X₁)) of simulated end points
//! and their adjoint targets. Only end points are stored, never trajectories.

use rand::Rng;

/// A fixed-capacity FIFO of (end point, adjoint target) rows of `dim` values each.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    dim: usize,
    capacity: usize,
    x: Vec<f32>,
    a: Vec<f32>,
    /// Row that the next push overwrites once the buffer is full.
    head: usize,
}

impl ReplayBuffer {
    pub fn new(dim: usize, capacity: usize) -> Self {
        assert!(dim > 0 && capacity > 0);
        Self { dim, capacity, x: Vec::new(), a: Vec::new(), head: 0 }
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
        assert_eq!(x.len(), a.len());
        let d = self.dim;
        for (xr, ar) in x.chunks(d).zip(a.chunks(d)) {
            if self.len() < self.capacity {
                self.x.extend_from_slice(xr);
                self.a.extend_from_slice(ar);
            } else {
                let k = self.head * d;
                self.x[k..k + d].copy_from_slice(xr);
                self.a[k..k + d].copy_from_slice(ar);
                self.head = (self.head + 1) % self.capacity;
            }
        }
    }

    /// `n` rows drawn uniformly with replacement: (x, a), each `n × dim`.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
        assert!(!self.is_empty(), "sampling from an empty replay buffer");
        let d = self.dim;
        let mut xs = Vec::with_capacity(n * d);
        let mut as_ = Vec::with_capacity(n * d);
        for _ in 0..n {
            let k = rng.random_range(0..self.len()) * d;
            xs.extend_from_slice(&self.x[k..k + d]);
            as_.extend_from_slice(&self.a[k..k + d]);
        }
        (xs, as_)
    }

    /// Changes the capacity, keeping the newest rows.
    pub fn set_capacity(&mut self, capacity: usize) {
        assert!(capacity > 0);
        let (x, a) = self.ordered();
        let keep = (x.len() / self.dim).min(capacity);
        let start = x.len() / self.dim - keep;
        self.x = x[start * self.dim..].to_vec();
        self.a = a[start * self.dim..].to_vec();
        self.capacity = capacity;
        self.head = 0;
    }

    /// Rows oldest first: (x, a), for checkpoints.
    pub fn ordered(&self) -> (Vec<f32>, Vec<f32>) {
        let k = self.head * self.dim;
        let rot = |v: &Vec<f32>| [&v[k..], &v[..k]].concat();
        (rot(&self.x), rot(&self.a))
    }

    /// Rebuilds a buffer from rows oldest first (as [`ordered`](Self::ordered) returns them).
    pub fn from_ordered(dim: usize, capacity: usize, x: Vec<f32>, a: Vec<f32>) -> Self {
        let mut b = Self::new(dim, capacity);
        b.push(&x, &a);
        b
    }
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
        let (x, a) = b.ordered();
        assert_eq!(x, vec![2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
        assert_eq!(a, vec![-2.0, -2.0, -3.0, -3.0, -4.0, -4.0]);
        assert_eq!(ReplayBuffer::from_ordered(2, 3, x.clone(), a.clone()).ordered(), (x, a));
        b.set_capacity(2);
        assert_eq!(b.ordered().0, vec![3.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn samples_keep_pairs_together() {
        let mut b = ReplayBuffer::new(1, 10);
        b.push(&[1.0, 2.0, 3.0], &[-1.0, -2.0, -3.0]);
        let (x, a) = b.sample(50, &mut ChaCha8Rng::seed_from_u64(0));
        assert!(x.iter().zip(&a).all(|(p, q)| p == &-q));
        assert!(x.contains(&1.0) && x.contains(&3.0));
    }
}
