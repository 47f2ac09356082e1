//! Projector mode (P, or the top bar's button): high-contrast light colours that survive a
//! projector, every size and line width doubled (egui's zoom), and the panels hidden unless a
//! lesson shows them.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, egui};

use super::link::UiAction;

#[derive(Resource, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projector(pub bool);

/// How much larger everything is in projector mode.
pub const ZOOM: f32 = 2.0;

pub fn plugin(app: &mut App) {
    app.init_resource::<Projector>()
        .add_systems(Update, toggle)
        .add_systems(
            bevy_egui::EguiPrimaryContextPass,
            (install_fonts, apply).chain().before(super::panels::ui),
        );
}

/// DejaVu Sans behind egui's own fonts: egui's lack the mathematics lessons and tooltips use
/// (∇, ∝, subscripts such as ₜ), which would otherwise show as empty boxes. The same bundled
/// font `compare.png` is drawn with (assets/fonts/LICENSE-DejaVu.txt): no system font needed.
pub const FALLBACK_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// egui's default fonts with [`FALLBACK_FONT`] last in both families.
pub fn font_definitions() -> egui::FontDefinitions {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert(
        "DejaVuSans".into(),
        std::sync::Arc::new(egui::FontData::from_static(FALLBACK_FONT)),
    );
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        fonts
            .families
            .entry(family)
            .or_default()
            .push("DejaVuSans".into());
    }
    fonts
}

fn install_fonts(mut contexts: EguiContexts, mut done: Local<bool>) -> Result {
    if !*done {
        contexts.ctx_mut()?.set_fonts(font_definitions());
        *done = true;
    }
    Ok(())
}

fn toggle(mut actions: MessageReader<UiAction>, mut p: ResMut<Projector>) {
    for a in actions.read() {
        if *a == UiAction::ToggleProjector {
            p.0 = !p.0;
        }
    }
}

/// The background of the 3D view in each mode.
pub fn clear_color(on: bool) -> Color {
    if on {
        Color::srgb(0.97, 0.97, 0.95)
    } else {
        Color::srgb(0.08, 0.09, 0.11)
    }
}

fn apply(
    mut contexts: EguiContexts,
    p: Res<Projector>,
    mut clear: ResMut<ClearColor>,
    mut done: Local<Option<bool>>,
) -> Result {
    if *done == Some(p.0) {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    if p.0 {
        let mut v = egui::Visuals::light();
        v.override_text_color = Some(egui::Color32::BLACK);
        v.widgets.noninteractive.fg_stroke.color = egui::Color32::BLACK;
        v.widgets.noninteractive.bg_stroke = egui::Stroke::new(1.5, egui::Color32::from_gray(80));
        v.panel_fill = egui::Color32::WHITE;
        v.window_fill = egui::Color32::WHITE;
        ctx.set_visuals(v);
        ctx.set_zoom_factor(ZOOM);
    } else {
        ctx.set_visuals(egui::Visuals::dark());
        ctx.set_zoom_factor(1.0);
    }
    clear.0 = clear_color(p.0);
    *done = Some(p.0);
    Ok(())
}
