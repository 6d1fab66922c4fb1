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

/// This thread's address of a dynamic descriptor's variable (module and offset packed in its
/// argument by `aarch64::tls_descriptor`); called only by the dynamic resolver's assembly
/// below.
#[cfg(target_arch = "x86_64")]
extern "C" fn tlsdesc_block(arg: u64) -> *mut u8 {
    let (module, offset) = super::aarch64::unpack_tls_argument(arg);
    super::tls::address(module, offset, "TLS descriptor")
}

/// Bytes the `xsave` area of this CPU's enabled state components takes (`CPUID.(EAX=0DH,
/// ECX=0):EBX`), or 0 where the OS has not enabled `xsave` (then `fxsave`'s 512 bytes, x87 and
/// SSE, are saved): read by the dynamic resolver below, set before a descriptor names it.
/// Also read by the lazy PLT's resolver (`lazy.rs`); set by [`size_xsave_area`].
#[cfg(target_arch = "x86_64")]
pub(crate) static XSAVE_SIZE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets [`XSAVE_SIZE`] for this CPU, before an address of a resolver that reads it is written.
#[cfg(target_arch = "x86_64")]
pub(crate) fn size_xsave_area() {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID leaf 1, ECX bit 27: OSXSAVE (the OS enabled xsave, and XCR0 says what it saves).
    // Leaf 0xD sub-leaf 0, EBX: the size of the xsave area for the components XCR0 enables.
    // SAFETY: CPUID exists on every x86_64 CPU (the intrinsics are `unsafe` before Rust 1.89,
    // the crate's rust-version is older).
    #[allow(unused_unsafe)]
    let size = unsafe {
        if __cpuid(1).ecx & (1 << 27) != 0 {
            u64::from(__cpuid_count(0xd, 0).ebx)
        } else {
            0
        }
    };
    XSAVE_SIZE.store(size.max(if size > 0 { 576 } else { 0 }), std::sync::atomic::Ordering::Relaxed);
}

// `__mmkit_elf_call_keeping_vectors(a, b, f)`: calls `f(a, b)` (`rdi`, `rsi`, the function in
// `rdx`) with the vector, x87 and mask state saved around it by `xsave`/`xrstor` (sized by
// [`XSAVE_SIZE`]; `fxsave` where the OS has no xsave), and returns `f`'s `rax`. For the
// resolvers the library's code calls where the compiler assumes its vector registers survive:
// the TLS descriptor resolver below and the lazy PLT's (`lazy.rs`), which save the integer
// registers themselves. The Rust code and the `malloc`, `memcpy` and `__tls_get_addr` they call
// may use any vector register (glibc's AVX string functions end with `vzeroupper`, which clears
// the upper halves), as glibc 2.39's `_dl_tlsdesc_dynamic_xsavec` and `_dl_runtime_resolve_xsavec`
// allow for.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".text",
    ".balign 16",
    ".globl __mmkit_elf_call_keeping_vectors",
    ".hidden __mmkit_elf_call_keeping_vectors",
    ".type __mmkit_elf_call_keeping_vectors, @function",
    "__mmkit_elf_call_keeping_vectors:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "mov r10, rdx",
    "mov r11, qword ptr [rip + {size}]",
    "test r11, r11",
    "jz 2f",
    "sub rsp, r11",
    "and rsp, -64",
    // The xsave header (64 bytes at 512) must start zeroed: xsave writes only XSTATE_BV, and
    // xrstor faults on nonzero reserved bytes.
    "xor eax, eax",
    "mov qword ptr [rsp + 512], rax",
    "mov qword ptr [rsp + 520], rax",
    "mov qword ptr [rsp + 528], rax",
    "mov qword ptr [rsp + 536], rax",
    "mov qword ptr [rsp + 544], rax",
    "mov qword ptr [rsp + 552], rax",
    "mov qword ptr [rsp + 560], rax",
    "mov qword ptr [rsp + 568], rax",
    "mov eax, -1",
    "mov edx, -1",
    "xsave64 [rsp]",
    "call r10",
    "mov r11, rax",
    "mov eax, -1",
    "mov edx, -1",
    "xrstor64 [rsp]",
    "jmp 3f",
    "2:",
    "sub rsp, 512",
    "and rsp, -64",
    "fxsave64 [rsp]",
    "call r10",
    "mov r11, rax",
    "fxrstor64 [rsp]",
    "3:",
    "mov rax, r11",
    "mov rsp, rbp",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size __mmkit_elf_call_keeping_vectors, . - __mmkit_elf_call_keeping_vectors",
    size = sym XSAVE_SIZE,
);

// mmkit's resolver of x86_64 TLS descriptors (`R_X86_64_TLSDESC`, `-mtls-dialect=gnu2`) of
// variables in dynamic TLS blocks: mmkit's blocks (allocated per thread on first use, see
// `relocate/tls.rs`) and those of objects glibc loaded (its `__tls_get_addr`). Called by the
// library's code with `rax` = the descriptor's address; returns in `rax` the variable's offset
// from the thread pointer (`%fs:0`). The compiler assumes the call changes only `rax` and the
// flags, so every other register is preserved: the caller-saved integer registers on the
// stack, the vector, x87 and mask state by `__mmkit_elf_call_keeping_vectors`, as glibc 2.39's
// `_dl_tlsdesc_dynamic_xsavec` does.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".text",
    ".balign 16",
    ".globl __mmkit_elf_tlsdesc_dynamic_x86_64",
    ".hidden __mmkit_elf_tlsdesc_dynamic_x86_64",
    ".type __mmkit_elf_tlsdesc_dynamic_x86_64, @function",
    "__mmkit_elf_tlsdesc_dynamic_x86_64:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "mov rdi, qword ptr [rax + 8]",
    "lea rdx, [rip + {block}]",
    "call __mmkit_elf_call_keeping_vectors",
    "sub rax, qword ptr fs:[0]",
    "lea rsp, [rbp - 64]",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size __mmkit_elf_tlsdesc_dynamic_x86_64, . - __mmkit_elf_tlsdesc_dynamic_x86_64",
    block = sym tlsdesc_block,
);

#[cfg(target_arch = "x86_64")]
extern "C" {
    /// The resolver above (not callable from Rust: its argument is in `rax` and it returns an
    /// offset from the thread pointer).
    fn __mmkit_elf_tlsdesc_dynamic_x86_64();
}

/// The run-time address of the dynamic resolver, for word 0 of a descriptor; sizes its save
/// area for this CPU first.
#[cfg(target_arch = "x86_64")]
pub(crate) fn tlsdesc_dynamic_address() -> u64 {
    size_xsave_area();
    __mmkit_elf_tlsdesc_dynamic_x86_64 as *const () as usize as u64
}
