//! Molecules drawn ball-and-stick: every sample of a torsion-space system is turned back into
//! atom positions (the torsions → positions map of the scene's molecule), atoms as spheres in
//! element colours, bonds of the topology as sticks. The grid shows several samples; the
//! trajectory view shows one molecule twisting over SDE time, with each atom's path so far.
//!
//! The grid, lanes and spacing come from the shared [`Placement`] of the particle view; the cell
//! frames (coloured by energy) are drawn there too.

use std::sync::Arc;

use bevy::prelude::*;

use super::link::RunData;
use super::particles::{
    ColorBy, Placement, RunView, Show, ViewSettings, cell_center, index_color, trajectory_frame,
};
use crate::energy::Energy;
use crate::worker::RunInfo;

/// The molecule of the current run, able to turn torsions into positions.
#[derive(Resource, Default)]
pub(super) struct MoleculeModel {
    info: Option<Arc<RunInfo>>,
    energy: Option<Box<dyn Energy>>,
    bonds: Vec<(usize, usize)>,
    atoms: usize,
    /// One material per atom in its element's colour.
    element_mats: Vec<Handle<StandardMaterial>>,
}

impl MoleculeModel {
    /// Atom positions (Å, centred on their mean) of the torsions `theta`.
    fn positions(&self, theta: &[f32]) -> Option<Vec<Vec3>> {
        let mol = self.energy.as_ref()?.molecule()?;
        let t: Vec<f64> = theta.iter().map(|&v| v as f64).collect();
        let x = mol.positions(&t);
        let p: Vec<Vec3> = x
            .chunks_exact(3)
            .map(|c| Vec3::new(c[0] as f32, c[1] as f32, c[2] as f32))
            .collect();
        let mean = p.iter().copied().sum::<Vec3>() / p.len().max(1) as f32;
        Some(p.into_iter().map(|v| v - mean).collect())
    }
}

/// An atom of sample `cell` of lane `lane`.
#[derive(Component)]
pub(super) struct Atom {
    lane: usize,
    cell: usize,
    index: usize,
}

/// Bond `bond` of the topology in sample `cell` of lane `lane`.
#[derive(Component)]
pub(super) struct Stick {
    lane: usize,
    cell: usize,
    bond: usize,
}

/// CPK-like colour and ball radius (Å) of an element: about a quarter of the van der Waals
/// radius, so that bonds stay visible between the balls. United-atom beads ("C" in butane's
/// TraPPE model, which carries its hydrogens) are drawn as carbon.
pub fn element_style(element: &str) -> (Color, f32) {
    match element {
        "H" => (Color::srgb(0.92, 0.92, 0.92), 0.22),
        "C" => (Color::srgb(0.45, 0.47, 0.50), 0.36),
        "N" => (Color::srgb(0.19, 0.31, 0.97), 0.35),
        "O" => (Color::srgb(0.95, 0.16, 0.12), 0.34),
        "S" => (Color::srgb(0.95, 0.85, 0.20), 0.45),
        "P" => (Color::srgb(1.0, 0.5, 0.0), 0.45),
        _ => (Color::srgb(0.9, 0.4, 0.9), 0.35),
    }
}

/// Stick radius (Å).
const STICK: f32 = 0.12;

