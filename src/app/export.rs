//! Keeping results: samples to extended XYZ / .npy, metrics to CSV, PNG screenshots, and the
//! scripted `--screenshot OUT --after-steps N` run that the window test uses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::run::Budget;

use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured};
use bevy::window::{PrimaryWindow, RequestRedraw, WindowCloseRequested};

use super::link::{Link, RunData, UiAction};
use crate::io::Matrix;
use crate::io::csv::CsvWriter;
use crate::worker::Command;

pub fn plugin(app: &mut App) {
    app.add_systems(Update, (export, screenshot_on_request));
}

/// Writes the current samples (.xyz or .npy by extension).
pub fn write_samples(data: &RunData, path: &Path) -> crate::Result<()> {
    let (Some(info), Some(b)) = (&data.info, &data.samples) else {
        return Err(crate::Error::Invalid(
            "no samples yet: press play first".into(),
        ));
    };
    create_parent(path)?;
    let m = Matrix::new(b.len(), b.layout.dim(), b.x.clone());
    let energy = info.scene.energy();
    crate::io::write_samples(
        path,
        energy.as_ref(),
        info.scene.system.species(),
        &m,
        Some(&b.energies),
    )
}

/// Writes the loss and metric history: one row per loss point, metrics where evaluated.
pub fn write_metrics(data: &RunData, path: &Path) -> crate::Result<()> {
    let Some(info) = &data.info else {
        return Err(crate::Error::Invalid("no run yet".into()));
    };
    let family = info.family;
    create_parent(path)?;
    // train's metrics.csv columns; the app keeps no iteration per loss point, so that one is empty.
    let columns = crate::run::log_columns(family);
    let mut csv = CsvWriter::create(path, &columns)?;
    let row = |step: f64, loss: Option<f64>, m: Option<&crate::worker::MetricPoint>| {
        let mut r = vec![
            Some(step),
            None,
            m.map(|m| m.wall_seconds),
            loss,
            m.map(|m| m.energy_evals as f64),
        ];
        match m {
            Some(m) => {
                r.extend(m.metrics.iter().map(|(_, v)| v));
                r.extend([Some(m.ess), Some(m.n as f64)]);
            }
            None => r.resize(columns.len(), None),
        }
        r
    };
    let mut metrics = data.metrics.iter().peekable();
    for p in &data.losses {
        let m = metrics.next_if(|m| (m.step as f64) <= p[0]);
        csv.row(&row(p[0], Some(p[1]), m))?;
    }
    for m in metrics {
        csv.row(&row(m.step as f64, None, Some(m)))?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> crate::Result<()> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => {
            std::fs::create_dir_all(d).map_err(|e| crate::Error::io(d, e))
        }
        _ => Ok(()),
    }
}

fn shown(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn export(mut actions: MessageReader<UiAction>, mut data: ResMut<RunData>) {
    for a in actions.read() {
        let (result, path, what) = match a {
            UiAction::ExportSamples(p) => (write_samples(&data, p), p, "samples"),
            UiAction::ExportMetrics(p) => (write_metrics(&data, p), p, "metrics"),
            _ => continue,
        };
        match result {
            Ok(()) => data.notice(false, format!("{what} written to {}", shown(path))),
            Err(e) => data.notice(true, format!("cannot write {what}: {e}")),
        }
    }
}

/// Saves a PNG of the whole window; `then_exit` ends the app once it is on disk.
pub fn take_screenshot(commands: &mut Commands, path: PathBuf, then_exit: bool) {
    commands.spawn(Screenshot::primary_window()).observe(
        move |shot: On<ScreenshotCaptured>,
              mut data: ResMut<RunData>,
              mut exit: MessageWriter<AppExit>,
              mut commands: Commands,
              link: Res<Link>| {
            let result = create_parent(&path)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let img = shot
                        .image
                        .clone()
                        .try_into_dynamic()
                        .map_err(|e| e.to_string())?;
                    img.to_rgb8().save(&path).map_err(|e| e.to_string())
                });
            match result {
                Ok(()) => data.notice(false, format!("screenshot written to {}", shown(&path))),
                Err(e) => data.notice(
                    true,
                    format!("cannot write the screenshot {}: {e}", path.display()),
                ),
            }
            if then_exit {
                if data.notices.last().is_some_and(|n| n.error) {
                    exit.write(AppExit::error());
                } else {
                    // Leave the way a user does, by closing the window, and with training running
                    // again, so that the exit path is tested where it is hardest.
                    link.0.send(Command::Play);
                    commands.insert_resource(CloseRequested(Instant::now() + CLOSE_DELAY));
                }
            }
        },
    );
}

