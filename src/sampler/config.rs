//! The scene's `sampler` section: the kind and the settings its kinds share; each kind's own
//! settings sit in a section of their own.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serializer};

use super::SamplerKind;
use super::registry::{KindSection, Section, SectionInfo, section_info};

/// The sampler kind and its hyperparameters. The shared fields are those of Adjoint Sampling
/// (science.md §2; defaults are the reference code's LJ-13), which ASBS and iDEM read too; each
/// kind's own settings sit in its section (`asbs`, `idem`, `mcmc`, …), which the kind reads with
/// [`SamplerConfig::section`].
///
/// A scene reads it through [`read`] and writes it through [`write`] (the derived
/// deserialisation alone would not know the kinds' sections).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// The sampler kind (see the registry: Adjoint, Asbs, Idem, Gfn, Mcmc, …).
    pub kind: SamplerKind,
    /// Where networks run: "cpu" (fused kernels), "cuda" or "cuda:N" (a `cuda` build).
    pub device: String,
    /// Smallest noise scale σ_min (reached at t = 1).
    pub sigma_min: f64,
    /// Largest noise scale σ_max (at t = 0). It should cover the system: simulated end points
    /// more than 20·σ_max from the origin are taken as blown up and kept out of the buffer.
    pub sigma_max: f64,
    /// Euler–Maruyama steps from t = 0 to 1 when simulating training samples.
    pub sde_steps: usize,
    /// Euler–Maruyama steps when drawing samples to look at or judge (`sample`, evaluations,
    /// the app's sample view); `None`: as `sde_steps`. Training can simulate coarsely and
    /// sampling finely, as the reference code's separate train and eval step counts do.
    pub sample_steps: Option<usize>,
    /// Training batch size (buffer draws per Adam step).
    pub batch_size: usize,
    /// New samples simulated per outer iteration.
    pub new_samples: usize,
    /// Replay buffer capacity (FIFO).
    pub buffer_size: usize,
    /// Adam steps per outer iteration.
    pub train_steps: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Per-particle clip on ‖∇E‖ (in the sampler's coordinates, see `scale`).
    pub grad_clip: f64,
    /// The sampler works in coordinates x / scale; σ_min and σ_max are in those units. GMM-40's
    /// modes span ±40, so the reference code samples x / 50 with σ_max = 1.
    pub scale: f64,
    /// Decay of an exponential moving average of the weights used for simulating (0 = off, the
    /// reference code's choice). It smooths Adam's step-to-step noise out of the samples.
    pub ema: f64,
    /// Adjoint Sampling: whether the buffer's training simulations use the weight average too
    /// (the default) or the current weights; `false` averages only what is shown and judged,
    /// which smooths the final model without slowing the feedback of training.
    pub ema_in_training: bool,
    /// Euler grid t_k = (k/N)^time_warp (1: uniform, the reference code's). The geometric
    /// schedule adds most of its variance early (ν(0.1) ≈ 0.65 ν(1) for σ_max/σ_min = 200),
    /// where the modes are chosen; a warp above 1 spends more of the steps there.
    pub time_warp: f64,
    /// Adjoint Sampling: draw training pairs from the replay buffer in proportion to their paths'
    /// importance weights (truncated), instead of uniformly. The regression then targets the
    /// optimal control's reciprocal process rather than the current model's, which fixes the
    /// relative weights of modes that the plain fixed-point iteration corrects only slowly.
    pub reweight_buffer: bool,
    /// Seed of every random draw of a run.
    pub seed: u64,
    /// Each kind's own settings section as the scene gave it (absent: the section's defaults).
    #[serde(skip)]
    pub sections: Sections,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            kind: SamplerKind::default(),
            device: "cpu".into(),
            sigma_min: 1e-3,
            sigma_max: 2.0,
            sde_steps: 1000,
            sample_steps: None,
            batch_size: 512,
            new_samples: 512,
            buffer_size: 10_000,
            train_steps: 100,
            learning_rate: 1e-4,
            grad_clip: 100.0,
            scale: 1.0,
            ema: 0.0,
            ema_in_training: true,
            time_warp: 1.0,
            reweight_buffer: false,
            seed: 0,
            sections: Sections::default(),
        }
    }
}

impl SamplerConfig {
    /// The kind's section `T` (its defaults where the scene gives none).
    pub fn section<T: KindSection>(&self) -> T {
        self.sections
            .0
            .get(T::NAME)
            .and_then(|b| b.as_any().downcast_ref::<T>())
            .cloned()
            .unwrap_or_default()
    }

    /// The section `T`, to change (created with its defaults if absent).
    pub fn section_mut<T: KindSection>(&mut self) -> &mut T {
        let b = self
            .sections
            .0
            .entry(T::NAME)
            .or_insert_with(|| Box::new(T::default()));
        b.as_any_mut()
            .downcast_mut::<T>()
            .expect("a section's key names one type")
    }

