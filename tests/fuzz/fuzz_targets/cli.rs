#![no_main]
//! The command line: any argument list (NUL-separated in the input) parses or gives clap's
//! error, never a panic. Only the parse: no command runs.
use clap::Parser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args = data.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned());
    let _ = boltzmann_studio::cli::Cli::try_parse_from(std::iter::once("boltzmann-studio".to_string()).chain(args));
});
