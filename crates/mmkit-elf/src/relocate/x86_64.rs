//! What is x86_64's own in relocation: the addend rule and how IFUNC resolvers are called.

use crate::machine::RelocKind;

/// The addend a symbol relocation adds: `R_X86_64_64` is `S + A`; `GLOB_DAT` and `JUMP_SLOT`
/// are `S` (glibc ignores their addend, which linkers leave 0).
pub(crate) fn symbol_addend(kind: RelocKind, addend: i64) -> i64 {
    if kind == RelocKind::Abs64 {
        addend
    } else {
        0
    }
}

/// Calls an IFUNC resolver with no arguments (glibc's resolvers on x86_64 read the CPU
/// features themselves, through `__x86_get_cpu_features` or `cpuid`).
///
/// # Safety
/// `resolver` must be the run-time address of an IFUNC resolver of a relocated library.
#[cfg(not(target_arch = "aarch64"))]
pub(crate) unsafe fn call_ifunc_resolver(resolver: u64) -> u64 {
    type Resolver = unsafe extern "C" fn() -> usize;
    // SAFETY: the caller vouches this is a resolver (signature `void *(*)(void)`; resolvers
    // that declare hwcap arguments ignore them on x86_64).
    (unsafe { std::mem::transmute::<usize, Resolver>(resolver as usize)() }) as u64
}

/// The resolver of an x86_64 TLS descriptor (`R_X86_64_TLSDESC`) whose variable is in static
/// TLS: returns the descriptor's argument, the variable's offset from the thread pointer, as
/// glibc's `_dl_tlsdesc_return` does. Called by the library's code with `rax` = the
/// descriptor's address; every other register is preserved (the descriptor ABI).
///
/// # Safety
/// Never called from Rust: its address is written into descriptors.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn tlsdesc_static() {
    core::arch::naked_asm!("mov rax, qword ptr [rax + 8]", "ret")
}
