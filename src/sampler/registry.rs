//! The registry of sampler kinds: what the rest of the program may know of a kind, one line per
//! kind in [`KINDS`]. The scene's `sampler.kind`, the command line's `--kinds` and `--race`, the
//! app's pickers, `info` and the validation of scenes all read it; nothing outside a kind's own
//! file names the kind.
//!
//! Adding a kind: its file (or folder) under `sampler/` with a `pub static KIND: KindInfo`, one
//! `mod` line in `sampler/mod.rs` and one line in [`KINDS`]; then its scenes.

use std::any::Any;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::hyper::HyperRow;
use super::{Sampler, SamplerConfig};
use crate::energy::Energy;
use crate::error::Result;
use crate::nn::NetworkConfig;

/// Every sampler kind, in the order pickers list them; the first is the default of a scene.
pub static KINDS: &[&KindInfo] = &[
    &super::adjoint::KIND,
    &super::asbs::KIND,
    &super::idem::KIND,
    &super::gfn::KIND,
    &super::mcmc::KIND,
];

/// What the program knows of a kind.
pub struct KindInfo {
    /// The scene's name of the kind (`sampler.kind: Adjoint`).
    pub variant: &'static str,
    /// The command line's and file names' name (`--kinds adjoint`, `dw4-adjoint.ron`).
    pub name: &'static str,
    /// Display name.
    pub label: &'static str,
    /// One sentence for tooltips and `info`.
    pub summary: &'static str,
    /// Whether the kind trains a network: it has gradient steps, a `network` section and a
    /// learning rate. MCMC does not; its "steps" are blocks of sweeps.
    pub learns: bool,
    /// A caveat shown beside the kind's samples wherever they are judged (empty: none).
    pub samples_note: &'static str,
    /// What its training loss is (the app's loss plot explains it; empty for a kind that
    /// learns nothing).
    pub loss_help: &'static str,
    /// What its stages are, for a kind with stages ([`Sampler::stage`]); empty: none.
    pub stage_help: &'static str,
    /// Whether it defines importance weights of its samples (`sample --weights`, the app's
    /// weight colouring and reweighted histograms).
    pub weights: bool,
    /// The kind's own settings section of `sampler` (e.g. `asbs: (...)`), if it has one.
    pub section: Option<SectionInfo>,
    /// Whether the kind can sample the system of `energy`; `Err` says why not.
    pub accepts: fn(energy: &dyn Energy) -> std::result::Result<(), String>,
    /// A fresh sampler for `energy` with these settings.
    pub build: fn(
        energy: Box<dyn Energy>,
        sampler: &SamplerConfig,
        network: &NetworkConfig,
    ) -> Result<Box<dyn Sampler>>,
    /// The kind's hyperparameters as rows (see [`super::hyper`]).
    pub rows: fn() -> Vec<HyperRow>,
}

/// `KindInfo::accepts` of the kinds written for particle systems only (centre-of-mass-free
/// layouts: DW-4, LJ-n).
pub fn particles_only(energy: &dyn Energy) -> std::result::Result<(), String> {
    if energy.layout().com_free {
        Ok(())
    } else {
        Err("it is implemented for particle systems (DW-4, LJ-n) only".into())
    }
}

/// The kind named `s` in a scene (`Adjoint`) or on the command line (`adjoint`), either case.
pub fn find(s: &str) -> Option<&'static KindInfo> {
    let s = s.trim();
    KINDS
        .iter()
        .copied()
        .find(|k| k.name.eq_ignore_ascii_case(s) || k.variant.eq_ignore_ascii_case(s))
}

/// A sampler kind: a handle on its registry entry. Compared, hashed and written by name.
#[derive(Clone, Copy)]
pub struct SamplerKind(&'static KindInfo);

impl SamplerKind {
    /// Every registered kind.
    pub fn all() -> impl Iterator<Item = SamplerKind> {
        KINDS.iter().map(|k| SamplerKind(k))
    }

    /// The kind whose command-line name is `name` (panics on an unregistered one: for code that
    /// names a kind it knows, such as tests and a kind's own file).
    pub fn named(name: &str) -> SamplerKind {
        find(name)
            .map(SamplerKind)
            .unwrap_or_else(|| panic!("no sampler kind '{name}' is registered"))
    }

    /// The kind of a registry entry (a kind's own file names itself so).
    pub const fn of(info: &'static KindInfo) -> SamplerKind {
        SamplerKind(info)
    }

    pub fn info(self) -> &'static KindInfo {
        self.0
    }

    /// Lower-case name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// Display name.
    pub fn label(self) -> &'static str {
        self.0.label
    }

    /// Whether the kind learns a network (and so has live training hyperparameters).
    pub fn learns(self) -> bool {
        self.0.learns
    }

    /// The kind's hyperparameter rows.
    pub fn rows(self) -> Vec<HyperRow> {
        (self.0.rows)()
    }
}

impl Default for SamplerKind {
    fn default() -> Self {
        SamplerKind(KINDS[0])
    }
}

impl PartialEq for SamplerKind {
    fn eq(&self, o: &Self) -> bool {
        self.0.name == o.0.name
    }
}
impl Eq for SamplerKind {}

