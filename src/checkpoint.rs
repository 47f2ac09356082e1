//! Run folders that survive a kill at any instant. A checkpoint is several files (weights, Adam
//! state, buffer, counters) that are only meaningful together, so they are written as one
//! generation:
//!
//! ```text
//! run/scene.ron          the run's scene, written once
//! run/metrics.csv        one row per outer iteration, cut back to the checkpoint on resume
//! run/CURRENT            "gen-000042": the complete checkpoint readers open
//! run/gen-000042/        checkpoint.safetensors, state.safetensors, state.json, …
//! ```
//!
//! [`save`] writes the next generation into a temporary folder, fsyncs its files and the folder,
//! renames it to `gen-N`, then replaces `CURRENT` the same way (temporary file, fsync, rename,
//! fsync of the run folder) and removes the older generation. A kill before the switch leaves
//! the old checkpoint current, after it the new one: a reader never sees a mix. Whatever a kill
//! leaves behind (temporaries, the older generation) is removed on the next open.
//!
//! A folder without `CURRENT` holding `state.json` is a checkpoint written before generations
//! (and the layout of the pretrained runs shipped in `assets/`): it is read as it stands.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file naming the current generation.
pub const CURRENT: &str = "CURRENT";
const GEN_PREFIX: &str = "gen-";
const TMP_PREFIX: &str = ".tmp-";
/// Files of a checkpoint written before generations, straight into the run folder.
const FLAT_FILES: [&str; 4] = [
    "checkpoint.safetensors",
    "corrector.safetensors",
    "state.safetensors",
    "state.json",
];

/// Whether `dir` holds a checkpoint (of either layout).
pub fn exists(dir: &Path) -> bool {
    dir.join(CURRENT).is_file() || dir.join("state.json").is_file()
}

/// The folder holding the current checkpoint's files. Stale files of an interrupted save are
/// removed first, unless another process is writing this run.
pub fn current(dir: &Path) -> Result<PathBuf> {
    clean(dir)?;
    current_in(dir)
}

fn current_in(dir: &Path) -> Result<PathBuf> {
    let pointer = dir.join(CURRENT);
    if !pointer.exists() {
        return Ok(dir.to_path_buf());
    }
    let text = crate::limits::read_text(&pointer, 1024)?;
    let name = text.trim();
    let valid = name
        .strip_prefix(GEN_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(Error::format(
            &pointer,
            format!(
                "names '{}', not a checkpoint generation (gen-NNNNNN)",
                crate::limits::excerpt(name, 40)
            ),
        ));
    }
    let folder = dir.join(name);
    if !folder.is_dir() {
        return Err(Error::format(
            &pointer,
            format!("names {name}, which is not in the run folder"),
        ));
    }
    Ok(folder)
}

fn generation_number(name: &str) -> Option<u64> {
    name.strip_prefix(GEN_PREFIX)?.parse().ok()
}

/// Writes one checkpoint into `dir` (see [`Writer::save`]), taking the run for the length of it.
pub fn save(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    Writer::open(dir)?.save(write)
}

/// A process writing a run: holds the run folder's lock (a second writer is refused, a reader
/// does not tidy while it is held) and has tidied what an earlier, killed writer left.
pub struct Writer {
    dir: PathBuf,
    _lock: RunLock,
}

impl Writer {
    /// Creates the folder if needed and takes it; fails at once if another process holds it.
    pub fn open(dir: &Path) -> Result<Writer> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = RunLock::exclusive(dir)?;
        remove_stale(dir)?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The folder holding the current checkpoint's files.
    pub fn current(&self) -> Result<PathBuf> {
        current_in(&self.dir)
    }

    /// `write` fills a fresh folder with the checkpoint's files; it becomes current only once
    /// every file is on disk.
    pub fn save(&self, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let dir = self.dir.as_path();
        remove_stale(dir)?;
        let next = match dir.join(CURRENT).exists() {
            true => {
                current_in(dir)?
                    .file_name()
                    .and_then(|n| generation_number(&n.to_string_lossy()))
                    .unwrap_or(0)
                    + 1
            }
            false => 1,
        };
        let name = format!("{GEN_PREFIX}{next:06}");
        let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        write(&tmp)?;
        for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
            let path = entry.map_err(|e| Error::io(&tmp, e))?.path();
            sync_file(&path)?;
        }
        sync_dir(&tmp)?;
        rename(&tmp, &dir.join(&name))?;
        sync_dir(dir)?;
        write_atomic(&dir.join(CURRENT), format!("{name}\n").as_bytes())?;
        // The switch is done; what follows only tidies, and a kill here is tidied by the next open.
        remove_stale(dir)
    }
}

/// Removes what an interrupted save left: temporaries, generations other than the current one,
/// and flat checkpoint files once a generation is current. Skipped (not an error) while another
/// process holds the run, which may be mid-save, or when the folder cannot be locked.
pub fn clean(dir: &Path) -> Result<()> {
    if !has_stale(dir) {
        return Ok(());
    }
    match RunLock::try_acquire(dir) {
        Some(_lock) => remove_stale(dir),
        None => Ok(()),
    }
}

fn has_stale(dir: &Path) -> bool {
    stale_entries(dir).is_ok_and(|v| !v.is_empty())
}

