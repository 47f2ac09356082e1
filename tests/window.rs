//! The app in a real window: under Xvfb (Mesa's software Vulkan), `app SCENE --screenshot OUT
//! --after-steps N` must train, save a PNG of the whole window and exit 0 by closing the window.
//! Needs `xvfb-run` (Debian: xvfb mesa-vulkan-drivers libvulkan1; `.ci/run` installs them).

#![cfg(feature = "app")]

mod common;

use std::process::Command;

fn screenshot(scene: &str, steps: u64) -> image::RgbImage {
    shot(scene, &["--after-steps", &steps.to_string()])
}

fn shot(scene: &str, extra: &[&str]) -> image::RgbImage {
    // The close happens while the worker is paused here; tests/worker.rs stops it mid-training.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shot.png");
    let out = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1600x900x24", env!("CARGO_BIN_EXE_boltzmann-studio"), "app", scene, "--screenshot"])
        .arg(&png)
        .args(extra)
        .current_dir(common::repo("."))
        .output()
        .expect("xvfb-run must be installed for the window test (apt-get install xvfb mesa-vulkan-drivers libvulkan1)");
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert!(
        out.status.success(),
        "app exited with {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // "window closed: exited N ms after the close request, worker joined": the trainer must not
    // hold the exit up (the requirement is 2 s; measured 0.1-0.6 s here).
    let ms: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("window closed: exited "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the run ends by closing the window: {stdout}"));
    assert!(
        ms < 2000.0,
        "{scene}: exit took {ms} ms after the close request"
    );
    image::open(&png).expect("a readable PNG").to_rgb8()
}

/// A real picture: the window's size, many colours, and a 3D view that is not empty.
fn check(img: &image::RgbImage, scene: &str) {
    assert_eq!(
        (img.width(), img.height()),
        (1600, 900),
        "{scene}: window size"
    );
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels() {
        colours.insert(p.0);
    }
    assert!(
        colours.len() > 500,
        "{scene}: only {} distinct colours: a flat or blank picture",
        colours.len()
    );
    // The middle of the window is the 3D view: spheres must be there, not only background.
    let mut middle = std::collections::HashSet::new();
    for y in 200..700 {
        for x in 500..1100 {
            middle.insert(img.get_pixel(x, y).0);
        }
    }
    assert!(
        middle.len() > 50,
        "{scene}: the 3D view shows {} colours: nothing drawn",
        middle.len()
    );
}

#[test]
fn window_screenshots_of_dw4_and_lj13() {
    for (scene, steps) in [("scenes/dw4.ron", 60), ("scenes/lj13.ron", 10)] {
        let img = screenshot(scene, steps);
        check(&img, scene);
    }
}

/// The race view: DW-4 with Adjoint Sampling against MCMC, trained to 5 000 energy evaluations
/// each (MCMC's first batch of chain states comes after ≈ 16 000), side by side, with energy
/// evaluations priced at 1 ms (the race plot on its cost axis). Both lanes' blocks of samples must be drawn: the left and right halves of
/// the 3D view both hold spheres.
#[test]
fn window_screenshot_of_a_race() {
    let img = shot(
        "scenes/dw4.ron",
        &[
            "--race",
            "adjoint,mcmc",
            "--after-evals",
            "5000",
            "--energy-ms",
            "1",
        ],
    );
    check(&img, "race");
    for (name, xs) in [("left lane", 330..800), ("right lane", 800..1130)] {
        let mut colours = std::collections::HashSet::new();
        for y in 250..650 {
            for x in xs.clone() {
                colours.insert(img.get_pixel(x, y).0);
            }
        }
        assert!(
            colours.len() > 30,
            "race: the {name} shows {} colours: nothing drawn",
            colours.len()
        );
    }
}

/// A molecule drawn ball-and-stick: alanine dipeptide after a few hundred steps. Besides the
/// general checks, the 3D view must hold oxygen red and nitrogen blue (element colours of the
/// balls), which the former point view of the torsions never drew.
#[test]
fn window_screenshot_of_alanine_dipeptide() {
    let img = screenshot("scenes/alanine_dipeptide.ron", 200);
    check(&img, "alanine dipeptide");
    let (mut red, mut blue) = (0, 0);
    for y in 150..750 {
        for x in 400..1150 {
            let [r, g, b] = img.get_pixel(x, y).0.map(i32::from);
            // Lit and shaded spheres vary; "red" and "blue" are clearly dominant channels.
            if r > 150 && g < 90 && b < 90 {
                red += 1;
            }
            if b > 150 && r < 110 && g < 130 {
                blue += 1;
            }
        }
    }
    // Nine molecules with three O and two N each: thousands of pixels; 200 is far below that and
    // far above stray antialiasing.
    assert!(
        red > 200 && blue > 200,
        "alanine dipeptide: {red} red and {blue} blue pixels in the 3D view: no atoms drawn"
    );
}

/// Renders the one step of a small lesson with `lesson FILE --screenshot-steps DIR` (adding
/// `extra` flags) and returns the picture.
fn lesson_shot(extra: &[&str]) -> image::RgbImage {
    // Next to the scenes, so that the lesson's relative scene path resolves.
    let dir = tempfile::tempdir_in(common::repo("lessons")).unwrap();
    let lesson = dir.path().join("one.ron");
    std::fs::write(
        &lesson,
        r#"Lesson(title: "Window test", steps: [(
            scene: "../../scenes/double_well_2d.ron",
            play: false,
            panels: [View, Legend],
            caption: "A caption that a class at the back of the room must read: **large**, high contrast.",
        )])"#,
    )
    .unwrap();
    let out_dir = dir.path().join("shots");
    let out = Command::new("xvfb-run")
        .args([
            "-a",
            "-s",
            "-screen 0 1600x900x24",
            env!("CARGO_BIN_EXE_boltzmann-studio"),
            "lesson",
        ])
        .arg(&lesson)
        .arg("--screenshot-steps")
        .arg(&out_dir)
        .args(extra)
        .current_dir(common::repo("."))
        .output()
        .expect("xvfb-run runs");
    let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
    assert!(
        out.status.success(),
        "lesson exited with {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("lesson pictures: 1"), "{stdout}");
    image::open(out_dir.join("step-01.png"))
        .expect("a readable PNG")
        .to_rgb8()
}

