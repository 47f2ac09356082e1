//! E(n)-equivariant graph network (Satorras et al. 2021, as used by DEM and Adjoint Sampling)
//! on the fully connected graph of a particle system, written for CPU speed.
//!
//! Written for CPU speed, measured with candle 0.11 on 2 cores (B = 256, LJ-13, H = 64):
//! - the first edge layer Linear([hᵢ, hⱼ, dᵢⱼ², d⁰ᵢⱼ²]) is split into per-node products W₁hᵢ
//!   and W₂hⱼ broadcast over edges (science.md §2);
//! - edge tensors are 2-D (B·N·N, H) so every edge op is a plain contiguous kernel;
//! - sums over neighbours are batched matmuls with a ones vector (0.6 ms, against 12 ms for
//!   `sum(2)` over a middle axis);
//! - edge activations are ReLU (0.5 ms, against 5–10 ms for SiLU, which needs exp per
//!   element); node-sized activations stay SiLU as in the reference;
//! - the coordinate head φₓ is a single Linear(H → 1) instead of Linear–SiLU–Linear, saving one
//!   edge-sized matmul per layer.

use candle_core::{D, Device, Module, Result, Tensor};
use candle_nn::Linear;
use candle_nn::ops::{sigmoid, silu};

use super::Init;
use crate::energy::Layout;

/// Coordinate updates are tanh(φₓ(m)) · this, as in the reference EGNN.
const COORD_RANGE: f64 = 3.0;

struct Layer {
    edge_src: Linear,    // W₁ hᵢ + b
    edge_dst: Linear,    // W₂ hⱼ
    edge_dist: Linear,   // [dᵢⱼ², d⁰ᵢⱼ²] → H, no bias
    edge_out: Linear,    // H → H
    attention: Linear,   // H → 1
    coord_out: Linear,   // H → 1, no bias, tiny init
    node_hidden: Linear, // [h, Σm] → H
    node_out: Linear,
}

/// The EGNN control network. Input and output are flat (B, N·d) coordinate rows.
pub struct Egnn {
    layout: Layout,
    hidden: usize,
    time_embed: Linear,
    layers: Vec<Layer>,
    /// (1, N·N, 1): 1 off the diagonal, 0 on it (no self-messages).
    off_diagonal: Tensor,
}

