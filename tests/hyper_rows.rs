//! The sampler registry and its hyperparameter rows, and the regressions they fixed: `sample
//! --seed` ignored by the learned kinds, `buffer_size` applying live but listed as needing a reset.

use std::path::Path;

use boltzmann_studio::sampler::{SampleOptions, SamplerKind, hyper};
use boltzmann_studio::scene::Scene;

/// A tiny DW-4 scene of `kind` (sections of other kinds are ignored).
fn tiny(kind: SamplerKind) -> Scene {
    let text = format!(
        "Scene(system: DoubleWell4, sampler: (kind: {kind:?}, sde_steps: 5, batch_size: 8, new_samples: 8, buffer_size: 16, train_steps: 1, mcmc: (chains: 4, replicas: 1, burn_in: 0)), network: (kind: Egnn, layers: 1, hidden: 8, output: Control))"
    );
    Scene::parse(&text, Path::new("tiny.ron")).unwrap()
}

fn dw4_kinds() -> Vec<SamplerKind> {
    SamplerKind::all()
        .filter(|k| {
            boltzmann_studio::sampler::check_system(
                *k,
                &boltzmann_studio::energy::DoubleWell::dw4(),
            )
            .is_ok()
        })
        .collect()
}

#[test]
fn every_kind_is_registered_once_with_consistent_rows() {
    let kinds: Vec<SamplerKind> = SamplerKind::all().collect();
    assert!(kinds.len() >= 4);
    for (i, a) in kinds.iter().enumerate() {
        // Names are unique and parse back, in either spelling.
        assert!(kinds[i + 1..].iter().all(|b| a.name() != b.name()));
        assert_eq!(a.name().parse::<SamplerKind>().unwrap(), *a);
        assert_eq!(a.info().variant.parse::<SamplerKind>().unwrap(), *a);
        let rows = a.rows();
        for (j, r) in rows.iter().enumerate() {
            assert!(
                rows[j + 1..].iter().all(|s| s.key != r.key),
                "{a:?}: row {} twice",
                r.key
            );
            assert!(
                !r.help.is_empty() && !r.label.is_empty(),
                "{a:?}: row {} has no help",
                r.key
            );
            // A key two kinds share means the same row everywhere (lessons name rows by key).
            let shared = hyper::any_row(r.key).unwrap();
            assert_eq!(
                (shared.field, shared.live, shared.label),
                (r.field, r.live, r.label),
                "{a:?}: {}",
                r.key
            );
            // The row's default value passes its own bound.
            let cfg = tiny(*a).sampler;
            r.check((r.get)(&cfg), 2, &cfg)
                .unwrap_or_else(|m| panic!("{a:?}: {} {m}", r.key));
        }
    }
    assert!(
        "nope"
            .parse::<SamplerKind>()
            .unwrap_err()
            .contains("known: adjoint")
    );
}

/// Regression: `buffer_size` applied live but the panel listed it under "needs a reset". The
/// panel places rows by `live`; every learned kind's buffer row is live and a running sampler
/// takes it.
#[test]
fn buffer_size_is_a_live_row_that_a_running_sampler_takes() {
    for kind in dw4_kinds().into_iter().filter(|k| k.learns()) {
        let r = hyper::row(&kind.rows(), "buffer_size")
            .copied()
            .unwrap_or_else(|| panic!("{kind:?} has no buffer_size row"));
        assert!(r.live, "{kind:?}");
        let mut s = tiny(kind).build_sampler().unwrap();
        s.advance().unwrap();
        s.set_hyper("buffer_size", 5.0).unwrap();
        assert_eq!(s.config().buffer_size, 5, "{kind:?}");
        s.advance().unwrap();
        // A reset-only row is refused while running, with its name.
        let e = s.set_hyper("sigma_max", 3.0).unwrap_err().to_string();
        assert!(
            e.contains("sigma_max") && e.contains("reset"),
            "{kind:?}: {e}"
        );
    }
}

/// Regression: `sample RUN --seed S` gave the same samples for every S for the learned kinds
/// (the seed reset the training generator; sampling drew from another). A seed now fixes the
/// draw, whatever the sampler drew before, and two seeds differ.
#[test]
fn a_sample_seed_repeats_and_two_seeds_differ() {
    for kind in dw4_kinds() {
        let mut s = tiny(kind).build_sampler().unwrap();
        s.advance().unwrap();
        let draw = |s: &mut Box<dyn boltzmann_studio::sampler::Sampler>, seed| {
            s.sample(
                16,
                SampleOptions {
                    fill: true,
                    seed: Some(seed),
                    ..SampleOptions::default()
                },
            )
            .unwrap()
            .x
        };
        let a = draw(&mut s, 1);
        // Unseeded draws in between must not matter.
        s.sample(
            16,
            SampleOptions {
                fill: true,
                ..SampleOptions::default()
            },
        )
        .unwrap();
        let again = draw(&mut s, 1);
        let b = draw(&mut s, 2);
        assert_eq!(a, again, "{kind:?}: the same seed repeats");
        assert_ne!(a, b, "{kind:?}: two seeds differ");
    }
}

#[test]
fn every_row_key_is_known_to_lessons() {
    let keys = hyper::all_keys();
    for k in ["learning_rate", "batch_size", "buffer_size", "mc_samples"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}