/// Temporaries always; with a valid `CURRENT`, every other generation and flat checkpoint files;
/// without one, every generation (renamed into place by a first save killed before its switch).
/// A `CURRENT` that cannot be read keeps everything but temporaries: nothing is guessed.
fn stale_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    enum Pointer {
        Absent,
        At(PathBuf),
        Broken,
    }
    let pointer = match dir.join(CURRENT).exists() {
        false => Pointer::Absent,
        true => current_in(dir).map_or(Pointer::Broken, Pointer::At),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let generation = generation_number(&name).is_some();
        let stale = name.starts_with(TMP_PREFIX)
            || match &pointer {
                Pointer::Absent => generation,
                Pointer::At(current) => {
                    (generation && *current != entry.path()) || FLAT_FILES.contains(&name.as_str())
                }
                Pointer::Broken => false,
            };
        if stale {
            out.push(entry.path());
        }
    }
    Ok(out)
}

fn remove_stale(dir: &Path) -> Result<()> {
    for p in stale_entries(dir)? {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// Replaces `path` with `bytes` so that a reader sees the old or the new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{TMP_PREFIX}{name}"));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    sync_file(&tmp)?;
    rename(&tmp, path)?;
    path.parent().map_or(Ok(()), sync_dir)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Makes a folder's entries (a rename into it) durable. Some platforms cannot open a folder as
/// a file; there the rename's durability is the file system's.
fn sync_dir(dir: &Path) -> Result<()> {
    match std::fs::File::open(dir) {
        Ok(f) => f
            .sync_all()
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| Error::io(dir, e)),
        Err(_) => Ok(()),
    }
}

/// An advisory lock on the run folder itself (no lock file to leave behind), held by a
/// [`Writer`]; the file is kept open for the lock's sake (closing it releases the lock). Where a
/// folder cannot be opened as a file (some platforms), runs go unlocked.
pub struct RunLock(#[allow(dead_code)] Option<std::fs::File>);

impl RunLock {
    /// The lock if no other process holds it.
    pub fn try_acquire(dir: &Path) -> Option<RunLock> {
        let f = std::fs::File::open(dir).ok()?;
        f.try_lock().ok()?;
        Some(RunLock(Some(f)))
    }

    /// Fails at once, naming the folder, if another process holds it.
    pub fn exclusive(dir: &Path) -> Result<RunLock> {
        let Ok(f) = std::fs::File::open(dir) else {
            return Ok(RunLock(None));
        };
        match f.try_lock() {
            Ok(()) => Ok(RunLock(Some(f))),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(Error::format(dir, "another process is training this run"))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(dir, e)),
        }
    }
}

/// Cuts `metrics.csv` back to the rows of outer iterations `≤ iterations` (the checkpoint's),
/// dropping a last line cut short by a kill: a resumed run then writes each iteration once, in
/// order. Written to a temporary file and renamed.
pub fn trim_metrics(path: &Path, iterations: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = crate::limits::read_text(path, crate::limits::DATA_FILE_BYTES)?;
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(());
    };
    let cols = header.split(',').count();
    let col = header.split(',').position(|c| c == "iteration");
    let mut out = format!("{header}\n");
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != cols {
            continue;
        }
        let keep = match col {
            Some(c) => fields[c]
                .parse::<f64>()
                .is_ok_and(|it| it <= iterations as f64),
            None => true,
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out != text {
        write_atomic(path, out.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_files(step: &str) -> impl FnOnce(&Path) -> Result<()> + '_ {
        move |d: &Path| {
            std::fs::write(d.join("state.json"), step).unwrap();
            std::fs::write(d.join("checkpoint.safetensors"), step).unwrap();
            Ok(())
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn generations_switch_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!exists(d));
        assert_eq!(
            current(d).unwrap(),
            d,
            "no checkpoint: the folder itself (the caller reports what is missing)"
        );
        save(d, write_files("1")).unwrap();
        assert!(exists(d));
        assert_eq!(names(d), ["CURRENT", "gen-000001"]);
        save(d, write_files("2")).unwrap();
        assert_eq!(names(d), ["CURRENT", "gen-000002"]);
        let c = current(d).unwrap();
        assert_eq!(std::fs::read_to_string(c.join("state.json")).unwrap(), "2");
    }

    #[test]
    fn what_a_kill_leaves_is_cleaned_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        save(d, write_files("1")).unwrap();
        // A kill mid-write, one after the rename of the folder, one mid-switch of CURRENT.
        std::fs::create_dir(d.join(".tmp-gen-000002")).unwrap();
        std::fs::create_dir(d.join("gen-000003")).unwrap();
        std::fs::write(d.join(".tmp-CURRENT"), "gen-000003\n").unwrap();
        let c = current(d).unwrap();
        assert_eq!(std::fs::read_to_string(c.join("state.json")).unwrap(), "1");
        assert_eq!(names(d), ["CURRENT", "gen-000001"]);
    }

    #[test]
    fn flat_checkpoints_read_as_they_stand_and_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_files("old")(d).unwrap();
        assert!(exists(d));
        assert_eq!(current(d).unwrap(), d);
        save(d, write_files("new")).unwrap();
        assert_eq!(names(d), ["CURRENT", "gen-000001"]);
    }

    #[test]
    fn a_bad_pointer_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CURRENT), "../../etc\n").unwrap();
        let e = current(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("CURRENT: names '../../etc', not a checkpoint generation"),
            "{e}"
        );
        std::fs::write(dir.path().join(CURRENT), "gen-000007\n").unwrap();
        let e = current(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("names gen-000007, which is not in the run folder"),
            "{e}"
        );
    }

    #[test]
    fn metrics_are_cut_back_to_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        std::fs::write(
            &p,
            "step,iteration,loss\n10,1,0.5\n20,2,0.4\n30,3,0.3\n40,4",
        )
        .unwrap();
        trim_metrics(&p, 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "step,iteration,loss\n10,1,0.5\n20,2,0.4\n"
        );
    }
}