/// Spawns atoms and sticks for every cell of a new molecule run; runs after the particle
/// view's rebuild, which despawns the old run's entities (all tagged [`RunView`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn rebuild(
    mut commands: Commands,
    placement: Res<Placement>,
    mut model: ResMut<MoleculeModel>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let Some(info) = &placement.info else { return };
    if model.info.as_ref().is_some_and(|m| Arc::ptr_eq(m, info)) {
        return;
    }
    *model = MoleculeModel {
        info: Some(info.clone()),
        ..default()
    };
    if !info.scene.system.is_molecule() {
        return;
    }
    let energy = info.scene.energy();
    let Some(mol) = energy.molecule() else { return };
    let elements = mol.elements();
    let bonds = mol.bonds();
    let ball = meshes.add(
        Sphere::new(1.0)
            .mesh()
            .ico(3)
            .expect("subdivision 3 is valid"),
    );
    let stick = meshes.add(Cylinder::new(STICK, 1.0));
    let stick_mat = materials.add(StandardMaterial {
        base_color: Color::srgb(0.62, 0.64, 0.68),
        perceptual_roughness: 0.6,
        ..default()
    });
    let styles: Vec<(Handle<StandardMaterial>, f32)> = elements
        .iter()
        .map(|e| {
            let (c, r) = element_style(e);
            (
                materials.add(StandardMaterial {
                    base_color: c,
                    perceptual_roughness: 0.45,
                    ..default()
                }),
                r,
            )
        })
        .collect();
    let cells = info.scene.view.grid.max(1).pow(2);
    for lane in 0..placement.lanes.max(1) {
        for cell in 0..cells {
            for (index, (mat, r)) in styles.iter().enumerate() {
                commands.spawn((
                    Mesh3d(ball.clone()),
                    MeshMaterial3d(mat.clone()),
                    Transform::from_scale(Vec3::splat(*r)),
                    Visibility::Hidden,
                    Atom { lane, cell, index },
                    RunView,
                ));
            }
            for bond in 0..bonds.len() {
                commands.spawn((
                    Mesh3d(stick.clone()),
                    MeshMaterial3d(stick_mat.clone()),
                    Transform::default(),
                    Visibility::Hidden,
                    Stick { lane, cell, bond },
                    RunView,
                ));
            }
        }
    }
    model.atoms = elements.len();
    model.element_mats = styles.into_iter().map(|(m, _)| m).collect();
    model.bonds = bonds;
    model.energy = Some(energy);
}

/// Half-width of a grid cell for the run's molecule: the largest distance of an atom from the
/// molecule's centre over a few conformers (all torsions at 0°, 60°, …, 300°), plus a ball.
pub(super) fn extent(info: &RunInfo) -> f32 {
    let dim = info.layout.dim();
    let model = MoleculeModel {
        energy: Some(info.scene.energy()),
        ..default()
    };
    let reach = (0..6)
        .filter_map(|k| model.positions(&vec![k as f32 * std::f32::consts::FRAC_PI_3; dim]))
        .flat_map(|p| p.into_iter().map(|v| v.length()))
        .fold(0.0f32, f32::max);
    reach + 0.5
}

/// A unit cylinder along y, stretched and turned to join `a` and `b`.
fn stick_between(a: Vec3, b: Vec3) -> Transform {
    let d = b - a;
    let len = d.length().max(1e-6);
    Transform {
        translation: (a + b) / 2.0,
        rotation: Quat::from_rotation_arc(Vec3::Y, d / len),
        scale: Vec3::new(1.0, len, 1.0),
    }
}

/// Moves atoms and sticks to the current samples (or the trajectory frame at the scrubber).
#[allow(clippy::type_complexity)]
pub(super) fn place(
    data: Res<RunData>,
    settings: Res<ViewSettings>,
    placement: Res<Placement>,
    model: Res<MoleculeModel>,
    mut atoms: Query<(&Atom, &mut Transform, &mut Visibility), Without<Stick>>,
    mut sticks: Query<(&Stick, &mut Transform, &mut Visibility), Without<Atom>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut index_mats: Local<Vec<Handle<StandardMaterial>>>,
    mut atom_mats: Query<(&Atom, &mut MeshMaterial3d<StandardMaterial>)>,
    mut shown_by: Local<Option<ColorBy>>,
) {
    let Some(info) = &placement.info else { return };
    if model.energy.is_none() || !(data.is_changed() || settings.is_changed() || model.is_changed())
    {
        return;
    }
    let g = info.scene.view.grid.max(1);
    let trajectory = settings.show == Show::Trajectory;
    // Positions of every (lane, cell) shown, computed once per cell.
    let lanes = placement.lanes.max(1);
    let cells = g * g;
    let mut at: Vec<Option<(Vec3, Vec<Vec3>)>> = vec![None; lanes * cells];
    if trajectory {
        if let Some(f) = data
            .trajectory
            .as_deref()
            .and_then(|t| trajectory_frame(t, settings.time))
        {
            at[0] = model.positions(f).map(|p| (Vec3::ZERO, p));
        }
    } else {
        for (lane, slot) in at.chunks_mut(cells).enumerate() {
            let Some(b) = data.lane_samples(lane) else {
                continue;
            };
            let dim = b.layout.dim();
            for (cell, s) in slot.iter_mut().enumerate().take(b.len()) {
                let centre = placement.lane_center(lane) + cell_center(cell, g, placement.spacing);
                *s = model
                    .positions(&b.x[cell * dim..(cell + 1) * dim])
                    .map(|p| (centre, p));
            }
        }
    }
    for (a, mut t, mut vis) in &mut atoms {
        match &at[a.lane * cells + a.cell] {
            Some((c, p)) if a.index < p.len() => {
                t.translation = *c + p[a.index];
                *vis = Visibility::Visible;
            }
            _ => *vis = Visibility::Hidden,
        }
    }
    for (s, mut t, mut vis) in &mut sticks {
        let (i, j) = model.bonds[s.bond];
        match &at[s.lane * cells + s.cell] {
            Some((c, p)) if i < p.len() && j < p.len() => {
                *t = stick_between(*c + p[i], *c + p[j]);
                *vis = Visibility::Visible;
            }
            _ => *vis = Visibility::Hidden,
        }
    }
    // Element colours, or one colour per atom index (to follow an atom between samples).
    if *shown_by != Some(settings.color_by) || model.is_changed() {
        *shown_by = Some(settings.color_by);
        if index_mats.len() < model.atoms {
            let have = index_mats.len();
            index_mats.extend((have..model.atoms).map(|i| {
                materials.add(StandardMaterial {
                    base_color: index_color(i),
                    perceptual_roughness: 0.45,
                    ..default()
                })
            }));
        }
        for (a, mut m) in &mut atom_mats {
            let h = match settings.color_by {
                ColorBy::ParticleIndex => index_mats.get(a.index),
                ColorBy::Energy | ColorBy::LogWeight => model.element_mats.get(a.index),
            };
            if let Some(h) = h {
                m.0 = h.clone();
            }
        }
    }
}

