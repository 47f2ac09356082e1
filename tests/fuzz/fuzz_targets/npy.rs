#![no_main]
//! .npy sample files: any bytes give a matrix or an error naming the file, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = boltzmann_studio::io::parse_npy(data, std::path::Path::new("fuzz.npy"));
});
