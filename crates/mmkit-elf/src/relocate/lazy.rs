//! Lazy binding, for the functions that need it: `dlopen(RTLD_LAZY)` loads a library whose
//! code calls a function nothing defines yet, and binds the call when it is made.
//!
//! glibc binds a library's calls through its PLT (`JUMP_SLOT` relocations) at their first call
//! when the library is opened with `RTLD_LAZY`. So a library whose code names a function that
//! no loaded object defines still loads: a library opened `RTLD_GLOBAL` later may define it by
//! the time of the call, or the call is never made (code for an optional feature). If the call
//! is made and the function is still undefined, glibc prints `<program>: symbol lookup error:
//! <library>: undefined symbol: <name>` and ends the process with status 127.
//!
//! mmkit-elf binds every reference it can at load, as with `RTLD_NOW` (a defined function
//! costs nothing more at its first call). With
//! [`LoadOptions::lazy_binding`](crate::LoadOptions::lazy_binding), and for a
//! `dlopen(RTLD_LAZY)` made by a library it mapped, a `JUMP_SLOT` whose function nothing
//! defines is left as the linker wrote it, pointing back into the PLT (plus the load bias).
//! There the PLT's first entry jumps through word 2 of the GOT (`DT_PLTGOT`). On x86_64 it has
//! pushed word 1 and the slot's index in `DT_JMPREL`; on aarch64 it has pushed the slot's
//! address and the return address, and left the address of word 2 in `x16`. mmkit-elf writes
//! its trampoline into word 2 and the [`LazyPlt`] of the library into word 1.
//!
//! The trampoline saves the registers that carry arguments (x86_64: the integer ones, and the
//! vector, x87 and mask state with `xsave` sized by CPUID, through the helper the TLS
//! descriptor resolver uses (`x86_64.rs`);
//! aarch64: `x0`–`x8` and `q0`–`q7`) and calls [`lazy_fixup`], which looks the function up
//! again in the library's scope, as it is at the call ([`LateBind`]). Found, the address is
//! written into the slot (the next call goes straight there) and the trampoline jumps to it
//! with the caller's arguments and return address. Not found, glibc's message is printed and
//! the process ends with 127.
//!
//! A library linked `-z now` (`DT_BIND_NOW`, `DF_1_NOW`) is bound at load whatever the caller
//! asks, as glibc binds it; so are references that are not calls through the PLT (`GLOB_DAT`:
//! an undefined one fails the load, with glibc too). A slot in the RELRO range (never, from
//! GNU ld or lld without `-z now`) is not written at the call: every call then looks again.
//! On aarch64, a call to a function of a variant PCS (`STO_AARCH64_VARIANT_PCS`, in a library
//! with `DT_AARCH64_VARIANT_PCS`: the AdvSIMD vector PCS, SVE's) is bound at load, as glibc
//! binds it: its callers count on registers the trampoline does not keep (`q8`–`q23` whole,
//! the `z` and `p` registers), so the trampoline only ever serves base-PCS calls.

use super::Target;
use crate::error::{Error, Result};
use crate::image::Image;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a library whose PLT slots are bound late answers: the address a symbol binds to now.
pub(crate) trait LateBind: Sync {
    /// What symbol `sym` of the library binds to at this moment, in the library's scope (as
    /// its relocation ordered it: `RTLD_DEEPBIND` or not), or `None` if nothing defines it.
    fn late_bind(&self, sym: u32) -> Option<Target>;
}

/// A `JUMP_SLOT` left unbound at load.
#[derive(Debug)]
pub(crate) struct LazySlot {
    /// Index of the relocation in `DT_JMPREL` (what x86_64's PLT entry pushes).
    pub index: u64,
    /// Run-time address of the GOT slot (what aarch64's PLT entry pushes).
    pub slot: u64,
    /// The relocation's symbol.
    pub sym: u32,
    /// The symbol, with `, version V` when the reference asks for one (glibc's wording).
    pub name: String,
}

/// What GOT word 1 of a library with lazily bound slots points to; owned by the library's
/// `Object`, which outlives the library's mapping (and so every call that reaches it).
pub(crate) struct LazyPlt {
    /// The library as glibc's message names it.
    label: String,
    slots: Vec<LazySlot>,
    /// Per slot: written at its first call (it lies outside RELRO, 8-byte aligned).
    cache: Vec<bool>,
    /// The library, which looks the symbols up.
    owner: *const dyn LateBind,
}

// SAFETY: `owner` points to the `Object` that owns this `LazyPlt` (`install`'s contract), which
// is `Sync` (`LateBind: Sync`) and outlives it; the rest is plain owned data, never written
// after `install`.
unsafe impl Send for LazyPlt {}
// SAFETY: as above.
unsafe impl Sync for LazyPlt {}