impl std::hash::Hash for SamplerKind {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.name.hash(h)
    }
}

impl fmt::Debug for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.variant)
    }
}

fn known() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

impl std::str::FromStr for SamplerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        find(s).map(SamplerKind).ok_or_else(|| {
            format!(
                "unknown sampler kind '{}' (known: {})",
                s.trim().to_ascii_lowercase(),
                known()
            )
        })
    }
}

/// Written as a unit variant (`kind: Adjoint`), as the enum it replaces was.
impl Serialize for SamplerKind {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let index = KINDS
            .iter()
            .position(|k| k.name == self.0.name)
            .unwrap_or(0) as u32;
        s.serialize_unit_variant("SamplerKind", index, self.0.variant)
    }
}

impl<'de> Deserialize<'de> for SamplerKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SamplerKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a sampler kind ({})",
                    KINDS
                        .iter()
                        .map(|k| k.variant)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            fn visit_enum<A: serde::de::EnumAccess<'de>>(
                self,
                data: A,
            ) -> std::result::Result<SamplerKind, A::Error> {
                use serde::de::{Error, VariantAccess};
                let (Ident(name), variant) = data.variant()?;
                variant.unit_variant()?;
                find(&name)
                    .filter(|k| k.variant == name)
                    .map(SamplerKind)
                    .ok_or_else(|| {
                        A::Error::custom(format!(
                            "unknown sampler kind `{name}` (known: {})",
                            KINDS
                                .iter()
                                .map(|k| k.variant)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            }
            fn visit_str<E: serde::de::Error>(
                self,
                s: &str,
            ) -> std::result::Result<SamplerKind, E> {
                find(s).map(SamplerKind).ok_or_else(|| {
                    E::custom(format!("unknown sampler kind '{s}' (known: {})", known()))
                })
            }
        }
        d.deserialize_enum("SamplerKind", &[], V)
    }
}

/// An enum variant's name, read as an identifier (RON's `Adjoint`; a `String` would want quotes).
struct Ident(String);

impl<'de> Deserialize<'de> for Ident {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Ident;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sampler kind's name")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Ident, E> {
                Ok(Ident(s.to_string()))
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> std::result::Result<Ident, E> {
                Ok(Ident(String::from_utf8_lossy(b).into_owned()))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A kind's own settings section, as the registry reads and writes it.
#[derive(Clone, Copy)]
pub struct SectionInfo {
    /// The key under `sampler` (`asbs`).
    pub name: &'static str,
    /// Reads the section from a scene (typed, so that errors keep their position).
    pub parse: fn(
        &mut dyn erased_serde::Deserializer,
    ) -> std::result::Result<Box<dyn Section>, erased_serde::Error>,
    /// Range checks for a system of `dim` coordinates: `Err((field, what is wrong))`.
    pub check: fn(&dyn Section, dim: usize) -> std::result::Result<(), (&'static str, String)>,
    /// The section's defaults (what a scene without it means).
    pub default: fn() -> Box<dyn Section>,
}

impl SectionInfo {
    /// The section of type `T`.
    pub const fn of<T: KindSection>() -> SectionInfo {
        SectionInfo {
            name: T::NAME,
            parse: parse_section::<T>,
            check: check_section::<T>,
            default: default_section::<T>,
        }
    }
}

fn parse_section<T: KindSection>(
    d: &mut dyn erased_serde::Deserializer,
) -> std::result::Result<Box<dyn Section>, erased_serde::Error> {
    Ok(Box::new(erased_serde::deserialize::<T>(d)?))
}

fn default_section<T: KindSection>() -> Box<dyn Section> {
    Box::new(T::default())
}

fn check_section<T: KindSection>(
    s: &dyn Section,
    dim: usize,
) -> std::result::Result<(), (&'static str, String)> {
    match s.as_any().downcast_ref::<T>() {
        Some(t) => t.check(dim),
        None => Ok(()),
    }
}

/// A kind's settings section: a serde struct with defaults, named by its key under `sampler`.
pub trait KindSection: Section + Default + Clone + for<'de> Deserialize<'de> {
    const NAME: &'static str;
    /// Range checks for a system of `dim` coordinates: `Err((field, what is wrong))`.
    fn check(&self, _dim: usize) -> std::result::Result<(), (&'static str, String)> {
        Ok(())
    }
}

/// A section held without knowing its type: cloned, compared and written through this.
pub trait Section: Any + fmt::Debug + Send + Sync + erased_serde::Serialize {
    fn clone_box(&self) -> Box<dyn Section>;
    fn eq_dyn(&self, other: &dyn Section) -> bool;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + fmt::Debug + Send + Sync + Clone + PartialEq + Serialize> Section for T {
    fn clone_box(&self) -> Box<dyn Section> {
        Box::new(self.clone())
    }
    fn eq_dyn(&self, other: &dyn Section) -> bool {
        other
            .as_any()
            .downcast_ref::<T>()
            .is_some_and(|o| o == self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The registered section named `key`.
pub fn section_info(key: &str) -> Option<SectionInfo> {
    KINDS
        .iter()
        .filter_map(|k| k.section)
        .find(|s| s.name == key)
}
