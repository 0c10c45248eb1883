//! Saving and loading parameters in the safetensors format.
//!
//! A file holds one little-endian `f32` tensor per parameter (weights and
//! optimizer state), named as in the graph, so PyTorch and other
//! safetensors readers open it as they are.

use super::error::{Error, Result};
use dagger_tensor::Program;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Parameters by name, in graph order.
pub type NamedParams = Vec<(String, Vec<f32>)>;

/// Writes every parameter of `program` to `path`.
pub fn save_params(program: &Program, path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = program
        .params()
        .into_iter()
        .map(|(name, shape, data)| {
            let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.to_string(), shape.dims().to_vec(), raw)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, raw)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Format {
                    path: shown.clone(),
                    detail: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(source) => Error::Io {
            path: shown.clone(),
            source,
        },
        other => Error::Format {
            path: shown.clone(),
            detail: other.to_string(),
        },
    })
}

/// Sets the parameters of `program` from the tensors in `path`; returns how
/// many were set. Tensors the program does not have are an error, as are
/// wrong shapes or types; parameters absent from the file keep their values.
///
/// All or nothing: every tensor of the file is checked before the first
/// parameter is set, so a file with one bad tensor changes nothing (the
/// error names that tensor).
pub fn load_params(program: &mut Program, path: &Path) -> Result<usize> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: shown.clone(),
        source,
    })?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| Error::Format {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    let mismatch = |name: &str, detail: String| Error::Mismatch {
        path: shown.clone(),
        name: name.to_string(),
        detail,
    };
    let shapes: HashMap<&str, &[usize]> = program
        .params()
        .into_iter()
        .map(|(name, shape, _)| (name, shape.dims()))
        .collect();
    // In name order, so that the same file always reports the same tensor.
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut checked = Vec::with_capacity(tensors.len());
    for (name, view) in tensors {
        let expected = *shapes
            .get(name.as_str())
            .ok_or_else(|| mismatch(&name, "is not a parameter of this program".into()))?;
        if view.dtype() != Dtype::F32 {
            return Err(mismatch(&name, format!("is {:?}, not F32", view.dtype())));
        }
        if view.shape() != expected {
            return Err(mismatch(
                &name,
                format!("has shape {:?}, the parameter {:?}", view.shape(), expected),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        checked.push((name, values));
    }
    for (name, values) in &checked {
        program
            .set(name, values)
            .map_err(|e| mismatch(name, e.to_string()))?;
    }
    Ok(checked.len())
}