impl std::fmt::Debug for LazyPlt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyPlt").field("label", &self.label).field("slots", &self.slots).finish_non_exhaustive()
    }
}

impl LazyPlt {
    /// The functions left unbound at load, in relocation order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }
}

/// Points the PLT of the image at the trampoline: GOT word 1 (`pltgot + 8`) gets the
/// [`LazyPlt`] for `slots`, word 2 the trampoline's address. `relro` is the plan's RELRO range
/// (slots there are not written at their call). Called before RELRO is protected.
///
/// `owner` must be the library's `Object`, which keeps the returned box for as long as the
/// image is mapped (its PLT reaches the box through GOT word 1).
pub(crate) fn install(
    image: &Image,
    pltgot: u64,
    (label, owner): (&str, &(dyn LateBind + 'static)),
    slots: Vec<LazySlot>,
    relro: Option<(u64, u64)>,
) -> Result<Box<LazyPlt>> {
    let in_relro = |slot: u64| {
        let vaddr = slot.wrapping_sub(image.bias());
        relro.is_some_and(|(start, len)| vaddr >= start && vaddr - start < len)
    };
    let cache = slots.iter().map(|s| s.slot % 8 == 0 && !in_relro(s.slot)).collect();
    let plt = Box::new(LazyPlt { label: label.to_owned(), slots, cache, owner: owner as *const dyn LateBind });
    let word1 = pltgot.checked_add(8).ok_or_else(|| got_outside(pltgot))?;
    let word2 = pltgot.checked_add(16).ok_or_else(|| got_outside(pltgot))?;
    #[cfg(target_arch = "x86_64")]
    super::x86_64::size_xsave_area();
    image.write_u64(word1, &*plt as *const LazyPlt as u64)?;
    image.write_u64(word2, trampoline as *const () as usize as u64)?;
    Ok(plt)
}

#[cold]
fn got_outside(pltgot: u64) -> Error {
    Error::new("relocate", crate::error::ErrorKind::BadDynamic, format!("DT_PLTGOT {pltgot:#x} is out of range"))
}

/// Reached from the trampoline when a lazily bound slot is called (see the module
/// documentation): `key` is the slot's `DT_JMPREL` index on x86_64, its address on aarch64.
/// Returns the function's address (written into the slot), or prints glibc's message and
/// ends the process with status 127, as glibc does, when nothing defines it.
extern "C" fn lazy_fixup(plt: *const LazyPlt, key: u64) -> u64 {
    // SAFETY: `plt` is GOT word 1 of a library mmkit mapped, written by `install` with the
    // address of the `LazyPlt` its `Object` owns while the library is mapped; the call came
    // from the library's code, so it is mapped. Nothing writes the `LazyPlt` after `install`.
    let plt = unsafe { &*plt };
    let by_index = cfg!(target_arch = "x86_64");
    let Some(i) = plt.slots.iter().position(|s| if by_index { s.index == key } else { s.slot == key }) else {
        undefined_called(plt, "(unknown)")
    };
    let slot = &plt.slots[i];
    // SAFETY: `owner` is the `Object` that owns `plt` (`install`'s contract), alive as above.
    let owner = unsafe { &*plt.owner };
    let address = match owner.late_bind(slot.sym) {
        Some(Target::Addr(a)) if a != 0 => a,
        // SAFETY: the resolver of an IFUNC a relocated library defines, called as a relocation
        // to it calls it.
        Some(Target::Ifunc(resolver)) => unsafe { super::call_ifunc_resolver(resolver) },
        _ => undefined_called(plt, &slot.name),
    };
    if plt.cache[i] {
        // The library's PLT reads the slot with one load: the old or the new address, both
        // lead to the function.
        // SAFETY: a GOT word of the mapped library (its `JUMP_SLOT` offset, checked at load),
        // 8-byte aligned and outside RELRO (`cache`), so writable for the library's life.
        unsafe { AtomicU64::from_ptr(slot.slot as usize as *mut u64) }.store(address, Ordering::Release);
    }
    address
}

/// Prints glibc's lazy-binding failure for `name` and ends the process with status 127.
#[cold]
fn undefined_called(plt: &LazyPlt, name: &str) -> ! {
    let program = std::env::args_os().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let message = format!("{program}: symbol lookup error: {}: undefined symbol: {name}\n", plt.label);
    let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
    // SAFETY: ends the process at once, as glibc's `_dl_signal_error` does from a lazy
    // binding (no `atexit` handler runs in the middle of the library's call).
    unsafe { libc::_exit(127) }
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    // The PLT's first entry pushed GOT word 1 and the PLT entry the `DT_JMPREL` index, above
    // the caller's return address: [rsp] word 1, [rsp + 8] the index, [rsp + 16] the return.
    // Argument registers (rdi, rsi, rdx, rcx, r8, r9, rax for varargs, r10, the vector
    // registers) are saved, `lazy_fixup` is called, they are restored, the two words are
    // dropped and the function is entered as if called directly.
    ".text",
    ".balign 16",
    ".globl __mmkit_elf_lazy_plt_x86_64",
    ".hidden __mmkit_elf_lazy_plt_x86_64",
    ".type __mmkit_elf_lazy_plt_x86_64, @function",
    "__mmkit_elf_lazy_plt_x86_64:",
    ".cfi_startproc",
    ".cfi_adjust_cfa_offset 16",
    "endbr64",
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset rbp, 0",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "mov rdi, qword ptr [rbp + 8]",
    "mov rsi, qword ptr [rbp + 16]",
    "lea rdx, [rip + {fixup}]",
    "call __mmkit_elf_call_keeping_vectors",
    "mov r11, rax",
    "lea rsp, [rbp - 64]",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "pop rbp",
    ".cfi_def_cfa rsp, 24",
    "add rsp, 16",
    ".cfi_def_cfa rsp, 8",
    "jmp r11",
    ".cfi_endproc",
    ".size __mmkit_elf_lazy_plt_x86_64, . - __mmkit_elf_lazy_plt_x86_64",
    fixup = sym lazy_fixup,
);

#[cfg(target_arch = "x86_64")]
extern "C" {
    /// The trampoline above (not callable from Rust: the PLT enters it with its own stack).
    #[link_name = "__mmkit_elf_lazy_plt_x86_64"]
    fn trampoline();
}

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    // The PLT's first entry pushed the PLT entry's x16 (the slot's address) and x30 (the
    // caller's return address), and left x16 = the address of GOT word 2 (word 1 is at
    // x16 - 8). Argument registers (x0-x8, q0-q7) are saved, `lazy_fixup` is called, they
    // are restored, the PLT's push is dropped and the function is entered with x30 as the
    // caller set it. `bti c` (a no-op without BTI): the PLT reaches here with `br x17`.
    ".text",
    ".balign 16",
    ".globl __mmkit_elf_lazy_plt_aarch64",
    ".hidden __mmkit_elf_lazy_plt_aarch64",
    ".type __mmkit_elf_lazy_plt_aarch64, %function",
    "__mmkit_elf_lazy_plt_aarch64:",
    ".cfi_startproc",
    ".cfi_def_cfa_offset 16",
    "hint #34",
    "stp x29, x30, [sp, #-224]!",
    ".cfi_def_cfa_offset 240",
    ".cfi_offset x29, -240",
    ".cfi_offset x30, -232",
    "mov x29, sp",
    "stp x0, x1, [sp, #16]",
    "stp x2, x3, [sp, #32]",
    "stp x4, x5, [sp, #48]",
    "stp x6, x7, [sp, #64]",
    "str x8, [sp, #80]",
    "stp q0, q1, [sp, #96]",
    "stp q2, q3, [sp, #128]",
    "stp q4, q5, [sp, #160]",
    "stp q6, q7, [sp, #192]",
    "ldr x0, [x16, #-8]",
    "ldr x1, [sp, #224]",
    "bl {fixup}",
    "mov x17, x0",
    "ldp q0, q1, [sp, #96]",
    "ldp q2, q3, [sp, #128]",
    "ldp q4, q5, [sp, #160]",
    "ldp q6, q7, [sp, #192]",
    "ldp x0, x1, [sp, #16]",
    "ldp x2, x3, [sp, #32]",
    "ldp x4, x5, [sp, #48]",
    "ldp x6, x7, [sp, #64]",
    "ldr x8, [sp, #80]",
    "ldp x29, x30, [sp], #224",
    ".cfi_def_cfa_offset 16",
    "add sp, sp, #16",
    ".cfi_def_cfa_offset 0",
    "br x17",
    ".cfi_endproc",
    ".size __mmkit_elf_lazy_plt_aarch64, . - __mmkit_elf_lazy_plt_aarch64",
    fixup = sym lazy_fixup,
);

#[cfg(target_arch = "aarch64")]
extern "C" {
    /// The trampoline above (not callable from Rust: the PLT enters it with its own stack).
    #[link_name = "__mmkit_elf_lazy_plt_aarch64"]
    fn trampoline();
}

/// No PLT to bind lazily on other machines (the loader relocates x86_64 and aarch64 only).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
extern "C" fn trampoline() {
    let _ = lazy_fixup as extern "C" fn(*const LazyPlt, u64) -> u64;
}
