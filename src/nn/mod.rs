//! Control networks s_θ(x, t) in candle: an equivariant EGNN for particle systems and an MLP
//! for the rest. Drift of the controlled SDE is σ(t)² s_θ (science.md §2).
//!
//! Weights are drawn from the run's own seeded generator (candle's CPU generator cannot be
//! seeded) and registered in a `VarMap`, so they save as safetensors and train with autograd.

mod adam;
mod config;
mod egnn;
pub mod egnn_cpu;
mod mlp;
mod trained;

pub use config::{NetworkConfig, NetworkKind, NetworkOutput};
pub use egnn::Egnn;
pub use mlp::Mlp;
pub use trained::{Inference, TrainedNet, select_device};

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{Linear, VarMap};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::energy::Layout;

/// A control network of either family. The EGNN also carries its fused CPU kernels
/// ([`egnn_cpu`]), which the trainer uses instead of candle's autograd on the CPU.
pub enum ControlNet {
    Egnn(Egnn, egnn_cpu::EgnnParams),
    Mlp(Mlp),
}

impl ControlNet {
    /// Builds the network `cfg` describes for `layout`, registering its weights in `varmap`.
    /// `input_scale` divides coordinates before the MLP sees them (about the target's spread).
    pub fn new(
        cfg: &NetworkConfig,
        layout: Layout,
        input_scale: f64,
        init: &mut Init,
    ) -> Result<Self> {
        Ok(match cfg.kind {
            NetworkKind::Egnn => ControlNet::Egnn(
                Egnn::new(layout, cfg.layers, cfg.hidden, init)?,
                egnn_cpu::EgnnParams::new(layout, cfg.layers, cfg.hidden),
            ),
            NetworkKind::Mlp => ControlNet::Mlp(Mlp::new(
                layout.dim(),
                cfg.layers,
                cfg.hidden,
                input_scale,
                false,
                init,
            )?),
            NetworkKind::TorusMlp => ControlNet::Mlp(Mlp::new(
                layout.dim(),
                cfg.layers,
                cfg.hidden,
                input_scale,
                true,
                init,
            )?),
        })
    }

    /// The fused CPU kernels, where this network has them and the device is the CPU.
    pub fn cpu_kernels(&self) -> Option<&egnn_cpu::EgnnParams> {
        match self {
            ControlNet::Egnn(n, p) if n.device().is_cpu() => Some(p),
            _ => None,
        }
    }

    /// s_θ(x, t) for x of shape (batch, dim) and t of shape (batch,); returns (batch, dim).
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        match self {
            ControlNet::Egnn(n, _) => n.forward(x, t),
            ControlNet::Mlp(n) => n.forward(x, t),
        }
    }
}

/// Seeded creation of parameters into a `VarMap`.
pub struct Init<'a> {
    pub varmap: &'a VarMap,
    pub rng: &'a mut ChaCha8Rng,
    pub device: &'a Device,
}

impl Init<'_> {
    /// A tensor of the given shape with entries uniform in [−bound, bound], registered as `name`.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| self.rng.random_range(-bound..=bound) as f32)
            .collect();
        let var = Var::from_tensor(&Tensor::from_vec(data, shape, self.device)?)?;
        let t = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .insert(name.to_string(), var);
        Ok(t)
    }

    /// A linear layer initialised as PyTorch does (uniform ±1/sqrt(in)), weights scaled by `gain`.
    pub fn linear(
        &mut self,
        name: &str,
        inp: usize,
        out: usize,
        bias: bool,
        gain: f64,
    ) -> Result<Linear> {
        let bound = 1.0 / (inp as f64).sqrt();
        let w = self.uniform(&format!("{name}.weight"), &[out, inp], bound * gain)?;
        let b = if bias {
            Some(self.uniform(&format!("{name}.bias"), &[out], bound)?)
        } else {
            None
        };
        Ok(Linear::new(w, b))
    }
}

/// Sum of squares of every parameter (for a quick "weights are finite" check).
pub fn parameters_finite(varmap: &VarMap) -> Result<bool> {
    for v in varmap.all_vars() {
        if !tensor_finite(v.as_tensor())? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether every value of a float tensor is finite.
pub(crate) fn tensor_finite(t: &Tensor) -> Result<bool> {
    // Not a sum of squares: 1e30² overflows f32 although each value is finite.
    let v: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    Ok(v.iter().all(|x| x.is_finite()))
}

/// Reads a checkpoint's tensors (on the CPU), naming the file in errors.
pub fn read_tensors(
    path: &std::path::Path,
) -> crate::error::Result<std::collections::HashMap<String, candle_core::Tensor>> {
    let bytes = crate::limits::read_bytes(path, crate::limits::DATA_FILE_BYTES)?;
    candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).map_err(|e| {
        crate::error::Error::format(path, format!("unreadable ({})", crate::error::short(&e)))
    })
}

/// Writes a checkpoint's tensors, naming the file in errors.
pub fn write_tensors(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    path: &std::path::Path,
) -> crate::error::Result<()> {
    candle_core::safetensors::save(tensors, path)
        .map_err(|e| crate::error::Error::format(path, e.to_string()))
}
