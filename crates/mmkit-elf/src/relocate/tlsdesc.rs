//! mmkit's TLS descriptor resolver for AArch64 (`R_AARCH64_TLSDESC`, the default TLS dialect
//! of GCC and Clang there, and the only one Android uses).
//!
//! A descriptor is two words in the GOT: the resolver's address and its argument. Code reaching
//! a `__thread` variable loads word 0, calls it with `x0` = the descriptor's address, and adds
//! the returned `x0` to the thread pointer (`TPIDR_EL0`). The resolver must preserve every
//! other register the caller may use (x1–x29, the SIMD registers): unlike a normal call, the
//! compiler assumes only `x0`, `x30` and the flags change. glibc's static-TLS resolver returns
//! a constant; mmkit's blocks are per thread and allocated on first use (`relocate/tls.rs`),
//! so its resolver saves the caller-saved registers, asks [`tls`](super::tls) for this
//! thread's address of the variable (in mmkit's block, or from the system linker's
//! `__tls_get_addr` for a variable of an object glibc loaded), and returns `address - tp`.
//!
//! SVE: only the low 128 bits of the vector registers are saved (the Rust code called may
//! write `v0`–`v31`, which zeroes the upper bits of the `z` registers); code compiled to keep
//! SVE state live across a TLS access would lose it, as with glibc before 2.38.

use super::aarch64::unpack_tls_argument;
use super::tls;

/// This thread's address of a descriptor's variable; called only by the resolver below.
extern "C" fn tlsdesc_block(arg: u64) -> *mut u8 {
    let (module, offset) = unpack_tls_argument(arg);
    tls::address(module, offset, "TLS descriptor")
}

core::arch::global_asm!(
    ".text",
    ".balign 16",
    ".globl __mmkit_elf_tlsdesc_dynamic",
    ".hidden __mmkit_elf_tlsdesc_dynamic",
    ".type __mmkit_elf_tlsdesc_dynamic, %function",
    "__mmkit_elf_tlsdesc_dynamic:",
    ".cfi_startproc",
    "stp x29, x30, [sp, #-160]!",
    ".cfi_def_cfa_offset 160",
    ".cfi_offset x29, -160",
    ".cfi_offset x30, -152",
    "mov x29, sp",
    "stp x1, x2, [sp, #16]",
    "stp x3, x4, [sp, #32]",
    "stp x5, x6, [sp, #48]",
    "stp x7, x8, [sp, #64]",
    "stp x9, x10, [sp, #80]",
    "stp x11, x12, [sp, #96]",
    "stp x13, x14, [sp, #112]",
    "stp x15, x16, [sp, #128]",
    "stp x17, x18, [sp, #144]",
    "sub sp, sp, #512",
    "stp q0, q1, [sp, #0]",
    "stp q2, q3, [sp, #32]",
    "stp q4, q5, [sp, #64]",
    "stp q6, q7, [sp, #96]",
    "stp q8, q9, [sp, #128]",
    "stp q10, q11, [sp, #160]",
    "stp q12, q13, [sp, #192]",
    "stp q14, q15, [sp, #224]",
    "stp q16, q17, [sp, #256]",
    "stp q18, q19, [sp, #288]",
    "stp q20, q21, [sp, #320]",
    "stp q22, q23, [sp, #352]",
    "stp q24, q25, [sp, #384]",
    "stp q26, q27, [sp, #416]",
    "stp q28, q29, [sp, #448]",
    "stp q30, q31, [sp, #480]",
    "ldr x0, [x0, #8]",
    "bl {block}",
    "mrs x1, tpidr_el0",
    "sub x0, x0, x1",
    "ldp q0, q1, [sp, #0]",
    "ldp q2, q3, [sp, #32]",
    "ldp q4, q5, [sp, #64]",
    "ldp q6, q7, [sp, #96]",
    "ldp q8, q9, [sp, #128]",
    "ldp q10, q11, [sp, #160]",
    "ldp q12, q13, [sp, #192]",
    "ldp q14, q15, [sp, #224]",
    "ldp q16, q17, [sp, #256]",
    "ldp q18, q19, [sp, #288]",
    "ldp q20, q21, [sp, #320]",
    "ldp q22, q23, [sp, #352]",
    "ldp q24, q25, [sp, #384]",
    "ldp q26, q27, [sp, #416]",
    "ldp q28, q29, [sp, #448]",
    "ldp q30, q31, [sp, #480]",
    "add sp, sp, #512",
    "ldp x1, x2, [sp, #16]",
    "ldp x3, x4, [sp, #32]",
    "ldp x5, x6, [sp, #48]",
    "ldp x7, x8, [sp, #64]",
    "ldp x9, x10, [sp, #80]",
    "ldp x11, x12, [sp, #96]",
    "ldp x13, x14, [sp, #112]",
    "ldp x15, x16, [sp, #128]",
    "ldp x17, x18, [sp, #144]",
    "ldp x29, x30, [sp], #160",
    ".cfi_def_cfa_offset 0",
    "ret",
    ".cfi_endproc",
    ".size __mmkit_elf_tlsdesc_dynamic, . - __mmkit_elf_tlsdesc_dynamic",
    block = sym tlsdesc_block,
);

extern "C" {
    /// The resolver above (not callable from Rust: its argument is in `x0` and it returns an
    /// offset from the thread pointer).
    fn __mmkit_elf_tlsdesc_dynamic();
}

/// The run-time address of the resolver, for word 0 of a descriptor.
pub(crate) fn resolver_address() -> u64 {
    __mmkit_elf_tlsdesc_dynamic as *const () as usize as u64
}
