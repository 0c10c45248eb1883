//! Procedural macros of Dagger for Rust: [`macro@task`] and [`dag!`].
//!
//! Use them through the `dagger` crate (`use dagger::prelude::*;`): the code
//! they generate refers to `::dagger::...`, or to the path given by their
//! `crate = path` option (`#[task(crate = dg)]`, `dag!(crate = dg; ...)`).

#![warn(missing_docs)]

mod dag;
mod root;
mod task;

use proc_macro::TokenStream;

/// Turns a free function into a task.
///
/// ```text
/// #[task(pure, cost = 2e-9 * text.len() as f64)]
/// fn tokenize(text: String) -> Vec<String> { ... }
/// ```
///
/// The function stays an ordinary function. Next to it the macro registers a
/// task named `module::path::tokenize` (found by name at run time) and a
/// type of the same name whose `on(&builder).node(..)` adds a call to a
/// graph with typed handles, which is what `dag!{}` expands to.
///
/// Options, comma-separated:
/// - `pure`: no side effects, so equal calls may be merged and unused ones dropped;
/// - `cost = <expr>`: estimated seconds; the expression may use the
///   parameters (by reference), e.g. `cost = 1e-9 * v.len() as f64`;
/// - `device = "cpu" | "gpu" | "any"` (default `any`);
/// - `grad = <task>`: the task's gradient task, for tasks of tensors
///   (`dagger::nn::Array`) that a tensor graph calls as custom ops: it
///   takes the task's parameters and then the gradient of its result, and
///   returns the gradient of each parameter (alone for one parameter, a
///   tuple for several). Autodiff calls it; a signature that does not fit
///   is a compile error at `grad = ...`:
///
/// ```text
/// #[task(pure, grad = softplus_grad)]
/// fn softplus(x: Array) -> Array { .. }
/// #[task(pure)]
/// fn softplus_grad(x: Array, dy: Array) -> Array { .. }   // dy * sigmoid(x)
/// ```
///
/// - `gpu = <function>`: a second body of the same task for an accelerator
///   (see `dagger::device`): it takes the device first (as the
///   concrete type it needs, e.g. `&dagger::cuda::GpuDevice`), then the
///   task's parameters, and returns `Result<T, E>` (`E: Display`) for the
///   task's output `T`, since device calls can fail. The placement
///   policies may then run the task on a GPU worker, which calls this body;
///   a signature that does not fit is a compile error at `gpu = ...`:
///
/// ```text
/// #[task(gpu = gemm_gpu)]
/// fn gemm(c: Tile, a: Tile, b: Tile) -> Tile { .. }           // faer on a core
/// fn gemm_gpu(gpu: &GpuDevice, c: Tile, a: Tile, b: Tile) -> Result<Tile, CudaError> { .. }
/// ```
/// - `crate = <path>` (or the path as a string, `crate = "my::reexport"`):
///   where the generated code finds the `dagger` crate, `::dagger` by
///   default. For a crate that reaches `dagger` under another name (a
///   renamed dependency, a re-export), and for `dagger` itself (`crate = crate`):
///
/// ```text
/// use dagger as dg;                // or `pub use dagger::*` in some module
///
/// #[task(pure, crate = dg)]
/// fn double(x: u64) -> u64 { x * 2 }
/// ```
///
/// A function returning `Result<T, E>` (with `E: Display`; any type whose
/// path ends in `Result`, so `io::Result<T>` too) is a task of output `T`;
/// returning `Err` fails the run with `RunError::TaskFailed { task, message }`,
/// the message being the error's `Display`. Spawned (`spawn(parse, (s,))`),
/// its handle feeds later spawns that take `T` with the `Ok` value, and an
/// `Err` cancels them with the same `TaskFailed`, naming the task;
/// `try_spawn` gives a handle of `T` whose `wait` fails that way, while
/// waiting on a plain `spawn`'s handle gives the `Result` itself
/// (see the module docs of `dagger_runtime::spawn`):
///
/// ```text
/// #[task]
/// fn parse(text: String) -> Result<u64, ParseIntError> { text.trim().parse() }
///
/// let n = spawn(parse, ("40".to_string(),));          // Handle<Result<u64, _>>
/// let sum = spawn(plus, (n, 2u64));                    // plus(a: u64, b: u64)
/// assert_eq!(sum.wait()?, 42);                         // an Err: TaskFailed { task: "..::parse", .. }
/// assert_eq!(try_spawn(parse, ("7".to_string(),)).wait()?, 7);
/// ```
///
/// The function must be free, synchronous, safe and not generic; parameters
/// must be plain names; parameter and result types must be owned
/// (`Clone + Send + Sync + 'static`: no borrows but `&'static`, no `impl Trait`).
/// Anything else is a compile error pointing at the culprit.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = syn::parse_macro_input!(item as syn::ItemFn);
    syn::parse::<task::TaskArgs>(attr)
        .and_then(|args| task::expand(args, func.clone()))
        .unwrap_or_else(|e| {
            // Keep the function, so that a mistake in the attribute does not
            // also make every call of the function an error.
            let mut out = e.into_compile_error();
            out.extend(quote::ToTokens::into_token_stream(func));
            out
        })
        .into()
}

/// Builds a typed graph, a `Dag<Inputs, Outputs>`, in macro syntax.
///
/// ```text
/// let g: Dag<(String,), (Vec<String>, usize)> = dag! {
///     input doc: String;             // graph inputs, in order
///     let w = tokenize(doc);         // a task call, bound to a name
///     let n = scale(count(w), 3);    // calls nest; 3 is a constant
///     (w, n)                         // the outputs: a value or a tuple
/// };
/// let (words, n) = runtime.run(&g, ("a b c".to_string(),))?;
/// ```
///
/// In argument position, a name bound by `input` or `let` is that graph
/// value; `path(args)` is a task call; anything else (a literal, a variable
/// of the enclosing scope, `{ block }`) is a constant evaluated once when
/// the graph is built. To pass the result of an ordinary function call as a
/// constant, write it in braces: `{ load_config() }`.
///
/// A leading `crate = <path>;` (or `crate = "path";`) says where the
/// generated code finds the `dagger` crate, `::dagger` by default, as
/// `#[task(crate = ...)]` does:
///
/// ```text
/// use dagger as dg;
///
/// let g = dg::dag!(crate = dg; input x: u64; let y = double(x); y);
/// ```
///
/// A task is called by its name or path (`stats::mean(xs)`); a call
/// `t(a, b)` imports `t` as `__dagger_task` and expands to
/// `<__dagger_task<'_>>::on(&builder).node(a, b)`, the type of the same
/// name that `#[task]` generates.
///
/// Wiring is checked by the Rust compiler at the user's code: a plain
/// function that is not a task ("`helper` is not a `#[task]`", with a note
/// to add `#[task]` to its definition), an unknown name ("unresolved import
/// `t`", then "`t` is not a `#[task]`"), a wrong number of arguments, an
/// argument of the wrong type (`Value<u32>` where `Value<String>` is
/// wanted), a name used before its binding, a name bound twice and a
/// missing output are compile errors.
#[proc_macro]
pub fn dag(input: TokenStream) -> TokenStream {
    let body = syn::parse_macro_input!(input as dag::DagBody);
    dag::expand(body)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
