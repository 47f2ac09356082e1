#![no_main]
//! Scene files: any text gives a value or an error with its position, never a panic. Run from the
//! repository root, so that relative scene and molecule paths resolve as they do for a user.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = boltzmann_studio::scene::Scene::parse(text, std::path::Path::new("scenes/fuzz.ron"));
    }
});
