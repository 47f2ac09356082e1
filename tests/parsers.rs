//! A short property-based pass over every parser of user input, on stable (the long runs are
//! the cargo-fuzz targets in tests/fuzz). Two kinds of input: arbitrary bytes, and the shipped
//! files with one number replaced by a hostile one (0, −1, 10¹², u64::MAX, 1e300, NaN, …), which
//! reaches the range checks behind the syntax. The property: a value or an error, never a panic,
//! and an error is one short line.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use boltzmann_studio::sampler::SamplerKind;
use boltzmann_studio::scene::Scene;
use proptest::prelude::*;

const HOSTILE: [&str; 14] = [
    "0",
    "-1",
    "1",
    "1000000000000",
    "18446744073709551615",
    "18446744073709551616",
    "1e300",
    "-1e300",
    "1e-300",
    "NaN",
    "inf",
    "4611686018427387904",
    "0.5",
    "65536",
];

/// Byte ranges of the numbers in `text` (digits, with a leading sign, '.', exponent).
fn numbers(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if starts {
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_alphanumeric()
                    || b[j] == b'.'
                    || ((b[j] == b'-' || b[j] == b'+') && matches!(b[j - 1], b'e' | b'E')))
            {
                j += 1;
            }
            out.push((if i > 0 && b[i - 1] == b'-' { i - 1 } else { i }, j));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// `text` with its `k`-th number (modulo their count) replaced by `by`.
fn mutate(text: &str, k: usize, by: &str) -> String {
    let spans = numbers(text);
    if spans.is_empty() {
        return text.to_string();
    }
    let (a, b) = spans[k % spans.len()];
    format!("{}{by}{}", &text[..a], &text[b..])
}

fn read(path: &str) -> String {
    std::fs::read_to_string(common::repo(path)).unwrap()
}

fn files(dir: &str) -> Vec<(String, String)> {
    boltzmann_studio::scene::ron_files(&common::repo(dir))
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[track_caller]
fn one_line<T>(r: Result<T, boltzmann_studio::Error>) {
    if let Err(e) = r {
        let m = e.to_string();
        assert!(
            !m.contains('\n') && m.len() < 1200,
            "error is not one short line: {m}"
        );
    }
}

fn scenes() -> &'static Vec<(String, String)> {
    static S: OnceLock<Vec<(String, String)>> = OnceLock::new();
    S.get_or_init(|| files("scenes"))
}

fn lessons() -> &'static Vec<(String, String)> {
    static S: OnceLock<Vec<(String, String)>> = OnceLock::new();
    S.get_or_init(|| files("lessons"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn npy_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = boltzmann_studio::io::parse_npy(&data, Path::new("p.npy"));
    }

    /// A valid header with any shape and any amount of data: the check against the data length
    /// must hold in checked arithmetic.
    #[test]
    fn npy_shapes(rows in any::<u64>(), cols in any::<u64>(), f8 in any::<bool>(), len in 0usize..256) {
        let bytes = common::npy_bytes(if f8 { "<f8" } else { "<f4" }, &format!("({rows}, {cols})"), len);
        if let Ok(m) = boltzmann_studio::io::parse_npy(&bytes, Path::new("p.npy")) {
            prop_assert_eq!(m.data.len(), m.rows * m.cols);
        }
    }

    #[test]
    fn scene_text(text in ".{0,300}") {
        one_line(Scene::parse(&text, &common::repo("scenes/p.ron")));
    }

    #[test]
    fn scene_numbers(file in 0usize..64, k in any::<usize>(), by in proptest::sample::select(&HOSTILE[..])) {
        let (path, text) = &scenes()[file % scenes().len()];
        one_line(Scene::parse(&mutate(text, k, by), Path::new(path)));
    }

    #[test]
    fn lesson_numbers(file in 0usize..16, k in any::<usize>(), by in proptest::sample::select(&HOSTILE[..])) {
        let (path, text) = &lessons()[file % lessons().len()];
        one_line(boltzmann_studio::lesson::LoadedLesson::parse(&mutate(text, k, by), Path::new(path)));
    }

    /// Formula text built from its own tokens (and a few strangers): parsed, it evaluates with
    /// its gradient and Laplacian anywhere without a panic; refused, its column lies in the text.
    #[test]
    fn formula_tokens(tokens in proptest::collection::vec(proptest::sample::select(&[
        "x", "y", "z", "1", "0", "2.5e3", "1e400", "-", "+", "*", "/", "^", "(", ")", "exp", "log", "sqrt",
        "sin", "cos", "tanh", "abs", "pi", "e", " ", ",", "é", "1.2.3", "°",
    ][..]), 0..40)) {
        use boltzmann_studio::energy::{Energy, Formula};
        let text: String = tokens.concat();
        match Formula::new(&text, &["x".into(), "y".into()], 1.0, None) {
            Ok(f) => {
                let mut g = [0.0; 2];
                for p in [[0.0, 0.0], [1.5, -2.0], [-1e3, 1e-3]] {
                    let _ = f.energy_grad(&p, &mut g);
                    let _ = f.laplacian(&p);
                }
            }
            Err(e) => prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{}: {}", text, e),
        }
    }

    #[test]
    fn session_text(text in "Session\\(.{0,200}") {
        one_line(boltzmann_studio::session::Session::parse(&text, Path::new("sessions/p.ron")));
    }

    #[test]
    fn pdb_numbers(k in any::<usize>(), by in proptest::sample::select(&HOSTILE[..])) {
        let text = read("assets/molecules/alanine-dipeptide.pdb");
        one_line(boltzmann_studio::molecule::pdb::parse(&mutate(&text, k, by), Path::new("p.pdb")));
    }

    #[test]
    fn cli_arguments(args in proptest::collection::vec(proptest::sample::select(&[
        "train", "sample", "eval", "energy", "reference", "compare", "app", "lesson", "--n", "--steps", "--minutes", "--out",
        "--resume", "--seed", "--kinds", "--evals", "--samples", "--bins", "--skip-eq", "--json", "--after-steps", "--race",
        "--field-at", "--step", "-1", "0", "1e300", "NaN", "18446744073709551616", "scenes/dw4.ron", "adjoint,mcmc", "", "--",
    ][..]), 0..8)) {
        let _ = <boltzmann_studio::cli::Cli as clap::Parser>::try_parse_from(std::iter::once("boltzmann-studio").chain(args));
    }
}

// The prmtop and run folders cost more per case: fewer cases.
proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn prmtop_numbers(k in any::<usize>(), by in proptest::sample::select(&HOSTILE[..])) {
        static TEXT: OnceLock<String> = OnceLock::new();
        let text = TEXT.get_or_init(|| read("assets/molecules/alanine-dipeptide.prmtop"));
        one_line(boltzmann_studio::molecule::prmtop::Prmtop::parse(&mutate(text, k, by), Path::new("p.prmtop")));
    }

    /// A saved run's state.json with one number replaced, loaded by a sampler of each kind.
    #[test]
    fn run_state_numbers(kind in any::<usize>(), k in any::<usize>(), by in proptest::sample::select(&HOSTILE[..])) {
        // Every registered kind that accepts DW-4.
        let kinds: Vec<SamplerKind> = SamplerKind::all().filter(|k| boltzmann_studio::sampler::check_system(*k, &boltzmann_studio::energy::DoubleWell::dw4()).is_ok()).collect();
        let kind = kinds[kind % kinds.len()];
        let text = format!(
            "Scene(system: DoubleWell4, sampler: (kind: {kind:?}, sde_steps: 5, batch_size: 8, new_samples: 8, buffer_size: 16, train_steps: 1, mcmc: (chains: 2, replicas: 1)), network: (kind: Egnn, layers: 1, hidden: 4, output: Control))"
        );
        let scene = Scene::parse(&text, Path::new("p.ron")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        scene.build_sampler().unwrap().save(dir.path()).unwrap();
        let state = dir.path().join("state.json");
        let json = std::fs::read_to_string(&state).unwrap();
        std::fs::write(&state, mutate(&json, k, by)).unwrap();
        one_line(scene.build_sampler().unwrap().load(dir.path()));
    }
}

#[test]
fn mutation_replaces_one_number() {
    assert_eq!(
        numbers("a: 12, b: -3.5e-2, c1: 7"),
        [(3, 5), (10, 17), (23, 24)]
    );
    assert_eq!(mutate("a: 12, b: -3.5e-2", 1, "NaN"), "a: 12, b: NaN");
}
