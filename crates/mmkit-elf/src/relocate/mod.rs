//! Relocation of a shared object of the host machine (x86_64 or aarch64): `RELR`, `RELATIVE`,
//! the absolute 64-bit type, `GLOB_DAT`, `JUMP_SLOT` (bound eagerly), `IRELATIVE`,
//! `DTPMOD64`/`DTPREL64` for general-dynamic TLS and, on aarch64, `TLSDESC` (the default TLS
//! dialect there) with a resolver of mmkit's own; the TLS symbol may be defined by an
//! mmkit-loaded library or by an object glibc loaded (glibc's module id and the symbol's
//! offset in its block, see `tls.rs`).
//!
//! Initial-exec `TPOFF64` binds only a variable in the static TLS of an object glibc loaded at
//! start-up (x86_64; see `tls::static_tls_offset`). Everything else (`COPY`, other initial-exec
//! `TPREL64`/`TPOFF64`, x86_64's `TLSDESC`, PC-relative text relocations) is an error that
//! names the relocation and its symbol. Relocation numbers
//! and names per machine are in [`crate::machine`]; what differs in how they apply is in
//! `x86_64.rs` and `aarch64.rs`. This module and the executor are the only ones with
//! `unsafe`: here, calling IFUNC resolvers, and the TLS resolvers.

pub(crate) mod aarch64;
pub(crate) mod atexit;
pub(crate) mod tls;
#[cfg(target_arch = "aarch64")]
mod tlsdesc;
pub(crate) mod x86_64;

use crate::dynamic::{Dynamic, Rela};
use crate::error::{Error, ErrorKind, Result};
use crate::image::{Image, Table};
use crate::machine::{Machine, RelocKind};

/// What a symbol reference resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A run-time address (0 for an undefined weak symbol).
    Addr(u64),
    /// An IFUNC: the run-time address of its resolver, to call once relocation is done.
    Ifunc(u64),
    /// A TLS symbol: the defining module's id (mmkit's, tagged with
    /// [`tls::MMKIT_MODULE`], or glibc's `dlpi_tls_modid`) and the symbol's offset in its block.
    Tls { module: u64, offset: u64 },
}

/// What relocation type `r_type` of the host machine does ([`RelocKind::Other`] on a host the
/// loader does not relocate for).
pub(crate) fn host_kind(r_type: u32) -> RelocKind {
    Machine::HOST.map_or(RelocKind::Other, |m| m.relocation_kind(r_type))
}

/// Name of a relocation type of the host machine, for messages.
pub(crate) fn reloc_name(t: u32) -> String {
    match Machine::HOST {
        Some(m) => m.relocation_name(t),
        None => format!("relocation type {t}"),
    }
}

#[cold]
fn unsupported(dy: &Dynamic, r: &Rela, why: &str) -> Error {
    let sym =
        if r.sym == 0 { "no symbol".to_owned() } else { format!("symbol `{}`", dy.sym_name(r.sym).unwrap_or("?")) };
    Error::new(
        "relocate",
        ErrorKind::UnsupportedRelocation,
        format!("{} against {sym} at {:#x} is not supported{why}", reloc_name(r.r_type), r.offset),
    )
    .with_range(r.offset, 8)
}

/// Applies `DT_RELR`: packed relative relocations (`-z pack-relative-relocs`).
fn apply_relr(image: &Image, relr: &Table<u64>) -> Result<()> {
    let bias = image.bias();
    let mut next = 0u64;
    for entry in (0..relr.len()).map_while(|i| image.get(relr, i)).map(u64::from_le) {
        if entry & 1 == 0 {
            image.write_u64(entry, image.read_u64(entry)?.wrapping_add(bias))?;
            next = entry.wrapping_add(8);
        } else {
            let mut bits = entry >> 1;
            let mut at = next;
            while bits != 0 {
                if bits & 1 != 0 {
                    image.write_u64(at, image.read_u64(at)?.wrapping_add(bias))?;
                }
                bits >>= 1;
                at = at.wrapping_add(8);
            }
            next = next.wrapping_add(63 * 8);
        }
    }
    Ok(())
}