impl Egnn {
    pub fn new(layout: Layout, layers: usize, hidden: usize, init: &mut Init) -> Result<Self> {
        let h = hidden;
        let time_embed = init.linear("egnn.time", 1, h, true, 1.0)?;
        let layers = (0..layers)
            .map(|l| {
                let p = |s: &str| format!("egnn.l{l}.{s}");
                Ok(Layer {
                    edge_src: init.linear(&p("edge_src"), h, h, true, 1.0)?,
                    edge_dst: init.linear(&p("edge_dst"), h, h, false, 1.0)?,
                    edge_dist: init.linear(&p("edge_dist"), 2, h, false, 1.0)?,
                    edge_out: init.linear(&p("edge_out"), h, h, true, 1.0)?,
                    attention: init.linear(&p("attention"), h, 1, true, 1.0)?,
                    // Tiny initial coordinate updates keep the untrained control near zero.
                    coord_out: init.linear(&p("coord_out"), h, 1, false, 0.001)?,
                    node_hidden: init.linear(&p("node_hidden"), 2 * h, h, true, 1.0)?,
                    node_out: init.linear(&p("node_out"), h, h, true, 1.0)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let n = layout.particles;
        let mask: Vec<f32> = (0..n * n)
            .map(|k| if k / n == k % n { 0.0 } else { 1.0 })
            .collect();
        let off_diagonal = Tensor::from_vec(mask, (1, n * n, 1), init.device)?;
        Ok(Self {
            layout,
            hidden,
            time_embed,
            layers,
            off_diagonal,
        })
    }

    /// s_θ(x, t): x (B, N·d), t (B,) → (B, N·d), centre of mass removed.
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (b, _) = x.dims2()?;
        let (n, d, h) = (self.layout.particles, self.layout.spatial_dim, self.hidden);
        let edges = b * n * n;
        let dev = x.device();
        let x0 = x.reshape((b, n, d))?;
        let mut pos = x0.clone();
        let mut node = self
            .time_embed
            .forward(&t.reshape((b, 1))?)?
            .reshape((b, 1, h))?
            .broadcast_as((b, n, h))?
            .reshape((b * n, h))?;
        // Σⱼ over a particle's neighbours as one batched matmul: (B·N, 1, N) × (B·N, N, ·).
        let ones = Tensor::ones((b * n, 1, n), x.dtype(), dev)?;
        // Broadcasting hᵢ and hⱼ over edges as matmuls with ones columns: their backward passes
        // are matmuls too, where candle's broadcast_add backward reduces over a middle axis.
        let ones_col = Tensor::ones((b * n, n, 1), x.dtype(), dev)?;
        let ones_col_b = Tensor::ones((b, n, 1), x.dtype(), dev)?;
        let d0 = pair_sq_dist(&x0)?.reshape((edges, 1))?;
        for layer in &self.layers {
            let diff = pos.unsqueeze(2)?.broadcast_sub(&pos.unsqueeze(1)?)?; // (B, N, N, d): xᵢ − xⱼ
            let d2 = diff.sqr()?.sum_keepdim(D::Minus1)?; // (B, N, N, 1)
            let src = ones_col.matmul(&layer.edge_src.forward(&node)?.reshape((b * n, 1, h))?)?; // (B·N, N, H): row i repeated
            let dst =
                ones_col_b.matmul(&layer.edge_dst.forward(&node)?.reshape((b, 1, n * h))?)?; // (B, N, N·H): row j per i
            let dist = layer
                .edge_dist
                .forward(&Tensor::cat(&[&d2.reshape((edges, 1))?, &d0], 1)?)?; // (E, H)
            let pre = ((src.reshape((edges, h))? + dst.reshape((edges, h))?)? + dist)?;
            let m = layer.edge_out.forward(&pre.relu()?)?.relu()?; // (E, H)
            let gate = sigmoid(&layer.attention.forward(&m)?)?
                .reshape((b, n * n, 1))?
                .broadcast_mul(&self.off_diagonal)?; // (B, N·N, 1)
            let m = m.broadcast_mul(&gate.reshape((edges, 1))?)?;

            let step =
                (layer.coord_out.forward(&m)?.tanh()? * COORD_RANGE)?.reshape((b, n, n, 1))?;
            // ε keeps the backward pass of sqrt finite on the diagonal, where d² = 0 (∞·0 = NaN).
            let unit = diff.broadcast_div(&((d2 + 1e-8)?.sqrt()? + 1.0)?)?; // (B, N, N, d)
            let shift = ones.matmul(&unit.broadcast_mul(&step)?.reshape((b * n, n, d))?)?; // (B·N, 1, d)
            pos = (pos + shift.reshape((b, n, d))?)?;

            let agg = ones
                .matmul(&m.reshape((b * n, n, h))?)?
                .reshape((b * n, h))?;
            let upd = layer.node_out.forward(&silu(
                &layer
                    .node_hidden
                    .forward(&Tensor::cat(&[&node, &agg], 1)?)?,
            )?)?;
            node = (node + upd)?;
        }
        let out = (pos - x0)?;
        let out = out.broadcast_sub(&out.mean_keepdim(1)?)?;
        out.reshape((b, n * d))
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.off_diagonal.device()
    }
}

/// ‖xᵢ − xⱼ‖² for x of shape (B, N, d), as (B, N, N, 1).
fn pair_sq_dist(x: &Tensor) -> Result<Tensor> {
    x.unsqueeze(2)?
        .broadcast_sub(&x.unsqueeze(1)?)?
        .sqr()?
        .sum_keepdim(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use nalgebra::Matrix3;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    fn net(layout: Layout, seed: u64) -> (VarMap, Egnn) {
        let varmap = VarMap::new();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dev = Device::Cpu;
        let mut init = Init {
            varmap: &varmap,
            rng: &mut rng,
            device: &dev,
        };
        let e = Egnn::new(layout, 3, 16, &mut init).unwrap();
        // Larger coordinate heads than at init, so equivariance is tested on a non-trivial map.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.ends_with("coord_out.weight") {
                var.set(&(var.as_tensor() * 500.0).unwrap()).unwrap();
            }
        }
        (varmap, e)
    }

    fn eval(e: &Egnn, x: &[f32], t: f32) -> Vec<f32> {
        let dim = x.len();
        let xt = Tensor::from_slice(x, (1, dim), &Device::Cpu).unwrap();
        let tt = Tensor::from_slice(&[t], 1, &Device::Cpu).unwrap();
        e.forward(&xt, &tt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// f(Rx + c, t) = R f(x, t) and f(Px) = P f(x). f32 arithmetic through 3 layers with outputs
    /// of order 1: differences stay below 1e-4 (measured ~1e-6); a broken symmetry gives O(1).
    #[test]
    fn egnn_is_equivariant() {
        let layout = Layout {
            particles: 5,
            spatial_dim: 3,
            com_free: true,
        };
        let (_vm, e) = net(layout, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x: Vec<f32> = (0..15)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        let y = eval(&e, &x, 0.3);
        assert!(
            y.iter().map(|v| v.abs()).fold(0.0, f32::max) > 1e-3,
            "output is trivially zero"
        );

        let q = Matrix3::<f32>::from_fn(|_, _| rng.sample(StandardNormal))
            .qr()
            .q();
        let shift = [0.7f32, -1.2, 2.0];
        let xr: Vec<f32> = x
            .chunks(3)
            .flat_map(|p| {
                let v = q * nalgebra::Vector3::new(p[0], p[1], p[2]);
                [v[0] + shift[0], v[1] + shift[1], v[2] + shift[2]]
            })
            .collect();
        let yr = eval(&e, &xr, 0.3);
        let y_rot: Vec<f32> = y
            .chunks(3)
            .flat_map(|p| {
                let v = q * nalgebra::Vector3::new(p[0], p[1], p[2]);
                [v[0], v[1], v[2]]
            })
            .collect();
        let err = yr
            .iter()
            .zip(&y_rot)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "rotation + translation: {err}");

        let perm = [3usize, 0, 4, 1, 2];
        let xp: Vec<f32> = perm
            .iter()
            .flat_map(|&i| x[i * 3..i * 3 + 3].to_vec())
            .collect();
        let yp = eval(&e, &xp, 0.3);
        let y_perm: Vec<f32> = perm
            .iter()
            .flat_map(|&i| y[i * 3..i * 3 + 3].to_vec())
            .collect();
        let err = yp
            .iter()
            .zip(&y_perm)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "permutation: {err}");

        let com: f32 = y.chunks(3).map(|p| p[0]).sum();
        assert!(
            com.abs() < 1e-4,
            "output has a centre-of-mass component {com}"
        );
    }

    #[test]
    fn same_seed_same_weights() {
        let layout = Layout {
            particles: 4,
            spatial_dim: 2,
            com_free: true,
        };
        let x = [0.1f32, 0.2, -0.3, 0.5, 1.0, -1.0, 0.0, 0.4];
        let (_a, e1) = net(layout, 9);
        let (_b, e2) = net(layout, 9);
        let (_c, e3) = net(layout, 10);
        assert_eq!(eval(&e1, &x, 0.5), eval(&e2, &x, 0.5));
        assert_ne!(eval(&e1, &x, 0.5), eval(&e3, &x, 0.5));
    }
}
