//! `dag!{}`: a graph in macro syntax, wired through typed handles.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use std::collections::HashSet;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprCall, ExprPath, Ident, PathArguments, Token, Type};

use crate::root::Root;

/// A parsed `dag!{}` body.
pub struct DagBody {
    root: Root,
    stmts: Vec<Stmt>,
    output: Expr,
}

enum Stmt {
    Input { name: Ident, ty: Type },
    Let { name: Ident, value: Expr },
}

impl Stmt {
    fn name(&self) -> &Ident {
        match self {
            Stmt::Input { name, .. } | Stmt::Let { name, .. } => name,
        }
    }
}

impl Parse for DagBody {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let root = if Root::peek(input) {
            let root: Root = input.parse()?;
            input.parse::<Token![;]>().map_err(|e| {
                syn::Error::new(e.span(), "expected `;` after the dag's `crate = <path>`")
            })?;
            root
        } else {
            Root::default()
        };
        let mut stmts: Vec<Stmt> = Vec::new();
        loop {
            if input.is_empty() {
                let msg = "a dag must end with its output: a name, a task call or a tuple of them";
                return Err(match stmts.last() {
                    Some(last) => syn::Error::new(
                        last.name().span(),
                        format!("{msg}; e.g. end it with `{}`", last.name()),
                    ),
                    None => input.error(msg),
                });
            }
            if input.peek(Token![let]) {
                input.parse::<Token![let]>()?;
                let name: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                input.parse::<Token![;]>()?;
                stmts.push(Stmt::Let { name, value });
            } else if input.peek(Ident)
                && input.peek2(Ident)
                && input.fork().parse::<Ident>()? == "input"
            {
                input.parse::<Ident>()?;
                let name: Ident = input.parse()?;
                input.parse::<Token![:]>()?;
                let ty: Type = input.parse()?;
                input.parse::<Token![;]>()?;
                stmts.push(Stmt::Input { name, ty });
            } else {
                let output: Expr = input.parse()?;
                if input.peek(Token![;]) {
                    input.parse::<Token![;]>()?;
                }
                if !input.is_empty() {
                    return Err(input.error("unexpected tokens after the dag's output expression"));
                }
                return Ok(DagBody {
                    root,
                    stmts,
                    output,
                });
            }
        }
    }
}

/// Expansion state: names bound so far, names bound anywhere.
struct Scope {
    builder: Ident,
    bound: HashSet<String>,
    all: HashSet<String>,
}

