//! [`Library`]: open (read headers, plan, reserve, load, relocate, protect RELRO, initialize),
//! look symbols up, list and verify mappings, and unload on drop.
#![deny(unsafe_code)]

use crate::dynamic::{Dynamic, Sym};
use crate::error::{Error, ErrorKind, Result};
use crate::image::Image;
use crate::machine::Machine;
use crate::plan::{self, Plan, Protection};
use crate::process_scope::{self, SystemLibrary, Wanted, WantedNames};
use crate::relocate::static_tls::StaticTls;
use crate::relocate::tls::{self, ModuleTls, TlsModule};
use crate::relocate::Target;
use crate::source::{OpenSource, Source};
use crate::symbols::{self, SymbolKind, Want};
use crate::system::SystemOpened;
use object::elf;
use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Directories searched for `DT_NEEDED` libraries last (after `DT_RPATH`, `LD_LIBRARY_PATH`,
/// `DT_RUNPATH` and the namespace's search path; see [`crate::Namespace`]). The multiarch
/// directories are the host's (`/lib/aarch64-linux-gnu` on aarch64).
pub const SYSTEM_DIRS: &[&str] = &[
    #[cfg(not(target_arch = "aarch64"))]
    "/lib/x86_64-linux-gnu",
    #[cfg(not(target_arch = "aarch64"))]
    "/usr/lib/x86_64-linux-gnu",
    #[cfg(target_arch = "aarch64")]
    "/lib/aarch64-linux-gnu",
    #[cfg(target_arch = "aarch64")]
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// Bytes read at the start of a source before planning.
const FIRST_READ: usize = 1024;

/// GNU hash of `__tls_get_addr` (bound to mmkit's own, never looked up).
const TLS_GET_ADDR_HASH: u32 = symbols::gnu_hash(b"__tls_get_addr");

/// The runtime page size, from the kernel (`AT_PAGESZ`, as the C library read it).
pub fn page_size() -> u64 {
    mmkit::page_size() as u64
}

/// Reads the ELF header and program headers of an opened source and plans its mappings for
/// `page_size`-byte pages (no mapping is made). The image must be built for the machine the
/// loader runs on; [`plan_source_any_machine`] plans any machine's image.
pub fn plan_source(src: &OpenSource, page_size: u64) -> Result<Plan> {
    plan_source_for(src, page_size, MachineChoice::Host)
}

/// [`plan_source`] for an image of any machine the planner knows ([`Machine`]): an aarch64
/// library (or APK entry) is planned on an x86_64 host, as `mmkit elf plan` does. An unknown
/// `e_machine` is planned for the host, whose check then names both.
pub fn plan_source_any_machine(src: &OpenSource, page_size: u64) -> Result<Plan> {
    plan_source_for(src, page_size, MachineChoice::TheImages)
}

/// Which machine [`plan_source_for`] plans for.
enum MachineChoice {
    /// The one the loader runs on.
    Host,
    /// The one the image's `e_machine` names, when the planner knows it (else the host).
    TheImages,
}

fn plan_source_for(src: &OpenSource, page_size: u64, choice: MachineChoice) -> Result<Plan> {
    // One read usually covers the header and the program header table (glibc reads 832
    // bytes for the same reason); a second one follows only for unusual layouts.
    let mut first = [0u8; FIRST_READ];
    let head = &mut first[..FIRST_READ.min(src.len() as usize)];
    src.read_exact_at(0, head)?;
    let need = plan::headers_len(head).unwrap_or(plan::EHDR_SIZE).min(src.len());
    let need = need.min(plan::EHDR_SIZE + plan::MAX_PHNUM * plan::PHDR_SIZE + (1 << 20));
    let more;
    let bytes: &[u8] = if need > head.len() as u64 {
        more = src.read_at(0, need)?;
        &more
    } else {
        head
    };
    // e_machine is the 16-bit field at offset 18 of the ELF header (both classes); a header too
    // short to hold it is reported by the planner's own check.
    let machine = match choice {
        MachineChoice::TheImages => {
            bytes.get(18..20).and_then(|b| Machine::from_e_machine(u16::from_le_bytes([b[0], b[1]])))
        }
        MachineChoice::Host => None,
    };
    match machine {
        Some(machine) => Plan::for_machine(bytes, src.len(), page_size, machine),
        None => Plan::new(bytes, src.len(), page_size),
    }
    .map_err(|e| e.with_path(src.label()))
}

/// Opens `source` and plans it for `page_size`-byte pages: what `mmkit elf plan` prints (for
/// the machine the image is built for, see [`plan_source_any_machine`]).
pub fn plan(source: &Source, page_size: u64) -> Result<Plan> {
    let src = source.open(page_size)?;
    plan_source_any_machine(&src, page_size)
}

/// Whether the library links the unwinder or a C++ runtime (`DT_NEEDED` libgcc_s,
/// libstdc++, libc++, libunwind): code that throws, catches or walks the stack.
fn uses_the_unwinder(dynamic: &Dynamic) -> bool {
    const RUNTIMES: [&str; 4] = ["libgcc_s.", "libstdc++.", "libc++.", "libunwind."];
    dynamic.needed().filter_map(Result::ok).any(|n| RUNTIMES.iter().any(|r| n.starts_with(r)))
}

/// Whether a library's own TLS must be a static block: it says so (`DF_STATIC_TLS`, which
/// GNU ld sets on x86_64), or an initial-exec reference names its own block (the aarch64
/// linker does not set the flag).
fn wants_static_tls(dy: &Dynamic) -> bool {
    dy.flags & u64::from(elf::DF_STATIC_TLS) != 0
        || dy.relocations().any(|r| {
            crate::relocate::host_kind(r.r_type) == crate::machine::RelocKind::TpRel64
                && (r.sym == 0 || dy.sym(r.sym).is_some_and(|s| s.is_defined() && s.kind() == elf::STT_TLS))
        })
}

/// The link-time `.eh_frame` address `PT_GNU_EH_FRAME`'s header gives, read from the file
/// (the header's first 12 bytes, in the file pages of a segment); `None` without one.
fn eh_frame_of(plan: &Plan, src: &OpenSource) -> Option<u64> {
    let (hdr, len) = plan.eh_frame_hdr?;
    // The answers for the last files read, by their contents' identity (a library opened and
    // closed in a loop is read once; any change to the file changes its `st_ctime`).
    type Answers = Vec<((u64, u64, u64, u64, i64, i64), Option<u64>)>;
    static ANSWERS: std::sync::Mutex<Answers> = std::sync::Mutex::new(Vec::new());
    const KEPT: usize = 16;
    let key = src.contents_key();
    if let Some(key) = key {
        let answers = ANSWERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&(_, answer)) = answers.iter().find(|(k, _)| *k == key) {
            return answer;
        }
    }
    let answer = eh_frame_from_file(plan, src, hdr, len);
    if let Some(key) = key {
        let mut answers = ANSWERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if answers.len() == KEPT {
            answers.remove(0);
        }
        answers.push((key, answer));
    }
    answer
}

/// [`eh_frame_of`] read from the file.
fn eh_frame_from_file(plan: &Plan, src: &OpenSource, hdr: u64, len: u64) -> Option<u64> {
    let seg = plan
        .segments
        .iter()
        .find(|s| hdr >= s.vaddr && hdr.checked_add(12).is_some_and(|e| e <= s.vaddr + s.file_size))?;
    let mut head = [0u8; 12];
    src.read_exact_at(seg.file_offset + (hdr - seg.vaddr), &mut head).ok()?;
    crate::image::eh_frame_from_header(hdr, len, &head)
}

/// A dependency: mapped by mmkit (kept loaded by its namespace's registry, which unloads a
/// library only when no loaded library needs it), or loaded by glibc (already, or through the
/// namespace's system policy).
#[derive(Debug, Clone)]
pub(crate) enum Dependency {
    Mmkit(Weak<Object>),
    System(Arc<SystemLibrary>),
}

/// The `STB_GNU_UNIQUE` definitions bound in the libraries mmkit maps, by name: the first one
/// a lookup found, which every later lookup of the name binds to, whichever library it finds
/// defining it, as glibc's `do_lookup_unique` keeps one definition per name in the process.
/// C++ gives inline and template static data members and the statics of inline functions this
/// binding, so that two `RTLD_LOCAL` plug-ins built with the same header share one object;
/// each plug-in bound its own copy. A library defining one is pinned when a lookup finds it
/// there, so the addresses stay valid. One table per namespace of mmkit's (by its registry's
/// address), as glibc keeps one per `dlmopen` namespace: a namespace that maps a private C++
/// runtime keeps its own objects. (A namespace dropped while its pinned libraries stay, and a
/// new one whose registry gets the same address, share a table.)
static UNIQUE: std::sync::Mutex<std::collections::BTreeMap<(usize, String), Target>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The definition of the unique symbol `name` the libraries of namespace `scope` (its
/// registry's address) bind to: the first one found there (`found`, when it is the first).
fn unique_definition(scope: usize, name: &str, found: Target) -> Target {
    let mut table = UNIQUE.lock().unwrap_or_else(|e| e.into_inner());
    *table.entry((scope, name.to_owned())).or_insert(found)
}

/// Identity of a mapped library in a namespace: device, inode, offset of the image in the file.
pub(crate) type Key = (u64, u64, u64);

/// What a mapping of a loaded library holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum MappingKind {
    /// File pages of a `PT_LOAD` segment.
    Segment {
        /// The segment's program header index.
        phdr_index: usize,
    },
    /// File pages of a segment made read-only after relocation (`PT_GNU_RELRO`).
    Relro {
        /// The segment's program header index.
        phdr_index: usize,
    },
    /// Anonymous zero pages: the part of `.bss` past the file pages.
    Bss {
        /// The segment's program header index.
        phdr_index: usize,
    },
    /// Reserved, inaccessible address space between segments.
    Gap,
}

/// One mapping of a loaded library, as `/proc/self/maps` should show it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LibraryMapping {
    /// Run-time start address.
    pub start: u64,
    /// Length in bytes (a multiple of the page size).
    pub len: u64,
    /// Access rights now.
    pub prot: Protection,
    /// What the mapping holds.
    pub kind: MappingKind,
    /// Offset in the source file (for an APK entry: inside the archive), for file pages.
    pub file_offset: Option<u64>,
    /// Pages in the mapping.
    pub pages: u64,
    /// Pages resident in memory now (`mincore`): for file pages this is the page cache, which
    /// includes what the kernel read ahead around a fault.
    pub resident_pages: u64,
    /// Pages mapped into this process's page tables now (`/proc/self/pagemap`): what the
    /// library's code and the loader actually touched (plus fault-around).
    pub present_pages: u64,
}

