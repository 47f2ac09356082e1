//! The EGNN of `egnn.rs` as fused CPU kernels with a hand-written backward pass.
//!
//! candle's autograd on CPU spends most of an EGNN step allocating, zero-filling and walking
//! edge-sized tensors op by op. Here each layer is two fused passes over the edges plus five
//! matrix products (the `gemm` crate, which candle itself uses), and the backward pass mirrors
//! it. The weights are the very same `VarMap` tensors as the candle network, read into one flat
//! buffer; the candle network stays the reference, and the tests check this one against its
//! forward output and autograd gradients.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rayon::prelude::*;

use crate::energy::Layout;

const COORD_RANGE: f32 = 3.0;
const SQRT_EPS: f32 = 1e-8;

/// Offsets of one layer's parameters in the flat buffer.
#[derive(Clone, Copy)]
struct LayerOffsets {
    ws: usize,
    bs: usize,
    wd: usize,
    wr: usize,
    wo: usize,
    bo: usize,
    wa: usize,
    ba: usize,
    wx: usize,
    wn1: usize,
    bn1: usize,
    wn2: usize,
    bn2: usize,
}

/// Names, shapes and offsets of every EGNN parameter, in one fixed order.
pub struct EgnnParams {
    pub layout: Layout,
    pub hidden: usize,
    /// (VarMap name, shape) in buffer order.
    pub names: Vec<(String, Vec<usize>)>,
    t_w: usize,
    t_b: usize,
    layers: Vec<LayerOffsets>,
    pub len: usize,
}

impl EgnnParams {
    pub fn new(layout: Layout, layers: usize, h: usize) -> Self {
        let mut names = Vec::new();
        let mut len = 0;
        let mut add = |name: String, shape: Vec<usize>| {
            let off = len;
            len += shape.iter().product::<usize>();
            names.push((name, shape));
            off
        };
        let t_w = add("egnn.time.weight".into(), vec![h, 1]);
        let t_b = add("egnn.time.bias".into(), vec![h]);
        let layers = (0..layers)
            .map(|l| {
                let p = |s: &str| format!("egnn.l{l}.{s}");
                LayerOffsets {
                    ws: add(p("edge_src.weight"), vec![h, h]),
                    bs: add(p("edge_src.bias"), vec![h]),
                    wd: add(p("edge_dst.weight"), vec![h, h]),
                    wr: add(p("edge_dist.weight"), vec![h, 2]),
                    wo: add(p("edge_out.weight"), vec![h, h]),
                    bo: add(p("edge_out.bias"), vec![h]),
                    wa: add(p("attention.weight"), vec![1, h]),
                    ba: add(p("attention.bias"), vec![1]),
                    wx: add(p("coord_out.weight"), vec![1, h]),
                    wn1: add(p("node_hidden.weight"), vec![h, 2 * h]),
                    bn1: add(p("node_hidden.bias"), vec![h]),
                    wn2: add(p("node_out.weight"), vec![h, h]),
                    bn2: add(p("node_out.bias"), vec![h]),
                }
            })
            .collect();
        Self {
            layout,
            hidden: h,
            names,
            t_w,
            t_b,
            layers,
            len,
        }
    }

    /// The current weights from `varmap`, as one flat buffer in this order.
    pub fn read(&self, varmap: &VarMap) -> Result<Vec<f32>> {
        let data = varmap.data().lock().expect("varmap lock");
        let mut out = Vec::with_capacity(self.len);
        for (name, shape) in &self.names {
            let var = data.get(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("EGNN parameter '{name}' missing"))
            })?;
            if var.as_tensor().dims() != shape.as_slice() {
                candle_core::bail!(
                    "EGNN parameter '{name}' has shape {:?}, expected {shape:?}",
                    var.as_tensor().dims()
                );
            }
            out.extend(var.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// A flat gradient buffer as named tensors (for the optimiser).
    pub fn to_tensors(
        &self,
        flat: &[f32],
        device: &candle_core::Device,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut off = 0;
        self.names
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let t = Tensor::from_slice(&flat[off..off + n], shape.as_slice(), device)?;
                off += n;
                Ok((name.clone(), t))
            })
            .collect()
    }
}