/// Calls an IFUNC resolver and returns the implementation it chose, with the arguments the
/// host's ABI gives resolvers (none on x86_64; `hwcap` and `__ifunc_arg_t` on aarch64).
///
/// # Safety
/// `resolver` must be the run-time address of an IFUNC resolver of a relocated library.
pub(crate) unsafe fn call_ifunc_resolver(resolver: u64) -> u64 {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the caller's contract.
    let chosen = unsafe { aarch64::call_ifunc_resolver(resolver) };
    #[cfg(not(target_arch = "aarch64"))]
    // SAFETY: the caller's contract.
    let chosen = unsafe { x86_64::call_ifunc_resolver(resolver) };
    chosen
}

/// Relocates a loaded image of the host machine (the planner checked `e_machine`).
///
/// `resolve(sym_index)` binds a symbol reference (lookup order and versions are the library
/// module's business); `tls_module` is this library's TLS module id, if it has `PT_TLS`.
/// The types are the machine's (`relocate/x86_64.rs`, `relocate/aarch64.rs` say what differs);
/// what each kind does is shared, here. The loader never writes to executable pages (segments
/// are mapped from the file, relocations write only writable data and RELRO), so no
/// instruction-cache maintenance is needed on any machine.
///
/// # Safety
/// IFUNC resolvers of the library (and resolved IFUNC symbols of its dependencies) are called:
/// the image must be fully mapped and its dependencies relocated.
pub(crate) unsafe fn relocate(
    dy: &Dynamic,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    tls_module: Option<u64>,
) -> Result<()> {
    let machine = Machine::host()?;
    apply_relr(&dy.image, &dy.relr)?;
    // IRELATIVE and IFUNC-bound references run resolver code: do them last, when every other
    // relocation (the data a resolver may read) is in place.
    let mut deferred: Vec<Deferred> = Vec::new();
    for r in dy.relocations() {
        apply(machine, dy, &r, resolve, tls_module, &mut deferred)?;
    }
    // SAFETY: the caller's contract (the image is mapped, its dependencies relocated).
    unsafe { run_ifunc_resolvers(&dy.image, deferred) }
}

/// A write that waits for an IFUNC resolver: `(offset, resolver's run-time address, addend)`.
type Deferred = (u64, u64, i64);

