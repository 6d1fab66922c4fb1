//! Relocation of a shared object of the host machine (x86_64 or aarch64): `RELR`, `RELATIVE`,
//! the absolute 64-bit type, `GLOB_DAT`, `JUMP_SLOT` (bound eagerly; one whose function
//! nothing defines may be left to the PLT under `RTLD_LAZY`, see `lazy.rs`), `IRELATIVE`,
//! `DTPMOD64`/`DTPREL64` for general-dynamic TLS and `TLSDESC` (the default TLS dialect on
//! aarch64, `-mtls-dialect=gnu2` on x86_64) with a resolver of mmkit's own; the TLS symbol may be defined by an
//! mmkit-loaded library or by an object glibc loaded (glibc's module id and the symbol's
//! offset in its block, see `tls.rs`).
//!
//! Initial-exec `TPOFF64`/`TPREL64` binds a variable of the library's own TLS when the library
//! was built for it (`DF_STATIC_TLS`: its block is then in glibc's static TLS area, see
//! `static_tls.rs`), or a variable in the static TLS of an object glibc loaded at start-up
//! (x86_64; see `tls::static_tls_offset`); x86_64's `TLSDESC` of those variables is a
//! descriptor that returns their constant offset, of any other one mmkit's dynamic resolver
//! (`x86_64.rs`). Everything else (`COPY`, other initial-exec references, PC-relative text
//! relocations) is an error
//! that names the relocation and its symbol. Relocation numbers
//! and names per machine are in [`crate::machine`]; what differs in how they apply is in
//! `x86_64.rs` and `aarch64.rs`. This module and the executor are the only ones with
//! `unsafe`: here, calling IFUNC resolvers, the TLS resolvers and the lazy PLT's trampoline.

// One of the modules with `unsafe`: writes relocations, runs resolvers (DESIGN.md: relocation).
#![allow(unsafe_code)]

pub(crate) mod aarch64;
pub(crate) mod atexit;
pub(crate) mod lazy;
pub(crate) mod static_tls;
pub(crate) mod tls;
#[cfg(target_arch = "aarch64")]
mod tlsdesc;
pub(crate) mod x86_64;

use crate::dynamic::{Dynamic, Rela, STO_AARCH64_VARIANT_PCS};
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
    .with_vaddr_range(r.offset, 8)
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
/// module's business); `tls` is this library's TLS module, if it has `PT_TLS`. When that is a
/// static block not allocated yet ([`tls::OwnTls::pending`]), the references that need the
/// block (its module id, its offset from the thread pointer) wait until every other
/// relocation is applied; then `allocate_static` allocates it from the relocated image (a
/// `__thread` pointer initialized with an address is relocated like any data) and they are
/// applied, before any IFUNC resolver runs.
/// The types are the machine's (`relocate/x86_64.rs`, `relocate/aarch64.rs` say what differs);
/// what each kind does is shared, here. The loader never writes to executable pages (segments
/// are mapped from the file, relocations write only writable data and RELRO), so no
/// instruction-cache maintenance is needed on any machine.
///
///
/// With `lazy` (`dlopen(RTLD_LAZY)`), a `JUMP_SLOT` of `DT_JMPREL` whose function nothing
/// defines does not fail: it is left pointing into the PLT, and returned, for the caller to
/// [`lazy::install`] the PLT's resolver. Without `DT_PLTGOT`, or for a library linked
/// `-z now`, every reference is bound at load.
///
/// # Safety
/// IFUNC resolvers of the library (and resolved IFUNC symbols of its dependencies) are called:
/// the image must be fully mapped and its dependencies relocated.
pub(crate) unsafe fn relocate(
    dy: &Dynamic,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    tls: Option<tls::OwnTls>,
    allocate_static: &mut dyn FnMut() -> Result<tls::OwnTls>,
    lazy: bool,
) -> Result<Vec<lazy::LazySlot>> {
    let machine = Machine::host()?;
    apply_relr(&dy.image, &dy.relr)?;
    // IRELATIVE and IFUNC-bound references run resolver code: do them last, when every other
    // relocation (the data a resolver may read) is in place.
    let mut deferred: Vec<Deferred> = Vec::new();
    let mut waiting: Vec<Rela> = Vec::new();
    let pltgot = dy.pltgot.filter(|_| lazy && !dy.bind_now);
    let mut unbound: Vec<lazy::LazySlot> = Vec::new();
    // The `DT_JMPREL` entries come after `DT_RELA`'s; without lazy binding, none is looked at.
    let lazy_from = if pltgot.is_some() { dy.rela_count() } else { usize::MAX };
    for (i, r) in dy.relocations().enumerate() {
        if i >= lazy_from && leave_unbound(machine, dy, &r, i - lazy_from, resolve, &mut unbound)? {
            continue;
        }
        apply(machine, dy, &r, resolve, tls, &mut deferred, &mut waiting)?;
    }
    if tls.is_some_and(|t| t.pending) {
        let tls = Some(allocate_static()?);
        for r in waiting {
            apply(machine, dy, &r, resolve, tls, &mut deferred, &mut Vec::new())?;
        }
    }
    // SAFETY: the caller's contract (the image is mapped, its dependencies relocated).
    unsafe { run_ifunc_resolvers(&dy.image, deferred)? };
    Ok(unbound)
}

