//! The `mmkit` binary's tests, run as a user would: one test binary (DESIGN.md), one module per
//! area, the helpers they share in [`common`].
//!
//! `scripts/test` runs this binary as root and again as uid 65534; the `limits` tests set their
//! resource limits on the child they start (with `prlimit`), never on this process, so they
//! share the binary with the rest.

mod common;

mod elf;
mod hostile;
mod inspect;
mod limits;
mod mmio;
mod pager;
mod tour;
