//! Type names as the IR writes them.
//!
//! The IR compares types by name. Names come from [`std::any::type_name`] with
//! every path shortened to its last segment (`alloc::vec::Vec<alloc::string::String>`
//! becomes `Vec<String>`), so that the text form reads like the source and a
//! hand-written graph file can say `Vec<String>`.
//!
//! A hand-written file can also say nonsense, so the [verifier](crate::verify())
//! checks every type name with [`check_type_name`] (balanced brackets, no
//! empty name) and every constant of a graph file with [`check_constant`]
//! (is `"hello"` a `u64`?).
//!
//! # Examples
//!
//! ```
//! use dagger_ir::types::{check_constant, check_type_name};
//!
//! assert!(check_type_name("HashMap<String, (u64, Vec<f32>)>").is_ok());
//! assert!(check_type_name("Vec<<u64").is_err());
//! assert!(check_constant(&serde_json::json!([1, 2]), "Vec<u8>").is_ok());
//! assert!(check_constant(&serde_json::json!("hello"), "u64").is_err());
//! ```

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

/// Checks that `name` reads as a type: not empty, its `<>`, `()` and `[]`
/// balanced (the `>` of `->` excepted), no empty `<>` or `[]`, and a `<`
/// only after a type's name (or in a qualified path `<T as Trait>`).
pub fn check_type_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a type cannot be empty".into());
    }
    let qualified = name.contains(" as ");
    let mut open: Vec<(usize, char)> = Vec::new();
    let mut prev: Option<char> = None;
    for (at, c) in name.char_indices() {
        match c {
            '<' if !qualified
                && !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '}') =>
            {
                return Err(format!(
                    "the `<` at byte {at} does not follow a type's name"
                ));
            }
            '<' | '(' | '[' => open.push((at, c)),
            '>' if prev == Some('-') => {}
            '>' | ')' | ']' => {
                let opener = match c {
                    '>' => '<',
                    ')' => '(',
                    _ => '[',
                };
                match open.pop() {
                    Some((from, o)) if o == opener => {
                        if c != ')' && name[from + 1..at].trim().is_empty() {
                            return Err(format!("empty `{o}{c}` at byte {from}"));
                        }
                    }
                    Some((from, o)) => {
                        return Err(format!(
                            "the `{c}` at byte {at} closes the `{o}` at byte {from}"
                        ))
                    }
                    None => return Err(format!("the `{c}` at byte {at} closes nothing")),
                }
            }
            c if c.is_control() => return Err(format!("a control character at byte {at}")),
            _ => {}
        }
        prev = Some(c);
    }
    match open.last() {
        Some((at, o)) => Err(format!("the `{o}` at byte {at} is never closed")),
        None => Ok(()),
    }
}

/// Checks that a graph file's constant `value` can be read as a `ty`, as
/// serde would read it: integers in range, floats, booleans, strings,
/// `Option`, sequences (`Vec`, slices, arrays of their length) and tuples.
/// Types it does not know (a struct, a map) accept any value.
pub fn check_constant(value: &serde_json::Value, ty: &str) -> Result<(), String> {
    use serde_json::Value;
    let ty = ty.trim();
    let unsigned = |max: u64| match value.as_u64() {
        Some(v) if v <= max => Ok(()),
        _ => Err(format!("an integer from 0 to {max}")),
    };
    let signed = |min: i64, max: i64| match value.as_i64() {
        Some(v) if (min..=max).contains(&v) => Ok(()),
        _ => Err(format!("an integer from {min} to {max}")),
    };
    let wanted: Result<(), String> = match ty {
        "u8" => unsigned(u8::MAX.into()),
        "u16" => unsigned(u16::MAX.into()),
        "u32" => unsigned(u32::MAX.into()),
        "u64" | "u128" | "usize" => unsigned(u64::MAX),
        "i8" => signed(i8::MIN.into(), i8::MAX.into()),
        "i16" => signed(i16::MIN.into(), i16::MAX.into()),
        "i32" => signed(i32::MIN.into(), i32::MAX.into()),
        "i64" | "i128" | "isize" => signed(i64::MIN, i64::MAX),
        "f32" | "f64" if value.is_number() => Ok(()),
        "f32" | "f64" => Err("a number".into()),
        "bool" if value.is_boolean() => Ok(()),
        "bool" => Err("true or false".into()),
        "String" | "&str" | "str" | "Box<str>" | "Arc<str>" | "Rc<str>" if value.is_string() => {
            Ok(())
        }
        "String" | "&str" | "str" | "Box<str>" | "Arc<str>" | "Rc<str>" => Err("a string".into()),
        "char" if value.as_str().is_some_and(|s| s.chars().count() == 1) => Ok(()),
        "char" => Err("a string of one character".into()),
        "()" if value.is_null() => Ok(()),
        "()" => Err("null".into()),
        _ => {
            if let Some(inner) = generic_arg(ty, "Option") {
                return match value {
                    Value::Null => Ok(()),
                    v => check_constant(v, inner),
                };
            }
            let (elements, len) = match sequence_of(ty) {
                Some(seq) => seq,
                None => match tuple_of(ty) {
                    Some(types) => {
                        let Value::Array(items) = value else {
                            return Err(format!(
                                "{} is not a {ty}: expected an array",
                                shown(value)
                            ));
                        };
                        if items.len() != types.len() {
                            return Err(format!(
                                "{} is not a {ty}: expected {} elements, found {}",
                                shown(value),
                                types.len(),
                                items.len()
                            ));
                        }
                        return items
                            .iter()
                            .zip(types)
                            .try_for_each(|(v, t)| check_constant(v, t));
                    }
                    None => return Ok(()),
                },
            };
            let Value::Array(items) = value else {
                return Err(format!("{} is not a {ty}: expected an array", shown(value)));
            };
            if let Some(len) = len.filter(|&l| l != items.len()) {
                return Err(format!(
                    "{} is not a {ty}: expected {len} elements, found {}",
                    shown(value),
                    items.len()
                ));
            }
            return items.iter().try_for_each(|v| check_constant(v, elements));
        }
    };
    wanted.map_err(|expected| format!("{} is not a {ty}: expected {expected}", shown(value)))
}

