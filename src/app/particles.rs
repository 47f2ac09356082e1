//! The 3D view of the samples: a grid of current samples as spheres coloured by energy (or by
//! particle index), bonds by a distance cutoff, 2-D systems on the z = 0 plane, GMM-40 as a
//! point cloud over a map of the target density, and the replay of one trajectory over SDE time.
//!
//! All spheres share one mesh and a small palette of materials, so Bevy draws them instanced.

use std::sync::Arc;

use bevy::asset::RenderAssetUsages;
use bevy::prelude::*;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};
use bevy::window::RequestRedraw;

use super::camera::HomeView;
use super::link::RunData;
use super::{field_view, molecules};
use crate::energy::Layout;
use crate::worker::RunInfo;

pub use crate::view::{ColorBy, Show};

/// Nats of log-weight below the batch's largest that the weight colour scale spans.
pub const LOG_WEIGHT_SPAN: f64 = 10.0;

/// Position of a log-weight on the colour scale: 1 for the batch's largest, 0 for
/// `LOG_WEIGHT_SPAN` nats below it or less (and for a weight of zero).
pub fn weight_position(lw: f64, max: f64) -> f64 {
    if lw.is_finite() && max.is_finite() {
        (1.0 + (lw - max) / LOG_WEIGHT_SPAN).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// View settings edited in the panels.
#[derive(Resource, Debug, Clone)]
pub struct ViewSettings {
    pub color_by: ColorBy,
    pub show: Show,
    pub bonds: bool,
    pub bond_cutoff: f32,
    /// Position of the trajectory scrubber, 0–1 in SDE time.
    pub time: f32,
    pub animate: bool,
    /// Seconds an animated replay takes from t = 0 to 1.
    pub animate_seconds: f32,
    /// Draw the learned control field (plane systems) at SDE time `field_t`.
    pub field: bool,
    pub field_t: f32,
    /// Sweep `field_t` from 0 to 1 over and over.
    pub field_animate: bool,
    /// Draw examples of the regression beside the field: targets and the field's values.
    pub field_examples: bool,
    /// Histograms of samples weighted by their importance weights (kinds that define them).
    pub reweighted: bool,
    /// The two torsions the torsion map shows (coordinate indices); `None`: φ and ψ, or the
    /// first two.
    pub torsion_pair: Option<(usize, usize)>,
}

impl Default for ViewSettings {
    fn default() -> Self {
        Self {
            color_by: ColorBy::Energy,
            show: Show::Samples,
            bonds: true,
            bond_cutoff: 1.3,
            time: 1.0,
            animate: false,
            animate_seconds: 4.0,
            field: false,
            field_t: 0.9,
            field_animate: false,
            field_examples: false,
            reweighted: false,
            torsion_pair: None,
        }
    }
}

impl ViewSettings {
    /// Takes the values an edit sets (a lesson step, a session).
    pub fn apply(&mut self, e: &crate::view::ViewEdit) {
        let crate::view::ViewEdit {
            show,
            color_by,
            time,
            animate,
            field,
            field_t,
            field_animate,
            field_examples,
            reweighted,
        } = e.clone();
        self.show = show.unwrap_or(self.show);
        self.color_by = color_by.unwrap_or(self.color_by);
        self.time = time.unwrap_or(self.time);
        self.animate = animate.unwrap_or(self.animate);
        self.field = field.unwrap_or(self.field);
        self.field_t = field_t.unwrap_or(self.field_t);
        self.field_animate = field_animate.unwrap_or(self.field_animate);
        self.field_examples = field_examples.unwrap_or(self.field_examples);
        self.reweighted = reweighted.unwrap_or(self.reweighted);
    }

    /// Every setting a session keeps.
    pub fn edit(&self) -> crate::view::ViewEdit {
        crate::view::ViewEdit {
            show: Some(self.show),
            color_by: Some(self.color_by),
            time: Some(self.time),
            animate: Some(self.animate),
            field: Some(self.field),
            field_t: Some(self.field_t),
            field_animate: Some(self.field_animate),
            field_examples: Some(self.field_examples),
            reweighted: Some(self.reweighted),
        }
    }
}

/// The energy range mapped onto the colour scale (shared with the legend): the reference's
/// typical range [lo, hi], and above it, when current samples are higher, a log-compressed
/// stretch up to `top` (their 95th percentile), so that early samples far above the target are
/// not all one colour.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct EnergyScale {
    pub lo: f64,
    pub hi: f64,
    pub top: f64,
}

impl Default for EnergyScale {
    fn default() -> Self {
        Self {
            lo: 0.0,
            hi: 1.0,
            top: 1.0,
        }
    }
}

/// Where on the colour scale the reference's upper end sits when the scale is stretched above it.
pub const REFERENCE_SPAN: f64 = 0.7;

impl EnergyScale {
    /// Whether the scale has a stretch above the reference's range.
    pub fn stretched(&self) -> bool {
        self.top > self.hi
    }

    /// Position of energy `e` on the colour scale, 0 (lowest) to 1 (highest or not finite).
    pub fn position(&self, e: f64) -> f64 {
        if !e.is_finite() {
            return 1.0;
        }
        let width = (self.hi - self.lo).max(1e-12);
        if !self.stretched() {
            return ((e - self.lo) / width).clamp(0.0, 1.0);
        }
        if e <= self.hi {
            return (REFERENCE_SPAN * (e - self.lo) / width).max(0.0);
        }
        let above = (1.0 + (e - self.hi) / width).ln() / (1.0 + (self.top - self.hi) / width).ln();
        (REFERENCE_SPAN + (1.0 - REFERENCE_SPAN) * above).min(1.0)
    }

    /// The same scale stretched up to the 95th percentile of `energies` when that is above `hi`.
    pub fn fitted_to(self, energies: &[f64]) -> Self {
        let mut e: Vec<f64> = energies.iter().copied().filter(|v| v.is_finite()).collect();
        if e.is_empty() {
            return Self {
                top: self.hi,
                ..self
            };
        }
        e.sort_by(f64::total_cmp);
        let q95 = e[((e.len() - 1) as f64 * 0.95) as usize];
        // Only a clear excess stretches the scale (it would flicker with every batch otherwise).
        let top = if q95 > self.hi + 0.5 * (self.hi - self.lo) {
            q95
        } else {
            self.hi
        };
        Self { top, ..self }
    }
}

/// Half-width in world units of the square a plane system's box is drawn in.
const POINT_CLOUD_HALF: f32 = 6.25;

/// Colours of the energy scale: low energy is dark blue, high is yellow (viridis-like).
pub const SCALE_STEPS: usize = 24;

/// Viridis at `u` ∈ [0, 1], from five anchor colours.
pub fn viridis(u: f32) -> [f32; 3] {
    const A: [[f32; 3]; 5] = [
        [0.267, 0.005, 0.329],
        [0.231, 0.322, 0.545],
        [0.129, 0.569, 0.549],
        [0.365, 0.788, 0.384],
        [0.993, 0.906, 0.144],
    ];
    let x = u.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f32;
    std::array::from_fn(|k| A[i][k] * (1.0 - f) + A[i + 1][k] * f)
}

/// Distinct colours for colouring by particle index.
pub(super) fn index_color(i: usize) -> Color {
    Color::hsl((i as f32 * 137.508) % 360.0, 0.65, 0.55)
}

#[derive(Resource)]
struct Palette {
    mesh: Handle<Mesh>,
    energy: Vec<Handle<StandardMaterial>>,
    index: Vec<Handle<StandardMaterial>>,
}

/// One sphere: `lane` of a race (0 for a single run), `cell` of the grid, `index` of the
/// particle in its sample.
#[derive(Component)]
struct Sphere3 {
    lane: usize,
    cell: usize,
    index: usize,
}

/// Everything spawned for the current run (despawned on the next).
#[derive(Component)]
pub(super) struct RunView;

/// Placement of the current run's samples.
#[derive(Resource, Default)]
pub(super) struct Placement {
    pub info: Option<Arc<RunInfo>>,
    cells: usize,
    pub spacing: f32,
    /// Coordinates are multiplied by this (GMM-40 spans ±40; particle systems are 1:1).
    pub scale: f32,
    /// A plane system's box centre, drawn at the lane's centre.
    pub origin: Vec3,
    /// A plane system's box (x range, y range), read once per run.
    pub plane: Option<([f64; 2], [f64; 2])>,
    radius: f32,
    /// Lanes side by side (a race), each `lane_width` wide.
    pub lanes: usize,
    lane_width: f32,
}

impl Placement {
    /// Centre of lane `lane`'s block: lanes sit side by side along x.
    pub(super) fn lane_center(&self, lane: usize) -> Vec3 {
        Vec3::new(
            (lane as f32 - (self.lanes.max(1) as f32 - 1.0) / 2.0) * self.lane_width,
            0.0,
            0.0,
        )
    }
}

/// Where to write each lane's name in a race: above its block (world coordinates).
#[derive(Resource, Default, Debug, Clone)]
pub struct LaneLabels(pub Vec<(String, Vec3)>);

pub fn plugin(app: &mut App) {
    app.init_resource::<ViewSettings>()
        .init_resource::<EnergyScale>()
        .init_resource::<Placement>()
        .init_resource::<LaneLabels>()
        .add_systems(Startup, setup_palette)
        .init_resource::<molecules::MoleculeModel>()
        .add_systems(
            Update,
            (
                rebuild_on_new_run,
                fit_energy_scale,
                molecules::rebuild,
                frame_what_is_shown,
                animate,
                place,
                molecules::place,
                bonds,
                off_policy_marks,
                molecules::paths,
                field_view::request,
                field_view::draw,
            )
                .chain(),
        );
}

/// The home view frames the whole grid, or the single cluster of a trajectory.
fn frame_what_is_shown(
    settings: Res<ViewSettings>,
    placement: Res<Placement>,
    mut home: ResMut<HomeView>,
    mut shown: Local<Option<(Show, usize)>>,
) {
    let Some(info) = &placement.info else { return };
    let key = (settings.show, Arc::as_ptr(info) as usize);
    if *shown == Some(key) {
        return;
    }
    *shown = Some(key);
    let point_cloud = info.layout.particles == 1 && !info.scene.system.is_molecule();
    let g = info.scene.view.grid.max(1) as f32;
    let lanes = placement.lanes.max(1) as f32;
    let extent = match (point_cloud, settings.show) {
        (true, Show::Samples) => POINT_CLOUD_HALF * lanes,
        (true, Show::Trajectory) => POINT_CLOUD_HALF,
        (false, Show::Trajectory) => placement.spacing / 2.0,
        (false, Show::Samples) => g * placement.spacing / 2.0 * lanes,
    };
    if home.extent != extent {
        home.extent = extent;
    }
}

fn setup_palette(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let mesh = meshes.add(
        Sphere::new(1.0)
            .mesh()
            .ico(3)
            .expect("subdivision 3 is valid"),
    );
    let mat = |m: &mut Assets<StandardMaterial>, c: Color| {
        m.add(StandardMaterial {
            base_color: c,
            perceptual_roughness: 0.5,
            ..default()
        })
    };
    let energy = (0..SCALE_STEPS)
        .map(|k| {
            let [r, g, b] = viridis(k as f32 / (SCALE_STEPS - 1) as f32);
            mat(&mut materials, Color::srgb(r, g, b))
        })
        .collect();
    let index = (0..64)
        .map(|i| mat(&mut materials, index_color(i)))
        .collect();
    commands.insert_resource(Palette {
        mesh,
        energy,
        index,
    });
}

/// Spheres per grid cell and the layout of a new run; also the home view and colour scale.
#[allow(clippy::too_many_arguments)]
fn rebuild_on_new_run(
    mut commands: Commands,
    data: Res<RunData>,
    mut placement: ResMut<Placement>,
    mut labels: ResMut<LaneLabels>,
    palette: Res<Palette>,
    old: Query<Entity, With<RunView>>,
    mut home: ResMut<HomeView>,
    mut scale: ResMut<EnergyScale>,
    mut settings: ResMut<ViewSettings>,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let Some(info) = &data.info else { return };
    if placement
        .info
        .as_ref()
        .is_some_and(|p| Arc::ptr_eq(p, info))
    {
        return;
    }
    for e in &old {
        commands.entity(e).despawn();
    }
    let layout = info.layout;
    let view = &info.scene.view;
    // A molecule's samples are torsions; molecules.rs draws them as atoms in the same grid.
    let molecule = info.scene.system.is_molecule();
    let point_cloud = layout.particles == 1 && !molecule;
    // A plane system's box fills ±POINT_CLOUD_HALF world units (GMM-40's ±50 at 1/8).
    let plane = if point_cloud && layout.dim() == 2 {
        info.scene.energy().plane_box()
    } else {
        None
    };
    // A formula of one variable: its points on a line across the same width as a plane's box.
    let line = match (&info.scene.system, point_cloud && layout.dim() == 1) {
        (crate::scene::System::Formula(f), true) => f.bounds_or_default().first().copied(),
        _ => None,
    };
    let (origin, half) = match (plane, line) {
        (Some(([x0, x1], [y0, y1])), _) => (
            Vec3::new(((x0 + x1) / 2.0) as f32, ((y0 + y1) / 2.0) as f32, 0.0),
            ((x1 - x0).max(y1 - y0) / 2.0) as f32,
        ),
        (None, Some([x0, x1])) => (
            Vec3::new(((x0 + x1) / 2.0) as f32, 0.0, 0.0),
            ((x1 - x0) / 2.0) as f32,
        ),
        _ => (Vec3::ZERO, 50.0),
    };
    let (scale_factor, radius) = if point_cloud {
        (POINT_CLOUD_HALF / half, 0.08)
    } else {
        (1.0, view.particle_radius as f32)
    };
    let cells = if point_cloud {
        info.scene.sampler.new_samples.max(1)
    } else {
        view.grid.max(1).pow(2)
    };
    let per_cell = if molecule { 0 } else { layout.particles };
    // Cells sit far enough apart for the largest reference cluster (or a guess without one).
    let extent = match (point_cloud, molecule) {
        (_, true) => molecules::extent(info),
        (true, false) => 0.0,
        (false, false) => cluster_extent(info).max(1.0),
    };
    let spacing = 2.0 * extent + 4.0 * radius;
    let lanes = info.race.len().max(1);
    let block = if point_cloud {
        2.0 * POINT_CLOUD_HALF
    } else {
        view.grid.max(1) as f32 * spacing
    };
    let lane_width = block * 1.08;
    let new = Placement {
        info: Some(info.clone()),
        cells,
        spacing,
        scale: scale_factor,
        origin,
        plane,
        radius,
        lanes,
        lane_width,
    };
    for lane in 0..lanes {
        for cell in 0..cells {
            for index in 0..per_cell {
                commands.spawn((
                    Mesh3d(palette.mesh.clone()),
                    MeshMaterial3d(palette.energy[0].clone()),
                    Transform::from_scale(Vec3::splat(radius)),
                    Visibility::Hidden,
                    Sphere3 { lane, cell, index },
                    RunView,
                ));
            }
        }
    }
    // The density map under a plane system's points.
    if let Some(plane) = plane {
        let (size, image) = density_image(info, plane);
        let texture = images.add(image);
        let map = materials.add(StandardMaterial {
            base_color_texture: Some(texture),
            unlit: true,
            ..default()
        });
        let quad = meshes.add(Rectangle::new(size.x * scale_factor, size.y * scale_factor));
        for lane in 0..lanes {
            commands.spawn((
                Mesh3d(quad.clone()),
                MeshMaterial3d(map.clone()),
                Transform::from_translation(new.lane_center(lane) + Vec3::new(0.0, 0.0, -0.2)),
                RunView,
            ));
        }
    }
    labels.0 = info
        .race
        .iter()
        .enumerate()
        .map(|(k, kind)| {
            (
                super::link::lane_name(info, k, *kind),
                new.lane_center(k) + Vec3::new(0.0, block / 2.0 * 1.02, 0.0),
            )
        })
        .collect();
    // The extent is set by frame_what_is_shown.
    *home = HomeView {
        focus: Vec3::ZERO,
        extent: home.extent,
        yaw: 0.0,
        pitch: if layout.spatial_dim == 3 { 0.15 } else { 0.0 },
    };
    *scale = energy_scale(info);
    settings.bond_cutoff = view.bond_cutoff as f32;
    settings.bonds = view.bond_cutoff > 0.0;
    *placement = new;
}

/// Stretches the colour scale above the reference when the latest samples are far higher.
fn fit_energy_scale(data: Res<RunData>, mut scale: ResMut<EnergyScale>) {
    if !data.is_changed() {
        return;
    }
    let energies: Vec<f64> = if data.racing() {
        data.lanes
            .iter()
            .filter_map(|l| l.samples.as_deref())
            .flat_map(|b| b.energies.iter().copied())
            .collect()
    } else {
        data.samples
            .as_deref()
            .map(|b| b.energies.clone())
            .unwrap_or_default()
    };
    // Without a reference there is no target range to anchor the scale: it spans the samples'
    // own (2nd to 98th percentile), rather than a default 0 to 1 stretched to their top.
    let no_reference = data
        .info
        .as_ref()
        .is_some_and(|i| i.reference_energies.is_empty());
    let fitted = if no_reference {
        percentile_scale(&energies).unwrap_or(*scale)
    } else {
        scale.fitted_to(&energies)
    };
    if fitted != *scale {
        *scale = fitted;
    }
}

/// Half-width to leave for a cluster: 0.6 × the 99.5th percentile of the reference's pooled
/// pair distances (a bound on the diameter that ignores rare stragglers); without a reference,
/// one unit per particle.
fn cluster_extent(info: &RunInfo) -> f32 {
    let mut d = info.reference_distances.clone();
    if d.is_empty() {
        return info.layout.particles as f32;
    }
    d.sort_by(f64::total_cmp);
    (d[(d.len() as f64 * 0.995) as usize] * 0.6) as f32
}

/// Colour scale from the reference energies (2nd to 98th percentile), so that "blue" means "as
/// low as the target's typical samples".
fn energy_scale(info: &RunInfo) -> EnergyScale {
    percentile_scale(&info.reference_energies).unwrap_or_default()
}

/// The 2nd to 98th percentile of the finite energies in `e`; `None` for fewer than two.
fn percentile_scale(e: &[f64]) -> Option<EnergyScale> {
    let mut e: Vec<f64> = e.iter().copied().filter(|v| v.is_finite()).collect();
    if e.len() < 2 {
        return None;
    }
    e.sort_by(f64::total_cmp);
    let q = |p: f64| e[((e.len() - 1) as f64 * p) as usize];
    let (lo, hi) = (q(0.02), q(0.98).max(q(0.02) + 1e-6));
    Some(EnergyScale { lo, hi, top: hi })
}

/// A map of the target density exp(−E) over the system's box (grey-scale, a square root lifting
/// faint modes into view), with contour lines of the energy every 1 kT up to 8 kT above its
/// minimum. Returns the box's size and the image.
fn density_image(info: &RunInfo, plane: ([f64; 2], [f64; 2])) -> (Vec2, Image) {
    const N: usize = 200;
    let ([x0, x1], [y0, y1]) = plane;
    let energy = info.scene.energy();
    let mut xs = Vec::with_capacity(N * N * 2);
    for r in 0..N {
        for c in 0..N {
            let x = x0 + (c as f64 + 0.5) * (x1 - x0) / N as f64;
            let y = y1 - (r as f64 + 0.5) * (y1 - y0) / N as f64;
            xs.extend([x as f32, y as f32]);
        }
    }
    let e = energy.batch_energy(&xs);
    let emin = e
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    let level = |v: f64| {
        if v.is_finite() {
            ((v - emin).floor() as i64).min(9)
        } else {
            9
        }
    };
    let mut data = Vec::with_capacity(N * N * 4);
    for (k, &v) in e.iter().enumerate() {
        let (r, c) = (k / N, k % N);
        let p = if v.is_finite() {
            (-(v - emin)).exp()
        } else {
            0.0
        };
        let mut s = (0.12 + 0.6 * p.sqrt()) as f32;
        // A contour where the level changes towards the right or lower neighbour.
        let here = level(v);
        let edge = (c + 1 < N && level(e[k + 1]) != here) || (r + 1 < N && level(e[k + N]) != here);
        if edge && here < 9 {
            s = (s + 0.22).min(1.0);
        }
        data.extend([(s * 255.0) as u8, (s * 230.0) as u8, (s * 200.0) as u8, 255]);
    }
    let image = Image::new(
        Extent3d {
            width: N as u32,
            height: N as u32,
            depth_or_array_layers: 1,
        },
        TextureDimension::D2,
        data,
        TextureFormat::Rgba8UnormSrgb,
        RenderAssetUsages::default(),
    );
    (Vec2::new((x1 - x0) as f32, (y1 - y0) as f32), image)
}

fn animate(
    time: Res<Time>,
    mut settings: ResMut<ViewSettings>,
    mut redraw: MessageWriter<RequestRedraw>,
) {
    if settings.animate && settings.show == Show::Trajectory {
        let step = time.delta_secs().min(0.1) / settings.animate_seconds.max(0.5);
        settings.time = (settings.time + step) % 1.0;
        // The app redraws only on input or new data; an animation needs every frame.
        redraw.write(RequestRedraw);
    }
}

/// Centre of grid cell `cell` of a g × g grid with the given spacing (first cell top left).
pub(super) fn cell_center(cell: usize, g: usize, spacing: f32) -> Vec3 {
    let (r, c) = ((cell / g) as f32, (cell % g) as f32);
    let half = (g as f32 - 1.0) / 2.0;
    Vec3::new((c - half) * spacing, (half - r) * spacing, 0.0)
}

/// The positions of sample `k` of `x` (row-major, `layout`), 2-D systems on z = 0.
fn positions(x: &[f32], k: usize, layout: Layout) -> impl Iterator<Item = Vec3> + '_ {
    let (n, d) = (layout.particles, layout.spatial_dim);
    let row = &x[k * n * d..(k + 1) * n * d];
    (0..n).map(move |i| {
        let p = &row[i * d..(i + 1) * d];
        Vec3::new(
            p[0],
            if d > 1 { p[1] } else { 0.0 },
            if d > 2 { p[2] } else { 0.0 },
        )
    })
}

