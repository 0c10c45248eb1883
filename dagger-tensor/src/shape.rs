//! Static tensor shapes and NumPy-style broadcasting.
//!
//! A [`Shape`] lists the extent of every axis, outermost first; `[]` is a
//! scalar. Two shapes broadcast when, aligned at their last axes, each pair
//! of extents is equal or one of them is 1; the result takes the larger
//! extent of each pair ([`broadcast`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most axes a tensor may have for the backends' kernels (CPU and
/// GPU), which index with fixed-size arrays of this length so that a run
/// allocates nothing. Compiling a graph with a larger rank is an error
/// naming the node.
pub const MAX_RANK: usize = 8;

/// The extents of a tensor's axes, outermost first (`[]` is a scalar).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// The shape of a scalar.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// A shape from its extents.
    pub fn of(dims: &[usize]) -> Shape {
        Shape(dims.to_vec())
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// The extents.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.rank()];
        for axis in (0..self.rank().saturating_sub(1)).rev() {
            strides[axis] = strides[axis + 1] * self.0[axis + 1];
        }
        strides
    }

    /// This shape with the given axes set to 1 (`keep_dims` form of a reduction).
    pub fn reduced_keep(&self, axes: &[usize]) -> Shape {
        Shape(
            self.0
                .iter()
                .enumerate()
                .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
                .collect(),
        )
    }

    /// This shape with the given axes removed.
    pub fn reduced_drop(&self, axes: &[usize]) -> Shape {
        Shape(
            self.0
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect(),
        )
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Shape {
        Shape::of(dims)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape(dims)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Shape {
        Shape(dims.to_vec())
    }
}

/// The broadcast of two shapes, or `None` when some aligned pair of extents
/// differs and neither is 1.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let rank = a.rank().max(b.rank());
    let mut out = vec![0; rank];
    for (i, slot) in out.iter_mut().enumerate() {
        let da = extent_from_end(a, rank - 1 - i);
        let db = extent_from_end(b, rank - 1 - i);
        *slot = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(Shape(out))
}

/// True when `from` broadcasts to exactly `to`.
pub fn broadcasts_to(from: &Shape, to: &Shape) -> bool {
    from.rank() <= to.rank() && broadcast(from, to).as_ref() == Some(to)
}

/// Extent of the axis `back` places before the last (1 past the rank).
fn extent_from_end(s: &Shape, back: usize) -> usize {
    if back < s.rank() {
        s.0[s.rank() - 1 - back]
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        let s = |d: &[usize]| Shape::of(d);
        assert_eq!(broadcast(&s(&[4, 3]), &s(&[3])), Some(s(&[4, 3])));
        assert_eq!(broadcast(&s(&[4, 1]), &s(&[1, 5])), Some(s(&[4, 5])));
        assert_eq!(broadcast(&s(&[]), &s(&[2, 2])), Some(s(&[2, 2])));
        assert_eq!(broadcast(&s(&[4, 3]), &s(&[4])), None);
        assert!(broadcasts_to(&s(&[3]), &s(&[4, 3])));
        assert!(!broadcasts_to(&s(&[4, 3]), &s(&[3])));
        assert_eq!(s(&[2, 3, 4]).strides(), [12, 4, 1]);
        assert_eq!(s(&[2, 3, 4]).reduced_keep(&[1]), s(&[2, 1, 4]));
        assert_eq!(s(&[2, 3, 4]).reduced_drop(&[0, 2]), s(&[3]));
    }
}
