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
    assert!(out.status.success(), "app exited with {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    // "window closed: exited N ms after the close request, worker joined": the trainer must not
    // hold the exit up (the requirement is 2 s; measured 0.1-0.6 s here).
    let ms: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("window closed: exited "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the run ends by closing the window: {stdout}"));
    assert!(ms < 2000.0, "{scene}: exit took {ms} ms after the close request");
    image::open(&png).expect("a readable PNG").to_rgb8()
}

/// A real picture: the window's size, many colours, and a 3D view that is not empty.
fn check(img: &image::RgbImage, scene: &str) {
    assert_eq!((img.width(), img.height()), (1600, 900), "{scene}: window size");
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels() {
        colours.insert(p.0);
    }
    assert!(colours.len() > 500, "{scene}: only {} distinct colours: a flat or blank picture", colours.len());
    // The middle of the window is the 3D view: spheres must be there, not only background.
    let mut middle = std::collections::HashSet::new();
    for y in 200..700 {
        for x in 500..1100 {
            middle.insert(img.get_pixel(x, y).0);
        }
    }
    assert!(middle.len() > 50, "{scene}: the 3D view shows {} colours: nothing drawn", middle.len());
}

#[test]
fn window_screenshots_of_dw4_and_lj13() {
    for (scene, steps) in [("scenes/dw4.ron", 60), ("scenes/lj13.ron", 10)] {
        let img = screenshot(scene, steps);
        check(&img, scene);
    }
}

/// The race view: DW-4 with Adjoint Sampling against MCMC, trained to 5 000 energy evaluations
/// each (MCMC's first batch of chain states comes after ≈ 16 000), side by side. Both lanes' blocks of samples must be drawn: the left and right halves of
/// the 3D view both hold spheres.
#[test]
fn window_screenshot_of_a_race() {
    let img = shot("scenes/dw4.ron", &["--race", "adjoint,mcmc", "--after-evals", "5000"]);
    check(&img, "race");
    for (name, xs) in [("left lane", 330..800), ("right lane", 800..1130)] {
        let mut colours = std::collections::HashSet::new();
        for y in 250..650 {
            for x in xs.clone() {
                colours.insert(img.get_pixel(x, y).0);
            }
        }
        assert!(colours.len() > 30, "race: the {name} shows {} colours: nothing drawn", colours.len());
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
    assert!(red > 200 && blue > 200, "alanine dipeptide: {red} red and {blue} blue pixels in the 3D view: no atoms drawn");
}