/// The frame of the stored trajectory at the scrubber's time.
pub fn trajectory_frame(traj: &[Vec<f32>], time: f32) -> Option<&[f32]> {
    if traj.is_empty() {
        return None;
    }
    let k = ((time.clamp(0.0, 1.0) * (traj.len() - 1) as f32).round() as usize).min(traj.len() - 1);
    Some(&traj[k])
}

/// Moves and colours the spheres when samples, settings or the scrubber change.
fn place(
    data: Res<RunData>,
    settings: Res<ViewSettings>,
    scale: Res<EnergyScale>,
    placement: Res<Placement>,
    palette: Res<Palette>,
    mut spheres: Query<(
        &Sphere3,
        &mut Transform,
        &mut Visibility,
        &mut MeshMaterial3d<StandardMaterial>,
    )>,
) {
    let Some(info) = &placement.info else { return };
    if !(data.is_changed() || settings.is_changed() || scale.is_changed() || placement.is_changed())
    {
        return;
    }
    let layout = info.layout;
    let g = info.scene.view.grid.max(1);
    let point_cloud = layout.particles == 1;
    let scale_mat = |u: f64| {
        palette.energy[(u.clamp(0.0, 1.0) * (SCALE_STEPS - 1) as f64).round() as usize].clone()
    };
    let trajectory = settings.show == Show::Trajectory;
    let frame = if trajectory {
        data.trajectory
            .as_deref()
            .and_then(|t| trajectory_frame(t, settings.time))
    } else {
        None
    };
    for (s, mut t, mut vis, mut mat) in &mut spheres {
        let (pos, e) = if trajectory {
            match frame {
                Some(f) if s.cell == 0 && s.lane == 0 => {
                    (positions(f, 0, layout).nth(s.index), f64::NAN)
                }
                _ => (None, f64::NAN),
            }
        } else {
            match data.lane_samples(s.lane) {
                Some(b) if s.cell < b.len() => {
                    // Where the sample sits on the colour scale: by its weight, or its energy.
                    let u = match (settings.color_by, &b.log_weights) {
                        (ColorBy::LogWeight, Some(w)) => {
                            let max = w
                                .iter()
                                .copied()
                                .filter(|v| v.is_finite())
                                .fold(f64::NEG_INFINITY, f64::max);
                            weight_position(w[s.cell], max)
                        }
                        _ => scale.position(b.energies[s.cell]),
                    };
                    (positions(&b.x, s.cell, layout).nth(s.index), u)
                }
                _ => (None, f64::NAN),
            }
        };
        let Some(p) = pos else {
            *vis = Visibility::Hidden;
            continue;
        };
        let offset = match (point_cloud, trajectory) {
            (_, true) => Vec3::ZERO,
            (true, false) => placement.lane_center(s.lane),
            (false, false) => {
                placement.lane_center(s.lane) + cell_center(s.cell, g, placement.spacing)
            }
        };
        let radius = if trajectory && point_cloud {
            placement.radius * 3.0
        } else {
            placement.radius
        };
        *t = Transform::from_translation(offset + (p - placement.origin) * placement.scale)
            .with_scale(Vec3::splat(radius));
        *vis = Visibility::Visible;
        mat.0 = match settings.color_by {
            ColorBy::ParticleIndex => palette.index[s.index % palette.index.len()].clone(),
            ColorBy::Energy | ColorBy::LogWeight if trajectory => {
                palette.index[s.index % palette.index.len()].clone()
            }
            ColorBy::Energy | ColorBy::LogWeight => scale_mat(e),
        };
    }
}