/// In the trajectory view, each heavy atom's path from t = 0 up to the scrubber: the twisting
/// shows as arcs about the rotated bonds.
pub(super) fn paths(
    data: Res<RunData>,
    settings: Res<ViewSettings>,
    model: Res<MoleculeModel>,
    mut gizmos: Gizmos,
    // Every frame's atom positions, computed once per trajectory (gizmos redraw each frame).
    mut cached: Local<Option<(usize, Vec<Vec<Vec3>>)>>,
    mut heavy: Local<Vec<bool>>,
) {
    if settings.show != Show::Trajectory || model.energy.is_none() {
        return;
    }
    let Some(traj) = data.trajectory.as_ref() else {
        return;
    };
    if traj.is_empty() {
        return;
    }
    let key = std::sync::Arc::as_ptr(traj) as usize;
    if cached.as_ref().is_none_or(|(k, _)| *k != key) || model.is_changed() {
        *cached = Some((
            key,
            traj.iter().filter_map(|f| model.positions(f)).collect(),
        ));
        *heavy = model
            .energy
            .as_ref()
            .and_then(|e| e.molecule())
            .map(|m| m.elements().iter().map(|e| *e != "H").collect())
            .unwrap_or_default();
    }
    let Some((_, frames)) = cached.as_ref() else {
        return;
    };
    let upto = ((settings.time.clamp(0.0, 1.0) * (traj.len() - 1) as f32).round() as usize)
        .min(frames.len().saturating_sub(1));
    let (c, _) = element_style("C");
    for atom in 0..model.atoms {
        if !heavy.get(atom).copied().unwrap_or(true) {
            continue;
        }
        let colour = c.with_alpha(0.55).mix(
            &Color::srgba(0.95, 0.75, 0.3, 0.55),
            atom as f32 / model.atoms.max(1) as f32,
        );
        gizmos.linestrip(
            frames[..=upto].iter().filter_map(|f| f.get(atom).copied()),
            colour,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stick_joins_its_end_points() {
        let (a, b) = (Vec3::new(1.0, 2.0, 3.0), Vec3::new(2.0, 0.5, 3.5));
        let t = stick_between(a, b);
        // The unit cylinder's ends are at y = ±0.5.
        let (p, q) = (
            t.transform_point(Vec3::new(0.0, 0.5, 0.0)),
            t.transform_point(Vec3::new(0.0, -0.5, 0.0)),
        );
        assert!(p.distance(b) < 1e-5 && q.distance(a) < 1e-5, "{p} {q}");
        // The radius is not stretched.
        let side = t.transform_point(Vec3::new(STICK, 0.0, 0.0)) - t.translation;
        assert!((side.length() - STICK).abs() < 1e-5);
    }

    #[test]
    fn elements_have_distinct_colours() {
        let c: Vec<Color> = ["H", "C", "N", "O"]
            .iter()
            .map(|e| element_style(e).0)
            .collect();
        for i in 0..c.len() {
            for j in i + 1..c.len() {
                assert_ne!(c[i], c[j]);
            }
        }
    }
}
