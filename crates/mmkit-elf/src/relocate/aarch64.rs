//! What is AArch64's own in relocation: the addend rule, TLS descriptors and how IFUNC
//! resolvers are called.
//!
//! No instruction-cache flush (`__clear_cache`) is needed after relocating: AArch64's
//! instruction cache is not coherent with data writes, but the loader never writes to
//! executable pages. Segments are mapped from the file (the kernel keeps the caches coherent
//! for pages it maps), `.bss` is anonymous zero pages, and relocations write only writable
//! data and RELRO (text relocations are refused, see `DT_TEXTREL` in `dynamic.rs`). A loader
//! path that writes code (copying an image into memory and making it executable) would need
//! `__clear_cache` over the written range before the first call into it.

use crate::machine::RelocKind;

/// The addend a symbol relocation adds: `ABS64`, `GLOB_DAT` and `JUMP_SLOT` are all `S + A`
/// on AArch64.
pub(crate) fn symbol_addend(_kind: RelocKind, addend: i64) -> i64 {
    addend
}

/// Bits of a TLS descriptor's argument word that hold the offset in the block; the module id
/// takes the bits above.
pub(crate) const TLSDESC_OFFSET_BITS: u32 = 40;

/// The bit of the argument's module field that marks one of mmkit's own modules (the field's
/// top bit; [`tls::MMKIT_MODULE`](super::tls::MMKIT_MODULE) in a full module id).
const TLSDESC_MMKIT_BIT: u64 = 1 << (63 - TLSDESC_OFFSET_BITS);

/// The two words of a TLS descriptor for `offset` in the block of TLS module `module` (one of
/// mmkit's, tagged, or the system linker's): the address of mmkit's resolver, and its argument
/// (module and offset packed in one word, so the descriptor needs no storage of its own).
///
/// The resolver returns the variable's offset from the thread pointer (`TPIDR_EL0`): mmkit's
/// TLS blocks are allocated per thread on first use (`relocate/tls.rs`), wherever the
/// allocator puts them, and the system linker's come from its `__tls_get_addr`; the offset
/// is `address - tp` either way (AArch64 uses TLS variant I: `tp` points at a 16-byte thread
/// control block, static blocks follow it; dynamic blocks are elsewhere, which the offset
/// arithmetic wraps around).
pub(crate) fn tls_descriptor(module: u64, offset: u64) -> Result<[u64; 2], String> {
    let mmkit = module & super::tls::MMKIT_MODULE != 0;
    let n = module & !super::tls::MMKIT_MODULE;
    if n >= TLSDESC_MMKIT_BIT || offset >= 1 << TLSDESC_OFFSET_BITS {
        return Err(format!("TLS module {n} or offset {offset:#x} too large for a descriptor"));
    }
    let field = if mmkit { n | TLSDESC_MMKIT_BIT } else { n };
    let arg = field << TLSDESC_OFFSET_BITS | offset;
    #[cfg(target_arch = "aarch64")]
    return Ok([super::tlsdesc::resolver_address(), arg]);
    // x86_64's descriptors of dynamic blocks take the same argument (see
    // the resolver in x86_64.rs); its thread pointer is `%fs:0` (TLS variant II).
    #[cfg(target_arch = "x86_64")]
    return Ok([super::x86_64::tlsdesc_dynamic_address(), arg]);
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
    return Err(format!("TLS descriptor (argument {arg:#x}) on a host that is not aarch64 or x86_64"));
}

/// Splits a descriptor argument made by [`tls_descriptor`] into module (tagged again if it is
/// mmkit's) and offset.
#[cfg(any(target_arch = "aarch64", target_arch = "x86_64", test))]
pub(crate) fn unpack_tls_argument(arg: u64) -> (u64, u64) {
    let field = arg >> TLSDESC_OFFSET_BITS;
    let module =
        if field & TLSDESC_MMKIT_BIT != 0 { (field & !TLSDESC_MMKIT_BIT) | super::tls::MMKIT_MODULE } else { field };
    (module, arg & ((1 << TLSDESC_OFFSET_BITS) - 1))
}

#[cfg(target_arch = "aarch64")]
/// `_IFUNC_ARG_HWCAP`: set in a resolver's first argument when the second points to an
/// `__ifunc_arg_t` (glibc 2.30+, `<sys/ifunc.h>`).
pub(crate) const IFUNC_ARG_HWCAP: u64 = 1 << 62;

#[cfg(target_arch = "aarch64")]
/// `__ifunc_arg_t` as glibc passes it to AArch64 IFUNC resolvers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct IfuncArg {
    /// `sizeof(__ifunc_arg_t)`.
    pub size: u64,
    /// `AT_HWCAP`.
    pub hwcap: u64,
    /// `AT_HWCAP2`.
    pub hwcap2: u64,
}

/// Calls an IFUNC resolver as glibc does on AArch64:
/// `resolver(AT_HWCAP | _IFUNC_ARG_HWCAP, &(__ifunc_arg_t){ size, AT_HWCAP, AT_HWCAP2 })`.
///
/// # Safety
/// `resolver` must be the run-time address of an IFUNC resolver of a relocated library.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn call_ifunc_resolver(resolver: u64) -> u64 {
    type Resolver = unsafe extern "C" fn(u64, *const IfuncArg) -> u64;
    // SAFETY: getauxval only reads the auxiliary vector; unknown types return 0.
    let (hwcap, hwcap2) = unsafe { (libc::getauxval(libc::AT_HWCAP), libc::getauxval(libc::AT_HWCAP2)) };
    let arg = IfuncArg { size: std::mem::size_of::<IfuncArg>() as u64, hwcap, hwcap2 };
    // SAFETY: the caller vouches this is a resolver (`void *(*)(uint64_t, const __ifunc_arg_t
    // *)`; resolvers declaring fewer parameters ignore the rest); `arg` outlives the call.
    unsafe { std::mem::transmute::<usize, Resolver>(resolver as usize)(hwcap | IFUNC_ARG_HWCAP, &arg) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_arguments_round_trip_and_bounds_are_errors() {
        use crate::relocate::tls::MMKIT_MODULE;
        // One of mmkit's modules and one of the system linker's stay apart.
        let mine = (7u64 | TLSDESC_MMKIT_BIT) << TLSDESC_OFFSET_BITS | 0x1234;
        assert_eq!(unpack_tls_argument(mine), (MMKIT_MODULE | 7, 0x1234));
        let glibcs = (7u64 << TLSDESC_OFFSET_BITS) | 0x1234;
        assert_eq!(unpack_tls_argument(glibcs), (7, 0x1234));
        assert!(tls_descriptor(TLSDESC_MMKIT_BIT, 0).is_err());
        assert!(tls_descriptor(MMKIT_MODULE | TLSDESC_MMKIT_BIT, 0).is_err());
        assert!(tls_descriptor(1, 1 << 40).is_err());
        #[cfg(target_arch = "aarch64")]
        {
            assert_eq!(tls_descriptor(MMKIT_MODULE | 7, 0x1234).unwrap()[1], mine);
            assert_eq!(tls_descriptor(7, 0x1234).unwrap()[1], glibcs);
        }
    }
}