/// Lazy binding of one `DT_JMPREL` relocation (`index`): `true` when it is a `JUMP_SLOT`
/// whose function nothing defines and its slot now points back into the library's PLT (the
/// link-time value plus the bias, as glibc's lazy set-up leaves it), recorded in `unbound`.
/// `false` sends the relocation to [`apply`] (bound at load; an undefined function whose
/// slot does not point into the library's code fails there, as without lazy binding).
fn leave_unbound(
    machine: Machine,
    dy: &Dynamic,
    r: &Rela,
    index: usize,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    unbound: &mut Vec<lazy::LazySlot>,
) -> Result<bool> {
    if r.sym == 0 || machine.relocation_kind(r.r_type) != RelocKind::JumpSlot {
        return Ok(false);
    }
    // aarch64: a function of a variant PCS (AdvSIMD vector or SVE) is bound at load, as
    // glibc's `elf_machine_lazy_rel` binds it: its callers count on registers the trampoline,
    // which keeps the base PCS's argument registers only, does not keep (q8-q23 whole, z, p).
    if machine == Machine::Aarch64
        && dy.aarch64_variant_pcs
        && dy.sym(r.sym).is_some_and(|s| s.other & STO_AARCH64_VARIANT_PCS != 0)
    {
        return Ok(false);
    }
    match resolve(r.sym) {
        Err(e) if e.kind() == ErrorKind::UndefinedSymbol => {}
        _ => return Ok(false),
    }
    let image = &dy.image;
    let first = image.read_u64(r.offset)?;
    if !image.is_code(first) {
        return Ok(false);
    }
    image.write_u64(r.offset, first.wrapping_add(image.bias()))?;
    let mut name = dy.sym_name(r.sym).unwrap_or("?").to_owned();
    if let Some((v, _)) = dy.version_of(r.sym) {
        name = format!("{name}, version {}", dy.version_name(v));
    }
    unbound.push(lazy::LazySlot { index: index as u64, slot: image.addr(r.offset), sym: r.sym, name });
    Ok(true)
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
    tls: Option<tls::OwnTls>,
    deferred: &mut Vec<Deferred>,
    waiting: &mut Vec<Rela>,
) -> Result<()> {
    let tls_module = tls.map(|t| t.module);
    // A reference to the library's own static block, not allocated yet: later.
    let pending = |module: u64| tls.is_some_and(|t| t.pending && t.module == module);
    let image = &dy.image;
    let bias = image.bias();
    let kind = machine.relocation_kind(r.r_type);
    match kind {
        RelocKind::None => {}
        RelocKind::Relative => {
            image.write_u64(r.offset, bias.wrapping_add(r.addend as u64))?;
        }
        RelocKind::Irelative => {
            // The resolver is the library's own: code of it, or the loader would jump into data.
            let resolver = bias.wrapping_add(r.addend as u64);
            image.check_code(resolver, "call IFUNC resolver", false)?;
            deferred.push((r.offset, resolver, 0));
        }
        RelocKind::Abs64 | RelocKind::GlobDat | RelocKind::JumpSlot => {
            let addend = match machine {
                Machine::X86_64 => x86_64::symbol_addend(kind, r.addend),
                Machine::Aarch64 => aarch64::symbol_addend(kind, r.addend),
            };
            let target = if r.sym == 0 { Target::Addr(0) } else { resolve(r.sym)? };
            match target {
                Target::Addr(a) => image.write_u64(r.offset, a.wrapping_add(addend as u64))?,
                Target::Ifunc(resolver) => {
                    // A resolver in this library must be code of it: the loader calls it. One
                    // another library defines is called as glibc calls it (a check would read
                    // /proc/self/maps for every such relocation).
                    if image.contains(resolver) {
                        image.check_code(resolver, "call IFUNC resolver", false)?;
                    }
                    deferred.push((r.offset, resolver, addend))
                }
                Target::Tls { .. } => {
                    return Err(unsupported(dy, r, " (it names a TLS symbol)"));
                }
            }
        }
        RelocKind::DtpMod64 => {
            let module = tls_module_of(dy, r, resolve, tls_module)?;
            if pending(module) {
                waiting.push(*r);
                return Ok(());
            }
            image.write_u64(r.offset, module)?;
        }
        RelocKind::DtpRel64 => {
            let offset = tls_offset_of(dy, r, resolve)?;
            image.write_u64(r.offset, offset.wrapping_add(r.addend as u64))?;
        }
        RelocKind::TlsDesc if machine == Machine::Aarch64 => {
            let module = tls_module_of(dy, r, resolve, tls_module)?;
            if pending(module) {
                waiting.push(*r);
                return Ok(());
            }
            let offset = tls_offset_of(dy, r, resolve)?.wrapping_add(r.addend as u64);
            let [resolver, arg] =
                aarch64::tls_descriptor(module, offset).map_err(|why| unsupported(dy, r, &format!(" ({why})")))?;
            image.write_u64(r.offset, resolver)?;
            image.write_u64(r.offset.wrapping_add(8), arg)?;
        }
        RelocKind::TlsDesc => {
            // x86_64: a variable at a constant offset from the thread pointer (static TLS)
            // gets a descriptor that returns that offset, as glibc's `_dl_tlsdesc_return`.
            match static_tp_value(r, resolve, tls) {
                TpValue::Pending => waiting.push(*r),
                #[cfg(target_arch = "x86_64")]
                TpValue::Known(v) => {
                    image.write_u64(r.offset, x86_64::tlsdesc_static as *const () as usize as u64)?;
                    image.write_u64(r.offset.wrapping_add(8), v)?;
                }
                _ => {
                    // A dynamic block (mmkit's, or of an object glibc loaded): a descriptor
                    // whose resolver finds this thread's block, as glibc's
                    // `_dl_tlsdesc_dynamic`.
                    let module = tls_module_of(dy, r, resolve, tls_module)?;
                    let offset = tls_offset_of(dy, r, resolve)?.wrapping_add(r.addend as u64);
                    let [resolver, arg] = aarch64::tls_descriptor(module, offset)
                        .map_err(|why| unsupported(dy, r, &format!(" ({why})")))?;
                    image.write_u64(r.offset, resolver)?;
                    image.write_u64(r.offset.wrapping_add(8), arg)?;
                }
            }
        }
        RelocKind::Copy => {
            return Err(unsupported(dy, r, " (copy relocations belong in executables)"));
        }
        RelocKind::TpRel64 => {
            // A variable in static TLS: of this library when it was built for it, or of an
            // object glibc loaded at start-up (libc's `errno`): its offset from the thread
            // pointer, the same in every thread.
            match static_tp_value(r, resolve, tls) {
                TpValue::Pending => waiting.push(*r),
                TpValue::Known(v) => image.write_u64(r.offset, v)?,
                TpValue::Unknown => {
                    return Err(unsupported(
                        dy,
                        r,
                        " (initial-exec TLS needs static TLS space: the library does not say \
                         DF_STATIC_TLS, or the variable's block is not in static TLS; build with \
                         -fPIC and the default global-dynamic model)",
                    ))
                }
            }
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
/// reference (no symbol, or a local symbol), else the defining library's (mmkit's or glibc's;
/// for glibc's, its `__tls_get_addr`, which mmkit's forwards to, must be known).
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
            // A local symbol that is not `STT_TLS` (gold, at -O0, names the section symbol of
            // `.tbss`/`.tdata` for a local-dynamic access): glibc's `RESOLVE_MAP` gives a local
            // symbol its own object, whose module the relocation names.
            _ if dy.sym(r.sym).is_some_and(|s| s.is_defined() && s.bind() == object::elf::STB_LOCAL) => tls_module,
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

/// What [`static_tp_value`] found.
enum TpValue {
    /// The offset from the thread pointer.
    Known(u64),
    /// The library's own static block, not allocated yet.
    Pending,
    /// The variable's block is not in static TLS (or the symbol is unbound: the caller's error
    /// says what to rebuild).
    Unknown,
}

/// The offset from the thread pointer of the variable an initial-exec reference (or an x86_64
/// descriptor) names, plus the addend: in this library's own static block, or in the static
/// block of an object glibc loaded.
fn static_tp_value(r: &Rela, resolve: &mut dyn FnMut(u32) -> Result<Target>, tls: Option<tls::OwnTls>) -> TpValue {
    let (module, offset) = if r.sym == 0 {
        match tls {
            Some(t) => (t.module, 0),
            None => return TpValue::Unknown,
        }
    } else {
        match resolve(r.sym) {
            Ok(Target::Tls { module, offset }) => (module, offset),
            _ => return TpValue::Unknown,
        }
    };
    let at = offset.wrapping_add(r.addend as u64);
    match tls {
        Some(t) if t.module == module && t.pending => TpValue::Pending,
        Some(t) if t.module == module && t.tp_offset.is_some() => {
            t.tp_offset.map_or(TpValue::Unknown, |tp| TpValue::Known(tp.wrapping_add(at)))
        }
        _ => tls::static_tls_offset(module, at).map_or(TpValue::Unknown, TpValue::Known),
    }
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
