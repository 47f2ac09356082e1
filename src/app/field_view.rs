//! The learned control field of a plane system as a grid of arrows over the density map, at a
//! chosen SDE time (a slider, or swept over and over). The worker evaluates the network; this
//! asks for the field when the settings change and draws what arrives.

use bevy::prelude::*;
use bevy::window::RequestRedraw;

use super::link::{Link, RunData};
use super::particles::{Placement, ViewSettings};
use crate::worker::Command;

/// Asks the worker for the field at the chosen time (or for none), whenever that changes.
pub(super) fn request(
    time: Res<Time>,
    mut settings: ResMut<ViewSettings>,
    link: Res<Link>,
    mut asked: Local<Option<Option<f32>>>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    if settings.field && settings.field_animate {
        settings.field_t = (settings.field_t + time.delta_secs().min(0.1) / 4.0) % 1.0;
        redraw.write(RequestRedraw);
    }
    let want = settings.field.then_some(settings.field_t);
    // Steps of 1/100 in t are enough, and keep an animation from flooding the worker.
    let key = want.map(|t| (t * 100.0).round() / 100.0);
    if *asked != Some(key) {
        *asked = Some(key);
        link.0.send(Command::ShowField(key));
    }
}

/// Arrows at the grid points, their lengths ∝ √|s| so that the weak field between the wells
/// stays visible beside the strong one at the edges; the longest reaches most of a grid cell.
pub(super) fn draw(
    data: Res<RunData>,
    settings: Res<ViewSettings>,
    placement: Res<Placement>,
    mut gizmos: Gizmos,
) {
    if !settings.field {
        return;
    }
    let Some(f) = &data.field else { return };
    let Some(([x0, x1], _)) = placement.plane else {
        return;
    };
    let cell = ((x1 - x0) as f32 / crate::field::FIELD_GRID as f32) * placement.scale;
    let longest = f
        .vectors
        .iter()
        .map(|v| Vec2::from(*v).length())
        .filter(|l| l.is_finite())
        .fold(0.0f32, f32::max);
    if longest <= 0.0 {
        return;
    }
    let colour = Color::srgba(0.95, 0.55, 0.25, 0.95);
    let at = placement.lane_center(0);
    for (p, v) in f.points.iter().zip(&f.vectors) {
        let v = Vec2::from(*v);
        if !v.is_finite() {
            continue;
        }
        let from =
            at + (Vec3::new(p[0], p[1], 0.0) - placement.origin) * placement.scale + Vec3::Z * 0.05;
        let d = v / v.length().max(1e-12) * (v.length() / longest).sqrt() * 0.9 * cell;
        gizmos
            .arrow(from, from + d.extend(0.0), colour)
            .with_tip_length(0.25 * cell);
    }
    if !settings.field_examples {
        return;
    }
    // The loss's examples: from each bridge point X_t, the target −∇g(X₁) (cyan) and the field's
    // value (orange, as the grid) on the same scale; their gap is what a gradient step shrinks.
    let target_colour = Color::srgba(0.3, 0.85, 0.95, 0.95);
    let arrow = |v: [f32; 2]| {
        let v = Vec2::from(v);
        if !v.is_finite() || v.length() == 0.0 {
            return Vec2::ZERO;
        }
        v / v.length() * (v.length() / longest).sqrt().min(1.6) * 0.9 * cell
    };
    for e in &f.examples {
        let from = at
            + (Vec3::new(e.point[0], e.point[1], 0.0) - placement.origin) * placement.scale
            + Vec3::Z * 0.08;
        gizmos.sphere(
            Isometry3d::from_translation(from),
            0.08 * cell,
            target_colour,
        );
        gizmos
            .arrow(from, from + arrow(e.target).extend(0.0), target_colour)
            .with_tip_length(0.2 * cell);
        gizmos
            .arrow(from, from + arrow(e.output).extend(0.0), colour)
            .with_tip_length(0.2 * cell);
    }
}
