//! A multilayer perceptron control for systems without particle symmetry: GMM-40's plane, and
//! the torus of a molecule's torsions (there it sees cos θ and sin θ of every angle, so that its
//! output is periodic).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::Linear;
use candle_nn::ops::silu;

use super::Init;

/// Fourier features of t: sin/cos of 2πkt for k = 1…FREQS, plus t itself.
const FREQS: usize = 8;

pub struct Mlp {
    layers: Vec<Linear>,
    input_scale: f64,
    periodic: bool,
    freqs: Tensor,
}

impl Mlp {
    /// `layers` hidden layers of width `hidden`; inputs are x / `input_scale` (or cos x, sin x
    /// when `periodic`) and time features.
    pub fn new(
        dim: usize,
        layers: usize,
        hidden: usize,
        input_scale: f64,
        periodic: bool,
        init: &mut Init,
    ) -> Result<Self> {
        let mut widths = vec![if periodic { 2 * dim } else { dim } + 2 * FREQS + 1];
        widths.extend(std::iter::repeat_n(hidden, layers));
        widths.push(dim);
        let last = widths.len() - 2;
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(k, w)| {
                init.linear(
                    &format!("mlp.{k}"),
                    w[0],
                    w[1],
                    true,
                    if k == last { 0.01 } else { 1.0 },
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let f: Vec<f32> = (1..=FREQS)
            .map(|k| (2.0 * std::f64::consts::PI * k as f64) as f32)
            .collect();
        Ok(Self {
            layers,
            input_scale,
            periodic,
            freqs: Tensor::from_vec(f, (1, FREQS), init.device)?,
        })
    }

    /// s_θ(x, t): x (B, dim), t (B,) → (B, dim).
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let (b, _) = x.dims2()?;
        let t = t.reshape((b, 1))?;
        let phase = t.broadcast_mul(&self.freqs)?; // (B, FREQS)
        let mut h = if self.periodic {
            Tensor::cat(
                &[&x.cos()?, &x.sin()?, &phase.sin()?, &phase.cos()?, &t],
                D::Minus1,
            )?
        } else {
            Tensor::cat(
                &[&(x / self.input_scale)?, &phase.sin()?, &phase.cos()?, &t],
                D::Minus1,
            )?
        };
        for (k, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if k + 1 < self.layers.len() {
                h = silu(&h)?;
            }
        }
        Ok(h)
    }
}
