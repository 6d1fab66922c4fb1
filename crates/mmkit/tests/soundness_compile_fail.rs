//! Routes to an unwritable, dead, aliased or unmapped byte that the type system closes: each
//! file in `tests/ui/` must fail to compile, with the error recorded beside it (`.stderr`).
//! Regenerate the expected errors after a toolchain update with `TRYBUILD=overwrite`.

#[test]
fn routes_the_type_system_closes() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