/// Applies one `RELA` relocation of `machine`'s, or defers it to `deferred` when its value
/// comes from an IFUNC resolver.
///
/// One arm per [`RelocKind`], kept whole (as the module documentation lists them) so what each
/// kind does, or why it is refused, reads in one place.
fn apply(
    machine: Machine,
    dy: &Dynamic,
    r: &Rela,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    tls_module: Option<u64>,
    deferred: &mut Vec<Deferred>,
) -> Result<()> {
    let image = &dy.image;
    let bias = image.bias();
    let kind = machine.relocation_kind(r.r_type);
    match kind {
        RelocKind::None => {}
        RelocKind::Relative => {
            image.write_u64(r.offset, bias.wrapping_add(r.addend as u64))?;
        }
        RelocKind::Irelative => {
            deferred.push((r.offset, bias.wrapping_add(r.addend as u64), 0));
        }
        RelocKind::Abs64 | RelocKind::GlobDat | RelocKind::JumpSlot => {
            let addend = match machine {
                Machine::X86_64 => x86_64::symbol_addend(kind, r.addend),
                Machine::Aarch64 => aarch64::symbol_addend(kind, r.addend),
            };
            let target = if r.sym == 0 { Target::Addr(0) } else { resolve(r.sym)? };
            match target {
                Target::Addr(a) => image.write_u64(r.offset, a.wrapping_add(addend as u64))?,
                Target::Ifunc(resolver) => deferred.push((r.offset, resolver, addend)),
                Target::Tls { .. } => {
                    return Err(unsupported(dy, r, " (it names a TLS symbol)"));
                }
            }
        }
        RelocKind::DtpMod64 => {
            let module = tls_module_of(dy, r, resolve, tls_module)?;
            image.write_u64(r.offset, module)?;
        }
        RelocKind::DtpRel64 => {
            let offset = tls_offset_of(dy, r, resolve)?;
            image.write_u64(r.offset, offset.wrapping_add(r.addend as u64))?;
        }
        RelocKind::TlsDesc if machine == Machine::Aarch64 => {
            let module = tls_module_of(dy, r, resolve, tls_module)?;
            let offset = tls_offset_of(dy, r, resolve)?.wrapping_add(r.addend as u64);
            let [resolver, arg] =
                aarch64::tls_descriptor(module, offset).map_err(|why| unsupported(dy, r, &format!(" ({why})")))?;
            image.write_u64(r.offset, resolver)?;
            image.write_u64(r.offset.wrapping_add(8), arg)?;
        }
        RelocKind::TlsDesc => {
            return Err(unsupported(dy, r, " (TLS descriptors; build with -mtls-dialect=gnu)"));
        }
        RelocKind::Copy => {
            return Err(unsupported(dy, r, " (copy relocations belong in executables)"));
        }
        RelocKind::TpRel64 => {
            // A variable in the static TLS of an object glibc loaded at start-up (libc's
            // `errno`): its offset from the thread pointer, the same in every thread.
            // An unbound symbol keeps the error below, which says what to rebuild.
            if r.sym != 0 {
                if let Ok(Target::Tls { module, offset }) = resolve(r.sym) {
                    if let Some(v) = tls::static_tls_offset(module, offset.wrapping_add(r.addend as u64)) {
                        image.write_u64(r.offset, v)?;
                        return Ok(());
                    }
                }
            }
            return Err(unsupported(
                dy,
                r,
                " (initial-exec TLS needs static TLS space; build with -fPIC and the \
                 default global-dynamic model)",
            ));
        }
        RelocKind::Other => return Err(unsupported(dy, r, "")),
    }
    Ok(())
}

/// Calls the resolvers of the deferred relocations, in order, and writes what they chose.
///
/// # Safety
/// As [`relocate`]: every other relocation of the image is applied and its dependencies are
/// relocated.
unsafe fn run_ifunc_resolvers(image: &Image, deferred: Vec<Deferred>) -> Result<()> {
    for (offset, resolver, addend) in deferred {
        // SAFETY: the address came from an IRELATIVE addend or an STT_GNU_IFUNC definition of
        // a relocated library (function contract).
        let chosen = unsafe { call_ifunc_resolver(resolver) };
        image.write_u64(offset, chosen.wrapping_add(addend as u64))?;
    }
    Ok(())
}

/// The TLS module a `DTPMOD64`/`TLSDESC` relocation names: this library's for a local
/// reference (no symbol), else the defining library's (mmkit's or glibc's; for glibc's, its
/// `__tls_get_addr`, which mmkit's forwards to, must be known).
fn tls_module_of(
    dy: &Dynamic,
    r: &Rela,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    tls_module: Option<u64>,
) -> Result<u64> {
    let module = if r.sym == 0 {
        tls_module
    } else {
        match resolve(r.sym)? {
            Target::Tls { module, .. } => Some(module),
            _ => None,
        }
    };
    let module = module
        .filter(|&m| m & !tls::MMKIT_MODULE != 0)
        .ok_or_else(|| unsupported(dy, r, " (no TLS module of an mmkit-loaded library or of glibc defines it)"))?;
    if module & tls::MMKIT_MODULE == 0 {
        tls::system_tls_ready().map_err(|why| unsupported(dy, r, &format!(" ({why})")))?;
    }
    Ok(module)
}

/// The offset in its module's block of the TLS symbol a relocation names (0 with no symbol).
fn tls_offset_of(dy: &Dynamic, r: &Rela, resolve: &mut dyn FnMut(u32) -> Result<Target>) -> Result<u64> {
    if r.sym == 0 {
        return Ok(0);
    }
    match resolve(r.sym)? {
        Target::Tls { offset, .. } => Ok(offset),
        _ => Err(unsupported(dy, r, " (the symbol is not TLS)")),
    }
}
