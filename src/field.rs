//! The learned control field of a sampler in the plane, on a grid of arrows: what a student sees
//! being learned. For Adjoint Sampling the arrows are s_θ(x, t), whose drift is σ(t)²·s_θ: late
//! in SDE time it approaches −∇g = −∇E + x/ν(1) (downhill), early it points towards where the
//! mass will end up.

use crate::Result;
use crate::sampler::Sampler;

/// Arrows per side of the grid.
pub const FIELD_GRID: usize = 15;

/// The field at SDE time `t` on an n × n grid over a box.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlField {
    pub t: f32,
    /// Grid points (x, y), row by row.
    pub points: Vec<[f32; 2]>,
    /// The field's vector at each point.
    pub vectors: Vec<[f32; 2]>,
    /// Examples of the regression that fits the field, at the same time: (X_t, the target
    /// −∇g(X₁) it is fitted to, the field's value there). Empty where the kind has none.
    pub examples: Vec<Example>,
}

/// One regression example in the plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Example {
    pub point: [f32; 2],
    pub target: [f32; 2],
    pub output: [f32; 2],
}

/// Regression examples shown with the field.
pub const EXAMPLES: usize = 24;

/// Cell-centred grid points of an n × n grid over `bounds` (x range, y range), row by row.
pub fn grid_points(bounds: ([f64; 2], [f64; 2]), n: usize) -> Vec<[f32; 2]> {
    let ([x0, x1], [y0, y1]) = bounds;
    (0..n * n)
        .map(|k| {
            let (r, c) = (k / n, k % n);
            [
                (x0 + (c as f64 + 0.5) * (x1 - x0) / n as f64) as f32,
                (y0 + (r as f64 + 0.5) * (y1 - y0) / n as f64) as f32,
            ]
        })
        .collect()
}

/// The sampler's field at time `t` over the energy's plane box; `None` where the kind has no
/// control field to show or the system is not a point in the plane.
pub fn control_field(sampler: &dyn Sampler, t: f32, n: usize) -> Option<Result<ControlField>> {
    let bounds = sampler.energy().plane_box()?;
    let points = grid_points(bounds, n);
    let x: Vec<f32> = points.iter().flat_map(|p| p.iter().copied()).collect();
    let out = sampler.control_field(&x, t)?;
    Some(out.map(|v| ControlField {
        t,
        points,
        vectors: pairs(&v),
        examples: Vec::new(),
    }))
}

/// The field with `m` regression examples beside it (the kinds that have them).
pub fn control_field_with_examples(
    sampler: &mut dyn Sampler,
    t: f32,
    n: usize,
    m: usize,
) -> Option<Result<ControlField>> {
    let mut f = match control_field(sampler, t, n)? {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    if let Some(ex) = sampler.regression_examples(m, t) {
        let result = ex.and_then(|(x, target)| {
            let output = if x.is_empty() {
                Vec::new()
            } else {
                sampler.control_field(&x, t).unwrap_or(Ok(Vec::new()))?
            };
            Ok(pairs(&x)
                .into_iter()
                .zip(pairs(&target))
                .zip(pairs(&output))
                .map(|((point, target), output)| Example {
                    point,
                    target,
                    output,
                })
                .collect())
        });
        match result {
            Ok(examples) => f.examples = examples,
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(f))
}

fn pairs(v: &[f32]) -> Vec<[f32; 2]> {
    v.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
}
