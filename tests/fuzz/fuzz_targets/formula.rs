#![no_main]
//! Formula text (a scene's `system.energy`): any text gives an energy or an error with its column,
//! never a panic; an accepted formula evaluates, differentiates and takes its Laplacian anywhere
//! (non-finite values are allowed: they are counted as dropped samples downstream).
use boltzmann_studio::energy::{Energy, Formula};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let vars = ["x".to_string(), "y".to_string(), "z".to_string()];
        match Formula::new(text, &vars, 1.0, None) {
            Ok(f) => {
                let mut g = [0.0; 3];
                for x in [[0.0, 0.0, 0.0], [1.5, -2.0, 0.25], [-1e3, 1e-3, 7.0]] {
                    let _ = f.energy_grad(&x, &mut g);
                    let _ = f.laplacian(&x);
                }
            }
            Err(e) => assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e}"),
        }
    }
});
