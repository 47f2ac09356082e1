//! A network with its optimiser and optional weight average: the one place that chooses the
//! kernel (fused CPU EGNN or candle autograd) and holds the device. Every sampler kind trains
//! its networks through this type, so none of them names a kernel or a device.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::NetworkConfig;
use super::adam::{Adam, StepOutcome};
use super::{ControlNet, Init};
use crate::energy::Layout;
use crate::error::{Error, Result};

/// The compute device named by a scene's `device` field: "cpu", "cuda" or "cuda:N".
pub fn select_device(name: &str) -> Result<Device> {
    match name.trim() {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| {
                    Error::Invalid(format!("device '{s}': expected cuda:N with N a GPU number"))
                })?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::Invalid(format!(
                    "device '{s}': this build has no CUDA support (rebuild with --features cuda on a machine with the CUDA toolkit)"
                )));
            }
            Ok(Device::new_cuda(ordinal)?)
        }
        other => Err(Error::Invalid(format!(
            "device '{other}' is not known (use \"cpu\", \"cuda\" or \"cuda:N\")"
        ))),
    }
}

/// An exponential moving average of the weights, in a network of its own.
struct Average {
    decay: f64,
    varmap: VarMap,
    net: ControlNet,
}

/// A network s_θ(x, t), its Adam optimiser and (optionally) a weight average used for inference.
pub struct TrainedNet {
    varmap: VarMap,
    net: ControlNet,
    opt: Adam,
    average: Option<Average>,
    device: Device,
}

impl TrainedNet {
    /// Weights drawn from `rng`; `input_scale` divides coordinates before an MLP sees them;
    /// `ema` > 0 keeps a weight average with that decay.
    pub fn new(
        cfg: &NetworkConfig,
        layout: Layout,
        input_scale: f64,
        lr: f64,
        ema: f64,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let net = ControlNet::new(
            cfg,
            layout,
            input_scale,
            &mut Init {
                varmap: &varmap,
                rng,
                device,
            },
        )?;
        let vars: Vec<(String, candle_core::Var)> = varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let opt = Adam::new(vars, lr)?;
        let average = if ema > 0.0 {
            let avg_map = VarMap::new();
            // Only shapes the parameters; the current weights are copied over them at once.
            let mut shape_rng = ChaCha8Rng::seed_from_u64(0);
            let avg_net = ControlNet::new(
                cfg,
                layout,
                input_scale,
                &mut Init {
                    varmap: &avg_map,
                    rng: &mut shape_rng,
                    device,
                },
            )?;
            let a = Average {
                decay: ema,
                varmap: avg_map,
                net: avg_net,
            };
            copy_vars(&varmap, &a.varmap)?;
            Some(a)
        } else {
            None
        };
        Ok(Self {
            varmap,
            net,
            opt,
            average,
            device: device.clone(),
        })
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        self.opt.lr = lr;
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The network's output at rows `x` (n × dim) and per-row times `t`, as n × dim values.
    /// `averaged` uses the weight average where there is one.
    pub fn infer(&self, x: &[f32], t: &[f32], averaged: bool) -> Result<Vec<f32>> {
        let (net, varmap) = match (&self.average, averaged) {
            (Some(a), true) => (&a.net, &a.varmap),
            _ => (&self.net, &self.varmap),
        };
        let n = t.len();
        if let Some(k) = net.cpu_kernels() {
            return Ok(k.infer(&k.read(varmap)?, x, t));
        }
        let dim = x.len() / n.max(1);
        let xt = Tensor::from_slice(x, (n, dim), &self.device)?;
        let tt = Tensor::from_slice(t, n, &self.device)?;
        Ok(net.forward(&xt, &tt)?.detach().flatten_all()?.to_vec1()?)
    }

    /// A reader for repeated inference with fixed weights (one read of the weights, not one per
    /// call: a simulation calls the network hundreds of times).
    pub fn inference(&self, averaged: bool) -> Result<Inference<'_>> {
        let (net, varmap) = match (&self.average, averaged) {
            (Some(a), true) => (&a.net, &a.varmap),
            _ => (&self.net, &self.varmap),
        };
        let fused = match net.cpu_kernels() {
            Some(k) => Some((k, k.read(varmap)?)),
            None => None,
        };
        Ok(Inference {
            net,
            fused,
            device: &self.device,
        })
    }

