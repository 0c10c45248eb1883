//! The UCI handwritten digits as `train_digits` reads them: a CSV file of
//! 64 pixels 0..16 and a label 0..9 a line, checked line by line, and its
//! seeded 80/20 split.
//!
//! # Examples
//!
//! The first line of `data/digits.csv.gz`, a 0, and what a bad line reads
//! as (here a label 3.7 on line 5):
//!
//! ```text
//! 0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0, ... ,0,6,13,10,0,0,0,0
//! digits.csv:5: column 65: label `3.7` is not a digit 0..9
//! ```

use dagger::nn::SeededRng;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Pixels per image.
pub const FEATURES: usize = 64;
/// Classes (the digits 0..9).
pub const CLASSES: usize = 10;

/// Samples: pixels scaled to 0..1, one-hot labels, and the labels.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// `n x 64` pixels.
    pub x: Vec<f32>,
    /// `n x 10` one-hot targets.
    pub y: Vec<f32>,
    /// The class of each sample.
    pub labels: Vec<usize>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn push(&mut self, pixels: &[f32], label: usize) {
        self.x.extend(pixels.iter().map(|p| p / 16.0));
        self.y
            .extend((0..CLASSES).map(|c| if c == label { 1.0 } else { 0.0 }));
        self.labels.push(label);
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Samples {
        let mut out = Samples::default();
        for &i in indices {
            out.x
                .extend_from_slice(&self.x[i * FEATURES..(i + 1) * FEATURES]);
            out.y
                .extend_from_slice(&self.y[i * CLASSES..(i + 1) * CLASSES]);
            out.labels.push(self.labels[i]);
        }
        out
    }
}

/// Reads the digits from a CSV file, gzipped (any number of gzip members,
/// as `cat a.gz b.gz` makes) or plain: one sample a line, 64 pixels 0..16
/// and then the label 0..9. Blank lines are skipped; anything else that is
/// not a sample is an error naming the file, the line and the value.
pub fn load_digits(path: &Path) -> Result<Samples, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .map_err(|e| format!("{shown}: {e}"))?;
        text
    } else {
        String::from_utf8(bytes).map_err(|e| format!("{shown}: not a text file: {e}"))?
    };
    let mut samples = Samples::default();
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (pixels, label) =
            parse_sample(line).map_err(|e| format!("{shown}:{}: {e}", line_no + 1))?;
        samples.push(&pixels, label);
    }
    if samples.is_empty() {
        return Err(format!("{shown}: no samples (the file has no lines)"));
    }
    Ok(samples)
}

/// One line of the CSV: its 64 pixels and its label.
fn parse_sample(line: &str) -> Result<([f32; FEATURES], usize), String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != FEATURES + 1 {
        return Err(format!(
            "{} fields, expected {} (64 pixels and a label)",
            fields.len(),
            FEATURES + 1
        ));
    }
    let mut pixels = [0.0; FEATURES];
    for (column, (pixel, field)) in pixels.iter_mut().zip(&fields).enumerate() {
        *pixel = field
            .parse::<f32>()
            .ok()
            .filter(|v| (0.0..=16.0).contains(v))
            .ok_or_else(|| {
                format!(
                    "column {}: pixel `{field}` is not a number in 0..16",
                    column + 1
                )
            })?;
    }
    let field = fields[FEATURES];
    let label = field
        .parse::<f32>()
        .ok()
        .filter(|l| l.fract() == 0.0 && (0.0..CLASSES as f32).contains(l))
        .ok_or_else(|| {
            format!(
                "column {}: label `{field}` is not a digit 0..9",
                FEATURES + 1
            )
        })?;
    Ok((pixels, label as usize))
}

/// Checks that the split leaves at least one full batch to train on and a
/// sample to test on (with fewer, the mean loss would be 0/0).
pub fn check_sizes(train_set: &Samples, test_set: &Samples, batch: usize) -> Result<(), String> {
    let total = train_set.len() + test_set.len();
    if batch == 0 {
        return Err("a batch of 0 samples cannot train".into());
    }
    if train_set.len() < batch || test_set.is_empty() {
        return Err(format!(
            "{total} samples split into {} to train on and {} to test on; \
             training needs one batch of {batch} and testing one sample \
             (at least {} samples in all)",
            train_set.len(),
            test_set.len(),
            (batch * 5).div_ceil(4)
        ));
    }
    Ok(())
}

/// The digits file shipped with the project.
pub fn digits_path() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz");
    // A binary copied to another machine looks from where it is run.
    if built_in.exists() {
        built_in
    } else {
        PathBuf::from("data/digits.csv.gz")
    }
}

/// A seeded 80/20 split into training and test samples.
pub fn split(all: &Samples, seed: u64) -> (Samples, Samples) {
    let mut order: Vec<usize> = (0..all.len()).collect();
    SeededRng::new(seed).shuffle(&mut order);
    let n_train = all.len() * 4 / 5;
    (all.select(&order[..n_train]), all.select(&order[n_train..]))
}
