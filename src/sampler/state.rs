//! Reading and writing the parts of a checkpoint the kinds share: generator state, JSON state
//! files, tensors (weights, Adam moments) and replay buffers, each naming its file in errors.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Saved generator state (JSON numbers lose precision past 2⁵³, so the word position is text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RngState {
    pub seed: Vec<u8>,
    pub stream: u64,
    pub word_pos: String,
}

impl RngState {
    pub fn of(r: &ChaCha8Rng) -> Self {
        Self {
            seed: r.get_seed().to_vec(),
            stream: r.get_stream(),
            word_pos: r.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self, path: &Path) -> Result<ChaCha8Rng> {
        let seed: [u8; 32] = self
            .seed
            .as_slice()
            .try_into()
            .map_err(|_| Error::format(path, "rng seed must have 32 bytes"))?;
        let word_pos: u128 = self
            .word_pos
            .parse()
            .map_err(|_| Error::format(path, "rng word position is not a number"))?;
        let mut r = ChaCha8Rng::from_seed(seed);
        r.set_stream(self.stream);
        r.set_word_pos(word_pos);
        Ok(r)
    }
}

/// Reads a JSON state file, naming the file and position in errors.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = crate::limits::read_text(path, crate::limits::TEXT_FILE_BYTES)?;
    serde_json::from_str(&text).map_err(|e| {
        Error::format(
            path,
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })
}

/// Writes a JSON state file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("state serialises");
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Puts a buffer's rows into a checkpoint's tensors as `NAME.x` and `NAME.a`.
pub fn save_buffer(
    tensors: &mut std::collections::HashMap<String, candle_core::Tensor>,
    name: &str,
    buf: &crate::buffer::ReplayBuffer,
) -> Result<()> {
    let (bx, ba, lw) = buf.ordered();
    let w = buf.dim();
    let rows = bx.len() / w;
    let dev = candle_core::Device::Cpu;
    tensors.insert(
        format!("{name}.x"),
        candle_core::Tensor::from_vec(bx, (rows, w), &dev)?,
    );
    tensors.insert(
        format!("{name}.a"),
        candle_core::Tensor::from_vec(ba, (rows, w), &dev)?,
    );
    tensors.insert(
        format!("{name}.log_w"),
        candle_core::Tensor::from_vec(lw, rows, &dev)?,
    );
    Ok(())
}

/// Reads a buffer saved by [`save_buffer`] from `path`'s tensors; `NAME.a` may be absent (then
/// zeros, for buffers without targets), and `NAME.log_w` too (then equal weights).
pub fn load_buffer(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    name: &str,
    width: usize,
    capacity: usize,
    path: &Path,
) -> Result<crate::buffer::ReplayBuffer> {
    let get = |k: String| -> Result<Option<Vec<f32>>> {
        let Some(t) = tensors.get(&k) else {
            return Ok(None);
        };
        if t.dims().len() != 2 || t.dims()[1] != width || t.dtype() != candle_core::DType::F32 {
            return Err(Error::format(
                path,
                format!(
                    "'{k}' is {:?} of shape {:?}, expected F32 (rows, {width})",
                    t.dtype(),
                    t.dims()
                ),
            ));
        }
        Ok(Some(t.flatten_all()?.to_vec1()?))
    };
    let x = get(format!("{name}.x"))?
        .ok_or_else(|| Error::format(path, format!("missing '{name}.x'")))?;
    let a = get(format!("{name}.a"))?.unwrap_or_else(|| vec![0.0; x.len()]);
    if a.len() != x.len() {
        return Err(Error::format(
            path,
            format!("'{name}.a' has {} values, '{name}.x' {}", a.len(), x.len()),
        ));
    }
    // Checkpoints from before importance weights were kept: all rows weigh the same.
    let log_w = match tensors.get(&format!("{name}.log_w")) {
        Some(t) => t
            .to_dtype(candle_core::DType::F64)
            .and_then(|t| t.flatten_all()?.to_vec1::<f64>())
            .map_err(|e| {
                Error::format(path, format!("'{name}.log_w': {}", crate::error::short(&e)))
            })?,
        None => vec![0.0; x.len() / width],
    };
    if log_w.len() * width != x.len() {
        return Err(Error::format(
            path,
            format!(
                "'{name}.log_w' has {} values for {} rows",
                log_w.len(),
                x.len() / width
            ),
        ));
    }
    Ok(crate::buffer::ReplayBuffer::from_ordered(
        width, capacity, x, a, log_w,
    ))
}

/// Tensor files live with the networks (`nn`); re-exported for the kinds' loaders.
pub use crate::nn::{read_tensors, write_tensors};
