//! The `crate = path` option of both macros: where the generated code finds
//! the `dagger` facade (its `__private` items), `::dagger` by default.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{LitStr, Path, Token};

/// The path generated code starts from: `::dagger` unless `crate = path` says otherwise.
pub struct Root(Path);

impl Default for Root {
    fn default() -> Self {
        Root(syn::parse_quote!(::dagger))
    }
}

impl Root {
    /// Whether the input starts with the option's `crate =`.
    pub fn peek(input: ParseStream) -> bool {
        input.peek(Token![crate]) && input.peek2(Token![=])
    }

    /// The path of the facade's items for generated code, `<root>::__private`.
    pub fn private(&self) -> TokenStream {
        let root = &self.0;
        quote!(#root::__private)
    }
}

impl Parse for Root {
    /// Parses `crate = <path>`: a path (`dg`, `crate`, `::my::reexport`) or
    /// the same path in a string literal (`"my::reexport"`), as tokio's
    /// macros accept.
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Token![crate] = input.parse()?;
        input.parse::<Token![=]>().map_err(|_| {
            syn::Error::new(
                key.span,
                "expected `=` after `crate`: the option is `crate = <path>`",
            )
        })?;
        let path = if input.peek(LitStr) {
            input.parse::<LitStr>()?.parse_with(Path::parse_mod_style)
        } else {
            input.call(Path::parse_mod_style)
        };
        path.map(Root).map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the path of the `dagger` crate after `crate =`, \
                 e.g. `crate = dagger`, `crate = crate` or `crate = \"my::reexport\"`",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> syn::Result<String> {
        let root: Root = syn::parse_str(src)?;
        Ok(root.private().to_string().replace(' ', ""))
    }

    #[test]
    fn the_root_is_dagger_unless_a_path_or_string_names_another() {
        assert_eq!(
            Root::default().private().to_string().replace(' ', ""),
            "::dagger::__private"
        );
        assert_eq!(parse("crate = dg").unwrap(), "dg::__private");
        assert_eq!(parse("crate = crate").unwrap(), "crate::__private");
        assert_eq!(
            parse("crate = ::my::reexport").unwrap(),
            "::my::reexport::__private"
        );
        assert_eq!(
            parse("crate = \"my::reexport\"").unwrap(),
            "my::reexport::__private"
        );
    }

    #[test]
    fn a_value_that_is_not_a_path_is_an_error_saying_what_is_expected() {
        for bad in [
            "crate = 3",
            "crate = \"3\"",
            "crate = \"a b\"",
            "crate = a::",
            "crate =",
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(
                e.starts_with("expected the path of the `dagger` crate"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            parse("crate").unwrap_err().to_string(),
            "expected `=` after `crate`: the option is `crate = <path>`"
        );
    }
}