/// A value as an error message shows it: its JSON, cut at 60 characters.
fn shown(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// `T` of `Name<T>`.
fn generic_arg<'a>(ty: &'a str, name: &str) -> Option<&'a str> {
    ty.strip_prefix(name)?.strip_prefix('<')?.strip_suffix('>')
}

/// The element type of a sequence type, and its length if fixed:
/// `Vec<T>`, `VecDeque<T>`, `Box<[T]>`, `&[T]`, `[T]`, `[T; N]`.
fn sequence_of(ty: &str) -> Option<(&str, Option<usize>)> {
    if let Some(t) = generic_arg(ty, "Vec").or_else(|| generic_arg(ty, "VecDeque")) {
        return Some((t, None));
    }
    let inner = generic_arg(ty, "Box").unwrap_or(ty);
    let inner = inner.strip_prefix('&').unwrap_or(inner).trim_start();
    let body = inner.strip_prefix('[')?.strip_suffix(']')?;
    let parts = split_top_level(body, ';');
    match parts[..] {
        [t] => Some((t, None)),
        [t, n] => Some((t, Some(n.trim().parse().ok()?))),
        _ => None,
    }
}

/// The element types of a tuple type `(A, B, ..)` (not `()`).
fn tuple_of(ty: &str) -> Option<Vec<&str>> {
    let body = ty.strip_prefix('(')?.strip_suffix(')')?;
    let mut parts = split_top_level(body, ',');
    if parts.last().is_some_and(|p| p.trim().is_empty()) {
        parts.pop(); // `(u64,)`
    }
    (!parts.is_empty()).then_some(parts)
}

/// Splits `s` at the `sep`s outside any brackets.
fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    let mut prev = ' ';
    for (at, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' if prev == '-' => {}
            '>' | ')' | ']' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(s[start..at].trim());
                start = at + c.len_utf8();
            }
            _ => {}
        }
        prev = c;
    }
    parts.push(s[start..].trim());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_names_need_balanced_brackets_and_a_name() {
        for good in [
            "u64",
            "Vec<String>",
            "HashMap<String, (u64, Vec<f32>)>",
            "&[u8]",
            "[f32; 3]",
            "()",
            "Box<dyn Fn(u64) -> u64 + Send>",
            "fn(u64) -> u64",
            "demo::{{closure}}",
            "<Vec<u8> as IntoIterator>::IntoIter",
        ] {
            assert_eq!(check_type_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("  ", "empty"),
            ("Vec<<u64", "does not follow"),
            ("Vec<u64", "never closed"),
            ("Vec<u64>>", "closes nothing"),
            ("Vec<u64)", "closes the `<`"),
            ("Vec<>", "empty `<>`"),
        ] {
            let e = check_type_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn constants_must_fit_their_types() {
        for (v, ty) in [
            (json!(3), "u64"),
            (json!(255), "u8"),
            (json!(-3), "i32"),
            (json!(1.5), "f64"),
            (json!(2), "f32"),
            (json!("hi"), "String"),
            (json!("x"), "char"),
            (json!(null), "Option<u64>"),
            (json!([1, null]), "Vec<Option<u8>>"),
            (json!([1, 2, 3]), "[u64; 3]"),
            (json!(["a", 1]), "(String, u64)"),
            (json!({"a": 1}), "HashMap<String, u64>"),
        ] {
            assert_eq!(check_constant(&v, ty), Ok(()), "{v} : {ty}");
        }
        for (v, ty, why) in [
            (
                json!("hello"),
                "u64",
                "\"hello\" is not a u64: expected an integer from 0 to",
            ),
            (json!(256), "u8", "256 is not a u8"),
            (json!(-1), "usize", "-1 is not a usize"),
            (json!(1.5), "u64", "1.5 is not a u64"),
            (json!(1), "String", "expected a string"),
            (json!("ab"), "char", "one character"),
            (json!([1, "x"]), "Vec<u64>", "\"x\" is not a u64"),
            (json!([1, 2]), "[u64; 3]", "expected 3 elements, found 2"),
            (json!([1]), "(u64, u64)", "expected 2 elements"),
            (json!(3), "Vec<u64>", "expected an array"),
        ] {
            let e = check_constant(&v, ty).unwrap_err();
            assert!(e.contains(why), "{v} : {ty}: {e}");
        }
        let long = json!(vec![1; 1000]);
        assert!(check_constant(&long, "String").unwrap_err().len() < 120);
    }

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