/// Expands a `dag!{}` body.
pub fn expand(body: DagBody) -> syn::Result<TokenStream> {
    let p = body.root.private();
    let builder = Ident::new("__dagger_builder", Span::mixed_site());
    let mut scope = Scope {
        builder: builder.clone(),
        bound: HashSet::new(),
        all: body.stmts.iter().map(|s| s.name().to_string()).collect(),
    };
    let mut lines = Vec::new();
    let mut input_types = Vec::new();
    for stmt in &body.stmts {
        let name = stmt.name();
        let key = name.to_string();
        let label = key.clone();
        match stmt {
            Stmt::Input { ty, .. } => {
                lines.push(quote_spanned! {name.span()=>
                    let #name: #p::Value<#ty> = #builder.input::<#ty>(#label);
                });
                input_types.push(ty.clone());
            }
            Stmt::Let { value, .. } => {
                let value = scope.value(value)?;
                lines.push(quote! { let #name = #builder.name(#value, #label); });
            }
        }
        if !scope.bound.insert(key) {
            return Err(syn::Error::new(
                name.span(),
                format!("duplicate binding `{name}` in this dag: each name is bound once"),
            ));
        }
    }
    let output = match &body.output {
        Expr::Tuple(t) => {
            let items = t
                .elems
                .iter()
                .map(|e| scope.value(e))
                .collect::<syn::Result<Vec<_>>>()?;
            quote!((#(#items,)*))
        }
        other => scope.value(other)?,
    };
    let out = Ident::new("__dagger_outputs", Span::mixed_site());
    Ok(quote! {{
        let #builder = #p::GraphBuilder::new();
        #(#lines)*
        let #out = #output;
        #builder.finish::<(#(#input_types,)*), _>(#out)
    }})
}

impl Scope {
    /// The tokens making the handle of one dag expression.
    fn value(&self, expr: &Expr) -> syn::Result<TokenStream> {
        let b = &self.builder;
        match expr {
            Expr::Call(call) => self.call(call),
            Expr::Paren(p) => self.value(&p.expr),
            Expr::Path(p) if p.path.get_ident().is_some() => {
                let ident = p.path.get_ident().expect("checked");
                let key = ident.to_string();
                if self.bound.contains(&key) {
                    Ok(ident.to_token_stream())
                } else if self.all.contains(&key) {
                    Err(syn::Error::new(
                        ident.span(),
                        format!("`{ident}` is used before its binding in this dag"),
                    ))
                } else {
                    Ok(self.constant(expr))
                }
            }
            Expr::Lit(lit) => {
                let text = lit.to_token_stream().to_string();
                Ok(quote_spanned!(lit.span()=> #b.constant_labeled(#lit, #text)))
            }
            other => {
                self.check_no_early_use(other.to_token_stream())?;
                Ok(self.constant(other))
            }
        }
    }

    /// A constant: the expression is evaluated once, when the graph is built.
    fn constant(&self, expr: &Expr) -> TokenStream {
        let b = &self.builder;
        let value = Ident::new("__dagger_constant", Span::mixed_site());
        quote_spanned! {expr.span()=> {
            #[allow(unused_braces)]
            let #value = #expr;
            #b.constant(#value)
        }}
    }

    /// A task call: `path(args)` becomes `<path<'_>>::on(&builder).node(args)`.
    fn call(&self, call: &ExprCall) -> syn::Result<TokenStream> {
        let Expr::Path(ExprPath { path, .. }) = &*call.func else {
            return Err(syn::Error::new_spanned(
                &call.func,
                "a dag calls tasks by name, e.g. `count(words)`; wrap other Rust expressions in braces: `{ ... }`",
            ));
        };
        let args = call
            .args
            .iter()
            .map(|a| self.value(a))
            .collect::<syn::Result<Vec<_>>>()?;
        let b = &self.builder;
        let span = path.span();
        // `.node` carries the task path's span and its parentheses the
        // user's, so arity and type errors point at the call as written.
        let node = Ident::new("node", span);
        let mut args_group =
            proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, quote!(#(#args),*));
        args_group.set_span(call.paren_token.span.join());
        let fallback = not_a_task(path, args.len());
        let mut import = path.clone();
        if let Some(last) = import.segments.last_mut() {
            last.arguments = PathArguments::None;
        }
        let alias = Ident::new("__dagger_task", span);
        Ok(quote_spanned! {span=> {
            #fallback
            #[allow(unused_imports)]
            use __dagger_not_a_task::*;
            #[allow(unused_imports)]
            use #import as #alias;
            <#alias<'_>>::on(&#b).#node #args_group
        }})
    }

    /// Rejects a constant expression that mentions a dag name bound later.
    fn check_no_early_use(&self, tokens: TokenStream) -> syn::Result<()> {
        for t in tokens {
            match t {
                TokenTree::Ident(i)
                    if !self.bound.contains(&i.to_string())
                        && self.all.contains(&i.to_string()) =>
                {
                    return Err(syn::Error::new(
                        i.span(),
                        format!("`{i}` is used before its binding in this dag"),
                    ));
                }
                TokenTree::Group(g) => self.check_no_early_use(g.stream())?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// The stand-in that a task call falls back on when its path names no
/// `#[task]`. The call imports the path as `__dagger_task` over a glob
/// import of this module's `__dagger_task`: a `use` imports each namespace
/// the path has, so a task's generated type shadows the stand-in, while a
/// plain function (a value only) leaves it, and calling the stand-in fails
/// a bound whose `on_unimplemented` message names the function. The
/// stand-in names no `dagger` item (its builder and result are generic): a
/// module cannot see a `crate = path` root imported in the enclosing block.
fn not_a_task(path: &syn::Path, arity: usize) -> TokenStream {
    let name = path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    let message = format!("`{name}` is not a `#[task]`");
    let note = format!(
        "a dag calls `#[task]` functions: add `#[task]` to the definition of `{name}`, \
         or, if no task or function `{name}` is in scope, check the name and its imports"
    );
    let span = path.span();
    let params: Vec<Ident> = (0..arity)
        .map(|i| Ident::new(&format!("A{i}"), span))
        .collect();
    quote_spanned! {span=>
        #[allow(non_camel_case_types, dead_code, private_bounds, unreachable_pub)]
        mod __dagger_not_a_task {
            #[diagnostic::on_unimplemented(message = #message, label = "not a `#[task]`", note = #note)]
            trait Task {}
            pub struct __dagger_task<'a, M = ()>(::core::marker::PhantomData<&'a M>);
            impl<'a, M> __dagger_task<'a, M> {
                pub fn on<B>(_: &B) -> Self
                where
                    Self: Task,
                {
                    ::core::unreachable!()
                }
                pub fn node<#(#params,)* V>(self, #(_: #params),*) -> V {
                    ::core::unreachable!()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(src: &str) -> syn::Result<String> {
        let body: DagBody = syn::parse_str(src)?;
        Ok(expand(body)?.to_string().replace(' ', ""))
    }

    fn error(src: &str) -> String {
        match expand_str(src) {
            Ok(out) => panic!("expected an error, got {out}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn inputs_lets_nested_calls_and_tuple_outputs() {
        let out = expand_str(
            "input doc: String; let w = tokenize(doc); let n = scale(count(w), 3); (w, n)",
        )
        .unwrap();
        assert!(out.contains("let__dagger_builder=::dagger::__private::GraphBuilder::new();"));
        assert!(out.contains(
            "letdoc:::dagger::__private::Value<String>=__dagger_builder.input::<String>(\"doc\");"
        ));
        assert!(out.contains("letw=__dagger_builder.name({#[allow("));
        assert!(out.contains("usetokenizeas__dagger_task;<__dagger_task<'_>>::on(&__dagger_builder).node(doc)},\"w\");"));
        assert!(out
            .contains("usescaleas__dagger_task;<__dagger_task<'_>>::on(&__dagger_builder).node({"));
        assert!(out.contains("usecountas__dagger_task;<__dagger_task<'_>>::on(&__dagger_builder).node(w)},__dagger_builder.constant_labeled(3,\"3\"))"));
        assert!(out.contains("let__dagger_outputs=(w,n,);"));
        assert!(out.contains("__dagger_builder.finish::<(String,),_>(__dagger_outputs)"));
    }

    #[test]
    fn other_expressions_are_constants_and_paths_name_tasks() {
        let out = expand_str("let a = m::shout({ f(x) }); let b = count(v); (a, b)").unwrap();
        assert!(out.contains("usem::shoutas__dagger_task;<__dagger_task<'_>>::on(&__dagger_builder).node({#[allow(unused_braces)]let__dagger_constant={f(x)};__dagger_builder.constant(__dagger_constant)})"));
        assert!(out.contains("let__dagger_constant=v;"));
        assert!(out.contains("finish::<(),_>"));
    }

    #[test]
    fn a_call_falls_back_on_a_stand_in_naming_the_function() {
        let out = expand_str("let a = stats::mean(xs, 2); a").unwrap();
        assert!(out.contains("use__dagger_not_a_task::*;"));
        assert!(out.contains("#[diagnostic::on_unimplemented(message=\"`mean`isnota`#[task]`\""));
        assert!(out.contains("pubfnon<B>(_:&B)->SelfwhereSelf:Task"));
        assert!(out.contains("pubfnnode<A0,A1,V>(self,_:A0,_:A1)->V"));
        assert!(out.contains("usestats::meanas__dagger_task;"));
    }

    #[test]
    fn a_leading_crate_option_roots_the_generated_paths() {
        let out = expand_str("crate = dg; input n: u8; let a = f(n); a").unwrap();
        assert!(out.contains("let__dagger_builder=dg::__private::GraphBuilder::new();"));
        assert!(out.contains("letn:dg::__private::Value<u8>="));
        assert!(!out.contains("::dagger"), "{out}");
        let out = expand_str("crate = \"crate\"; let a = f(1); a").unwrap();
        assert!(out.contains("let__dagger_builder=crate::__private::GraphBuilder::new();"));
        // A path starting with `crate::` is the output, not the option.
        let out = expand_str("crate::f(1)").unwrap();
        assert!(out.contains("usecrate::fas__dagger_task;"));
        assert!(out.contains("::dagger::__private::GraphBuilder::new()"));
    }

    #[test]
    fn a_malformed_crate_option_is_an_error() {
        assert!(error("crate = 3; let a = f(1); a")
            .starts_with("expected the path of the `dagger` crate"));
        assert_eq!(
            error("crate = dg let a = f(1); a"),
            "expected `;` after the dag's `crate = <path>`"
        );
    }

    #[test]
    fn binding_mistakes_are_macro_errors() {
        assert_eq!(
            error("let a = f(b); let b = g(1); a"),
            "`b` is used before its binding in this dag"
        );
        assert_eq!(
            error("let a = f({ b.len() }); let b = g(1); a"),
            "`b` is used before its binding in this dag"
        );
        assert!(error("let w = f(1); let w = g(w); w").starts_with("duplicate binding `w`"));
        assert!(error("input w: u8; let w = g(w); w").starts_with("duplicate binding `w`"));
        assert!(error("let w = f(1);").contains("must end with its output"));
        assert!(error("let w = (f)(1); w").contains("calls tasks by name"));
        assert!(error("let w = f(1); w x").contains("unexpected tokens"));
    }
}