/// One shared object mapped by mmkit, shared by every [`Library`] handle and every library that
/// needs it in its namespace. Dropping it runs `DT_FINI_ARRAY`/`DT_FINI` and unmaps it.
#[derive(Debug)]
pub(crate) struct Object {
    label: String,
    /// Where the file name starts in `label`.
    name_at: usize,
    plan: Plan,
    dev_ino: (u64, u64),
    source_offset: u64,
    pub(crate) key: Key,
    /// `DF_1_NODELETE`, or a reference bound to its `STB_GNU_UNIQUE` definition: never
    /// unloaded (as glibc does).
    pub(crate) pinned: AtomicBool,
    /// Pending `thread_local` destructors registered from this library: it stays loaded.
    pub(crate) pins: AtomicUsize,
    initialized: AtomicBool,
    /// Its finalizers have run (at unload, or at process exit: [`Object::take_finalizers`]).
    finalized: AtomicBool,
    /// Position in the process's initialization order (unloading goes in reverse).
    pub(crate) init_seq: AtomicU64,
    /// Link-time `.eh_frame`, to register with the unwinder (see [`Object::map`]).
    eh_frame: Option<u64>,
    /// The unwind-table registration, undone on drop.
    unwind: OnceLock<u64>,
    // Drop order matters: the image (owned by `dynamic`) is unmapped before the dependencies
    // are released, the TLS module is unregistered after the image is gone.
    dynamic: Dynamic,
    /// What the lazily bound PLT slots of the image name (see `relocate/lazy.rs`): GOT word 1
    /// points to it, so it is dropped after the image is unmapped.
    lazy_plt: OnceLock<Box<crate::relocate::lazy::LazyPlt>>,
    tls: Option<ModuleTls>,
    pub(crate) deps: OnceLock<Vec<Dependency>>,
    /// Pins on the libraries of the `RTLD_GLOBAL` scope (not dependencies) that this
    /// library's references bound to: they stay loaded while it is, as glibc's `l_reldeps`
    /// keep them, and are released after it is unmapped. One pin per library (by its
    /// `Object`'s address), however many references or lookups bind to it.
    global_binds: std::sync::Mutex<Vec<(usize, crate::relocate::atexit::Pin)>>,
    /// The dependencies breadth-first, each once, without this object (glibc's `l_searchlist`
    /// after the object itself): where `dlsym` on a handle looks.
    search: OnceLock<Vec<Dependency>>,
    /// See [`Object::rpath_inherited`].
    rpath_inherited: OnceLock<Vec<crate::SearchDir>>,
    /// [`Object::source`] as a C string, made when `dladdr` first names the library.
    c_source: OnceLock<std::ffi::CString>,
    /// The library imports `dlopen` (bound to mmkit's): [`Object::loaded_in`] is kept for it.
    calls_dlopen: AtomicBool,
    /// The namespace whose rules found this library's dependencies and where it came from,
    /// for the `dlopen` calls it makes (kept only when it imports `dlopen`).
    loaded_in: OnceLock<(crate::Namespace, Source)>,
    /// Where it came from, a relative path made absolute at load (see [`Source::absolute`]):
    /// its `$ORIGIN` and `dlinfo(RTLD_DI_ORIGIN)`, as glibc's `l_origin`.
    origin: OnceLock<Source>,
    /// The namespace the library was loaded in, as the address of its registry: the key of its
    /// `STB_GNU_UNIQUE` definitions' table (see [`unique_definition`]); set before relocation.
    unique_scope: OnceLock<usize>,
    /// The library whose load brought this one in (itself for the library opened).
    root: OnceLock<Weak<Object>>,
    /// Relocated with `RTLD_DEEPBIND`: its own lookup scope comes before the global scope,
    /// for `dlsym(RTLD_DEFAULT)` too (glibc puts the search list first in its `l_scope`).
    deep_bound: AtomicBool,
}

impl Object {
    /// Plans `source` (opened as `src`), maps it and reads its dynamic section; registers its
    /// TLS block. Nothing is relocated or run yet.
    ///
    /// With `unwind_all`, or when the library links the unwinder, the `.eh_frame` address is
    /// read from the file's `.eh_frame_hdr` (one `pread`, once while the file is unchanged;
    /// reading it from the mapping is a page fault per load, measured dearer: the loop bench
    /// read 1.08 against 1.03 with the `pread`), for [`Object::relocate`] to register.
    pub(crate) fn map(
        source: &Source,
        mut src: OpenSource,
        options: &crate::LoadOptions<'_>,
        unwind_all: bool,
    ) -> Result<Object> {
        let page = page_size();
        let plan = plan_source(&src, page)?;
        let label = src.label();
        if plan.exec_stack {
            // As glibc's dlopen: the stacks become executable, or the library is refused.
            crate::executor::execstack::make_stacks_executable().map_err(|e| e.with_path(label))?;
        }
        // The file name is the end of the label: after its last `/` (a file or an entry opened
        // as one has no trailing `/`), or after `memfd:`.
        let name_at = match source {
            Source::Memory { .. } => label.find(':').map_or(0, |i| i + 1),
            _ => label.rfind('/').map_or(0, |i| i + 1),
        };
        let image = Image::load(&plan, &src, &label[name_at..], options).map_err(|e| e.with_path(label))?;
        let label = src.take_label();
        let dynamic = Dynamic::read(image, &plan).map_err(|e| e.with_path(&label))?;
        if dynamic.flags_1 & u64::from(elf::DF_1_PIE) != 0 {
            return Err(Error::new(
                "load",
                ErrorKind::NotSharedObject,
                "it is a position-independent executable (DF_1_PIE), not a shared library; glibc's dlopen refuses it too",
            )
            .with_path(&label));
        }
        // `-z nodlopen`: glibc's dlopen refuses to map it, as the library opened or as one of
        // its dependencies (`_dl_map_object_from_fd`, under `__RTLD_DLOPEN`); mmkit-elf loaded it.
        if dynamic.flags_1 & u64::from(elf::DF_1_NOOPEN) != 0 {
            return Err(Error::new(
                "load",
                ErrorKind::NotSharedObject,
                "it is marked not to be opened at run time (DF_1_NOOPEN, `-z nodlopen`); glibc's dlopen refuses it too",
            )
            .with_path(&label)
            .with_dlerror(format!("{label}: shared object cannot be dlopen()ed")));
        }
        let tls = match &plan.tls {
            // Built for initial-exec access: a block in glibc's static TLS area, allocated
            // when the image is relocated (see `Object::relocate`).
            Some(_) if wants_static_tls(&dynamic) => {
                Some(ModuleTls::Static { placeholder: tls::placeholder_id(), block: OnceLock::new() })
            }
            // The image is set once relocated (`Object::relocate`).
            Some(t) => Some(ModuleTls::Dynamic(TlsModule::register(t.mem_size, t.align).ok_or_else(|| {
                Error::new("register TLS", ErrorKind::BadDynamic, "bad PT_TLS size or alignment").with_path(&label)
            })?)),
            None => None,
        };
        let eh_frame = if unwind_all || uses_the_unwinder(&dynamic) { eh_frame_of(&plan, &src) } else { None };
        let (dev, ino) = src.dev_ino();
        // A sealed library could not be unmapped: it is pinned.
        let pinned = AtomicBool::new(dynamic.flags_1 & u64::from(elf::DF_1_NODELETE) != 0 || options.seal);
        Ok(Object {
            dev_ino: (dev, ino),
            source_offset: src.offset(),
            key: (dev, ino, src.offset()),
            pinned,
            pins: AtomicUsize::new(0),
            label,
            name_at,
            plan,
            initialized: AtomicBool::new(false),
            finalized: AtomicBool::new(false),
            init_seq: AtomicU64::new(0),
            eh_frame,
            unwind: OnceLock::new(),
            dynamic,
            tls,
            deps: OnceLock::new(),
            global_binds: std::sync::Mutex::new(Vec::new()),
            lazy_plt: OnceLock::new(),
            search: OnceLock::new(),
            rpath_inherited: OnceLock::new(),
            c_source: OnceLock::new(),
            calls_dlopen: AtomicBool::new(false),
            loaded_in: OnceLock::new(),
            origin: OnceLock::new(),
            unique_scope: OnceLock::new(),
            root: OnceLock::new(),
            deep_bound: AtomicBool::new(false),
        })
    }

    /// Keeps the namespace `ns` and the source the library was loaded from, if its own
    /// `dlopen` calls will need them (it imports `dlopen`).
    /// Records the namespace whose `STB_GNU_UNIQUE` table the library's unique definitions
    /// join (before relocation, which binds them).
    pub(crate) fn set_unique_scope(&self, ns: &crate::Namespace) {
        let _ = self.unique_scope.set(Arc::as_ptr(ns.registry()) as usize);
    }

    pub(crate) fn remember_namespace(&self, ns: &crate::Namespace, source: &Source) {
        let origin = self.origin.get_or_init(|| source.absolute());
        if self.calls_dlopen.load(Ordering::Relaxed) {
            let _ = self.loaded_in.set((ns.clone(), origin.clone()));
        }
    }

    /// Where the library came from, a relative path made absolute when it was loaded (glibc's
    /// `l_origin`); `None` before [`Object::remember_namespace`].
    #[cfg_attr(not(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64"))), allow(dead_code))]
    pub(crate) fn origin(&self) -> Option<&Source> {
        self.origin.get()
    }

    /// The namespace and source kept by [`Object::remember_namespace`].
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn loaded_in(&self) -> Option<&(crate::Namespace, Source)> {
        self.loaded_in.get()
    }

