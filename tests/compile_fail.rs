//! Compile errors of `#[task]` and `dag!{}`, pinned with trybuild: each case
//! in `tests/ui/` must fail to compile with the message in its `.stderr`.

#[test]
fn macro_misuse_is_a_compile_error_at_the_users_code() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