    /// One Adam step on the loss that `loss(first_row, out)` defines: it returns a chunk's loss
    /// and d(total loss)/d(out) for the chunk's rows. The fused kernels call it chunk by chunk;
    /// candle once, through the surrogate Σ out·dout whose parameter gradient is the same.
    /// Returns the loss, or `None` when it or a gradient was not finite (weights untouched).
    pub fn train_step<L>(&mut self, x: &[f32], t: &[f32], loss: L) -> Result<Option<f32>>
    where
        L: Fn(usize, &[f32]) -> (f64, Vec<f32>) + Sync,
    {
        self.train_step_chunked(x, t, usize::MAX, loss)
    }

    /// [`train_step`](Self::train_step) with candle's graph built for at most `max_rows` rows at
    /// a time and the parameter gradients summed over the chunks before the one Adam step: the
    /// memory of a step then stays bounded however many rows it has (the GFlowNet kind trains on
    /// every step of every trajectory, batch × steps rows). One chunk is `train_step` exactly.
    pub fn train_step_chunked<L>(
        &mut self,
        x: &[f32],
        t: &[f32],
        max_rows: usize,
        loss: L,
    ) -> Result<Option<f32>>
    where
        L: Fn(usize, &[f32]) -> (f64, Vec<f32>) + Sync,
    {
        let n = t.len();
        if self.net.cpu_kernels().is_none() && n > max_rows {
            return self.train_step_accumulated(x, t, max_rows.max(1), loss);
        }
        let outcome = if let Some(kernels) = self.net.cpu_kernels() {
            let w = kernels.read(&self.varmap)?;
            let (value, grad) = kernels.loss_and_grad(&w, x, t, loss);
            if !value.is_finite() {
                return Ok(None);
            }
            let named: HashMap<String, Tensor> = kernels
                .to_tensors(&grad, &self.device)?
                .into_iter()
                .collect();
            (value, self.opt.step_named(&named)?)
        } else {
            let n = t.len();
            let dim = x.len() / n.max(1);
            let xt = Tensor::from_slice(x, (n, dim), &self.device)?;
            let tt = Tensor::from_slice(t, n, &self.device)?;
            let out = self.net.forward(&xt, &tt)?;
            let values: Vec<f32> = out.flatten_all()?.to_vec1()?;
            let (value, dout) = loss(0, &values);
            if !value.is_finite() {
                return Ok(None);
            }
            let dout = Tensor::from_vec(dout, (n, dim), &self.device)?;
            let surrogate = (out * dout)?.sum_all()?;
            (value, self.opt.step(&surrogate.backward()?)?)
        };
        match outcome.1 {
            StepOutcome::Applied { .. } => {
                if let Some(a) = &self.average {
                    // The weights are finite here (Adam refuses non-finite steps), so is the average.
                    update_average(a, &self.varmap)?;
                }
                Ok(Some(outcome.0 as f32))
            }
            StepOutcome::SkippedNonFinite => Ok(None),
        }
    }