/// Bonds between particles closer than the cutoff, and the GMM path in trajectory mode.
fn bonds(
    data: Res<RunData>,
    settings: Res<ViewSettings>,
    placement: Res<Placement>,
    scale: Res<EnergyScale>,
    projector: Option<Res<super::projector::Projector>>,
    mut gizmos: Gizmos,
) {
    // Light lines on the dark background; dark ones on projector mode's light background.
    let light = projector.is_some_and(|p| p.0);
    let Some(info) = &placement.info else { return };
    let layout = info.layout;
    let color = if light {
        Color::srgba(0.2, 0.2, 0.25, 0.9)
    } else {
        Color::srgba(0.85, 0.85, 0.9, 0.8)
    };
    let molecule = info.scene.system.is_molecule();
    if settings.show == Show::Trajectory && !molecule {
        if let Some(traj) = data.trajectory.as_deref() {
            let upto = ((settings.time.clamp(0.0, 1.0) * (traj.len().max(1) - 1) as f32).round()
                as usize)
                .min(traj.len().saturating_sub(1));
            if layout.particles == 1 {
                gizmos.linestrip(
                    traj[..=upto].iter().map(|f| {
                        (positions(f, 0, layout).next().unwrap_or(Vec3::ZERO) - placement.origin)
                            * placement.scale
                    }),
                    color,
                );
            } else if settings.bonds {
                if let Some(f) = traj.get(upto) {
                    draw_bonds(
                        &mut gizmos,
                        &positions(f, 0, layout).collect::<Vec<_>>(),
                        Vec3::ZERO,
                        settings.bond_cutoff,
                        color,
                    );
                }
            }
        }
        return;
    }
    if (layout.particles < 2 && !molecule) || settings.show == Show::Trajectory {
        return;
    }
    let g = info.scene.view.grid.max(1);
    // Faint cell outlines keep the samples apart while they are still noise and overlap. A
    // molecule's atoms keep their element colours, so its cell frame carries the energy.
    let frame = if light {
        Color::srgba(0.3, 0.32, 0.4, 0.5)
    } else {
        Color::srgba(0.5, 0.55, 0.65, 0.25)
    };
    for lane in 0..placement.lanes.max(1) {
        let at = placement.lane_center(lane);
        let samples = data.lane_samples(lane);
        for cell in 0..placement.cells {
            let size = Vec2::splat(placement.spacing * 0.96);
            let colour = match samples {
                Some(b) if molecule && settings.color_by == ColorBy::Energy && cell < b.len() => {
                    let [r, g, b] = viridis(scale.position(b.energies[cell]) as f32);
                    Color::srgba(r, g, b, 0.9)
                }
                _ => frame,
            };
            gizmos.rect(
                Isometry3d::from_translation(at + cell_center(cell, g, placement.spacing)),
                size,
                colour,
            );
        }
        if !settings.bonds || molecule {
            continue;
        }
        let Some(b) = samples else { continue };
        for cell in 0..placement.cells.min(b.len()) {
            let p: Vec<Vec3> = positions(&b.x, cell, layout).collect();
            draw_bonds(
                &mut gizmos,
                &p,
                at + cell_center(cell, g, placement.spacing),
                settings.bond_cutoff,
                color,
            );
        }
    }
}

