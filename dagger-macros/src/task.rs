//! `#[task]`: keeps the function and adds the task's registration and typed graph node.

use crate::root::Root;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType, Token,
    Type,
};

/// The options of `#[task(...)]`.
#[derive(Default)]
pub struct TaskArgs {
    pure: bool,
    cost: Option<Expr>,
    device: Option<(String, Span)>,
    grad: Option<syn::Path>,
    gpu: Option<syn::Path>,
    root: Root,
}

impl Parse for TaskArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = TaskArgs::default();
        let items = Punctuated::<TaskOption, Token![,]>::parse_terminated(input)?;
        for item in items {
            match item {
                TaskOption::Pure => args.pure = true,
                TaskOption::Cost(e) => args.cost = Some(e),
                TaskOption::Device(s) => args.device = Some(s),
                TaskOption::Grad(p) => args.grad = Some(p),
                TaskOption::Gpu(p) => args.gpu = Some(p),
                TaskOption::Crate(r) => args.root = r,
            }
        }
        Ok(args)
    }
}

enum TaskOption {
    Pure,
    Cost(Expr),
    Device((String, Span)),
    Grad(syn::Path),
    Gpu(syn::Path),
    Crate(Root),
}

impl Parse for TaskOption {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(Token![crate]) {
            return Ok(TaskOption::Crate(input.parse()?));
        }
        let key: Ident = input.parse()?;
        match key.to_string().as_str() {
            "pure" => Ok(TaskOption::Pure),
            "cost" => {
                input.parse::<Token![=]>()?;
                Ok(TaskOption::Cost(input.parse()?))
            }
            "grad" => {
                input.parse::<Token![=]>()?;
                Ok(TaskOption::Grad(input.parse()?))
            }
            "gpu" => {
                input.parse::<Token![=]>()?;
                Ok(TaskOption::Gpu(input.parse()?))
            }
            "device" => {
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                match lit.value().as_str() {
                    "cpu" | "gpu" | "any" => Ok(TaskOption::Device((lit.value(), lit.span()))),
                    other => Err(syn::Error::new(
                        lit.span(),
                        format!("unknown device \"{other}\": expected \"cpu\", \"gpu\" or \"any\""),
                    )),
                }
            }
            other => Err(syn::Error::new(
                key.span(),
                format!("unknown task option `{other}`: expected `pure`, `cost = <seconds>`, `device = \"cpu\" | \"gpu\" | \"any\"`, `grad = <task>`, `gpu = <function>` or `crate = <path>`"),
            )),
        }
    }
}

/// One parameter: its name and type.
struct Param {
    name: Ident,
    ty: Type,
}