/// C (m×n) = [C +] op(A) · op(B), row-major; op transposes when asked. A is stored m×k (or k×m
/// when `ta`), B is stored k×n (or n×k when `tb`).
#[allow(clippy::too_many_arguments)]
fn matmul(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    acc: bool,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // Inside a rayon task the caller already splits the work (e.g. [`EgnnParams::infer`]'s chunks).
    let par = if m * n * k > 1 << 16 && rayon::current_thread_index().is_none() {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the slices hold at least m×n, m×k and k×n values (asserted above) and the strides
    // address exactly those row-major (or transposed) matrices; `c` does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Smallest piece a parallel loop is cut into: the whole loop inside a rayon task, whose caller
/// already shares the work out (and then the loop's sums come out in one order).
fn leaf_len() -> usize {
    if rayon::current_thread_index().is_some() {
        usize::MAX
    } else {
        1
    }
}

/// a·b with eight running sums: a single sum is one long chain of dependent additions, which
/// the compiler may not reorder into SIMD lanes.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The two columns of the (H, 2) distance weights as contiguous rows.
fn split_columns(wr: &[f32]) -> (Vec<f32>, Vec<f32>) {
    wr.chunks(2).map(|c| (c[0], c[1])).unzip()
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

fn col_sum_into(acc: &mut [f32], x: &[f32]) {
    for row in x.chunks(acc.len()) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
}

/// xᵢ − xⱼ of one configuration (d ≤ 3; unused components are 0).
#[inline]
fn pair_diff(xs: &[f32], i: usize, j: usize, d: usize) -> [f32; 3] {
    let mut out = [0.0f32; 3];
    for a in 0..d {
        out[a] = xs[i * d + a] - xs[j * d + a];
    }
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// tanh through one `exp`: libm's `tanhf` (via `expm1f`) took 8.5% of an LJ-13 training run,
/// `expf` is several times cheaper. Near 0 the error is absolute, ≈ 1e-7, below the f32
/// resolution of the coordinates the coordinate head moves.
fn tanh(x: f32) -> f32 {
    let e = (-2.0 * x.abs()).exp();
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

/// What the forward pass keeps of one layer for the backward pass.
struct LayerCache {
    pos: Vec<f32>,  // (B·N, d) input positions
    h: Vec<f32>,    // (B·N, H) input features
    act: Vec<f32>,  // (E, H) relu of the first edge layer (> 0 exactly where its input was)
    z: Vec<f32>,    // (E, H)
    gate: Vec<f32>, // (E)
    c: Vec<f32>,    // (E) coordinate logit
    y: Vec<f32>,    // (B·N, 2H) [h, agg]
    v: Vec<f32>,    // (B·N, H)
}

/// A forward pass with everything the backward pass needs.
pub struct Forward {
    pub out: Vec<f32>,
    batch: usize,
    d0: Vec<f32>,
    t: Vec<f32>,
    caches: Vec<LayerCache>,
}

impl EgnnParams {
    /// Samples per chunk of [`infer`](Self::infer) and [`loss_and_grad`](Self::loss_and_grad):
    /// about 128 KiB per edge array.
    fn chunk_rows(&self) -> usize {
        (32 * 1024 / (self.edges_per_sample() * self.hidden)).max(1)
    }

    fn edges_per_sample(&self) -> usize {
        let n = self.layout.particles;
        n * (n - 1)
    }

    /// s_θ(x, t) without caches, for simulation: the batch is cut into chunks of a few samples,
    /// each run through every layer on one thread, so that a chunk's edge arrays stay in the
    /// core's cache instead of streaming batch-sized arrays through memory at every step.
    pub fn infer(&self, w: &[f32], x: &[f32], t: &[f32]) -> Vec<f32> {
        let chunk = self.chunk_rows();
        let dim = self.layout.dim();
        let outs: Vec<Vec<f32>> = x
            .par_chunks(chunk * dim)
            .zip(t.par_chunks(chunk))
            .map(|(xc, tc)| self.forward(w, xc, tc).out)
            .collect();
        outs.concat()
    }

    /// s_θ(x, t) for `batch` rows of `x` (B × N·d) and times `t` (B); keeps caches for
    /// [`backward`](Self::backward).
    pub fn forward(&self, w: &[f32], x: &[f32], t: &[f32]) -> Forward {
        let (n, d, h) = (self.layout.particles, self.layout.spatial_dim, self.hidden);
        let b = t.len();
        let bn = b * n;
        let ep = self.edges_per_sample();
        let e = b * ep;
        assert_eq!(x.len(), bn * d);
        let leaf = leaf_len();
        // Initial pair distances (an input feature of every layer).
        let mut d0 = vec![0.0f32; e];
        d0.par_chunks_mut(ep)
            .zip(x.par_chunks(n * d))
            .with_min_len(leaf)
            .for_each(|(d0s, xs)| {
                let mut k = 0;
                for i in 0..n {
                    for j in (0..n).filter(|&j| j != i) {
                        d0s[k] = (0..d)
                            .map(|a| (xs[i * d + a] - xs[j * d + a]).powi(2))
                            .sum();
                        k += 1;
                    }
                }
            });
        let mut hcur = vec![0.0f32; bn * h];
        for (s, &ts) in t.iter().enumerate() {
            for i in 0..n {
                for c in 0..h {
                    hcur[(s * n + i) * h + c] = w[self.t_w + c] * ts + w[self.t_b + c];
                }
            }
        }
        let mut pos = x.to_vec();
        let mut caches = Vec::with_capacity(self.layers.len());
        for lo in &self.layers {
            // Per-node halves of the first edge layer.
            let mut src = vec![0.0f32; bn * h];
            let mut dst = vec![0.0f32; bn * h];
            matmul(&mut src, &hcur, &w[lo.ws..], bn, h, h, false, true, false);
            add_bias(&mut src, &w[lo.bs..lo.bs + h]);
            matmul(&mut dst, &hcur, &w[lo.wd..], bn, h, h, false, true, false);
            let (wr0, wr1) = split_columns(&w[lo.wr..lo.wr + 2 * h]);
            let mut pre = vec![0.0f32; e * h];
            pre.par_chunks_mut(ep * h)
                .enumerate()
                .with_min_len(leaf)
                .for_each(|(s, ps)| {
                    let xs = &pos[s * n * d..(s + 1) * n * d];
                    let mut k = 0;
                    for i in 0..n {
                        for j in (0..n).filter(|&j| j != i) {
                            let d2: f32 = (0..d)
                                .map(|a| (xs[i * d + a] - xs[j * d + a]).powi(2))
                                .sum();
                            let dd0 = d0[s * ep + k];
                            let (si, dj) =
                                (&src[(s * n + i) * h..][..h], &dst[(s * n + j) * h..][..h]);
                            let row = &mut ps[k * h..(k + 1) * h];
                            for (c, r) in row.iter_mut().enumerate() {
                                *r = si[c] + dj[c] + wr0[c] * d2 + wr1[c] * dd0;
                            }
                            k += 1;
                        }
                    }
                });
            // In place: the backward pass only needs to know where the input was positive.
            let mut act = pre;
            act.par_iter_mut()
                .with_min_len(leaf.max(4096))
                .for_each(|v| *v = v.max(0.0));
            let mut z = vec![0.0f32; e * h];
            matmul(&mut z, &act, &w[lo.wo..], e, h, h, false, true, false);
            z.par_chunks_mut(h)
                .with_min_len(leaf.max(64))
                .for_each(|row| add_bias(row, &w[lo.bo..lo.bo + h]));
            // Second pass: gate, messages, coordinate steps, aggregation.
            let (wa, ba, wx) = (&w[lo.wa..lo.wa + h], w[lo.ba], &w[lo.wx..lo.wx + h]);
            let mut gate = vec![0.0f32; e];
            let mut cl = vec![0.0f32; e];
            let mut y = vec![0.0f32; bn * 2 * h];
            let mut new_pos = pos.clone();
            (
                gate.par_chunks_mut(ep),
                cl.par_chunks_mut(ep),
                y.par_chunks_mut(n * 2 * h),
                new_pos.par_chunks_mut(n * d),
            )
                .into_par_iter()
                .enumerate()
                .with_min_len(leaf)
                .for_each(|(s, (gs, cs, ys, nps))| {
                    let mut m = vec![0.0f32; h];
                    let xs = &pos[s * n * d..(s + 1) * n * d];
                    let hs = &hcur[s * n * h..(s + 1) * n * h];
                    for i in 0..n {
                        ys[i * 2 * h..i * 2 * h + h].copy_from_slice(&hs[i * h..(i + 1) * h]);
                    }
                    let mut k = 0;
                    for i in 0..n {
                        for j in (0..n).filter(|&j| j != i) {
                            let zr = &z[(s * ep + k) * h..][..h];
                            m.iter_mut().zip(zr).for_each(|(m, &zz)| *m = zz.max(0.0));
                            let g = sigmoid(dot(&m, wa) + ba);
                            let c = g * dot(&m, wx);
                            gs[k] = g;
                            cs[k] = c;
                            let agg = &mut ys[i * 2 * h + h..(i + 1) * 2 * h];
                            for (a, &mm) in agg.iter_mut().zip(&m) {
                                *a += g * mm;
                            }
                            let diff = pair_diff(xs, i, j, d);
                            let rho =
                                (diff.iter().map(|v| v * v).sum::<f32>() + SQRT_EPS).sqrt() + 1.0;
                            let st = COORD_RANGE * tanh(c);
                            for a in 0..d {
                                nps[i * d + a] += diff[a] / rho * st;
                            }
                            k += 1;
                        }
                    }
                });
            let mut v = vec![0.0f32; bn * h];
            matmul(&mut v, &y, &w[lo.wn1..], bn, h, 2 * h, false, true, false);
            add_bias(&mut v, &w[lo.bn1..lo.bn1 + h]);
            let silu: Vec<f32> = v.iter().map(|&q| q * sigmoid(q)).collect();
            let mut hnew = hcur.clone();
            matmul(&mut hnew, &silu, &w[lo.wn2..], bn, h, h, false, true, true);
            add_bias(&mut hnew, &w[lo.bn2..lo.bn2 + h]);
            caches.push(LayerCache {
                pos: std::mem::replace(&mut pos, new_pos),
                h: std::mem::replace(&mut hcur, hnew),
                act,
                z,
                gate,
                c: cl,
                y,
                v,
            });
        }
        // out = x_L − x₀ with the centre of mass removed.
        let mut out: Vec<f32> = pos.iter().zip(x).map(|(p, q)| p - q).collect();
        crate::energy::remove_com(
            &mut out,
            Layout {
                com_free: true,
                ..self.layout
            },
        );
        Forward {
            out,
            batch: b,
            d0,
            t: t.to_vec(),
            caches,
        }
    }

    /// Gradient of Σ dout·out with respect to every parameter (flat, same order as the weights).
    pub fn backward(&self, w: &[f32], fwd: &Forward, dout: &[f32]) -> Vec<f32> {
        let mut grad = vec![0.0f32; self.len];
        self.backward_into(w, fwd, dout, &mut grad);
        grad
    }

    /// The loss and its parameter gradient, chunk by chunk as in [`infer`](Self::infer): each
    /// thread takes a fixed share of the rows and runs forward and backward over small chunks of
    /// it, adding into its own gradient; the shares' sums are added in order, so the result
    /// depends on the thread count but not on scheduling. `loss(first_row, out)` returns a
    /// chunk's loss and d loss / d out for its rows.
    pub fn loss_and_grad<L>(&self, w: &[f32], x: &[f32], t: &[f32], loss: L) -> (f64, Vec<f32>)
    where
        L: Fn(usize, &[f32]) -> (f64, Vec<f32>) + Sync,
    {
        let dim = self.layout.dim();
        let chunk = self.chunk_rows();
        let shares = rayon::current_num_threads().max(1);
        let per_share = t.len().div_ceil(shares).div_ceil(chunk) * chunk;
        let parts: Vec<(f64, Vec<f32>)> = (0..shares)
            .into_par_iter()
            .map(|p| {
                let mut grad = vec![0.0f32; self.len];
                let mut total = 0.0;
                let (lo, hi) = (
                    (p * per_share).min(t.len()),
                    ((p + 1) * per_share).min(t.len()),
                );
                for start in (lo..hi).step_by(chunk) {
                    let end = (start + chunk).min(hi);
                    let fwd = self.forward(w, &x[start * dim..end * dim], &t[start..end]);
                    let (l, dout) = loss(start, &fwd.out);
                    total += l;
                    self.backward_into(w, &fwd, &dout, &mut grad);
                }
                (total, grad)
            })
            .collect();
        let mut parts = parts.into_iter();
        let (mut total, mut grad) = parts.next().expect("at least one share");
        for (l, g) in parts {
            total += l;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        (total, grad)
    }

    /// Adds the gradient of Σ dout·out to `grad`.
    fn backward_into(&self, w: &[f32], fwd: &Forward, dout: &[f32], grad: &mut [f32]) {
        let (n, d, h) = (self.layout.particles, self.layout.spatial_dim, self.hidden);
        let b = fwd.batch;
        let bn = b * n;
        let ep = self.edges_per_sample();
        let e = b * ep;
        let leaf = leaf_len();
        // Through the centre-of-mass projection (symmetric): dpos = P dout.
        let mut dpos = dout.to_vec();
        crate::energy::remove_com(
            &mut dpos,
            Layout {
                com_free: true,
                ..self.layout
            },
        );
        let mut dh = vec![0.0f32; bn * h];
        for (lo, cache) in self.layers.iter().zip(&fwd.caches).rev() {
            // Node update: h' = h + W₂ silu(W₁[h, agg] + b₁) + b₂.
            let silu: Vec<f32> = cache.v.iter().map(|&q| q * sigmoid(q)).collect();
            matmul(&mut grad[lo.wn2..], &dh, &silu, h, h, bn, true, false, true);
            col_sum_into(&mut grad[lo.bn2..lo.bn2 + h], &dh);
            let mut dsilu = vec![0.0f32; bn * h];
            matmul(&mut dsilu, &dh, &w[lo.wn2..], bn, h, h, false, false, false);
            let dv: Vec<f32> = dsilu
                .iter()
                .zip(&cache.v)
                .map(|(&g, &q)| {
                    let s = sigmoid(q);
                    g * (s + q * s * (1.0 - s))
                })
                .collect();
            matmul(
                &mut grad[lo.wn1..],
                &dv,
                &cache.y,
                h,
                2 * h,
                bn,
                true,
                false,
                true,
            );
            col_sum_into(&mut grad[lo.bn1..lo.bn1 + h], &dv);
            let mut dy = vec![0.0f32; bn * 2 * h];
            matmul(
                &mut dy,
                &dv,
                &w[lo.wn1..],
                bn,
                2 * h,
                h,
                false,
                false,
                false,
            );
            for (row_h, row_y) in dh.chunks_mut(h).zip(dy.chunks(2 * h)) {
                for (a, &g) in row_h.iter_mut().zip(&row_y[..h]) {
                    *a += g;
                }
            }
            // Edge pass 2 backward: gate, coordinate head, aggregation → dz; also the
            // position-path parts of d(diff).
            let (wa, wx) = (&w[lo.wa..lo.wa + h], &w[lo.wx..lo.wx + h]);
            let mut dz = vec![0.0f32; e * h];
            let mut ddiff = vec![0.0f32; e * d];
            let small = dz
                .par_chunks_mut(ep * h)
                .zip(ddiff.par_chunks_mut(ep * d))
                .enumerate()
                .with_min_len(leaf)
                .map(|(s, (dzs, dds))| {
                    let mut sg = vec![0.0f32; 2 * h + 1]; // [dwa (h), dwx (h), dba]
                    let mut m = vec![0.0f32; h];
                    let xs = &cache.pos[s * n * d..(s + 1) * n * d];
                    let mut k = 0;
                    for i in 0..n {
                        let dagg = &dy[(s * n + i) * 2 * h + h..(s * n + i + 1) * 2 * h];
                        let dp = &dpos[(s * n + i) * d..(s * n + i + 1) * d];
                        for j in (0..n).filter(|&j| j != i) {
                            let eidx = s * ep + k;
                            let zr = &cache.z[eidx * h..(eidx + 1) * h];
                            let (g, c) = (cache.gate[eidx], cache.c[eidx]);
                            let diff = pair_diff(xs, i, j, d);
                            let r = (diff.iter().map(|v| v * v).sum::<f32>() + SQRT_EPS).sqrt();
                            let rho = r + 1.0;
                            let th = tanh(c);
                            let st = COORD_RANGE * th;
                            // pos'ᵢ += diff/ρ · st
                            let dst: f32 = (0..d).map(|a| dp[a] * diff[a] / rho).sum();
                            let dc = dst * COORD_RANGE * (1.0 - th * th);
                            // d(diff) through u = diff/ρ(diff)
                            let du_dot_diff: f32 = (0..d).map(|a| dp[a] * st * diff[a]).sum();
                            let drho = -du_dot_diff / (rho * rho);
                            let dd2 = drho / (2.0 * r);
                            for a in 0..d {
                                dds[k * d + a] = dp[a] * st / rho + 2.0 * dd2 * diff[a];
                            }
                            // c = wx·(g m), agg += g m; q = wa·m + ba, g = σ(q)
                            m.iter_mut().zip(zr).for_each(|(m, &zz)| *m = zz.max(0.0));
                            let dzr = &mut dzs[k * h..(k + 1) * h];
                            for ch in 0..h {
                                dzr[ch] = dagg[ch] + dc * wx[ch]; // d(g m)
                            }
                            let dq = dot(dzr, &m) * g * (1.0 - g);
                            let (dwa, rest) = sg.split_at_mut(h);
                            let (dwx, dba) = rest.split_at_mut(h);
                            dba[0] += dq;
                            for ch in 0..h {
                                dwx[ch] += dc * g * m[ch];
                                dwa[ch] += dq * m[ch];
                                dzr[ch] = if zr[ch] > 0.0 {
                                    dzr[ch] * g + dq * wa[ch]
                                } else {
                                    0.0
                                };
                            }
                            k += 1;
                        }
                    }
                    sg
                })
                .reduce(
                    || vec![0.0f32; 2 * h + 1],
                    |mut a, bb| {
                        a.iter_mut().zip(&bb).for_each(|(x, y)| *x += y);
                        a
                    },
                );
            for ch in 0..h {
                grad[lo.wa + ch] += small[ch];
                grad[lo.wx + ch] += small[h + ch];
            }
            grad[lo.ba] += small[2 * h];
            // z = W_o act + b_o
            matmul(
                &mut grad[lo.wo..],
                &dz,
                &cache.act,
                h,
                h,
                e,
                true,
                false,
                true,
            );
            col_sum_into(&mut grad[lo.bo..lo.bo + h], &dz);
            let mut dact = vec![0.0f32; e * h];
            matmul(&mut dact, &dz, &w[lo.wo..], e, h, h, false, false, false);
            // Edge pass 1 backward: pre = srcᵢ + dstⱼ + r₀ d² + r₁ d⁰.
            let (wr0, _) = split_columns(&w[lo.wr..lo.wr + 2 * h]);
            let mut dsrc = vec![0.0f32; bn * h];
            let mut ddst = vec![0.0f32; bn * h];
            let dwr = dsrc
                .par_chunks_mut(n * h)
                .zip(ddst.par_chunks_mut(n * h))
                .zip(ddiff.par_chunks_mut(ep * d))
                .enumerate()
                .with_min_len(leaf)
                .map(|(s, ((dss, dds), ddf))| {
                    let mut dwr = vec![0.0f32; 2 * h]; // the two columns one after the other
                    let mut gp = vec![0.0f32; h];
                    let xs = &cache.pos[s * n * d..(s + 1) * n * d];
                    let mut k = 0;
                    for i in 0..n {
                        for j in (0..n).filter(|&j| j != i) {
                            let eidx = s * ep + k;
                            let diff = pair_diff(xs, i, j, d);
                            let d2: f32 = diff.iter().map(|v| v * v).sum();
                            let dd0 = fwd.d0[eidx];
                            let (ar, dr) = (&cache.act[eidx * h..][..h], &dact[eidx * h..][..h]);
                            for ((g, &a), &da) in gp.iter_mut().zip(ar).zip(dr) {
                                *g = if a > 0.0 { da } else { 0.0 };
                            }
                            let (dw0, dw1) = dwr.split_at_mut(h);
                            for ch in 0..h {
                                let g = gp[ch];
                                dss[i * h + ch] += g;
                                dds[j * h + ch] += g;
                                dw0[ch] += g * d2;
                                dw1[ch] += g * dd0;
                            }
                            let dd2 = dot(&gp, &wr0);
                            for a in 0..d {
                                ddf[k * d + a] += 2.0 * dd2 * diff[a];
                            }
                            k += 1;
                        }
                    }
                    dwr
                })
                .reduce(
                    || vec![0.0f32; 2 * h],
                    |mut a, bb| {
                        a.iter_mut().zip(&bb).for_each(|(x, y)| *x += y);
                        a
                    },
                );
            for ch in 0..h {
                grad[lo.wr + 2 * ch] += dwr[ch];
                grad[lo.wr + 2 * ch + 1] += dwr[h + ch];
            }
            // diff = posᵢ − posⱼ, and the residual pos' = pos + …
            let mut dpos_in = dpos.clone();
            dpos_in
                .par_chunks_mut(n * d)
                .zip(ddiff.par_chunks(ep * d))
                .with_min_len(leaf)
                .for_each(|(dp, ddf)| {
                    let mut k = 0;
                    for i in 0..n {
                        for j in (0..n).filter(|&j| j != i) {
                            for a in 0..d {
                                dp[i * d + a] += ddf[k * d + a];
                                dp[j * d + a] -= ddf[k * d + a];
                            }
                            k += 1;
                        }
                    }
                });
            dpos = dpos_in;
            // src = W_s h + b_s, dst = W_d h
            matmul(
                &mut grad[lo.ws..],
                &dsrc,
                &cache.h,
                h,
                h,
                bn,
                true,
                false,
                true,
            );
            col_sum_into(&mut grad[lo.bs..lo.bs + h], &dsrc);
            matmul(
                &mut grad[lo.wd..],
                &ddst,
                &cache.h,
                h,
                h,
                bn,
                true,
                false,
                true,
            );
            matmul(&mut dh, &dsrc, &w[lo.ws..], bn, h, h, false, false, true);
            matmul(&mut dh, &ddst, &w[lo.wd..], bn, h, h, false, false, true);
        }
        // h₀ = W_t t + b_t
        for (s, &ts) in fwd.t.iter().enumerate() {
            for i in 0..n {
                for c in 0..h {
                    let g = dh[(s * n + i) * h + c];
                    grad[self.t_w + c] += g * ts;
                    grad[self.t_b + c] += g;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Egnn, Init};
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// The exp-based tanh against libm's over the range the coordinate head sees and beyond:
    /// within 3e-7 absolute (a few f32 ulps of values near 1), exactly odd, and ±1 far out.
    #[test]
    fn exp_based_tanh_matches_libm() {
        let mut worst = 0.0f32;
        for k in -200_000..=200_000 {
            let x = k as f32 * 1e-4;
            worst = worst.max((tanh(x) - x.tanh()).abs());
            assert_eq!(tanh(-x), -tanh(x));
        }
        assert!(worst < 3e-7, "max |error| {worst}");
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
        assert_eq!(tanh(0.0), 0.0);
    }

    /// The chunked inference pass computes the same function as the batched forward pass; only
    /// the matrix products' summation order may differ (1e-5 absolute on outputs of order 1).
    #[test]
    fn chunked_inference_matches_forward() {
        let layout = Layout {
            particles: 13,
            spatial_dim: 3,
            com_free: true,
        };
        let (layers, h, b) = (2, 16, 41);
        let varmap = VarMap::new();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let dev = Device::Cpu;
        {
            let mut init = Init {
                varmap: &varmap,
                rng: &mut rng,
                device: &dev,
            };
            Egnn::new(layout, layers, h, &mut init).unwrap();
        }
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.ends_with("coord_out.weight") {
                var.set(&(var.as_tensor() * 300.0).unwrap()).unwrap();
            }
        }
        let params = EgnnParams::new(layout, layers, h);
        let w = params.read(&varmap).unwrap();
        let x: Vec<f32> = (0..b * layout.dim())
            .map(|_| rng.sample(StandardNormal))
            .collect();
        let t: Vec<f32> = (0..b).map(|_| rng.random()).collect();
        let want = params.forward(&w, &x, &t).out;
        let got = params.infer(&w, &x, &t);
        assert_eq!(got.len(), want.len());
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-5, "inference differs from forward by {err}");
        assert!(want.iter().any(|v| v.abs() > 1e-3), "trivial output");
    }

    /// Forward output and parameter gradients agree with the candle network and its autograd.
    /// f32 through 2 layers: 1e-4 absolute on outputs of order 1, 2e-3 relative on gradients.
    #[test]
    fn matches_candle_forward_and_autograd() {
        for (particles, dim) in [(4usize, 2usize), (5, 3)] {
            let layout = Layout {
                particles,
                spatial_dim: dim,
                com_free: true,
            };
            let (layers, h, b) = (2, 8, 3);
            let varmap = VarMap::new();
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let dev = Device::Cpu;
            let net = {
                let mut init = Init {
                    varmap: &varmap,
                    rng: &mut rng,
                    device: &dev,
                };
                Egnn::new(layout, layers, h, &mut init).unwrap()
            };
            for (name, var) in varmap.data().lock().unwrap().iter() {
                if name.ends_with("coord_out.weight") {
                    var.set(&(var.as_tensor() * 300.0).unwrap()).unwrap();
                }
            }
            let x: Vec<f32> = (0..b * particles * dim)
                .map(|_| rng.sample(StandardNormal))
                .collect();
            let t: Vec<f32> = (0..b).map(|_| rng.random()).collect();
            let target: Vec<f32> = (0..x.len()).map(|_| rng.sample(StandardNormal)).collect();

            let xt = Tensor::from_slice(&x, (b, particles * dim), &dev).unwrap();
            let tt = Tensor::from_slice(&t, b, &dev).unwrap();
            let out = net.forward(&xt, &tt).unwrap();
            let loss = (out.clone()
                * Tensor::from_slice(&target, (b, particles * dim), &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
            let grads = loss.backward().unwrap();
            let want_out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();

            let params = EgnnParams::new(layout, layers, h);
            let w = params.read(&varmap).unwrap();
            let fwd = params.forward(&w, &x, &t);
            let err = fwd
                .out
                .iter()
                .zip(&want_out)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{particles}×{dim}: forward differs by {err}");
            assert!(want_out.iter().any(|v| v.abs() > 1e-3), "trivial output");

            let g = params.backward(&w, &fwd, &target);
            let data = varmap.data().lock().unwrap();
            let mut off = 0;
            for (name, shape) in &params.names {
                let n: usize = shape.iter().product();
                let var: &Var = &data[name];
                let want: Vec<f32> = grads
                    .get(var.as_tensor())
                    .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
                    .unwrap_or(vec![0.0; n]);
                let got = &g[off..off + n];
                let scale = want.iter().map(|v| v.abs()).fold(1e-3, f32::max);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    err <= 2e-3 * scale,
                    "{particles}×{dim}: gradient of {name} differs by {err} (scale {scale})"
                );
                off += n;
            }
        }
    }
}