/// The caption box (found by its own fill colour) and, inside it, the height in pixels of the
/// tallest run of rows holding text or buttons: a line of text.
fn caption_text_height(img: &image::RgbImage, fill: [u8; 3]) -> (u32, u32) {
    let is_fill = |p: &image::Rgb<u8>| p.0.iter().zip(fill).all(|(a, b)| a.abs_diff(b) <= 2);
    let rows: Vec<u32> = (0..img.height())
        .filter(|&y| {
            (0..img.width())
                .filter(|&x| is_fill(img.get_pixel(x, y)))
                .count()
                >= 200
        })
        .collect();
    let cols: Vec<u32> = (0..img.width())
        .filter(|&x| {
            (0..img.height())
                .filter(|&y| is_fill(img.get_pixel(x, y)))
                .count()
                >= 30
        })
        .collect();
    let (Some(&top), Some(&bottom), Some(&left), Some(&right)) =
        (rows.first(), rows.last(), cols.first(), cols.last())
    else {
        return (0, 0);
    };
    let text_row = |y: u32| {
        (left + 4..right.saturating_sub(4)).any(|x| {
            img.get_pixel(x, y)
                .0
                .iter()
                .zip(fill)
                .map(|(a, b)| a.abs_diff(b) as u32)
                .sum::<u32>()
                > 150
        })
    };
    let (mut best, mut run) = (0, 0);
    for y in top + 4..bottom.saturating_sub(4) {
        run = if text_row(y) { run + 1 } else { 0 };
        best = best.max(run);
    }
    (bottom - top + 1, best)
}

/// Projector mode: the lesson caption is there in both modes, and its text is about twice as
/// tall in projector mode (at least 1.6 times: egui's zoom is 2, glyph rasterisation rounds).
#[test]
fn window_lesson_caption_in_projector_mode_is_twice_as_large() {
    use boltzmann_studio::app::lesson_view::{CAPTION_FILL, CAPTION_FILL_PROJECTOR};
    let normal = lesson_shot(&[]);
    check(&normal, "lesson step");
    let (box_n, text_n) =
        caption_text_height(&normal, CAPTION_FILL.to_array()[..3].try_into().unwrap());
    let projector = lesson_shot(&["--projector"]);
    check(&projector, "lesson step, projector mode");
    let (box_p, text_p) = caption_text_height(
        &projector,
        CAPTION_FILL_PROJECTOR.to_array()[..3].try_into().unwrap(),
    );
    println!(
        "caption box {box_n} px, text line {text_n} px; projector: box {box_p} px, text line {text_p} px"
    );
    assert!(
        box_n >= 40 && text_n >= 8,
        "normal mode: no caption found (box {box_n} px, text {text_n} px)"
    );
    assert!(
        box_p >= 80,
        "projector mode: no caption found (box {box_p} px)"
    );
    assert!(
        text_p as f64 >= 1.6 * text_n as f64,
        "projector text {text_p} px is not about twice {text_n} px"
    );
    // High contrast: the projector picture is mostly light.
    let light = projector
        .pixels()
        .filter(|p| p.0.iter().map(|&c| c as u32).sum::<u32>() > 600)
        .count();
    assert!(
        light as f64 > 0.3 * (1600.0 * 900.0),
        "projector mode is light: {light} light pixels"
    );
}