    /// Relocates the object, binding its references in glibc's order: the global scope, then
    /// `scope` (the search list of the library being opened), then its own definition.
    /// Protects RELRO and registers the unwind tables. `binding`: `dlopen`'s `RTLD_LAZY` (a
    /// call to a function nothing defines fails when made, not now; `relocate/lazy.rs`) and
    /// `RTLD_DEEPBIND` (`scope_list` before the global scope).
    pub(crate) fn relocate(&self, scope_list: &[Dependency], binding: crate::options::Binding) -> Result<()> {
        self.deep_bound.store(binding.deep, Ordering::Relaxed);
        // One binding per symbol index (many relocations name the same symbol), and one
        // snapshot of glibc's scope for the whole pass. The binding is kept as the address
        // (8 bytes a symbol, not a `Target`'s 24: fresh heap pages are page faults on a
        // process's first load); IFUNC and TLS targets, rarely named twice, are resolved again.
        const UNBOUND: u64 = u64::MAX;
        let mut cache: Vec<u64> = vec![UNBOUND; self.dynamic.sym_count()];
        let scope = process_scope::Scope::now();
        // The names the pass looks up in the global scope, named (and hashed) once, when the
        // first lookup misses the cache.
        let wanted = OnceCell::new();
        let mut resolve = |index: u32| -> Result<Target> {
            if let Some(&a) = cache.get(index as usize).filter(|&&a| a != UNBOUND) {
                return Ok(Target::Addr(a));
            }
            let t = self.resolve(index, &scope, &wanted, (scope_list, binding.deep))?;
            if let (Target::Addr(a), Some(slot)) = (t, cache.get_mut(index as usize)) {
                *slot = a;
            }
            Ok(t)
        };
        let unbound = crate::executor::relocate_image(
            &self.dynamic,
            &mut resolve,
            self.tls.as_ref().map(ModuleTls::own),
            &mut || self.allocate_static_tls(),
            binding.lazy,
        )
        .map_err(|e| e.with_path(&self.label))?;
        if let (Some(ModuleTls::Dynamic(module)), Some(t)) = (&self.tls, &self.plan.tls) {
            // Each thread's block starts from the relocated image, as with glibc.
            module.set_image(self.dynamic.image.read(t.vaddr, t.file_size).map_err(|e| e.with_path(&self.label))?);
        }
        if let (Some(pltgot), false) = (self.dynamic.pltgot, unbound.is_empty()) {
            let owner: &(dyn crate::relocate::lazy::LateBind + 'static) = self;
            let plt = crate::relocate::lazy::install(
                &self.dynamic.image,
                pltgot,
                (&self.label, owner),
                unbound,
                self.plan.relro,
            )
            .map_err(|e| e.with_path(&self.label))?;
            let _ = self.lazy_plt.set(plt);
        }
        self.check_static_tls_image()?;
        self.dynamic.image.protect_relro(&self.plan).map_err(|e| e.with_path(&self.label))?;
        // Before the initializers: a C++ constructor may throw and catch inside the library.
        // Which libraries register was decided by `Object::map` (every library's, by default,
        // so that backtraces taken in a callback from a plain C library also cross its frames).
        if let Some(reg) = self.eh_frame.and_then(|eh| self.dynamic.image.register_unwind_info(eh)) {
            let _ = self.unwind.set(reg);
        }
        Ok(())
    }

    /// Checks that every version the library needs (`DT_VERNEED`) is defined by the library it
    /// needs it from, as glibc's `_dl_check_map_versions` does for each library `dlopen`
    /// loads, before any relocation: a library built against a newer build of a dependency is
    /// refused at load, whatever the binding (with lazy binding, its first call to a missing
    /// function would end the process). A version with `VER_FLG_WEAK` (only weak references
    /// need it) may be missing; a file no `DT_NEEDED` entry names (glibc: "should never
    /// happen") is not checked. Called once the dependencies are resolved ([`Object::deps`]).
    ///
    /// Cheap on the load path (libz needs four versions of libc): hashes are compared before
    /// names, and nothing is allocated unless a version is missing.
    pub(crate) fn check_needed_versions(&self) -> Result<()> {
        let dy = &self.dynamic;
        let Some(deps) = self.deps.get() else { return Ok(()) };
        // The records of one `Verneed` entry share its file: its dependency is found once.
        let mut last: Option<(u32, Option<&Dependency>)> = None;
        dy.each_needed_version(|need| {
            let dep = match last {
                Some((file, dep)) if file == need.file => dep,
                _ => {
                    let dep = dy.needed_index(need.file).and_then(|i| deps.get(i));
                    last = Some((need.file, dep));
                    dep
                }
            };
            let (Some(dep), Some(name)) = (dep, dy.bytes_at(need.name)) else { return Ok(()) };
            let defined = match dep {
                Dependency::Mmkit(w) => w.upgrade().is_none_or(|o| o.dynamic.defines_version(need.hash, name)),
                Dependency::System(sys) => sys.defines_version(need.hash, name),
            };
            if defined || need.weak {
                return Ok(());
            }
            Err(self.version_not_found(dep, need))
        })
    }

    /// The error of [`Object::check_needed_versions`]: `need` is not defined by `dep`.
    #[cold]
    #[inline(never)]
    fn version_not_found(&self, dep: &Dependency, need: crate::dynamic::NeededVersion) -> Error {
        let dy = &self.dynamic;
        let version = dy.str_at(need.name).unwrap_or_default();
        let file = dy.str_at(need.file).unwrap_or_default();
        // glibc names the object by its `l_name`: the file it was loaded from.
        let provider = match dep {
            Dependency::Mmkit(w) => w.upgrade().map(|o| o.label.clone()),
            Dependency::System(sys) => sys.path(),
        }
        .unwrap_or_else(|| file.to_owned());
        Error::new(
            "check needed versions",
            ErrorKind::VersionNotFound,
            format!(
                "version `{version}` needed from {file} (DT_VERNEED) is not defined by {provider} (not in its \
                 DT_VERDEF): the library was built against another build of it"
            ),
        )
        .with_path(&self.label)
        .with_dlerror(format!("{provider}: version `{version}' not found (required by {})", self.label))
    }

    /// Allocates the library's static TLS block (`DF_STATIC_TLS`) from its relocated
    /// initialization image, once; called by the relocation pass when every reference that
    /// does not need the block is applied.
    fn allocate_static_tls(&self) -> Result<tls::OwnTls> {
        let (Some(own @ ModuleTls::Static { block, .. }), Some(t)) = (&self.tls, &self.plan.tls) else {
            return Err(Error::new("allocate static TLS", ErrorKind::StaticTls, "the library has no static TLS block"));
        };
        if block.get().is_none() {
            let init = self.dynamic.image.read(t.vaddr, t.file_size).map_err(|e| e.with_path(&self.label))?;
            let first_byte = t.vaddr & t.align.max(1).wrapping_sub(1);
            let allocated = StaticTls::allocate(
                Machine::host()?,
                &init,
                t.mem_size,
                t.align,
                first_byte,
                &self.label[self.name_at..],
            )
            .map_err(|why| {
                // The block's size and alignment, not a range: it has no address until glibc
                // places it.
                let block = format!("a block of {} bytes aligned to {}", t.mem_size, t.align.max(1));
                Error::new("allocate static TLS (DF_STATIC_TLS)", ErrorKind::StaticTls, format!("{block}: {why}"))
                    .with_path(&self.label)
            })?;
            let _ = block.set((allocated, init));
        }
        Ok(own.own())
    }

    /// Every thread was given the static TLS block's initialization image as it was when the
    /// block was allocated; an IFUNC-bound pointer written into it afterwards (a `__thread`
    /// function pointer initialized with an IFUNC) would leave the threads a stale copy. Refused.
    fn check_static_tls_image(&self) -> Result<()> {
        let (Some(ModuleTls::Static { block, .. }), Some(t)) = (&self.tls, &self.plan.tls) else { return Ok(()) };
        let Some((_, init)) = block.get() else { return Ok(()) };
        let now = self.dynamic.image.read(t.vaddr, t.file_size).map_err(|e| e.with_path(&self.label))?;
        if now != *init {
            return Err(Error::new(
                "relocate",
                ErrorKind::StaticTls,
                "an IFUNC-bound relocation writes into the initialization image of the library's \
                 static TLS (DF_STATIC_TLS), which every thread was given before",
            )
            .with_vaddr_range(t.vaddr, t.file_size)
            .with_path(&self.label));
        }
        Ok(())
    }

    /// Runs the initializers (once); `seq` is its place in the initialization order.
    pub(crate) fn initialize(&self, seq: u64) -> Result<()> {
        if self.initialized.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.init_seq.store(seq, Ordering::Release);
        crate::executor::finalize_at_exit();
        crate::executor::run_initializers(self).map_err(|e| e.with_path(&self.label))
    }

    /// Keeps the library loaded for the life of the process.
    pub(crate) fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// Seals the code and RELRO of the loaded library ([`LoadOptions::seal`](crate::LoadOptions::seal) asked of an open
    /// that found it loaded) and pins it: sealed pages cannot be unmapped.
    pub(crate) fn seal(&self) -> Result<()> {
        self.dynamic.image.seal_now(&self.plan).map_err(|e| e.with_path(&self.label))?;
        self.pin();
        Ok(())
    }

    /// Whether it stays loaded for the life of the process.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    /// The `DT_NEEDED` names.
    pub(crate) fn needed_names(&self) -> impl Iterator<Item = Result<&str>> + '_ {
        self.dynamic.needed()
    }