fn screenshot_on_request(mut actions: MessageReader<UiAction>, mut commands: Commands) {
    for a in actions.read() {
        if let UiAction::Screenshot(p) = a {
            take_screenshot(&mut commands, p.clone(), false);
        }
    }
}

/// The scripted run: play until `after_steps` gradient steps, pause, let the panels catch up
/// (for `hold` seconds, at least a few frames), save the window to `path`, then close the window
/// the way a user would.
#[derive(Resource)]
pub struct Scripted {
    pub path: PathBuf,
    /// Training stops once every lane has used it up (the driver's budget type).
    pub until: Budget,
    pub hold: Duration,
    stage: Stage,
}

#[derive(PartialEq, Debug)]
enum Stage {
    Start,
    Training,
    /// Paused; frames left to draw and the earliest time of the capture.
    Settling(u32, Instant),
    Capturing,
}

impl Scripted {
    pub fn new(path: PathBuf, until: Budget, hold: Duration) -> Self {
        Self {
            path,
            until,
            hold,
            stage: Stage::Start,
        }
    }

    /// Whether training has gone far enough (and there is something to show).
    fn reached(&self, data: &RunData) -> bool {
        let shown = if data.racing() {
            data.lanes.iter().all(|l| l.samples.is_some())
        } else {
            data.samples.is_some()
        };
        // A kind that takes no gradient steps (MCMC) counts its blocks of sweeps as steps.
        let reached =
            |kind: crate::sampler::SamplerKind, c: &crate::sampler::Counters| match self.until {
                Budget::GradientSteps(n) if !kind.learns() => c.outer_iterations >= n,
                b => b.reached(c, Duration::ZERO),
            };
        // A race's energy evaluations count for every lane (the budget it shares); its steps
        // are the first lane's (an MCMC lane's blocks of sweeps cost thousands of evaluations).
        shown
            && match self.until {
                Budget::EnergyEvals(_) if data.racing() => {
                    data.lanes.iter().all(|l| reached(l.kind, &l.counters))
                }
                _ => reached(data.kind, &data.counters),
            }
    }
}

/// Set when the scripted run ended on an error it has printed: the process exits 1 with that
/// line alone.
pub static REASON_GIVEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Frames drawn before the scripted picture at the earliest.
const FIRST_FRAMES: u32 = 30;

/// When the scripted run closes the window (the exit time is measured from here).
#[derive(Resource, Clone, Copy)]
pub struct CloseRequested(pub Instant);

/// Training runs again this long before the scripted close, so that the close meets a busy worker.
const CLOSE_DELAY: Duration = Duration::from_millis(1500);

/// The same instant, readable after Bevy's runner has consumed the app.
pub static CLOSE_REQUESTED_AT: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

pub fn scripted_plugin(app: &mut App) {
    app.add_systems(Update, (scripted, close_window));
}

/// Sends the close request a window manager sends when the user clicks the close button.
pub fn close_window(
    flag: Option<Res<CloseRequested>>,
    window: Query<Entity, With<PrimaryWindow>>,
    mut close: MessageWriter<WindowCloseRequested>,
    mut redraw: MessageWriter<RequestRedraw>,
    mut sent: Local<bool>,
) {
    let Some(f) = flag else { return };
    if Instant::now() < f.0 {
        redraw.write(RequestRedraw);
        return;
    }
    if !*sent {
        let _ = CLOSE_REQUESTED_AT.set(Instant::now());
        for w in &window {
            close.write(WindowCloseRequested { window: w });
        }
        *sent = true;
    }
}