    /// The candle path of [`train_step_chunked`](Self::train_step_chunked) over several chunks.
    fn train_step_accumulated<L>(
        &mut self,
        x: &[f32],
        t: &[f32],
        max_rows: usize,
        loss: L,
    ) -> Result<Option<f32>>
    where
        L: Fn(usize, &[f32]) -> (f64, Vec<f32>) + Sync,
    {
        let n = t.len();
        let dim = x.len() / n.max(1);
        let vars: Vec<(String, candle_core::Var)> = self
            .varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut sum: HashMap<String, Tensor> = HashMap::new();
        let mut value = 0.0f64;
        let mut lo = 0;
        while lo < n {
            let hi = (lo + max_rows).min(n);
            let xt = Tensor::from_slice(&x[lo * dim..hi * dim], (hi - lo, dim), &self.device)?;
            let tt = Tensor::from_slice(&t[lo..hi], hi - lo, &self.device)?;
            let out = self.net.forward(&xt, &tt)?;
            let values: Vec<f32> = out.flatten_all()?.to_vec1()?;
            let (v, dout) = loss(lo, &values);
            value += v;
            let dout = Tensor::from_vec(dout, (hi - lo, dim), &self.device)?;
            let grads = (out * dout)?.sum_all()?.backward()?;
            for (name, var) in &vars {
                if let Some(g) = grads.get(var.as_tensor()) {
                    let next = match sum.remove(name) {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    };
                    sum.insert(name.clone(), next);
                }
            }
            lo = hi;
        }
        if !value.is_finite() {
            return Ok(None);
        }
        match self.opt.step_named(&sum)? {
            StepOutcome::Applied { .. } => {
                if let Some(a) = &self.average {
                    update_average(a, &self.varmap)?;
                }
                Ok(Some(value as f32))
            }
            StepOutcome::SkippedNonFinite => Ok(None),
        }
    }

    /// Adam's step counter.
    pub fn adam_steps(&self) -> u64 {
        self.opt.step
    }

    /// Writes the weights as safetensors.
    pub fn save_weights(&self, path: &Path) -> Result<()> {
        self.varmap
            .save(path)
            .map_err(|e| Error::format(path, e.to_string()))
    }