    /// `DT_RUNPATH` (or, without it, `DT_RPATH`) entries, unexpanded.
    pub(crate) fn runpath(&self) -> impl Iterator<Item = &str> + '_ {
        self.dynamic.runpath()
    }

    /// Which tag [`Object::runpath`] comes from (see [`Dynamic::path_list`](crate::dynamic::Dynamic::path_list)).
    pub(crate) fn path_list(&self) -> crate::dynamic::PathList {
        self.dynamic.path_list()
    }

    /// Whether [`Object::runpath`] is a `DT_RPATH`.
    pub(crate) fn runpath_is_rpath(&self) -> bool {
        self.dynamic.runpath_is_rpath()
    }

    /// The `DT_RPATH` directories of the libraries that loaded this one, up the chain (glibc's
    /// `l_loader`s), searched for its dependencies when it has no `DT_RUNPATH`; set once, by
    /// the load that maps it.
    pub(crate) fn rpath_inherited(&self) -> &[crate::SearchDir] {
        self.rpath_inherited.get().map_or(&[], Vec::as_slice)
    }

    /// Records [`Object::rpath_inherited`] (the first load decides).
    pub(crate) fn set_rpath_inherited(&self, dirs: Vec<crate::SearchDir>) {
        let _ = self.rpath_inherited.set(dirs);
    }

    /// What the libraries this one loads inherit: its own `DT_RPATH` (loaded from `source`;
    /// its `$ORIGIN` made absolute now, as glibc's `l_origin`, for their later `dlopen`s),
    /// then what it inherited.
    pub(crate) fn rpath_for_children(&self, source: &Source) -> Vec<crate::SearchDir> {
        let mut dirs = if self.runpath_is_rpath() {
            crate::namespace::rpath_dirs(&source.absolute(), &mut self.runpath())
        } else {
            Vec::new()
        };
        dirs.extend(self.rpath_inherited().iter().cloned());
        dirs
    }

    /// Whether `addr` (run-time) lies in the library as glibc's `dladdr` sees one
    /// (`_dl_find_dso_for_object`): from the first segment's page to the end of the last
    /// segment's memory (`l_map_start`..`l_map_end`, holes between segments included), not
    /// the rest of that page nor the reservation's alignment padding.
    pub(crate) fn holds(&self, addr: u64) -> bool {
        let Some(link) = addr.checked_sub(self.bias()) else { return false };
        let (segs, page) = (&self.plan.segments, self.plan.page_size);
        let (Some(first), Some(last)) = (segs.first(), segs.last()) else { return false };
        link >= first.vaddr - first.vaddr % page && link < last.vaddr.saturating_add(last.mem_size)
    }

    /// The exported symbol that `addr` (run-time) lies in, as `dladdr` answers: the nearest
    /// defined function or object at or below it whose extent covers it (a size-0 symbol only
    /// at its exact address). Returns its name and run-time address.
    pub(crate) fn symbol_at(&self, addr: u64) -> Option<(String, u64)> {
        let (i, at) = self.nearest_symbol(addr)?;
        Some((self.dynamic.sym_name(i).ok()?.to_owned(), at))
    }

    /// [`Object::symbol_at`] with the name as the C string in the library's `.dynstr`, as
    /// `dladdr` answers, and the address of the symbol's entry in `.dynsym`, as `dladdr1`'s
    /// `RTLD_DL_SYMENT` answers (valid while the library is loaded).
    pub(crate) fn symbol_at_c(&self, addr: u64) -> Option<(&std::ffi::CStr, u64, usize)> {
        let (i, at) = self.nearest_symbol(addr)?;
        let sym = self.dynamic.sym(i)?;
        Some((self.dynamic.cstr_at(sym.name).ok()?, at, self.dynamic.sym_address(i)?))
    }

    /// [`Object::source`] as a C string (`None` if it holds a NUL byte).
    pub(crate) fn c_source(&self) -> Option<&std::ffi::CStr> {
        let c = self.c_source.get_or_init(|| std::ffi::CString::new(self.label.as_str()).unwrap_or_default());
        (!c.is_empty()).then_some(c.as_c_str())
    }

    /// The index and run-time address of the symbol [`Object::symbol_at`] names.
    fn nearest_symbol(&self, addr: u64) -> Option<(u32, u64)> {
        let link = addr.checked_sub(self.bias())?;
        let dy = &self.dynamic;
        let mut best: Option<(u32, Sym)> = None;
        for i in 1..dy.sym_count() as u32 {
            let Some(sym) = dy.sym(i) else { break };
            if !sym.is_defined()
                || sym.shndx == elf::SHN_ABS
                || !matches!(sym.kind(), elf::STT_FUNC | elf::STT_OBJECT | elf::STT_GNU_IFUNC | elf::STT_NOTYPE)
                || sym.value > link
            {
                continue;
            }
            let covers = if sym.size == 0 { sym.value == link } else { link - sym.value < sym.size };
            if covers && best.as_ref().is_none_or(|(_, b)| sym.value > b.value) {
                best = Some((i, sym));
            }
        }
        let (i, sym) = best?;
        Some((i, self.dynamic.image.addr(sym.value)))
    }

    /// Where the program headers are in memory and how many there are (`dl_iterate_phdr`'s
    /// `dlpi_phdr`, `dlpi_phnum`): inside the loaded segment whose file bytes hold them, as
    /// every linker places them; `(0, 0)` if no segment does.
    #[cfg_attr(not(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64"))), allow(dead_code))]
    pub(crate) fn program_headers(&self) -> (u64, u16) {
        let (off, n) = self.plan.phdrs;
        let entry = if cfg!(target_pointer_width = "64") { 56 } else { 32 };
        let (Some(end), Ok(count)) = (n.checked_mul(entry).and_then(|l| l.checked_add(off)), u16::try_from(n)) else {
            return (0, 0);
        };
        self.plan
            .segments
            .iter()
            .find(|s| s.file_offset <= off && end <= s.file_offset.saturating_add(s.file_size))
            .map_or((0, 0), |s| (self.bias().wrapping_add(s.vaddr + (off - s.file_offset)), count))
    }

    /// The TLS module id this library's own code uses and this thread's block of it, if
    /// allocated (`dl_iterate_phdr`'s `dlpi_tls_modid`, `dlpi_tls_data`); `(0, 0)` without TLS.
    #[cfg_attr(not(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64"))), allow(dead_code))]
    pub(crate) fn tls_for_walk(&self) -> (u64, u64) {
        match &self.tls {
            None => (0, 0),
            Some(ModuleTls::Dynamic(m)) => (m.id(), tls::existing_block(m.id()).map_or(0, |p| p as u64)),
            Some(t) => match t.own() {
                tls::OwnTls { pending: true, .. } => (0, 0),
                tls::OwnTls { module, .. } => (module, tls::address(module, 0, "dl_iterate_phdr") as u64),
            },
        }
    }

    /// The label, for messages.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The dependencies breadth-first, each once, without this object.
    pub(crate) fn search_list(&self) -> &[Dependency] {
        self.search.get_or_init(|| {
            let mut out: Vec<Dependency> = Vec::new();
            let mut seen_mmkit: Vec<*const Object> = vec![self as *const Object];
            let mut seen_sys: Vec<*const SystemLibrary> = Vec::new();
            let mut queue: std::collections::VecDeque<Dependency> =
                self.deps.get().map(|d| d.iter().cloned().collect()).unwrap_or_default();
            while let Some(d) = queue.pop_front() {
                match &d {
                    Dependency::Mmkit(w) => {
                        if seen_mmkit.contains(&w.as_ptr()) {
                            continue;
                        }
                        seen_mmkit.push(w.as_ptr());
                        if let Some(o) = w.upgrade() {
                            queue.extend(o.deps.get().into_iter().flatten().cloned());
                        }
                    }
                    Dependency::System(s) => {
                        if seen_sys.contains(&Arc::as_ptr(s)) {
                            continue;
                        }
                        seen_sys.push(Arc::as_ptr(s));
                    }
                }
                out.push(d);
            }
            out
        })
    }

    /// Whether the library's unwind tables are registered with the process's unwinder (see
    /// the crate docs): C++ exceptions and backtraces then unwind through its frames.
    pub fn unwind_tables_registered(&self) -> bool {
        self.unwind.get().is_some()
    }

    /// The functions left unbound at load by lazy binding (see `relocate/lazy.rs`).
    pub(crate) fn unbound_functions(&self) -> Vec<String> {
        self.lazy_plt.get().map(|p| p.names().map(str::to_owned).collect()).unwrap_or_default()
    }

    /// [`Object::own_target`] for a definition a lookup found; for an `STB_GNU_UNIQUE` one, the
    /// definition of that name bound first in the process (see [`unique_definition`]).
    fn found_target(&self, name: &str, sym: &Sym) -> Target {
        let target = self.own_target(sym);
        if sym.bind() == elf::STB_GNU_UNIQUE && sym.is_defined() {
            // As glibc marks the object it found one in: never unloaded (the table may hold
            // this definition).
            self.pin();
            return unique_definition(self.unique_scope.get().copied().unwrap_or(0), name, target);
        }
        target
    }

    /// [`Object::found_target`] for this library's own symbol `index`, named (a string read
    /// and checked) only when it is `STB_GNU_UNIQUE`: relocation binds most references of a
    /// library to its own definitions this way, and the name is needed only for the table.
    fn found_own_target(&self, index: u32, sym: &Sym) -> Result<Target> {
        if sym.bind() == elf::STB_GNU_UNIQUE && sym.is_defined() {
            return Ok(self.found_target(self.dynamic.sym_name(index)?, sym));
        }
        Ok(self.own_target(sym))
    }

    /// What this library's own definition `sym` binds to.
    fn own_target(&self, sym: &Sym) -> Target {
        match sym.kind() {
            elf::STT_TLS => Target::Tls { module: self.tls.as_ref().map_or(0, ModuleTls::id), offset: sym.value },
            elf::STT_GNU_IFUNC => Target::Ifunc(self.dynamic.image.addr(sym.value)),
            _ if sym.shndx == elf::SHN_ABS => Target::Addr(sym.value),
            _ => Target::Addr(self.dynamic.image.addr(sym.value)),
        }
    }

    /// Finds an exported definition in this library, then its dependencies (what `dlsym` on a
    /// handle does).
    pub(crate) fn find(&self, name: &str, want: Want<'_>) -> Option<Target> {
        self.find_typed(name, want).map(|(t, _)| t)
    }

    /// [`Library::find`], with the definition's kind when it is in a library mmkit loaded
    /// (`None`: glibc's library defines it; [`process_scope::kind_at`] tells from its address).
    pub(crate) fn find_typed(&self, name: &str, want: Want<'_>) -> Option<(Target, Option<SymbolKind>)> {
        if let Some((_, sym)) = symbols::lookup(&self.dynamic, name, want) {
            return Some((self.found_target(name, &sym), Some(SymbolKind::of(&sym))));
        }
        self.find_in_dependencies_typed(name, want)
    }

    /// Finds an exported definition in this library's dependencies, breadth-first, without
    /// the library itself (what `dlsym(RTLD_NEXT)` called from it answers).
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn find_in_dependencies(&self, name: &str, want: Want<'_>) -> Option<Target> {
        self.find_in_dependencies_typed(name, want).map(|(t, _)| t)
    }

    fn find_in_dependencies_typed(&self, name: &str, want: Want<'_>) -> Option<(Target, Option<SymbolKind>)> {
        find_in_list(self.search_list(), name, want)
    }

    /// What `dlsym(RTLD_NEXT, name)` called from this library answers, as glibc answers it:
    /// the first definition after this library in the lookup scope of the library whose load
    /// brought it in (the root of its group: glibc's `l_loader` chain), breadth-first. For the
    /// root itself, its own dependencies. A library whose root was unloaded since searches its
    /// own dependencies.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn next_definition(&self, name: &str, want: Want<'_>) -> Option<Target> {
        let root = self.root.get().and_then(Weak::upgrade);
        let me = self as *const Object;
        let Some(root) = root.filter(|r| !std::ptr::eq(Arc::as_ptr(r), me)) else {
            return self.find_in_dependencies(name, want);
        };
        let list = root.search_list();
        match list.iter().position(|d| matches!(d, Dependency::Mmkit(w) if std::ptr::eq(w.as_ptr(), me))) {
            Some(i) => find_in_list(&list[i + 1..], name, want).map(|(t, _)| t),
            None => self.find_in_dependencies(name, want),
        }
    }

    /// Whether the library was relocated with `RTLD_DEEPBIND` (its own lookup scope before the
    /// global scope).
    pub(crate) fn deep_bound(&self) -> bool {
        self.deep_bound.load(Ordering::Relaxed)
    }

    /// The definition of `name` in this library's own lookup scope, as glibc's `dlsym
    /// (RTLD_DEFAULT)` searches it after the global scope (before it, for a library relocated
    /// with `RTLD_DEEPBIND`): the search list of the library whose load brought this one in
    /// (that library first, then its dependencies breadth-first); this library's own search
    /// list when it is that library, or when that library was unloaded since.
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) fn find_in_own_scope(&self, name: &str, want: Want<'_>) -> Option<Target> {
        match self.root.get().and_then(Weak::upgrade) {
            Some(root) => root.find(name, want),
            None => self.find(name, want),
        }
    }

    /// The definition of `name` in the libraries mmkit made global (`RTLD_GLOBAL`), if one
    /// has it; the library holding it then stays loaded while this one is (glibc's
    /// `l_reldeps`: a reference bound to it, or a `dlsym(RTLD_DEFAULT)` answer this library
    /// asked for).
    pub(crate) fn bind_in_global_scope(&self, name: &str, want: Want<'_>) -> Option<Target> {
        let (t, provider) = find_in_global_scope_from(name, want)?;
        let at = Arc::as_ptr(&provider) as usize;
        let mut binds = self.global_binds.lock().unwrap_or_else(|e| e.into_inner());
        if at != self as *const Object as usize && !binds.iter().any(|&(p, _)| p == at) {
            if let Some(pin) = crate::group::pin_containing(provider.span().0) {
                binds.push((at, pin));
            }
        }
        Some(t)
    }

    /// Records the library whose load brought this one in (once: the first load decides).
    pub(crate) fn set_root(&self, root: &Arc<Object>) {
        let _ = self.root.set(Arc::downgrade(root));
    }

    /// The kind of the exported symbol `name` (default version): whether it is a function,
    /// data, thread-local, absolute. For a definition in a library glibc loaded, the kind
    /// glibc's symbol table gives (`dladdr1`), else [`SymbolKind::Function`] when the address
    /// is in an executable segment.
    pub fn symbol_kind(&self, name: &str) -> Result<SymbolKind> {
        match self.find_typed(name, Want::Default) {
            Some((_, Some(kind))) => Ok(kind),
            Some((Target::Addr(a), None)) => Ok(process_scope::kind_at(a)),
            Some((_, None)) => Ok(SymbolKind::Untyped),
            None => Err(self.not_found(name, "no such exported symbol")),
        }
    }

    /// The symbols the relocation pass looks up in the global scope (a symbol-based relocation
    /// names it and `resolve` asks the global scope), by increasing index, with their names
    /// (and GNU hashes) and versions.
    fn global_lookups(&self) -> WantedNames<'_> {
        let dy = &self.dynamic;
        // The symbols first (a bit each), then their names in index order, in a vector of
        // the exact size.
        let mut wanted = vec![0u64; dy.sym_count().div_ceil(64)];
        for r in dy.relocations() {
            if r.sym == 0 || !crate::relocate::host_kind(r.r_type).binds_address() {
                continue;
            }
            let i = r.sym as usize;
            let (Some(word), Some(sym)) = (wanted.get_mut(i / 64), dy.sym(r.sym)) else {
                continue;
            };
            // The symbols `resolve` binds without asking the global scope.
            if sym.kind() == elf::STT_TLS
                || (sym.is_defined() && (sym.bind() == elf::STB_LOCAL || sym.visibility() == elf::STV_PROTECTED))
            {
                continue;
            }
            *word |= 1 << (i % 64);
        }
        let mut out = Vec::with_capacity(wanted.iter().map(|w| w.count_ones() as usize).sum());
        for (k, &word) in wanted.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let index = (k * 64 + bits.trailing_zeros() as usize) as u32;
                bits &= bits - 1;
                let Some(sym) = dy.sym(index) else { continue };
                if let Some(name) = dy
                    .symbol_name(sym.name)
                    .ok()
                    .filter(|n| n.hash() != TLS_GET_ADDR_HASH || n.text() != b"__tls_get_addr")
                {
                    let version = dy.version_of(index).map(|(v, _)| dy.version_key(v));
                    out.push(Wanted { index, name, version });
                }
            }
        }
        WantedNames::new(out, dy.sym_count())
    }

    /// Binds the reference of relocation symbol `index`, in glibc's order for a library opened
    /// `RTLD_LOCAL`: the global scope, then the library itself, then its dependencies (`list`);
    /// with `deep` (`RTLD_DEEPBIND`), `list` before the global scope. Inlined into the
    /// relocation pass, whose every symbol it binds (a call each costs ~3k instructions a load).
    #[inline(always)]
    fn resolve<'s>(
        &'s self,
        index: u32,
        scope: &process_scope::Scope,
        wanted: &OnceCell<WantedNames<'s>>,
        (list, deep): (&[Dependency], bool),
    ) -> Result<Target> {
        let dy = &self.dynamic;
        let sym = dy.sym(index).ok_or_else(|| {
            Error::new("relocate", ErrorKind::BadDynamic, format!("symbol index {index} out of range"))
        })?;
        if sym.is_defined() && sym.bind() == elf::STB_GNU_UNIQUE {
            // glibc never unloads a library once a reference binds to its unique symbol (the
            // library's own references do, through its GOT).
            self.pin();
        }
        if sym.is_defined()
            && (sym.bind() == elf::STB_LOCAL || sym.visibility() == elf::STV_PROTECTED || sym.kind() == elf::STT_TLS)
        {
            // Not interposable.
            return Ok(self.own_target(&sym));
        }
        // Named once: by the walk of glibc's objects if it ran.
        let known = wanted.get().and_then(|w| w.get(index)).map(|(_, w)| w);
        let key = match known {
            Some(w) => w.name,
            None => dy.symbol_name(sym.name)?,
        };
        if key.hash() == TLS_GET_ADDR_HASH && key.text() == b"__tls_get_addr" {
            return Ok(Target::Addr(tls::tls_get_addr as *const () as usize as u64));
        }
        if crate::relocate::atexit::INTERPOSED.contains(&key.text()) {
            return Ok(Target::Addr(crate::relocate::atexit::thread_atexit as *const () as usize as u64));
        }
        if let Some(entry) = crate::executor::interposed(key.text()) {
            if key.text() == b"dlopen" {
                self.calls_dlopen.store(true, Ordering::Relaxed);
            }
            return Ok(Target::Addr(entry));
        }
        let version = dy.version_of(index).map(|(v, _)| v);
        let version_key = match known {
            Some(w) => w.version,
            None => version.map(|v| dy.version_key(v)),
        };
        let announce = || wanted.get_or_init(|| self.global_lookups());
        // A reference without a version binds as glibc's relocation does (the oldest
        // version of a name several versions define), not as `dlsym` (the default).
        // (Named only when needed: most references bind in the global scope by hash first.)
        let want = || version.map_or(Want::Unversioned, |v| Want::Exact(dy.version_name(v)));
        // `DT_SYMBOLIC` (`-Bsymbolic`'s tag): the library itself first, as glibc's and bionic's
        // lookups have it (`RTLD_DEEPBIND`, which searches it first anyway, takes precedence).
        if dy.symbolic && !deep {
            if let Some((_, s)) = symbols::lookup(dy, dy.sym_name(index)?, want()) {
                return Ok(self.own_target(&s));
            }
        }
        // glibc's order: the global scope, then the library's own search list (itself when
        // opened, then its dependencies); `RTLD_DEEPBIND` the other way round.
        for global in [!deep, deep] {
            if global {
                if sym.kind() != elf::STT_TLS {
                    if let Some(a) = scope.global_symbol(index, key, version_key, &announce) {
                        return Ok(Target::Addr(a));
                    }
                }
                if HAS_GLOBAL_SCOPE.load(Ordering::Acquire) {
                    match self.bind_in_global_scope(dy.sym_name(index)?, want()) {
                        // A thread-local variable of an object glibc loaded, in the search
                        // list of a library made global: `dlsym` answered this thread's copy;
                        // the reference needs its module and offset, as in the list below.
                        Some(Target::Addr(a)) if sym.kind() == elf::STT_TLS => {
                            if let Some((module, offset)) = process_scope::tls_module_of_address(a) {
                                return Ok(Target::Tls { module, offset });
                            }
                        }
                        Some(t) => return Ok(t),
                        None => {}
                    }
                }
                continue;
            }
            if self.defines_first(index, &sym, key.hash(), version.is_some(), list) {
                return self.found_own_target(index, &sym);
            }
            let (name, want) = (dy.sym_name(index)?, want());
            if let Some(t) = list.iter().find_map(|d| match d {
                Dependency::Mmkit(w) => {
                    let o = w.upgrade()?;
                    let (_, s) = symbols::lookup(&o.dynamic, name, want)?;
                    if s.bind() == elf::STB_GNU_UNIQUE {
                        o.pin();
                    }
                    Some(o.found_target(name, &s))
                }
                Dependency::System(sys) if sym.kind() == elf::STT_TLS => {
                    // A thread-local variable of an object glibc loaded: its module and offset.
                    scope.tls_symbol(Some(sys), key, version_key).map(|(module, offset)| Target::Tls { module, offset })
                }
                Dependency::System(sys) => scope.symbol_in(sys, index, key, version_key, &announce).map(Target::Addr),
            }) {
                return Ok(t);
            }
        }
        if sym.is_definition() {
            return self.found_own_target(index, &sym);
        }
        if sym.bind() == elf::STB_WEAK {
            return Ok(Target::Addr(0));
        }
        let name = dy.sym_name(index)?;
        let ver = match dy.version_of(index) {
            Some((v, _)) => format!(
                " version {}{}",
                dy.version_name(v),
                dy.version_file(v).map(|f| format!(" (from {f})")).unwrap_or_default()
            ),
            None => String::new(),
        };
        // glibc's words: the referencing object, the name, and its version if it has one.
        let glibc_version = dy.version_of(index).map(|(v, _)| format!(", version {}", dy.version_name(v)));
        Err(Error::new(
            "relocate",
            ErrorKind::UndefinedSymbol,
            format!("undefined symbol `{name}`{ver}: not in the process, the library or its dependencies"),
        )
        .with_dlerror(format!("{}: undefined symbol: {name}{}", self.label, glibc_version.unwrap_or_default())))
    }

    /// Whether the search list's lookup would find `sym` itself, the library's own definition
    /// that a reference of its own names: the list starts with this library (the library being
    /// opened binds in its own table first), and `sym` (symbol `index`, whose name has GNU hash
    /// `hash`) is a definition `symbols::lookup` accepts with the reference's own name and
    /// version, and the first one it meets: versioned (the version names exactly this
    /// definition), or in a library without versions (no other definition of the name), or
    /// unversioned with no symbol of the same hash before it in its GNU hash chain (glibc's
    /// `check_match` accepts a definition without a version at once, as `symbols::lookup`
    /// does, and only a symbol of the same hash met before could be accepted before it).
    /// Saves the name and version strings and the hash-table walk for every reference to the
    /// library's own exports.
    fn defines_first(&self, index: u32, sym: &Sym, hash: u32, versioned: bool, list: &[Dependency]) -> bool {
        let first_is_self = matches!(list.first(), Some(Dependency::Mmkit(w)) if std::ptr::eq(w.as_ptr(), self));
        first_is_self
            && sym.is_definition()
            && sym.bind() != elf::STB_LOCAL
            && matches!(
                sym.kind(),
                elf::STT_FUNC | elf::STT_OBJECT | elf::STT_GNU_IFUNC | elf::STT_NOTYPE | elf::STT_TLS | elf::STT_COMMON
            )
            && sym.visibility() != elf::STV_HIDDEN
            && sym.visibility() != elf::STV_INTERNAL
            && (versioned || !self.dynamic.has_versions() || self.first_of_its_hash(index, hash))
    }

    /// Whether symbol `index` is in the GNU hash chain of `hash` and no symbol before it there
    /// has the same hash.
    fn first_of_its_hash(&self, index: u32, hash: u32) -> bool {
        let dy = &self.dynamic;
        let Some(gh) = &dy.gnu_hash else { return false };
        let nbuckets = gh.buckets.len() as u32;
        if nbuckets == 0 {
            return false;
        }
        let Some(mut i) = dy.image.get(&gh.buckets, (hash % nbuckets) as usize).map(u32::from_le) else {
            return false;
        };
        if i < gh.symoffset || i > index {
            return false;
        }
        loop {
            let Some(chain) = dy.image.get(&gh.chains, (i - gh.symoffset) as usize).map(u32::from_le) else {
                return false;
            };
            if i == index {
                return chain | 1 == hash | 1;
            }
            if chain | 1 == hash | 1 || chain & 1 != 0 {
                return false;
            }
            i += 1;
        }
    }

    /// The library's file name (`libfoo.so`).
    pub fn name(&self) -> &str {
        &self.label[self.name_at..]
    }

    /// Where it was loaded from: `path`, `archive!/entry`, `memfd:name`.
    pub fn source(&self) -> &str {
        &self.label
    }

    /// The plan it was loaded with (page size from the kernel).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The load bias: run-time address minus link-time address.
    pub fn bias(&self) -> u64 {
        self.dynamic.image.bias()
    }

    /// Run-time `(start, len)` of the whole reservation.
    pub fn span(&self) -> (u64, u64) {
        self.dynamic.image.span()
    }

    /// `DT_SONAME`, if any.
    pub fn soname(&self) -> Option<&str> {
        self.dynamic.soname()
    }

    /// `DT_NEEDED` names, in order (names that are not UTF-8 are left out).
    pub fn needed(&self) -> Vec<&str> {
        self.dynamic.needed().filter_map(Result::ok).collect()
    }

    /// The dependencies: `(name, loaded by mmkit)`; `false` means glibc loaded it (it was loaded
    /// already, or the namespace sent it to the system linker: see [`crate::Namespace`]).
    pub fn dependencies(&self) -> Vec<(String, bool)> {
        self.deps
            .get()
            .into_iter()
            .flatten()
            .filter_map(|d| match d {
                Dependency::Mmkit(l) => Some((l.upgrade()?.name().to_owned(), true)),
                Dependency::System(s) => Some((s.name().to_owned(), false)),
            })
            .collect()
    }

    /// The run-time address of an exported symbol (default version) that is not an IFUNC or
    /// TLS symbol. Use [`Library::symbol`] for a typed, callable value.
    pub fn address_of(&self, name: &str) -> Result<u64> {
        match self.find(name, Want::Default) {
            Some(Target::Addr(a)) => Ok(a),
            Some(Target::Ifunc(_)) => Err(self.not_found(name, "it is an IFUNC; use Library::symbol")),
            Some(Target::Tls { .. }) => Err(self.not_found(name, "it is a thread-local variable")),
            None => Err(self.not_found(name, "no such exported symbol")),
        }
    }

    pub(crate) fn not_found(&self, name: &str, why: &str) -> Error {
        Error::new(format!("symbol lookup of `{name}`"), ErrorKind::SymbolNotFound, why).with_path(&self.label)
    }

    pub(crate) fn dynamic(&self) -> &Dynamic {
        &self.dynamic
    }

    pub(crate) fn image(&self) -> &Image {
        &self.dynamic.image
    }

    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    /// Whether its finalizers are to run now: it was initialized and they have not run yet
    /// (they run once, at unload or at process exit, whichever comes first).
    pub(crate) fn take_finalizers(&self) -> bool {
        self.is_initialized() && !self.finalized.swap(true, Ordering::AcqRel)
    }

    /// The mappings, in address order, with resident pages counted by `mincore`.
    pub fn segments(&self) -> Result<Vec<LibraryMapping>> {
        let page = self.plan.page_size;
        let mut out = self.expected_mappings();
        let pagemap = std::fs::File::open("/proc/self/pagemap").ok();
        for m in &mut out {
            // A gap is reserved, inaccessible anonymous memory mmkit-elf mapped fresh: never
            // resident, so not asked (qemu-user answers `mincore` there with ENOMEM).
            if m.kind != MappingKind::Gap {
                m.resident_pages = self.dynamic.image.resident_pages(m.start, m.len, page)?;
            }
            m.present_pages = pagemap.as_ref().map_or(0, |f| present_pages(f, m.start, m.len, page));
        }
        Ok(out)
    }

    fn expected_mappings(&self) -> Vec<LibraryMapping> {
        let plan = &self.plan;
        let page = plan.page_size;
        let relro = plan.relro.map(|(s, l)| (s, s + l));
        let mut out: Vec<LibraryMapping> = Vec::new();
        let mut push = |start: u64, end: u64, prot: Protection, kind: MappingKind, off: Option<u64>| {
            // Split at the RELRO boundaries.
            let mut cuts = vec![start, end];
            if let Some((rs, re)) = relro {
                for c in [rs, re] {
                    if c > start && c < end {
                        cuts.push(c);
                    }
                }
            }
            cuts.sort_unstable();
            for w in cuts.windows(2) {
                let (s, e) = (w[0], w[1]);
                let in_relro = relro.is_some_and(|(rs, re)| s >= rs && e <= re);
                let (prot, kind) = match (in_relro, kind) {
                    (true, MappingKind::Segment { phdr_index }) => {
                        (Protection::READ, MappingKind::Relro { phdr_index })
                    }
                    (true, MappingKind::Bss { .. }) => (Protection::READ, kind),
                    _ => (prot, kind),
                };
                out.push(LibraryMapping {
                    start: self.dynamic.image.addr(s),
                    len: e - s,
                    prot,
                    kind,
                    file_offset: off.map(|o| o + (s - start)),
                    pages: (e - s) / page,
                    resident_pages: 0,
                    present_pages: 0,
                });
            }
        };
        let mut prev_end: Option<u64> = None;
        for seg in &plan.segments {
            if let Some(pe) = prev_end {
                if seg.map_vaddr > pe {
                    push(pe, seg.map_vaddr, Protection::NONE, MappingKind::Gap, None);
                }
            }
            if seg.map_file_len > 0 {
                push(
                    seg.map_vaddr,
                    seg.map_vaddr + seg.map_file_len,
                    seg.prot,
                    MappingKind::Segment { phdr_index: seg.phdr_index },
                    Some(self.source_offset + seg.map_offset),
                );
            }
            if seg.bss_len > 0 {
                push(
                    seg.bss_vaddr,
                    seg.bss_vaddr + seg.bss_len,
                    seg.prot,
                    MappingKind::Bss { phdr_index: seg.phdr_index },
                    None,
                );
            }
            prev_end = Some(seg.map_end());
        }
        out
    }

    /// Checks the mappings against `/proc/self/maps`: every page of the reservation is mapped
    /// with the planned access rights, file pages from this library's file at the planned
    /// offsets, `.bss` and gaps anonymous.
    pub fn verify(&self) -> Result<()> {
        let lines = mmkit::inspect::maps(std::process::id())
            .map_err(|e| Error::from_core("read", &e).with_path("/proc/self/maps"))?;
        let (dev, ino) = self.dev_ino;
        let want_dev = mmkit::inspect::DeviceId { major: rustix::fs::major(dev), minor: rustix::fs::minor(dev) };
        let mut problems = Vec::new();
        for m in self.expected_mappings() {
            let end = m.start + m.len;
            let mut at = m.start;
            for l in lines.iter().filter(|l| l.end > m.start && l.start < end) {
                if l.start > at {
                    problems.push(format!("{at:#x}-{:#x} is not mapped", l.start));
                }
                at = l.end;
                let perms = format!("{}p", m.prot.rwx());
                if l.perms.to_string() != perms {
                    problems.push(format!(
                        "{:#x}-{:#x}: {} where {perms} was planned ({:?})",
                        l.start, l.end, l.perms, m.kind
                    ));
                }
                match m.file_offset {
                    // RELRO shared through a RELRO file: its pages come from that file.
                    Some(_)
                        if matches!(m.kind, MappingKind::Relro { .. })
                            && self.dynamic.image.relro_sharing().is_some() => {}
                    Some(off) => {
                        let from = l.start.max(m.start);
                        let want_off = off + (from - m.start);
                        let got_off = l.offset + (from - l.start);
                        if l.inode != ino || l.device != want_dev {
                            problems.push(format!(
                                "{:#x}-{:#x}: maps inode {} dev {}, expected {ino} {want_dev}",
                                l.start, l.end, l.inode, l.device
                            ));
                        } else if got_off != want_off {
                            problems.push(format!("{from:#x}: file offset {got_off:#x}, expected {want_off:#x}"));
                        }
                    }
                    None => {
                        if l.inode != 0 {
                            problems.push(format!(
                                "{:#x}-{:#x}: expected anonymous memory, found inode {}",
                                l.start, l.end, l.inode
                            ));
                        }
                    }
                }
            }
            if at < end {
                problems.push(format!("{at:#x}-{end:#x} is not mapped"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            let (s, l) = self.span();
            Err(Error::new("verify against /proc/self/maps", ErrorKind::VerifyFailed, problems.join("; "))
                .with_addr_range(s, l)
                .with_path(&self.label))
        }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        crate::executor::run_finalizers(self);
        if let Some(reg) = self.unwind.take() {
            self.dynamic.image.deregister_unwind_info(reg);
        }
    }
}

/// A shared object loaded by mmkit: a handle, like the one `dlopen` returns. The same file
/// opened again in the same [`Namespace`](crate::Namespace) gives another handle to the same copy; the copy is
/// unloaded (its finalizers run, then it is unmapped) when the last handle is dropped and no
/// other loaded library needs it, unless it is pinned (`DF_1_NODELETE`, `STB_GNU_UNIQUE`).
///
/// A system library opened directly (libm, libstdc++, libc: see
/// [`SystemPolicy`](crate::SystemPolicy)) is loaded by the system linker, as a dependency
/// would be: its handle finds symbols in glibc's copy, and [`Library::segments`] and
/// [`Library::verify`] (which check mmkit's own mappings) return an error for it.
#[derive(Debug)]
pub struct Library {
    obj: Option<Arc<Object>>,
    /// Set instead of `obj` for a system library the system linker loaded.
    system: Option<Arc<SystemOpened>>,
    registry: Arc<crate::group::Registry>,
}

/// The first definition of `name` (version `want`) in `list`, in order.
/// The libraries `dlopen(RTLD_GLOBAL)` (or [`Library::make_global`]) made global, in order:
/// glibc appends such a library and its dependencies to its global scope. mmkit binds against
/// each (the library, then its search list) after glibc's global scope (whose objects were
/// loaded first), before a library's own dependencies; a mapped library's
/// `dlsym(RTLD_DEFAULT)` finds them too. The system linker's own lookups cannot see them.
/// Changed and read under the load lock (held across `fork`); weak, so a library leaves the
/// scope when it is unloaded, its dependencies with it.
static GLOBAL_SCOPE: std::sync::Mutex<Vec<Weak<Object>>> = std::sync::Mutex::new(Vec::new());

/// Whether [`GLOBAL_SCOPE`] was ever given a library: binding skips it until then.
static HAS_GLOBAL_SCOPE: AtomicBool = AtomicBool::new(false);

/// Whether a library was ever made global (else there is nothing to look up there).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) fn has_global_scope() -> bool {
    HAS_GLOBAL_SCOPE.load(Ordering::Acquire)
}

/// The definition of `name` in [`GLOBAL_SCOPE`], if a library mmkit made global (or one of
/// its dependencies) defines it.
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
pub(crate) fn find_in_global_scope(name: &str, want: Want<'_>) -> Option<Target> {
    find_in_global_scope_from(name, want).map(|(t, _)| t)
}

/// [`find_in_global_scope`], with the library mmkit mapped that defines it (or, for a
/// definition in a library glibc loaded, the global library whose dependency it is).
fn find_in_global_scope_from(name: &str, want: Want<'_>) -> Option<(Target, Arc<Object>)> {
    if !HAS_GLOBAL_SCOPE.load(Ordering::Acquire) {
        return None;
    }
    crate::group::with_load_lock(|| {
        let roots: Vec<Arc<Object>> =
            GLOBAL_SCOPE.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect();
        roots.into_iter().find_map(|o| {
            if let Some((_, sym)) = symbols::lookup(&o.dynamic, name, want) {
                return Some((o.own_target(&sym), o));
            }
            o.search_list().iter().find_map(|d| match d {
                Dependency::Mmkit(w) => {
                    let dep = w.upgrade()?;
                    symbols::lookup(&dep.dynamic, name, want).map(|(_, sym)| (dep.own_target(&sym), dep.clone()))
                }
                Dependency::System(sys) => sys.symbol(name, want.version()).map(|a| (Target::Addr(a), o.clone())),
            })
        })
    })
}

fn find_in_list(list: &[Dependency], name: &str, want: Want<'_>) -> Option<(Target, Option<SymbolKind>)> {
    list.iter().find_map(|d| match d {
        Dependency::Mmkit(w) => {
            let o = w.upgrade()?;
            symbols::lookup(&o.dynamic, name, want).map(|(_, sym)| (o.own_target(&sym), Some(SymbolKind::of(&sym))))
        }
        Dependency::System(sys) => sys.symbol(name, want.version()).map(|a| (Target::Addr(a), None)),
    })
}

/// What a handle holds.
enum Held<'a> {
    Mapped(&'a Object),
    System(&'a SystemOpened),
}

impl Library {
    pub(crate) fn new(obj: Arc<Object>, registry: Arc<crate::group::Registry>) -> Library {
        Library { obj: Some(obj), system: None, registry }
    }

    pub(crate) fn new_system(system: SystemOpened, registry: Arc<crate::group::Registry>) -> Library {
        Library { obj: None, system: Some(Arc::new(system)), registry }
    }

    /// The object mmkit mapped, or `None` for a library the system linker loaded.
    pub(crate) fn mapped_object(&self) -> Option<&Object> {
        match self.held() {
            Held::Mapped(o) => Some(o),
            Held::System(_) => None,
        }
    }

    fn held(&self) -> Held<'_> {
        match (&self.obj, &self.system) {
            (Some(o), _) => Held::Mapped(o),
            (None, Some(s)) => Held::System(s),
            (None, None) => unreachable!("a live handle holds a library"),
        }
    }

    /// The object mmkit mapped, or the error for a system library (`what` failed).
    pub(crate) fn mapped(&self, what: &str) -> Result<&Object> {
        match self.held() {
            Held::Mapped(o) => Ok(o),
            Held::System(s) => Err(s.not_mapped_by_mmkit(what)),
        }
    }

    /// The library's file name (`libfoo.so`).
    pub fn name(&self) -> &str {
        match self.held() {
            Held::Mapped(o) => o.name(),
            Held::System(s) => s.name(),
        }
    }

    /// Where it was loaded from: `path`, `archive!/entry`, `memfd:name`.
    pub fn source(&self) -> &str {
        match self.held() {
            Held::Mapped(o) => o.source(),
            Held::System(s) => &s.path,
        }
    }

    /// The plan it was loaded with (page size from the kernel). For a system library the
    /// system linker loaded: the plan of its file, as mmkit would have mapped it.
    pub fn plan(&self) -> &Plan {
        match self.held() {
            Held::Mapped(o) => o.plan(),
            Held::System(s) => &s.plan,
        }
    }

    /// The load bias: run-time address minus link-time address.
    pub fn bias(&self) -> u64 {
        match self.held() {
            Held::Mapped(o) => o.bias(),
            Held::System(s) => s.bias,
        }
    }

    /// Run-time `(start, len)` of the whole reservation.
    pub fn span(&self) -> (u64, u64) {
        match self.held() {
            Held::Mapped(o) => o.span(),
            Held::System(s) => s.span(),
        }
    }

    /// `DT_SONAME`, if any.
    pub fn soname(&self) -> Option<&str> {
        match self.held() {
            Held::Mapped(o) => o.soname(),
            Held::System(s) => s.soname.as_deref(),
        }
    }

    /// `DT_NEEDED` names, in order (names that are not UTF-8 are left out).
    pub fn needed(&self) -> Vec<&str> {
        match self.held() {
            Held::Mapped(o) => o.needed(),
            Held::System(s) => s.needed.iter().map(String::as_str).collect(),
        }
    }

    /// The dependencies: `(name, loaded by mmkit)`; `false` means glibc loaded it (it was loaded
    /// already, or the namespace sent it to the system linker: see [`crate::Namespace`]).
    pub fn dependencies(&self) -> Vec<(String, bool)> {
        match self.held() {
            Held::Mapped(o) => o.dependencies(),
            Held::System(s) => s.needed.iter().map(|n| (n.clone(), false)).collect(),
        }
    }

    /// Handles to the direct dependencies mmkit mapped (each keeps its library loaded).
    pub fn loaded_dependencies(&self) -> Vec<Library> {
        let Held::Mapped(o) = self.held() else { return Vec::new() };
        let deps = o.deps.get().into_iter().flatten();
        deps.filter_map(|d| match d {
            Dependency::Mmkit(w) => self.registry.handle(w.upgrade()?, &self.registry),
            Dependency::System(_) => None,
        })
        .collect()
    }

    /// Makes this library and its dependencies global, as `dlopen` with `RTLD_GLOBAL` does:
    /// libraries mmkit loads afterwards bind their references to its definitions (after
    /// those of the objects glibc already has in its global scope, before their own
    /// dependencies), and their `dlsym(RTLD_DEFAULT)` finds them. It stays global until it is
    /// unloaded. The system linker's own lookups (a library it loads, the program's
    /// `dlsym`) do not see it. A library the system linker loaded is unchanged: open it with
    /// `dlopen(RTLD_GLOBAL)` instead.
    ///
    /// ```
    /// # /// Builds a shared library from C in the current directory (`false`: no compiler here).
    /// # fn cc(out: &str, c: &str, flags: &[&str]) -> bool {
    /// #     std::fs::write("src.c", c).unwrap();
    /// #     std::fs::create_dir_all(std::path::Path::new(out).parent().unwrap()).unwrap();
    /// #     match std::process::Command::new("gcc").args(["-shared", "-fPIC", "-o", out, "src.c"]).args(flags).status() {
    /// #         Ok(s) => { assert!(s.success(), "gcc -o {out}: {s}"); true }
    /// #         Err(e) => { println!("skipped: no gcc ({e})"); false }
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # std::env::set_current_dir(dir.path())?;
    /// # // The plug-in calls `runtime_version` without linking to the runtime.
    /// # let codec_c = "int runtime_version(void); int codec_version(void) { return runtime_version(); }";
    /// # if !cc("libruntime.so", "int runtime_version(void) { return 42; }", &[])
    /// #     || !cc("plugins/libpng-codec.so", codec_c, &[])
    /// # {
    /// #     return Ok(());
    /// # }
    /// // A plug-in host: the runtime's symbols are what its plug-ins bind to.
    /// // SAFETY: trusted libraries.
    /// let runtime = unsafe { mmkit_elf::Library::open("./libruntime.so")? };
    /// runtime.make_global();
    /// // SAFETY: as above.
    /// let plugin = unsafe { mmkit_elf::Library::open("./plugins/libpng-codec.so")? };
    /// # assert_eq!(unsafe { plugin.symbol::<extern "C" fn() -> i32>("codec_version")? }(), 42);
    /// # Ok(()) }
    /// ```
    pub fn make_global(&self) {
        let Some(obj) = &self.obj else { return };
        crate::group::with_load_lock(|| {
            let mut scope = GLOBAL_SCOPE.lock().unwrap_or_else(|e| e.into_inner());
            scope.retain(|w| w.strong_count() > 0);
            if !scope.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(obj))) {
                scope.push(Arc::downgrade(obj));
            }
            HAS_GLOBAL_SCOPE.store(true, Ordering::Release);
        });
    }

    /// Keeps this copy loaded for the life of the process, as `RTLD_NODELETE` does (a system
    /// library the system linker loaded is never unloaded anyway).
    pub fn pin(&self) {
        if let Held::Mapped(o) = self.held() {
            o.pin();
        }
    }

    /// Seals the code and RELRO of this copy if mmkit mapped it (an open with
    /// [`LoadOptions::seal`](crate::LoadOptions::seal) that found it loaded), and pins it.
    pub(crate) fn seal_loaded(&self) -> Result<()> {
        match self.held() {
            Held::Mapped(o) => o.seal(),
            Held::System(_) => Ok(()),
        }
    }

    /// Whether this copy stays loaded for the life of the process (`DF_1_NODELETE`, or it
    /// defines `STB_GNU_UNIQUE` symbols, or the system linker loaded it), as glibc keeps it.
    pub fn is_pinned(&self) -> bool {
        match self.held() {
            Held::Mapped(o) => o.is_pinned(),
            Held::System(_) => true,
        }
    }

    /// Whether the library's unwind tables are registered with the process's unwinder (see
    /// the crate docs): C++ exceptions and backtraces then unwind through its frames. Always
    /// for a library the system linker loaded (the unwinder finds it through glibc).
    pub fn unwind_tables_registered(&self) -> bool {
        match self.held() {
            Held::Mapped(o) => o.unwind_tables_registered(),
            Held::System(_) => true,
        }
    }

    /// The functions this library calls that nothing defined when it was loaded with
    /// [`LoadOptions::lazy_binding`](crate::LoadOptions::lazy_binding) (`name` or
    /// `name, version V`), in relocation order: calling one binds it then, or ends the process
    /// when nothing defines it yet, as glibc's lazy
    /// binding does. Empty for a library bound at load, and for one the system linker loaded.
    pub fn unbound_functions(&self) -> Vec<String> {
        match self.held() {
            Held::Mapped(o) => o.unbound_functions(),
            Held::System(_) => Vec::new(),
        }
    }

    /// The run-time address of an exported symbol (default version) that is not an IFUNC or
    /// TLS symbol. Use [`Library::symbol`] for a typed, callable value.
    pub fn address_of(&self, name: &str) -> Result<u64> {
        match self.held() {
            Held::Mapped(o) => o.address_of(name),
            Held::System(s) => s.lib.symbol(name, None).ok_or_else(|| self.not_found(name, "no such exported symbol")),
        }
    }

    /// The kind of the exported symbol `name` (default version): whether it is a function,
    /// data, thread-local, absolute. For a definition in a library glibc loaded, the kind
    /// glibc's symbol table gives (`dladdr1`), else [`SymbolKind::Function`] when the address
    /// is in an executable segment.
    pub fn symbol_kind(&self, name: &str) -> Result<SymbolKind> {
        match self.held() {
            Held::Mapped(o) => o.symbol_kind(name),
            Held::System(s) => s
                .lib
                .symbol(name, None)
                .map(process_scope::kind_at)
                .ok_or_else(|| self.not_found(name, "no such exported symbol")),
        }
    }

    /// Where symbol `name` (default version) is: in the library mmkit mapped or its
    /// dependencies, or through `dlsym` in glibc's copy of a system library.
    pub(crate) fn find(&self, name: &str) -> Option<Target> {
        self.find_wanted(name, Want::Default)
    }

    /// [`Library::find`] for the version `want`.
    pub(crate) fn find_wanted(&self, name: &str, want: Want<'_>) -> Option<Target> {
        match self.held() {
            Held::Mapped(o) => o.find(name, want),
            Held::System(s) => s.lib.symbol(name, want.version()).map(Target::Addr),
        }
    }

    /// Checks that run-time `addr`, which `op` is about to call or hand out as a function, is
    /// code: in an executable segment of the library mmkit mapped that holds it (this one or a
    /// dependency), else of an object glibc loaded (its program headers), else in an executable
    /// mapping of the process (`/proc/self/maps`, read only then: a lookup that a dependency
    /// answers reads no file). A library glibc holds is glibc's to check (its `dlsym`
    /// answered).
    pub(crate) fn check_code(&self, addr: u64, op: &str) -> Result<()> {
        match self.held() {
            Held::Mapped(o) if o.dynamic.image.contains(addr) => o.dynamic.image.check_code(addr, op, false),
            Held::Mapped(_) => match crate::group::containing(addr) {
                Some((dep, _)) => dep.dynamic.image.check_code(addr, op, false),
                None if process_scope::in_executable_segment(addr) => Ok(()),
                None => crate::image::check_executable(addr, op),
            },
            Held::System(_) => Ok(()),
        }
        .map_err(|e| e.with_path(self.source()))
    }

    pub(crate) fn not_found(&self, name: &str, why: &str) -> Error {
        Error::new(format!("symbol lookup of `{name}`"), ErrorKind::SymbolNotFound, why).with_path(self.source())
    }

    /// The mappings, in address order, with resident pages counted by `mincore`.
    ///
    /// A system library the system linker loaded (what the default
    /// [`SystemPolicy`](crate::SystemPolicy) does with `Library::open("libm.so.6")`) has no
    /// mappings of mmkit's: the answer is an error (of kind
    /// [`DependencyNotFound`](crate::ErrorKind::DependencyNotFound)) saying so, as for
    /// [`verify`](Self::verify).
    pub fn segments(&self) -> Result<Vec<LibraryMapping>> {
        self.mapped("list the mappings")?.segments()
    }

    /// Checks the mappings against `/proc/self/maps`: every page of the reservation is mapped
    /// with the planned access rights, file pages from this library's file at the planned
    /// offsets, `.bss` and gaps anonymous. For a system library the system linker loaded it is
    /// an error (see [`segments`](Self::segments)).
    pub fn verify(&self) -> Result<()> {
        self.mapped("verify against /proc/self/maps")?.verify()
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            let key = obj.key;
            drop(obj);
            self.registry.release(key);
        }
    }
}