    /// This config with section `T` set (for code that builds a config).
    pub fn with_section<T: KindSection>(mut self, section: T) -> Self {
        *self.section_mut::<T>() = section;
        self
    }
}

/// The kinds' sections of a sampler config, by key. Equal when every section reads the same,
/// a missing one counting as its defaults.
#[derive(Default)]
pub struct Sections(BTreeMap<&'static str, Box<dyn Section>>);

impl Sections {
    /// The sections present, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &dyn Section)> {
        self.0.iter().map(|(k, v)| (*k, &**v))
    }
}

impl Clone for Sections {
    fn clone(&self) -> Self {
        // `(**v)`: the section itself, not its box (a box would be cloned into a box of a box).
        Sections(
            self.0
                .iter()
                .map(|(k, v)| (*k, (**v).clone_box()))
                .collect(),
        )
    }
}

impl PartialEq for Sections {
    fn eq(&self, o: &Self) -> bool {
        let keys: std::collections::BTreeSet<&str> =
            self.0.keys().chain(o.0.keys()).copied().collect();
        keys.into_iter()
            .all(|k| match (self.0.get(k), o.0.get(k), section_info(k)) {
                (Some(a), Some(b), _) => (**a).eq_dyn(&**b),
                (Some(a), None, Some(info)) | (None, Some(a), Some(info)) => {
                    (**a).eq_dyn(&*(info.default)())
                }
                _ => false,
            })
    }
}

impl fmt::Debug for Sections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, &**v)))
            .finish()
    }
}

/// Reads a scene's `sampler` section: the shared fields through the derived deserialiser, each
/// kind's section through the registry, typed, so that an error keeps its line and column.
pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<SamplerConfig, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = SamplerConfig;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the sampler's settings, e.g. (kind: Adjoint, batch_size: 256)")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SamplerConfig, A::Error> {
            let mut sections = BTreeMap::new();
            let shared = SectionsAside {
                inner: map,
                sections: &mut sections,
            };
            let mut cfg =
                SamplerConfig::deserialize(serde::de::value::MapAccessDeserializer::new(shared))?;
            cfg.sections = Sections(sections);
            Ok(cfg)
        }
    }
    d.deserialize_struct("SamplerConfig", &[], V)
}

/// The map of a `sampler` section with the kinds' sections taken out (into `sections`) as they
/// pass: what is left are the shared fields.
struct SectionsAside<'a, A> {
    inner: A,
    sections: &'a mut BTreeMap<&'static str, Box<dyn Section>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SectionsAside<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::Error;
        loop {
            let Some(key) = self.inner.next_key::<String>()? else {
                return Ok(None);
            };
            if let Some(info) = section_info(&key) {
                let section = self.inner.next_value_seed(SectionSeed(info))?;
                if self.sections.insert(info.name, section).is_some() {
                    return Err(A::Error::custom(format!("duplicate field `{key}`")));
                }
                continue;
            }
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

struct SectionSeed(SectionInfo);

impl<'de> DeserializeSeed<'de> for SectionSeed {
    type Value = Box<dyn Section>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Box<dyn Section>, D::Error> {
        let mut erased = <dyn erased_serde::Deserializer>::erase(d);
        (self.0.parse)(&mut erased).map_err(serde::de::Error::custom)
    }
}

/// Writes a `sampler` section: the shared fields, then each section present.
pub fn write<S: Serializer>(c: &SamplerConfig, s: S) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct("SamplerConfig", 21 + c.sections.0.len())?;
    st.serialize_field("kind", &c.kind)?;
    st.serialize_field("device", &c.device)?;
    st.serialize_field("sigma_min", &c.sigma_min)?;
    st.serialize_field("sigma_max", &c.sigma_max)?;
    st.serialize_field("sde_steps", &c.sde_steps)?;
    st.serialize_field("sample_steps", &c.sample_steps)?;
    st.serialize_field("batch_size", &c.batch_size)?;
    st.serialize_field("new_samples", &c.new_samples)?;
    st.serialize_field("buffer_size", &c.buffer_size)?;
    st.serialize_field("train_steps", &c.train_steps)?;
    st.serialize_field("learning_rate", &c.learning_rate)?;
    st.serialize_field("grad_clip", &c.grad_clip)?;
    st.serialize_field("scale", &c.scale)?;
    st.serialize_field("ema", &c.ema)?;
    st.serialize_field("ema_in_training", &c.ema_in_training)?;
    st.serialize_field("time_warp", &c.time_warp)?;
    st.serialize_field("reweight_buffer", &c.reweight_buffer)?;
    st.serialize_field("seed", &c.seed)?;
    for (name, section) in &c.sections.0 {
        let section: &dyn erased_serde::Serialize = &**section;
        st.serialize_field(name, section)?;
    }
    st.end()
}