fn scripted(
    mut s: ResMut<Scripted>,
    data: Res<RunData>,
    link: Res<Link>,
    mut commands: Commands,
    mut redraw: MessageWriter<RequestRedraw>,
    mut exit: MessageWriter<AppExit>,
    mut frames: Local<u32>,
) {
    // A run that cannot start (a missing reference file) or stops on an error will never reach
    // its goal: say why, as the command line would, and end instead of waiting for ever.
    let stuck = match s.stage {
        Stage::Start => data.info.is_none(),
        Stage::Training => !data.running,
        _ => false,
    };
    if stuck {
        if let Some(n) = data.notices.iter().rev().find(|n| n.error) {
            eprintln!("boltzmann-studio: error: {}", n.text);
            REASON_GIVEN.store(true, std::sync::atomic::Ordering::SeqCst);
            exit.write(AppExit::error());
            s.stage = Stage::Capturing;
            return;
        }
    }
    // The renderer's first frames are black: a run that trains its steps in a second (a plane
    // system) must not be pictured before it has drawn anything.
    *frames += 1;
    if *frames < FIRST_FRAMES {
        redraw.write(RequestRedraw);
    }
    match s.stage {
        Stage::Start if data.info.is_some() => {
            link.0.send(Command::Play);
            s.stage = Stage::Training;
        }
        Stage::Training if s.reached(&data) => {
            link.0.send(Command::Pause);
            s.stage = Stage::Settling(5, Instant::now() + s.hold);
        }
        Stage::Settling(n, until) if !data.running => {
            if n == 0 && Instant::now() >= until && *frames >= FIRST_FRAMES {
                take_screenshot(&mut commands, s.path.clone(), true);
                s.stage = Stage::Capturing;
            } else {
                s.stage = Stage::Settling(n.saturating_sub(1), until);
            }
        }
        _ => {}
    }
    if matches!(s.stage, Stage::Settling(..) | Stage::Capturing) {
        // Nothing else wakes a paused app; the capture needs frames.
        redraw.write(RequestRedraw);
    }
}

/// Frame times (training running and paused) and training throughput, printed on exit with
/// `--report`. A frame's time is the interval between consecutive frames, so it is meaningful
/// with `--continuous`; in the default reactive mode it includes the idle waits.
#[derive(Resource, Default)]
pub struct FrameReport {
    running: Vec<f64>,
    paused: Vec<f64>,
    last: Option<Instant>,
    start: Option<(Instant, u64)>,
    end: Option<(Instant, u64)>,
}

pub fn report_plugin(app: &mut App) {
    app.init_resource::<FrameReport>()
        .add_systems(Last, record_frame)
        .add_systems(PostUpdate, print_report_on_exit);
}

fn record_frame(mut r: ResMut<FrameReport>, data: Res<RunData>) {
    let now = Instant::now();
    if let Some(t) = r.last {
        let ms = (now - t).as_secs_f64() * 1e3;
        if data.running {
            r.running.push(ms)
        } else {
            r.paused.push(ms)
        }
    }
    r.last = Some(now);
    if data.running {
        if r.start.is_none() {
            r.start = Some((now, data.counters.gradient_steps));
        }
        r.end = Some((now, data.counters.gradient_steps));
    }
}

fn quantiles(v: &[f64]) -> String {
    let mut f = v.to_vec();
    f.sort_by(f64::total_cmp);
    let q = |p: f64| f[((f.len() - 1) as f64 * p) as usize];
    // A stall is a frame that took over a second: the window looks frozen.
    let stalls = f.iter().filter(|&&ms| ms > 1000.0).count();
    if f.is_empty() {
        "no frames".into()
    } else {
        format!(
            "{} frames, median {:.1} ms, p95 {:.1} ms, max {:.1} ms, {stalls} over 1 s",
            f.len(),
            q(0.5),
            q(0.95),
            f[f.len() - 1]
        )
    }
}

fn print_report_on_exit(
    mut exits: MessageReader<AppExit>,
    mut closes: MessageReader<WindowCloseRequested>,
    r: Res<FrameReport>,
) {
    if exits.read().next().is_none() && closes.read().next().is_none() {
        return;
    }
    let rate = match (r.start, r.end) {
        (Some((t0, s0)), Some((t1, s1))) if t1 > t0 => format!(
            "{:.2} gradient steps/s ({} steps in {:.1} s)",
            (s1 - s0) as f64 / (t1 - t0).as_secs_f64(),
            s1 - s0,
            (t1 - t0).as_secs_f64()
        ),
        _ => "no training".into(),
    };
    println!(
        "report: training running: {}; paused: {}; throughput with the window open: {rate}",
        quantiles(&r.running),
        quantiles(&r.paused)
    );
}