/// A saved session opens in the window like a scene (`app SESSION`), in its projector mode.
#[test]
fn window_opens_a_saved_session() {
    use boltzmann_studio::session::Session;
    let path = common::repo("scenes/double_well_2d.ron");
    let scene = boltzmann_studio::scene::Scene::load(&path).unwrap();
    let mut s = Session::new(&scene, &path);
    s.projector = true;
    s.view.field = Some(true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.ron");
    s.save(&file).unwrap();
    let img = shot(file.to_str().unwrap(), &["--after-steps", "50"]);
    check(&img, "a session");
    let light = img
        .pixels()
        .filter(|p| p.0.iter().map(|&c| c as u32).sum::<u32>() > 600)
        .count();
    assert!(
        light as f64 > 0.3 * (1600.0 * 900.0),
        "the session's projector mode is on: {light} light pixels"
    );
}

/// Found by a hostile user (issue 17): a scripted run whose scene cannot start (its reference
/// file is missing) said so in the status bar and never exited. Now it ends with exit 1 and the
/// reason on stderr, well inside the 120 s it is given here.
#[test]
fn window_scripted_run_that_cannot_start_exits_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.ron");
    let text = std::fs::read_to_string(common::repo("scenes/dw4.ron"))
        .unwrap()
        .replace("../assets/reference/dw4.npy", "missing.npy");
    assert!(text.contains("missing.npy"));
    std::fs::write(&scene, text).unwrap();
    let png = dir.path().join("shot.png");
    let start = std::time::Instant::now();
    let out = Command::new("timeout")
        .args([
            "-s",
            "KILL",
            "120",
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1600x900x24",
            env!("CARGO_BIN_EXE_boltzmann-studio"),
            "app",
        ])
        .arg(&scene)
        .arg("--screenshot")
        .arg(&png)
        .args(["--after-steps", "5"])
        .current_dir(common::repo("."))
        .output()
        .expect("timeout and xvfb-run run");
    let err = common::stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status after {:.0?}; stderr:\n{}",
        start.elapsed(),
        common::excerpt(&err)
    );
    assert!(
        err.contains("boltzmann-studio: error:") && err.contains("missing.npy"),
        "{}",
        common::excerpt(&err)
    );
    assert!(!png.exists(), "no picture of a run that never started");
}

/// Ctrl-C or SIGTERM in the terminal closes the window as a user would: the frame report is
/// printed, the process says why it ended and exits 130. Before, Bevy's exit code 130 came out
/// as "the app stopped with an error (code 130); see the messages above", exit 1. The app is
/// started with SIGINT ignored, as a background job of a script starts: Bevy's own handler then
/// stood aside, and SIGTERM killed the app without its report (exit 143, seen in the soak).
#[test]
fn window_closes_on_sigterm_with_the_report() {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new("sh")
        .args(["-c", "trap '' INT; exec xvfb-run \"$@\"", "sh"])
        .args([
            "-a",
            "-s",
            "-screen 0 1600x900x24",
            env!("CARGO_BIN_EXE_boltzmann-studio"),
            "app",
            "scenes/dw4.ron",
            "--report",
        ])
        .current_dir(common::repo("."))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("xvfb-run runs");
    // Bevy logs the window's creation after its Ctrl-C handler is installed: signal after that.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Creating new window") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let opened = rx.recv_timeout(std::time::Duration::from_secs(120)).is_ok();
    let signalled = opened
        && Command::new("pkill")
            .args([
                "-TERM",
                "-x",
                "-P",
                &child.id().to_string(),
                "boltzmann-studi",
            ])
            .status()
            .is_ok_and(|s| s.success());
    if !signalled {
        let _ = child.kill();
    }
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let err = reader.join().unwrap();
    assert!(
        opened && signalled,
        "the window never opened (or the app was gone): {}",
        common::excerpt(&err)
    );
    assert_eq!(
        status.code(),
        Some(130),
        "exit after SIGTERM ({:.1?}); stderr:\n{}",
        start.elapsed(),
        common::excerpt(&err)
    );
    assert!(
        err.contains("interrupted: window closed"),
        "{}",
        common::excerpt(&err)
    );
    assert!(
        out.contains("report: training running:"),
        "the frame report is printed on the way out: {out}"
    );
}