/// Pages of `[start, start+len)` present in this process's page tables (pagemap bit 63).
fn present_pages(pagemap: &std::fs::File, start: u64, len: u64, page: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let n = (len / page) as usize;
    let mut buf = vec![0u8; n * 8];
    if pagemap.read_exact_at(&mut buf, start / page * 8).is_err() {
        return 0;
    }
    buf.chunks_exact(8).filter(|c| c[7] & 0x80 != 0).count() as u64
}

/// Lazy binding's lookup at a call (`relocate/lazy.rs`): the symbol in the library's scope as
/// it is now, in glibc's order for the load that brought the library in (the global scope,
/// then that load's search list, or that list first under `RTLD_DEEPBIND`).
impl crate::relocate::lazy::LateBind for Object {
    fn late_bind(&self, sym: u32) -> Option<Target> {
        let list = match self.root.get().and_then(Weak::upgrade) {
            Some(root) => load_scope(&root),
            None => self.search_list().to_vec(),
        };
        let scope = process_scope::Scope::now();
        let wanted = OnceCell::new();
        self.resolve(sym, &scope, &wanted, (&list, self.deep_bound())).ok()
    }
}

/// The search list the libraries of one load bind in (after the global scope): the library
/// opened, then its dependencies breadth-first (glibc's `l_searchlist` of the `dlopen`ed map).
pub(crate) fn load_scope(root: &Arc<Object>) -> Vec<Dependency> {
    std::iter::once(Dependency::Mmkit(Arc::downgrade(root))).chain(root.search_list().iter().cloned()).collect()
}
