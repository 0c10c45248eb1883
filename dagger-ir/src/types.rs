//! Type names as the IR writes them.
//!
//! The IR compares types by name. Names come from [`std::any::type_name`] with
//! every path shortened to its last segment (`alloc::vec::Vec<alloc::string::String>`
//! becomes `Vec<String>`), so that the text form reads like the source and a
//! hand-written graph file can say `Vec<String>`.

/// The IR's name for type `T`: [`std::any::type_name`] with paths shortened.
pub fn type_name<T: ?Sized>() -> String {
    short_type_name(std::any::type_name::<T>())
}

/// Shortens every path inside a type name to its last segment.
pub fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment_start = 0;
    let bytes = full.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b':' && bytes.get(i + 1) == Some(&b':') {
            // Drop the segment written so far: the path continues.
            out.truncate(segment_start);
            i += 2;
            continue;
        }
        out.push(c as char);
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'{' || c == b'}') {
            segment_start = out.len();
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_nested_paths() {
        assert_eq!(type_name::<Vec<String>>(), "Vec<String>");
        assert_eq!(
            type_name::<std::collections::HashMap<String, (u64, Vec<f32>)>>(),
            "HashMap<String, (u64, Vec<f32>)>"
        );
        assert_eq!(type_name::<&[u8]>(), "&[u8]");
        assert_eq!(short_type_name("a::b::C<d::E, [f::G; 3]>"), "C<E, [G; 3]>");
    }
}
