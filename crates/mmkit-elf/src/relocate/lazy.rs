//! The part of lazy binding a loader owes `dlopen(RTLD_LAZY)`: a call nothing defines fails
//! when it is made, not when the library loads.
//!
//! glibc binds a library's calls through its PLT (`JUMP_SLOT` relocations) at their first
//! call when the library is opened with `RTLD_LAZY`. So a library whose code names a function
//! that no loaded object defines still loads, and only the call fails, if it is ever made:
//! glibc prints `<program>: symbol lookup error: <library>: undefined symbol: <name>` and ends
//! the process with status 127. Plug-ins rely on it (code for an optional feature, never
//! reached, that names a function of a library the host does not have).
//!
//! mmkit-elf binds every reference it can at load, as with `RTLD_NOW`. With
//! [`LoadOptions::lazy_binding`](crate::LoadOptions::lazy_binding) (and for a
//! `dlopen(RTLD_LAZY)` made by a library it mapped), a `JUMP_SLOT` whose function nothing
//! defines is left as the linker wrote it, pointing back into the PLT (plus the load bias).
//! There the PLT's first entry jumps through word 2 of the GOT (`DT_PLTGOT`). On x86_64 it has
//! pushed word 1 and the slot's index in `DT_JMPREL`; on aarch64 it has pushed the slot's
//! address and left the GOT's address in `x16`. mmkit-elf writes its trampoline into word 2
//! and the [`LazyPlt`] naming the slots into word 1. The trampoline calls
//! [`undefined_called`], which prints glibc's message and exits with 127.
//!
//! Unlike glibc, the function is not looked up again at the call: a definition that appeared
//! after the load (a library opened `RTLD_GLOBAL` since) is not found. The trampoline never
//! returns, so it saves no registers. A library linked `-z now` (`DT_BIND_NOW`, `DF_1_NOW`) is
//! bound at load whatever the caller asks, as glibc binds it; so are references that are not
//! calls through the PLT (`GLOB_DAT`: an undefined one fails the load, with glibc too).

use crate::error::{Error, Result};
use crate::image::Image;

/// A `JUMP_SLOT` left unbound: what the trampoline is told, and the name it reports.
#[derive(Debug)]
pub(crate) struct LazySlot {
    /// Index of the relocation in `DT_JMPREL` (what x86_64's PLT entry pushes).
    pub index: u64,
    /// Run-time address of the GOT slot (what aarch64's PLT entry pushes).
    pub slot: u64,
    /// The symbol, with `, version V` when the reference asks for one (glibc's wording).
    pub name: String,
}

/// What GOT word 1 of a library with unbound `JUMP_SLOT`s points to; owned by the library's
/// `Object`, which outlives the library's mapping (and so every call that reaches it).
#[derive(Debug)]
pub(crate) struct LazyPlt {
    /// The library as glibc's message names it.
    label: String,
    slots: Vec<LazySlot>,
}

impl LazyPlt {
    /// The unbound functions' names, in relocation order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }
}

/// Points the PLT of the image at the trampoline: GOT word 1 (`pltgot + 8`) gets the
/// [`LazyPlt`] for `slots`, word 2 the trampoline's address. Called before RELRO is protected.
pub(crate) fn install(image: &Image, pltgot: u64, label: &str, slots: Vec<LazySlot>) -> Result<Box<LazyPlt>> {
    let plt = Box::new(LazyPlt { label: label.to_owned(), slots });
    let word1 = pltgot.checked_add(8).ok_or_else(|| got_outside(pltgot))?;
    let word2 = pltgot.checked_add(16).ok_or_else(|| got_outside(pltgot))?;
    image.write_u64(word1, &*plt as *const LazyPlt as u64)?;
    image.write_u64(word2, trampoline as *const () as usize as u64)?;
    Ok(plt)
}

#[cold]
fn got_outside(pltgot: u64) -> Error {
    Error::new("relocate", crate::error::ErrorKind::BadDynamic, format!("DT_PLTGOT {pltgot:#x} is out of range"))
}

/// Reached from the PLT of a library through an unbound slot (see the module documentation):
/// `key` is the slot's `DT_JMPREL` index on x86_64, its address on aarch64. Prints glibc's
/// message and ends the process with status 127, as glibc does.
extern "C" fn undefined_called(plt: *const LazyPlt, key: u64) -> ! {
    // SAFETY: `plt` is GOT word 1 of a library mmkit mapped, written by `install` with the
    // address of the `LazyPlt` its `Object` owns while the library is mapped; the call came
    // from the library's code, so it is mapped. Nothing writes the `LazyPlt` after `install`.
    let plt = unsafe { &*plt };
    let by_index = cfg!(target_arch = "x86_64");
    let name = plt
        .slots
        .iter()
        .find(|s| if by_index { s.index == key } else { s.slot == key })
        .map_or("(unknown)", |s| s.name.as_str());
    let program = std::env::args_os().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let message = format!("{program}: symbol lookup error: {}: undefined symbol: {name}\n", plt.label);
    let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
    // SAFETY: ends the process at once, as glibc's `_dl_signal_error` does from a lazy
    // binding (no `atexit` handler runs in the middle of the library's call).
    unsafe { libc::_exit(127) }
}

/// The PLT's resolver: hands the slot's identity to [`undefined_called`], which never returns.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    // The PLT's first entry pushed GOT word 1 (`[rsp]`), the PLT entry the `DT_JMPREL` index
    // (`[rsp + 8]`); the stack is then 8 bytes off the ABI's 16-byte alignment, rounded here.
    core::arch::naked_asm!(
        "endbr64",
        "mov rdi, qword ptr [rsp]",
        "mov rsi, qword ptr [rsp + 8]",
        "and rsp, -16",
        "call {called}",
        "ud2",
        called = sym undefined_called,
    )
}

/// The PLT's resolver: hands the slot's identity to [`undefined_called`], which never returns.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    // The PLT's first entry pushed the slot's address (the PLT entry's `x16`) and `x30`, and
    // left `x16` = the address of GOT word 2, so word 1 is at `x16 - 8`. `bti c` (a no-op
    // without BTI): the PLT reaches here with `br x17`.
    core::arch::naked_asm!(
        "hint #34",
        "ldr x0, [x16, #-8]",
        "ldr x1, [sp]",
        "bl {called}",
        "brk #1",
        called = sym undefined_called,
    )
}

/// No PLT to bind lazily on other machines (the loader relocates x86_64 and aarch64 only).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe extern "C" fn trampoline() {
    let _ = undefined_called as extern "C" fn(*const LazyPlt, u64) -> !;
}