/// Expands `#[task(args)] fn ...`.
pub fn expand(args: TaskArgs, func: ItemFn) -> syn::Result<TokenStream> {
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new(
            a.span(),
            "#[task] functions must be synchronous: remove `async`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let msg = "#[task] functions cannot be generic: a task is registered under one name with one signature";
        return Err(match &sig.generics.where_clause {
            Some(w) if sig.generics.params.is_empty() => syn::Error::new_spanned(w, msg),
            _ => syn::Error::new_spanned(&sig.generics, msg),
        });
    }
    if let Some(u) = &sig.unsafety {
        return Err(syn::Error::new(
            u.span(),
            "#[task] functions cannot be `unsafe`: the runtime calls them with no way to uphold their safety contract",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            v,
            "#[task] functions cannot be variadic",
        ));
    }
    let params = sig
        .inputs
        .iter()
        .map(|arg| match arg {
            FnArg::Receiver(r) => Err(syn::Error::new_spanned(
                r,
                "#[task] must be a free function, not a method",
            )),
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    check_owned(&pt.ty, "parameter")?;
                    Ok(Param {
                        name: pi.ident.clone(),
                        ty: (*pt.ty).clone(),
                    })
                }
                other => Err(syn::Error::new_spanned(
                    other,
                    "#[task] parameters must be plain names (`x: T`), not patterns",
                )),
            },
        })
        .collect::<syn::Result<Vec<_>>>()?;

    let name = &sig.ident;
    let vis = &func.vis;
    let (output, fallible) = output_type(&sig.output);
    check_owned(&output, "result")?;
    let tys: Vec<&Type> = params.iter().map(|p| &p.ty).collect();
    let names: Vec<&Ident> = params.iter().map(|p| &p.name).collect();
    let ports: Vec<usize> = (0..params.len()).collect();
    let def = format_ident!("__DAGGER_TASK_{}", name);
    let name_str = name.to_string();

    let call = if fallible {
        quote! { #name(#(#names),*).map_err(|e| e.to_string())? }
    } else {
        quote! { #name(#(#names),*) }
    };
    let p = args.root.private();
    let take_args = quote! {
        #[allow(unused_mut, unused_variables)]
        let mut args = args.iter_mut().map(::std::option::Option::take);
        #(let #names: #tys = #p::take_arg(args.next().flatten(), #name_str, #ports)?;)*
    };
    let device_body = device_body(
        &p,
        args.gpu.as_ref(),
        &names,
        &output,
        &name_str,
        &take_args,
    );
    let cost = cost_hint(&p, args.cost.as_ref(), &params);
    let device = match args.device.as_ref().map(|d| d.0.as_str()) {
        Some("cpu") => quote!(#p::Device::Cpu),
        Some("gpu") => quote!(#p::Device::Gpu),
        _ => quote!(#p::Device::Any),
    };
    let pure = args.pure;
    let (grad, grad_check) = grad_task(&p, args.grad.as_ref(), &tys, &output);
    let param_codecs = tys.iter().map(|t| codec_probe(&p, t));
    let param_sizes = tys.iter().map(|t| size_probe(&p, t));
    let output_codec = codec_probe(&p, &output);
    let output_size = size_probe(&p, &output);
    let doc = format!("The task `{name_str}` as a graph node (generated by `#[task]`).");
    let node_params = params.iter().map(|param| {
        let (n, t) = (&param.name, &param.ty);
        quote_spanned!(t.span()=> #n: #p::Value<#t>)
    });

    Ok(quote! {
        #func

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name<'dagger> {
            #[doc(hidden)]
            pub __builder: &'dagger #p::GraphBuilder,
        }

        impl<'dagger> #name<'dagger> {
            /// Binds the task to a graph builder; `.node(..)` then adds a call.
            #[allow(dead_code)]
            pub fn on(builder: &'dagger #p::GraphBuilder) -> Self {
                #name { __builder: builder }
            }

            /// Adds a call of this task on these values to the graph.
            #[allow(dead_code, clippy::too_many_arguments)]
            pub fn node(self, #(#node_params),*) -> #p::Value<#output> {
                self.__builder.call::<#name<'static>>(&[#(#names.id()),*])
            }
        }

        impl #p::Task for #name<'static> {
            type Params = (#(#tys,)*);
            type Output = #output;
            fn def() -> &'static #p::TaskDef {
                &#def
            }
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #def: #p::TaskDef = #p::TaskDef {
            name: concat!(module_path!(), "::", #name_str),
            signature: || (
                ::std::vec![#(#p::type_name::<#tys>()),*],
                #p::type_name::<#output>(),
            ),
            cost: #cost,
            device: #device,
            pure: #pure,
            grad: #grad,
            invoke: |args| {
                #take_args
                ::std::result::Result::Ok(#p::Datum::new(#call))
            },
            device_body: #device_body,
            #[allow(clippy::needless_borrow)]
            wire: || {
                #[allow(unused_imports)]
                use #p::{
                    HasCodec as _, HasRawCodec as _, HasSize as _, NoCodec as _, NoSize as _,
                };
                #p::TaskWire {
                    params: ::std::vec![#(#param_codecs),*],
                    output: #output_codec,
                    param_sizes: ::std::vec![#(#param_sizes),*],
                    output_size: #output_size,
                }
            },
        };

        #p::inventory::submit! {
            #p::TaskRegistration(&#def)
        }

        #grad_check
    })
}

/// The `grad` field of a task's definition, and a compile-time check that
/// the gradient task takes the task's parameters and then the gradient of
/// its result, and returns one gradient per parameter (the gradient alone
/// for one parameter, else a tuple), so a mismatch is an error at `grad = ...`.
fn grad_task(
    p: &TokenStream,
    grad: Option<&syn::Path>,
    tys: &[&Type],
    output: &Type,
) -> (TokenStream, TokenStream) {
    let Some(path) = grad else {
        return (quote!(::std::option::Option::None), TokenStream::new());
    };
    let returns = match tys {
        [one] => quote!(#one),
        many => quote!((#(#many,)*)),
    };
    let def = quote_spanned! {path.span()=>
        ::std::option::Option::Some(|| <#path<'static> as #p::Task>::def())
    };
    let check = quote_spanned! {path.span()=>
        const _: fn() = || {
            fn gradient_task_of<G>()
            where
                G: #p::Task<Params = (#(#tys,)* #output,), Output = #returns>,
            {
            }
            gradient_task_of::<#path<'static>>();
        };
    };
    (def, check)
}

/// The `device_body` field of a task's definition: `gpu = path` calls
/// `path(device, args...)` with the device taken as the type of `path`'s
/// first parameter. A device body returns `Result<T, E>` (`E: Display`)
/// for the task's output `T` (device calls can fail even where the CPU
/// body cannot), so a mismatch is a type error at `gpu = ...`.
fn device_body(
    p: &TokenStream,
    gpu: Option<&syn::Path>,
    names: &[&Ident],
    output: &Type,
    name_str: &str,
    take_args: &TokenStream,
) -> TokenStream {
    let Some(path) = gpu else {
        return quote!(::std::option::Option::None);
    };
    let call = quote_spanned! {path.span()=>
        let value: ::std::result::Result<#output, _> =
            #path(#p::device_of(device, #name_str)?, #(#names),*);
    };
    quote! {
        ::std::option::Option::Some(|device, args| {
            #take_args
            #call
            ::std::result::Result::Ok(#p::Datum::new(
                value.map_err(|e| e.to_string())?,
            ))
        })
    }
}

/// The expression finding `ty`'s codec (see `dagger_runtime::wire`). Types
/// holding borrows (`&'static str`) never cross processes, and are answered
/// `None` here: trait selection cannot fall back on a lifetime mismatch.
fn codec_probe(p: &TokenStream, ty: &Type) -> TokenStream {
    if borrows(ty) {
        quote!(::std::option::Option::None)
    } else {
        quote!((&&&#p::Probe::<#ty>::new()).codec())
    }
}

/// The expression finding `ty`'s size function (see `dagger_runtime::size`);
/// borrowed types are answered `None`, as for codecs.
fn size_probe(p: &TokenStream, ty: &Type) -> TokenStream {
    if borrows(ty) {
        quote!(::std::option::Option::None)
    } else {
        quote!((&&#p::Probe::<#ty>::new()).size_fn())
    }
}

/// Whether `ty` holds a borrow (`&`, a lifetime).
fn borrows(ty: &Type) -> bool {
    let text = quote!(#ty).to_string();
    text.contains('&') || text.contains('\'')
}

/// Rejects parameter and result types a graph cannot carry and that would
/// otherwise fail deep in the generated code: borrows and `impl Trait`.
fn check_owned(ty: &Type, what: &str) -> syn::Result<()> {
    match ty {
        Type::Reference(r) if r.lifetime.as_ref().is_some_and(|l| l.ident == "static") => Ok(()),
        Type::Reference(r) => Err(syn::Error::new_spanned(
            r,
            format!(
                "a task {what} must be an owned value (`Clone + Send + Sync + 'static`), not a borrow: \
                 values travel between threads (use e.g. `String` rather than `&str`, `Vec<T>` rather than `&[T]`)"
            ),
        )),
        Type::ImplTrait(i) => Err(syn::Error::new_spanned(
            i,
            format!("a task {what} cannot be `impl Trait`: a task has one concrete signature; name the type"),
        )),
        Type::Paren(p) => check_owned(&p.elem, what),
        Type::Group(g) => check_owned(&g.elem, what),
        _ => Ok(()),
    }
}

/// The task's output type: `T` for `-> T` and for `-> Result<T, E>` (then
/// fallible), `()` without a return type.
fn output_type(ret: &ReturnType) -> (Type, bool) {
    let ReturnType::Type(_, ty) = ret else {
        return (syn::parse_quote!(()), false);
    };
    if let Type::Path(tp) = &**ty {
        if let Some(last) = tp.path.segments.last() {
            if last.ident == "Result" {
                if let PathArguments::AngleBracketed(ab) = &last.arguments {
                    if let Some(GenericArgument::Type(ok)) = ab.args.first() {
                        return (ok.clone(), true);
                    }
                }
            }
        }
    }
    ((**ty).clone(), false)
}

/// The cost hint: constant seconds, or a function of the arguments when the
/// expression names a parameter.
fn cost_hint(p: &TokenStream, cost: Option<&Expr>, params: &[Param]) -> TokenStream {
    let Some(expr) = cost else {
        return quote!(#p::CostHint::Unknown);
    };
    let tokens = quote!(#expr);
    let used: Vec<&Param> = params
        .iter()
        .filter(|param| mentions(tokens.clone(), &param.name))
        .collect();
    if used.is_empty() {
        return quote!(#p::CostHint::Seconds((#expr) as f64));
    }
    let bind = params.iter().enumerate().filter(|(_, param)| used.iter().any(|u| u.name == param.name)).map(|(i, param)| {
        let (n, t) = (&param.name, &param.ty);
        quote! {
            let ::std::option::Option::Some(#n) = args.get(#i).and_then(|d| d.downcast_ref::<#t>()) else {
                return 0.0;
            };
        }
    });
    quote! {
        #p::CostHint::Dynamic(|args: &[#p::Datum]| -> f64 {
            #(#bind)*
            (#expr) as f64
        })
    }
}

/// Whether `tokens` contain the identifier `name`.
fn mentions(tokens: TokenStream, name: &Ident) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == *name,
        TokenTree::Group(g) => mentions(g.stream(), name),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> syn::Result<String> {
        let args: TaskArgs = syn::parse_str(attr)?;
        let func: ItemFn = syn::parse_str(item)?;
        Ok(expand(args, func)?.to_string().replace(' ', ""))
    }

    fn error(attr: &str, item: &str) -> String {
        match expand_str(attr, item) {
            Ok(out) => panic!("expected an error, got {out}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn keeps_the_function_and_adds_struct_task_impl_and_registration() {
        let out = expand_str(
            "pure",
            "pub fn count(words: Vec<String>) -> usize { words.len() }",
        )
        .unwrap();
        assert!(out.starts_with("pubfncount(words:Vec<String>)->usize{words.len()}"));
        assert!(out.contains("pubstructcount<'dagger>"));
        assert!(out.contains("pubfnnode(self,words:::dagger::__private::Value<Vec<String>>)->::dagger::__private::Value<usize>"));
        assert!(out.contains("impl::dagger::__private::Taskforcount<'static>"));
        assert!(out.contains("typeParams=(Vec<String>,);typeOutput=usize;"));
        assert!(out.contains("static__DAGGER_TASK_count:::dagger::__private::TaskDef"));
        assert!(out.contains("name:concat!(module_path!(),\"::\",\"count\")"));
        assert!(out.contains("cost:::dagger::__private::CostHint::Unknown"));
        assert!(out.contains("device:::dagger::__private::Device::Any"));
        assert!(out.contains("pure:true"));
        assert!(out.contains("take_arg(args.next().flatten(),\"count\",0usize)?"));
        assert!(out.contains("inventory::submit!"));
    }

    #[test]
    fn result_tasks_output_the_ok_type_and_map_errors_to_strings() {
        let out = expand_str(
            "",
            "fn parse(s: String) -> Result<u64, ParseIntError> { todo!() }",
        )
        .unwrap();
        assert!(out.contains("typeOutput=u64;"));
        assert!(out.contains("parse(s).map_err(|e|e.to_string())?"));
        let out = expand_str("", "fn read(p: String) -> io::Result<Vec<u8>> { todo!() }").unwrap();
        assert!(out.contains("typeOutput=Vec<u8>;"));
        let out = expand_str("", "fn log(s: String) { }").unwrap();
        assert!(out.contains("typeOutput=();"));
    }

    #[test]
    fn cost_is_fixed_or_a_function_of_the_named_parameters() {
        let out = expand_str("cost = 2e-6, device = \"gpu\"", "fn f(a: u64) -> u64 { a }").unwrap();
        assert!(out.contains("CostHint::Seconds((2e-6)asf64)"));
        assert!(out.contains("Device::Gpu"));
        assert!(out.contains("pure:false"));
        let out = expand_str(
            "cost = 1e-9 * b.len() as f64",
            "fn g(a: u64, b: Vec<u8>) -> u64 { a }",
        )
        .unwrap();
        assert!(out.contains("CostHint::Dynamic"));
        assert!(out.contains("let::std::option::Option::Some(b)=args.get(1usize).and_then(|d|d.downcast_ref::<Vec<u8>>())else{return0.0;};"));
        assert!(!out.contains("Some(a)"), "unused parameters are not bound");
    }

    #[test]
    fn a_gradient_task_is_recorded_and_its_signature_checked() {
        let out = expand_str(
            "grad = softplus_grad",
            "fn softplus(x: Array) -> Array { x }",
        )
        .unwrap();
        assert!(out.contains("grad:::std::option::Option::Some(||<softplus_grad<'static>as::dagger::__private::Task>::def())"));
        assert!(out.contains("G:::dagger::__private::Task<Params=(Array,Array,),Output=Array>"));
        let out = expand_str("grad = g2", "fn f(a: Array, b: Array) -> Array { a }").unwrap();
        assert!(out.contains("Params=(Array,Array,Array,),Output=(Array,Array,)"));
        let out = expand_str("", "fn f(a: Array) -> Array { a }").unwrap();
        assert!(out.contains("grad:::std::option::Option::None"));
    }

    #[test]
    fn the_crate_option_roots_every_generated_path() {
        let item = "fn f(a: u64, b: Vec<u8>) -> Result<u64, E> { todo!() }";
        let attr =
            "pure, crate = dg, cost = 1e-9 * b.len() as f64, device = \"cpu\", grad = g, gpu = h";
        let out = expand_str(attr, item).unwrap();
        assert!(!out.contains("::dagger"), "{out}");
        assert!(out.contains("impldg::__private::Taskforf<'static>"));
        assert!(out.contains(
            "dg::__private::inventory::submit!{dg::__private::TaskRegistration(&__DAGGER_TASK_f)}"
        ));
        assert!(out.contains("dg::__private::take_arg(args.next().flatten(),\"f\",1usize)?"));
        assert!(out.contains("device:dg::__private::Device::Cpu"));
        assert!(out.contains("pure:true"));
        let out = expand_str("crate = \"crate\"", item).unwrap();
        assert!(out.contains("implcrate::__private::Taskforf<'static>"));
        assert!(!out.contains("::dagger"), "{out}");
    }

    #[test]
    fn bad_options_and_signatures_are_errors_naming_the_culprit() {
        assert!(
            error("crate = 3", "fn f() {}").starts_with("expected the path of the `dagger` crate")
        );
        assert!(error("crate", "fn f() {}").starts_with("expected `=` after `crate`"));
        assert!(error("fast", "fn f() {}").contains("unknown task option `fast`"));
        assert!(error("device = \"tpu\"", "fn f() {}").contains("unknown device \"tpu\""));
        assert!(error("", "async fn f() {}").contains("synchronous"));
        assert!(error("", "fn f<T>(x: T) {}").contains("cannot be generic"));
        assert!(error("", "fn f(x: u8) where u8: Copy {}").contains("cannot be generic"));
        assert!(error("", "unsafe fn f() {}").contains("`unsafe`"));
        assert!(error("", "fn f(&self) {}").contains("free function"));
        assert!(error("", "fn f((a, b): (u8, u8)) {}").contains("plain names"));
        assert!(error("", "fn f(s: &str) {}").contains("not a borrow"));
        assert!(error("", "fn f(s: u8) -> impl Clone { s }").contains("`impl Trait`"));
        assert!(expand_str("", "fn f(s: &'static str) -> &'static str { s }").is_ok());
    }
}