/// Colour of off-policy training points (the GFlowNet kind's local-search samples): pink,
/// apart from the energy scale's viridis.
pub const OFF_POLICY_COLOR: [f32; 3] = [1.0, 0.3, 0.8];

/// Small crosses at a plane sampler's off-policy training points, over the density map, so that
/// the data it learns from but did not draw itself can be seen beside its own samples.
fn off_policy_marks(
    data: Res<RunData>,
    settings: Res<ViewSettings>,
    placement: Res<Placement>,
    mut gizmos: Gizmos,
) {
    if placement.plane.is_none() || settings.show == Show::Trajectory {
        return;
    }
    let Some(info) = &placement.info else { return };
    let layout = info.layout;
    let [r, g, b] = OFF_POLICY_COLOR;
    let colour = Color::srgba(r, g, b, 0.6);
    let h = placement.radius * 0.7;
    for lane in 0..placement.lanes.max(1) {
        let Some(x) = data.lane_off_policy(lane) else { continue };
        let at = placement.lane_center(lane) + Vec3::Z * 0.05;
        for k in 0..x.len() / layout.dim().max(1) {
            let Some(p) = positions(x, k, layout).next() else { continue };
            let c = at + (p - placement.origin) * placement.scale;
            gizmos.line(c - Vec3::new(h, h, 0.0), c + Vec3::new(h, h, 0.0), colour);
            gizmos.line(c - Vec3::new(h, -h, 0.0), c + Vec3::new(h, -h, 0.0), colour);
        }
    }
}

