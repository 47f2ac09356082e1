//! Sessions: one RON file with everything needed to reopen the app as it was — the scene with
//! the live hyperparameters and seed, the speed, the view, projector mode and the lesson step.
//! Weights are not kept (a checkpoint does that): the same seed replays the same run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sampler::SamplerKind;
use crate::scene::Scene;
use crate::view::ViewEdit;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// The scene as it runs: hyperparameters and seed as they were when saved, file paths
    /// made absolute so that the session file can live anywhere.
    pub scene: Scene,
    /// The scene file it came from (the scene picker lists its folder).
    pub scene_path: PathBuf,
    /// The kinds of a race (empty for a single run).
    #[serde(default)]
    pub race: Vec<SamplerKind>,
    /// Gradient steps between screen updates.
    pub speed: u64,
    #[serde(default)]
    pub view: ViewEdit,
    #[serde(default)]
    pub projector: bool,
    #[serde(default)]
    pub lesson: Option<LessonPlace>,
}

/// A lesson file and the step it was on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonPlace {
    pub file: PathBuf,
    /// 0-based.
    pub step: usize,
}

impl Session {
    pub fn new(scene: &Scene, scene_path: &Path) -> Session {
        let absolute = std::path::absolute(scene_path).unwrap_or_else(|_| scene_path.to_path_buf());
        Session {
            scene: scene.with_absolute_reference(scene_path),
            scene_path: absolute,
            race: Vec::new(),
            speed: 10,
            view: ViewEdit::default(),
            projector: false,
            lesson: None,
        }
    }

    pub fn to_ron(&self) -> String {
        let text =
            ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default().struct_names(true))
                .expect("a Session always serialises");
        format!("// Boltzmann Studio session: reopen with `boltzmann-studio app FILE`.\n{text}\n")
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        std::fs::write(path, self.to_ron()).map_err(|e| Error::io(path, e))
    }

    /// Reads a session; its scene is checked (and a molecule's files loaded) like a scene file.
    pub fn load(path: &Path) -> Result<Session> {
        let text = crate::limits::read_text(path, crate::limits::TEXT_FILE_BYTES)?;
        Session::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Session> {
        let mut s: Session = ron::Options::default()
            .from_str(text)
            .map_err(|e| Error::Scene {
                path: path.to_path_buf(),
                line: e.position.line,
                col: e.position.col,
                message: e.code.to_string(),
            })?;
        // Validation and a molecule's loading live in Scene::parse; its positions would be those
        // of the re-written scene, so errors name the session and the scene's problem only.
        s.scene = Scene::parse(&s.scene.to_ron(), &s.scene_path)
            .map_err(|e| Error::format(path, format!("its scene: {e}")))?;
        if let Err((field, message)) = s.view.validate() {
            return Err(Error::format(path, format!("{field} {message}")));
        }
        if s.speed == 0 {
            return Err(Error::format(path, "speed must be at least 1"));
        }
        Ok(s)
    }

    /// Whether a file holds a session rather than a scene (its first item is `Session(`).
    pub fn is_session(text: &str) -> bool {
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("//"))
            .is_some_and(|l| l.starts_with("Session("))
    }
}