    /// Reads weights written by [`save_weights`](Self::save_weights). Every tensor of the
    /// network must be there with its shape and dtype, and finite: a run that diverged is
    /// refused here rather than sampled into NaN.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(Error::format(
                path,
                "no checkpoint here (was the run saved?)",
            ));
        }
        let tensors = super::read_tensors(path)?;
        let data = self.varmap.data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            let Some(t) = tensors.get(name) else {
                return Err(Error::format(
                    path,
                    format!("not a checkpoint of this scene's network (no tensor '{name}')"),
                ));
            };
            if t.dims() != var.dims() || t.dtype() != var.dtype() {
                return Err(Error::format(
                    path,
                    format!(
                        "not a checkpoint of this scene's network ('{name}' is {:?} {:?}, the network's {:?} {:?})",
                        t.dtype(),
                        t.dims(),
                        var.dtype(),
                        var.dims()
                    ),
                ));
            }
            if !super::tensor_finite(t).map_err(|e| Error::format(path, crate::error::short(&e)))? {
                return Err(Error::format(
                    path,
                    format!(
                        "weights '{name}' hold NaN or infinite values: the run diverged, and cannot be sampled or resumed"
                    ),
                ));
            }
            var.set(&t.to_device(&self.device)?).map_err(|e| {
                Error::format(path, format!("'{name}': {}", crate::error::short(&e)))
            })?;
        }
        Ok(())
    }

    /// Adam moments and the weight average as named tensors, every name under `prefix`.
    pub fn state(&self, prefix: &str) -> Result<Vec<(String, Tensor)>> {
        let mut out: Vec<(String, Tensor)> = self
            .opt
            .state()
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect();
        if let Some(a) = &self.average {
            for (name, v) in a.varmap.data().lock().expect("varmap lock").iter() {
                out.push((format!("{prefix}ema.{name}"), v.as_tensor().copy()?));
            }
        }
        Ok(out)
    }

    /// Restores [`state`](Self::state) (from the file `path`, named in errors) and Adam's step.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        adam_step: u64,
        path: &Path,
    ) -> Result<()> {
        let own: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        self.opt
            .load_state(&own)
            .map_err(|e| Error::format(path, e))?;
        self.opt.step = adam_step;
        if let Some(a) = &self.average {
            // A run saved without an average starts one from its weights.
            copy_vars(&self.varmap, &a.varmap)?;
            for (name, v) in a.varmap.data().lock().expect("varmap lock").iter() {
                if let Some(t) = own.get(&format!("ema.{name}")) {
                    v.set(t).map_err(|e| {
                        Error::format(
                            path,
                            format!("'{prefix}ema.{name}': {}", crate::error::short(&e)),
                        )
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// Repeated inference with weights read once (see [`TrainedNet::inference`]).
pub struct Inference<'a> {
    net: &'a ControlNet,
    fused: Option<(&'a super::egnn_cpu::EgnnParams, Vec<f32>)>,
    device: &'a Device,
}

impl Inference<'_> {
    /// The output at rows `x` and per-row times `t` (n × dim values).
    pub fn run(&self, x: &[f32], t: &[f32]) -> Result<Vec<f32>> {
        if let Some((k, w)) = &self.fused {
            return Ok(k.infer(w, x, t));
        }
        let n = t.len();
        let dim = x.len() / n.max(1);
        let xt = Tensor::from_slice(x, (n, dim), self.device)?;
        let tt = Tensor::from_slice(t, n, self.device)?;
        Ok(self
            .net
            .forward(&xt, &tt)?
            .detach()
            .flatten_all()?
            .to_vec1()?)
    }
}

fn copy_vars(from: &VarMap, to: &VarMap) -> Result<()> {
    let src = from.data().lock().expect("varmap lock");
    for (name, v) in to.data().lock().expect("varmap lock").iter() {
        v.set(src[name].as_tensor())?;
    }
    Ok(())
}

/// average ← d·average + (1 − d)·w for every parameter.
fn update_average(a: &Average, weights: &VarMap) -> Result<()> {
    let src = weights.data().lock().expect("varmap lock");
    for (name, v) in a.varmap.data().lock().expect("varmap lock").iter() {
        let next = ((v.as_tensor() * a.decay)? + (src[name].as_tensor() * (1.0 - a.decay))?)?;
        v.set(&next)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{NetworkKind, NetworkOutput};

    /// A step whose gradients are summed over chunks of 7 rows equals the one-chunk step: the
    /// weights after it agree to f32 round-off (1e-6 relative; the sums are only reordered).
    #[test]
    fn chunked_steps_equal_the_whole_step() {
        let cfg = NetworkConfig { kind: NetworkKind::Mlp, layers: 2, hidden: 16, output: NetworkOutput::Score };
        let layout = Layout { particles: 1, spatial_dim: 2, com_free: false };
        let make = || {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            TrainedNet::new(&cfg, layout, 1.0, 1e-2, 0.0, &mut rng, &Device::Cpu).unwrap()
        };
        let (mut a, mut b) = (make(), make());
        let n = 50;
        let x: Vec<f32> = (0..2 * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let t: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        // Loss Σ (out − 1)² / n: d/dout = 2(out − 1)/n.
        let loss = |_: usize, out: &[f32]| {
            let v = out.iter().map(|o| ((o - 1.0) as f64).powi(2)).sum::<f64>() / n as f64;
            (v, out.iter().map(|o| 2.0 * (o - 1.0) / n as f32).collect())
        };
        let la = a.train_step(&x, &t, loss).unwrap().unwrap();
        let lb = b.train_step_chunked(&x, &t, 7, loss).unwrap().unwrap();
        assert!((la - lb).abs() < 1e-5 * la.abs());
        let (wa, wb) = (a.infer(&x, &t, false).unwrap(), b.infer(&x, &t, false).unwrap());
        for (p, q) in wa.iter().zip(&wb) {
            assert!((p - q).abs() < 1e-6 * (1.0 + p.abs()), "{p} vs {q}");
        }
        assert_ne!(wa, make().infer(&x, &t, false).unwrap(), "the step changed the weights");
    }
}