fn draw_bonds(gizmos: &mut Gizmos, p: &[Vec3], offset: Vec3, cutoff: f32, color: Color) {
    for i in 0..p.len() {
        for j in (i + 1)..p.len() {
            if p[i].distance(p[j]) < cutoff {
                gizmos.line(offset + p[i], offset + p[j], color);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_map_the_batch_maximum_to_the_top_and_ten_nats_below_to_the_bottom() {
        assert_eq!(weight_position(-3.0, -3.0), 1.0);
        assert_eq!(weight_position(-8.0, -3.0), 0.5);
        assert_eq!(weight_position(-13.0, -3.0), 0.0);
        assert_eq!(weight_position(-40.0, -3.0), 0.0);
        // A zero weight (log −∞) sits at the bottom, not off the scale.
        assert_eq!(weight_position(f64::NEG_INFINITY, -3.0), 0.0);
    }

    #[test]
    fn the_colour_scale_stretches_over_high_samples_and_keeps_the_reference_range() {
        let s = EnergyScale {
            lo: -50.0,
            hi: -30.0,
            top: -30.0,
        };
        assert_eq!(s.position(-40.0), 0.5);
        // Early samples around 1e3…1e8: without the stretch all would sit at 1.
        let early: Vec<f64> = (0..100)
            .map(|k| 10f64.powf(3.0 + 5.0 * k as f64 / 99.0))
            .collect();
        let f = s.fitted_to(&early);
        assert!(f.stretched());
        let (a, b, c) = (f.position(1e3), f.position(1e5), f.position(1e7));
        assert!(
            REFERENCE_SPAN < a && a < b && b < c && c < 1.0,
            "{a} {b} {c}"
        );
        // The reference range keeps its place at the bottom of the scale.
        assert_eq!(f.position(-30.0), REFERENCE_SPAN);
        assert_eq!(f.position(-50.0), 0.0);
        // Samples in the reference's range leave the scale as it was.
        assert!(!s.fitted_to(&[-45.0, -35.0, -29.0]).stretched());
        assert_eq!(f.position(f64::NAN), 1.0);
    }
}
