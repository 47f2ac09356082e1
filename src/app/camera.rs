//! Orbit camera: left-drag orbits, right/middle-drag pans, the wheel zooms, double-click or F
//! frames the view. Mouse input is ignored while the pointer is over a panel.

use std::time::{Duration, Instant};

use bevy::camera::CameraOutputMode;
use bevy::camera::visibility::RenderLayers;
use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::render::render_resource::BlendState;
use bevy_egui::input::egui_wants_any_pointer_input;
use bevy_egui::{EguiGlobalSettings, PrimaryEguiContext};

use super::link::UiAction;

/// Where the camera looks from: spherical coordinates around a focus point.
#[derive(Component, Debug, Clone, Copy)]
pub struct Orbit {
    pub focus: Vec3,
    pub radius: f32,
    /// Rotation about the vertical axis and elevation, radians.
    pub yaw: f32,
    pub pitch: f32,
}

/// The view that F and double-click return to (set by the particle view for each scene): the
/// camera distance is chosen so that a square of half-width `extent` fits the viewport.
#[derive(Resource, Debug, Clone, Copy)]
pub struct HomeView {
    pub focus: Vec3,
    pub extent: f32,
    pub yaw: f32,
    pub pitch: f32,
}

impl Default for HomeView {
    fn default() -> Self {
        Self {
            focus: Vec3::ZERO,
            extent: 10.0,
            yaw: 0.0,
            pitch: 0.0,
        }
    }
}

impl HomeView {
    /// The orbit that frames the content in a viewport of the given aspect (width / height);
    /// the vertical field of view is Bevy's default π/4.
    pub fn orbit(&self, aspect: f32) -> Orbit {
        let tan = (std::f32::consts::FRAC_PI_4 / 2.0).tan() * aspect.clamp(0.2, 1.0);
        Orbit {
            focus: self.focus,
            radius: 1.1 * self.extent / tan + self.extent,
            yaw: self.yaw,
            pitch: self.pitch,
        }
    }
}

fn aspect(camera: &Camera) -> f32 {
    camera
        .logical_viewport_size()
        .map(|s| s.x / s.y.max(1.0))
        .unwrap_or(16.0 / 9.0)
}

impl Orbit {
    pub fn transform(&self) -> Transform {
        let dir = Vec3::new(
            self.pitch.cos() * self.yaw.sin(),
            self.pitch.sin(),
            self.pitch.cos() * self.yaw.cos(),
        );
        Transform::from_translation(self.focus + dir * self.radius).looking_at(self.focus, Vec3::Y)
    }
}

pub fn plugin(app: &mut App) {
    app.init_resource::<HomeView>()
        .add_systems(Startup, spawn)
        .add_systems(
            Update,
            (
                mouse.run_if(not(egui_wants_any_pointer_input)),
                frame_on_request,
                apply,
            )
                .chain(),
        );
}

fn spawn(
    mut commands: Commands,
    home: Res<HomeView>,
    mut egui_settings: ResMut<EguiGlobalSettings>,
) {
    // egui gets its own camera over the whole window; the 3D camera's viewport is the space the
    // panels leave free (with one camera, egui would shrink into that viewport too).
    egui_settings.auto_create_primary_context = false;
    commands.spawn((
        PrimaryEguiContext,
        Camera2d,
        Msaa::Off,
        RenderLayers::none(),
        Camera {
            order: 1,
            output_mode: CameraOutputMode::Write {
                blend_state: Some(BlendState::ALPHA_BLENDING),
                clear_color: ClearColorConfig::None,
            },
            clear_color: ClearColorConfig::Custom(Color::NONE),
            ..default()
        },
    ));
    commands.spawn((
        Camera3d::default(),
        // Multisampling quadruples the fragment work of software rendering (llvmpipe), which
        // shares the CPU with the trainer; spheres read fine without it.
        Msaa::Off,
        home.orbit(16.0 / 9.0),
        home.orbit(16.0 / 9.0).transform(),
        // Lit from the camera side so that the spheres' shading reads as depth.
        children![(
            DirectionalLight {
                illuminance: 4000.0,
                ..default()
            },
            Transform::from_xyz(0.3, 0.5, 1.0).looking_at(Vec3::ZERO, Vec3::Y)
        )],
    ));
    commands.insert_resource(GlobalAmbientLight {
        brightness: 600.0,
        ..default()
    });
}

fn mouse(
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    camera: Single<(&mut Orbit, &Camera)>,
    home: Res<HomeView>,
    mut last_click: Local<Option<Instant>>,
) {
    let (mut orbit, cam) = camera.into_inner();
    let d = motion.delta;
    if buttons.pressed(MouseButton::Left) && d != Vec2::ZERO {
        orbit.yaw -= d.x * 0.008;
        orbit.pitch = (orbit.pitch + d.y * 0.008).clamp(-1.5, 1.5);
    }
    if (buttons.pressed(MouseButton::Right) || buttons.pressed(MouseButton::Middle))
        && d != Vec2::ZERO
    {
        let t = orbit.transform();
        let scale = orbit.radius * 0.0015;
        let shift = (-t.right() * d.x + t.up() * d.y) * scale;
        orbit.focus += shift;
    }
    let lines = match scroll.unit {
        MouseScrollUnit::Line => scroll.delta.y,
        MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
    };
    if lines != 0.0 {
        orbit.radius = (orbit.radius * (1.0 - 0.1 * lines)).clamp(0.5, 2000.0);
    }
    if buttons.just_pressed(MouseButton::Left) {
        let now = Instant::now();
        if last_click.is_some_and(|t| now - t < Duration::from_millis(350)) {
            *orbit = home.orbit(aspect(cam));
        }
        *last_click = Some(now);
    }
}

/// F, a new scene, or a viewport change the first time it is known frames the view.
fn frame_on_request(
    mut actions: MessageReader<UiAction>,
    home: Res<HomeView>,
    camera: Single<(&mut Orbit, &Camera)>,
    mut last_aspect: Local<f32>,
) {
    let (mut orbit, cam) = camera.into_inner();
    let a = aspect(cam);
    let framed = actions.read().any(|a| *a == UiAction::FrameView);
    let resized = (a - *last_aspect).abs() > 0.05 && *last_aspect == 0.0;
    if framed || home.is_changed() || resized {
        *orbit = home.orbit(a);
        *last_aspect = a;
    }
}

fn apply(mut q: Query<(&Orbit, &mut Transform), Changed<Orbit>>) {
    for (o, mut t) in &mut q {
        *t = o.transform();
    }
}
