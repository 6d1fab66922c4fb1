//! The process's own scope: symbols and libraries that glibc loaded, looked up in glibc's global
//! order (`dlopen(RTLD_NOLOAD)`, `dlsym`, `dlvsym`, `dladdr1`, `dlclose`). Not relocation: the
//! relocation modules ask this one what a name binds to.

// One of the modules with `unsafe`: glibc's `dl*` functions and the link maps they walk, for the executor.
#![allow(unsafe_code)]

pub(crate) use crate::image::Name;
use crate::symbols::{self, SymbolKind};
use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr, CString};
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A library glibc has loaded, held open (`dlopen(RTLD_NOLOAD)` took a reference).
#[derive(Debug)]
pub(crate) struct SystemLibrary {
    handle: usize,
    name: String,
    /// Where its `DT_VERDEF` lies, read the first time a library needs one of its versions.
    verdefs: std::sync::OnceLock<Option<VerdefTable>>,
}

impl SystemLibrary {
    /// `dlopen(name, RTLD_NOLOAD | RTLD_LAZY)`: the library if glibc already loaded it.
    pub(crate) fn if_loaded(name: &str) -> Option<SystemLibrary> {
        let cname = CString::new(name).ok()?;
        // SAFETY: RTLD_NOLOAD never loads (so runs no constructors); it only takes a
        // reference to an already loaded library, released in Drop.
        let handle = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        if handle.is_null() {
            None
        } else {
            Some(SystemLibrary { handle: handle as usize, name: name.to_owned(), verdefs: std::sync::OnceLock::new() })
        }
    }

    /// [`SystemLibrary::if_loaded`] for the file `path` (glibc matches it by its name, then by
    /// device and inode), named by its file name as [`SystemLibrary::load`] names what it
    /// loads.
    pub(crate) fn if_loaded_file(path: &str) -> Option<Arc<SystemLibrary>> {
        let mut sys = SystemLibrary::if_loaded(path)?;
        sys.name = path.rsplit('/').next().unwrap_or(path).to_owned();
        Some(Arc::new(sys))
    }

    /// [`SystemLibrary::if_loaded`] for a dependency. A name the program itself needs
    /// (`DT_NEEDED` of the executable: libc, libgcc_s, ...) names an object glibc loaded at
    /// start-up and never unloads, so its handle is taken once per process and shared by every
    /// load after: no `dlopen(RTLD_NOLOAD)` and `dlclose` per load and unload. Other names
    /// take (and release) their own reference, as `if_loaded` does.
    pub(crate) fn if_loaded_shared(name: &str) -> Option<Arc<SystemLibrary>> {
        static KEPT: Mutex<Vec<Arc<SystemLibrary>>> = Mutex::new(Vec::new());
        if !program_needs(name) {
            if !name.contains('/') && !loaded_under(name) {
                return None;
            }
            return SystemLibrary::if_loaded(name).map(Arc::new);
        }
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = kept.iter().find(|s| s.name == name) {
            return Some(s.clone());
        }
        let s = Arc::new(SystemLibrary::if_loaded(name)?);
        kept.push(s.clone());
        Some(s)
    }

    /// `dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)`: has the system linker load a
    /// system library (glibc's libraries, libstdc++, anything in the default directories) that
    /// only it can load correctly (static TLS, `STB_GNU_UNIQUE`, libc's internal state). It is
    /// never unloaded: `RTLD_NODELETE`, as glibc never unloads libc or libstdc++ either.
    ///
    /// # Safety
    /// Loading runs the library's initializers (and those of its dependencies).
    pub(crate) unsafe fn load(path: &str) -> std::result::Result<SystemLibrary, String> {
        let cpath = CString::new(path).map_err(|_| format!("{path:?} contains a NUL byte"))?;
        // SAFETY: the caller vouches for the library (function contract).
        let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NODELETE) };
        if handle.is_null() {
            // SAFETY: dlerror returns null or a NUL-terminated message valid until the next dl*
            // call on this thread; it is copied at once.
            let msg = unsafe { libc::dlerror() };
            let msg = if msg.is_null() {
                "dlopen failed".to_owned()
            } else {
                // SAFETY: as above.
                unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
            };
            return Err(msg);
        }
        Ok(SystemLibrary {
            handle: handle as usize,
            name: path.rsplit('/').next().unwrap_or(path).to_owned(),
            verdefs: std::sync::OnceLock::new(),
        })
    }

    /// The name it was found under.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its load bias (`l_addr` of glibc's link map; unknown without glibc's `dlinfo`).
    pub(crate) fn bias(&self) -> Option<u64> {
        link_map_word(self.handle as *mut c_void, 0).map(|a| a as u64)
    }

    /// The file the system linker loaded it from (`l_name` of glibc's link map: what its
    /// search found for a bare name); unknown without glibc's `dlinfo`.
    pub(crate) fn path(&self) -> Option<String> {
        let name = link_map_word(self.handle as *mut c_void, 1).filter(|&p| p != 0)?;
        // SAFETY: `l_name` of a live link map is a NUL-terminated string glibc keeps while the
        // object is loaded (this handle holds it); it is copied at once.
        Some(unsafe { CStr::from_ptr(name as *const std::ffi::c_char) }.to_string_lossy().into_owned())
    }

    /// `dlvsym(handle, name, version)` or `dlsym(handle, name)`.
    pub(crate) fn symbol(&self, name: &str, version: Option<&str>) -> Option<u64> {
        let name = CString::new(name).ok()?;
        let version = match version {
            Some(v) => Some(CString::new(v).ok()?),
            None => None,
        };
        let name = Name::new(name.as_bytes_with_nul(), symbols::gnu_hash(name.as_bytes()));
        let version = version.as_ref().map(|v| Name::new(v.as_bytes_with_nul(), symbols::sysv_hash(v.as_bytes())));
        // A library's own scope never changes: every answer holds.
        lookup(generation(), self.handle as *mut c_void, name, version, &|| true)
    }
}

impl SystemLibrary {
    /// Whether the object defines the version `name` (ELF hash `hash`) a library mmkit maps
    /// needs from it (`DT_VERNEED`), as glibc's `match_symbol` answers it: every entry of its
    /// `DT_VERDEF` (the base one too), by hash first, then by name; yes without `DT_VERDEF`,
    /// and yes when its tables cannot be read (glibc's own lookups then decide). The table's
    /// place is found once per handle (a walk of glibc's objects); no allocation.
    pub(crate) fn defines_version(&self, hash: u32, name: &[u8]) -> bool {
        let Some(t) = *self.verdefs.get_or_init(|| verdef_table(self.handle as *mut c_void)) else { return true };
        let Some(mut at) = t.at else { return true };
        let inside = |a: usize, len: usize| a.checked_add(len).is_some_and(|e| e <= t.end);
        // Each step moves forward (`vd_next` is not 0) and stays below `end`: the walk ends.
        loop {
            if !inside(at, 20) {
                return true;
            }
            // `Elf64_Verdef`: vd_version u16, vd_flags u16, vd_ndx u16, vd_cnt u16, vd_hash u32,
            // vd_aux u32, vd_next u32; `Elf64_Verdaux`: vda_name u32, vda_next u32.
            // SAFETY: 20 bytes inside a mapped segment of the object (checked), which this
            // handle keeps loaded; unaligned reads.
            let (vd_hash, aux, next) = unsafe {
                let p = at as *const u8;
                (
                    std::ptr::read_unaligned(p.add(8).cast::<u32>()),
                    std::ptr::read_unaligned(p.add(12).cast::<u32>()),
                    std::ptr::read_unaligned(p.add(16).cast::<u32>()),
                )
            };
            if vd_hash == hash {
                let Some(aux_at) = at.checked_add(aux as usize).filter(|&a| inside(a, 4)) else { return true };
                // SAFETY: 4 bytes inside the same segment (checked).
                let off = unsafe { std::ptr::read_unaligned(aux_at as *const u32) } as usize;
                // The name and its NUL inside `.dynstr`.
                if off < t.strsz && name.len() < t.strsz - off {
                    // SAFETY: `[off, off + name.len()]` lies in `.dynstr` (checked above), which
                    // lies in a mapped segment of the object (checked when found).
                    let text = unsafe { std::slice::from_raw_parts((t.strtab + off) as *const u8, name.len() + 1) };
                    if text[..name.len()] == *name && text[name.len()] == 0 {
                        return true;
                    }
                }
            }
            if next == 0 {
                return false;
            }
            let Some(n) = at.checked_add(next as usize) else { return true };
            at = n;
        }
    }
}

/// Where an object glibc loaded keeps its version definitions, at run-time addresses.
#[derive(Debug, Clone, Copy)]
struct VerdefTable {
    /// `DT_VERDEF` (`None`: the object has no version definitions).
    at: Option<usize>,
    /// The end of the mapped segment holding it: the entries read stay below it.
    end: usize,
    /// `DT_STRTAB` and `DT_STRSZ` (the whole table lies in one mapped segment).
    strtab: usize,
    strsz: usize,
}

/// The [`VerdefTable`] of the object glibc loaded that the live handle `handle` names: found
/// among `dl_iterate_phdr`'s objects by its link map's load bias and dynamic section, its
/// tables checked to lie in its segments; `None` when it cannot be found or read.
fn verdef_table(handle: *mut c_void) -> Option<VerdefTable> {
    struct Find {
        bias: usize,
        l_ld: usize,
        found: Option<VerdefTable>,
    }
    unsafe extern "C" fn visit_verdef(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info; `data` is the `Find` below.
        let (info, find) = unsafe { (&*info, &mut *data.cast::<Find>()) };
        if info.dlpi_addr as usize != find.bias || info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: glibc's program header table of a loaded object, during the callback.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = find.bias;
        let segment_of = |a: usize, len: usize| {
            phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD).find_map(|p| {
                let s = base.wrapping_add(p.p_vaddr as usize);
                let e = s.wrapping_add(p.p_memsz as usize);
                (a >= s && a.checked_add(len).is_some_and(|x| x <= e)).then_some((s, e))
            })
        };
        let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else { return 0 };
        let dyn_at = base.wrapping_add(dynamic.p_vaddr as usize);
        if dyn_at != find.l_ld {
            return 0; // another object at the same bias (the program, not relocated)
        }
        let ndyn = dynamic.p_memsz as usize / 16;
        if ndyn == 0 || segment_of(dyn_at, ndyn * 16).is_none() || !dyn_at.is_multiple_of(8) {
            return 1;
        }
        // SAFETY: `ndyn` entries at `dyn_at` lie in a mapped segment of the object (checked),
        // 8-byte aligned.
        let tags = unsafe { Tags::read(dyn_at, ndyn) };
        // glibc relocates the d_ptr entries of the dynamic sections it can write.
        let fix = |v: usize| if segment_of(v, 1).is_some() { v } else { v.wrapping_add(base) };
        let Some(verdef) = tags.verdef else {
            find.found = Some(VerdefTable { at: None, end: 0, strtab: 0, strsz: 0 });
            return 1;
        };
        let at = fix(verdef);
        let (Some(strtab), Some(strsz)) = (tags.strtab.map(fix), tags.strsz) else { return 1 };
        if let (Some((_, end)), Some(_)) = (segment_of(at, 20), segment_of(strtab, strsz)) {
            find.found = Some(VerdefTable { at: Some(at), end, strtab, strsz });
        }
        1
    }
    let bias = link_map_word(handle, 0)?;
    let l_ld = link_map_word(handle, 2)?;
    let mut find = Find { bias, l_ld, found: None };
    // SAFETY: the callback reads what glibc passes for the duration of the call (the program
    // headers and dynamic section of a loaded object) and writes `find`, which outlives the
    // call. The addresses it records stay mapped while `handle` is held.
    unsafe { libc::dl_iterate_phdr(Some(visit_verdef), (&mut find as *mut Find).cast()) };
    find.found
}

impl Drop for SystemLibrary {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken by dlopen in `if_loaded`, exactly once.
        unsafe { libc::dlclose(self.handle as *mut c_void) };
    }
}

/// A snapshot of glibc's set of loaded objects, taken once per relocation pass: while the
/// library is relocated nothing is loaded or unloaded by glibc (dependencies are loaded and
/// initialized before, IFUNC resolvers and initializers run after), so one generation check
/// serves every symbol of the pass.
///
/// Lookups are answered from the cache of the generation first (a snapshot of it is probed
/// without the lock). On a miss, the pass walks glibc's loaded objects once ([`prepass`]): one
/// `dl_iterate_phdr` callback tests every name the pass looks up in the global scope against
/// every object's GNU hash table (bloom filter, then the hash chain and, for a versioned
/// reference, the symbol and its version as glibc's `check_match` does). A name no object
/// defines is certainly not in `RTLD_DEFAULT` and needs no `dlsym`; a versioned name exactly
/// one object defines, with exactly that version, in an object known to be in the global
/// scope, binds to that definition (see [`Pre::One`]); the others go to glibc (which applies
/// scope order, versions and IFUNCs).
///
/// The answers are cached for the passes that follow in the same generation (a process's next
/// loads): not filling the cache on a first load saves it ~3 µs but costs the next load of
/// the same names ~12 µs (the walk and the fill then).
#[derive(Debug)]
pub(crate) struct Scope {
    generation: Option<(u64, u64)>,
    /// Per announced name (see [`Scope::pre`]): what the walk of glibc's objects found for it;
    /// computed by the first lookup that misses the cache.
    pre: OnceCell<Vec<Pre>>,
    /// The objects (indices into the recorded tables, below 64) known to be in glibc's global
    /// scope.
    global: Cell<u64>,
    /// The lookup cache of this generation as the pass began: probed without the lock.
    snapshot: Option<Arc<Generation>>,
    /// Whether the cached "not in the global scope" answers still hold ([`negatives_hold`]):
    /// asked once per pass, at its first such answer.
    negatives: Cell<Option<bool>>,
    /// The objects (as `global`) found outside glibc's global scope in this pass
    /// ([`Scope::in_global_scope`]).
    outside: Cell<u64>,
    /// The last library [`Scope::symbol_in`] looked in (its handle) and which recorded object
    /// it is.
    own_object: Cell<Option<(usize, Option<u32>)>>,
}

/// A name the relocation pass looks up in the global scope: its symbol index, its name and, for
/// a versioned reference, the version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'n> {
    pub(crate) index: u32,
    pub(crate) name: Name<'n>,
    pub(crate) version: Option<Name<'n>>,
}

/// The names a relocation pass looks up in the global scope, by increasing symbol index, and
/// where each symbol index's name is in that list.
#[derive(Debug, Default)]
pub(crate) struct WantedNames<'n> {
    list: Vec<Wanted<'n>>,
    /// Per symbol index: its place in `list` plus one, 0 when not looked up.
    at: Vec<u16>,
}

impl<'n> WantedNames<'n> {
    /// The list `list` (by increasing index) for a table of `sym_count` symbols.
    pub(crate) fn new(list: Vec<Wanted<'n>>, sym_count: usize) -> WantedNames<'n> {
        let mut at = vec![0u16; sym_count];
        for (k, w) in list.iter().enumerate() {
            if let (Some(slot), Ok(k)) = (at.get_mut(w.index as usize), u16::try_from(k + 1)) {
                *slot = k;
            }
        }
        WantedNames { list, at }
    }

    /// The place in the list of symbol `index`'s name, and the name.
    pub(crate) fn get(&self, index: u32) -> Option<(usize, Wanted<'n>)> {
        let k = usize::from(*self.at.get(index as usize)?).checked_sub(1)?;
        self.list.get(k).map(|w| (k, *w))
    }
}

/// What the walk of glibc's objects says about one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pre {
    /// Not walked for (not announced, or the walk was not valid): ask glibc.
    Ask,
    /// No object glibc has loaded defines the name (in a way glibc would accept).
    Absent,
    /// Exactly one object defines the name, with exactly the version asked for, in a way this
    /// module binds itself ([`GnuTable::definition`]); every other object has no definition
    /// glibc would accept. Bound to it when the object (index `object` of the recorded tables)
    /// is known to be in the global scope: glibc's scope walk, in whatever order, then finds
    /// that definition and no other.
    One { def: Def, object: u32 },
}

impl Scope {
    /// Takes the snapshot: glibc's generation and the lookup cache of that generation.
    pub(crate) fn now() -> Scope {
        let generation = generation();
        let snapshot = generation.and_then(|g| {
            let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            cache.as_ref().filter(|c| c.0 == g).cloned()
        });
        Scope {
            generation,
            pre: OnceCell::new(),
            global: Cell::new(0),
            snapshot,
            negatives: Cell::new(None),
            outside: Cell::new(0),
            own_object: Cell::new(None),
        }
    }

    /// What the walk found for symbol `index`; the first call walks glibc's objects with the
    /// names `announce` gives (the symbols the pass looks up in the global scope, by
    /// increasing index; the same list on every call).
    fn pre<'n>(&self, index: u32, announce: &dyn Fn() -> &'n WantedNames<'n>) -> Pre {
        let wants = announce();
        let pre = self.pre.get_or_init(|| {
            let walked = prepass(&wants.list);
            if walked.generation.is_some() && walked.generation == self.generation {
                self.global.set(walked.global);
                walked.pre
            } else {
                Vec::new() // glibc's objects changed since the snapshot: ask glibc
            }
        });
        wants.get(index).and_then(|(k, _)| pre.get(k).copied()).unwrap_or(Pre::Ask)
    }

    /// Looks symbol `index` (`name`) up in the process's global scope (`RTLD_DEFAULT`), with the
    /// version the library asked for so that glibc picks the right implementation (and
    /// resolves its IFUNCs). `announce` is as for [`Scope::pre`].
    pub(crate) fn global_symbol<'n>(
        &self,
        index: u32,
        name: Name<'_>,
        version: Option<Name<'_>>,
        announce: &dyn Fn() -> &'n WantedNames<'n>,
    ) -> Option<u64> {
        self.symbol(libc::RTLD_DEFAULT, index, name, version, announce)
    }

    /// [`Scope::global_symbol`] in one glibc-loaded library (and its dependencies).
    pub(crate) fn symbol_in<'n>(
        &self,
        library: &SystemLibrary,
        index: u32,
        name: Name<'_>,
        version: Option<Name<'_>>,
        announce: &dyn Fn() -> &'n WantedNames<'n>,
    ) -> Option<u64> {
        self.symbol(library.handle as *mut c_void, index, name, version, announce)
    }

    /// The cached answer, else none if no loaded object defines the name, else the one
    /// definition (global scope only, see [`Pre::One`]), else `dlsym`/`dlvsym` on `handle`
    /// (cached).
    fn symbol<'n>(
        &self,
        handle: *mut c_void,
        index: u32,
        name: Name<'_>,
        version: Option<Name<'_>>,
        announce: &dyn Fn() -> &'n WantedNames<'n>,
    ) -> Option<u64> {
        let key = key_hash(handle as usize, name, version);
        if let (Some(snap), Some(g)) = (&self.snapshot, self.generation) {
            // The snapshot is immutable: a hit takes no lock.
            if let Some(hit) = probe(&snap.1, key, handle, name, version).filter(|_| snap.0 == g) {
                if hit.sure || self.negatives_hold() {
                    return hit.found();
                }
            }
        }
        let Some(g) = self.generation else {
            return lookup(None, handle, name, version, &|| false);
        };
        let global = handle == libc::RTLD_DEFAULT;
        let epoch = EPOCH.load(Ordering::Acquire);
        let mut unsure = None;
        let found = match self.pre(index, announce) {
            Pre::Absent => None,
            // The one definition, where glibc's lookup in `handle` finds it: in the global scope,
            // or in the library `handle` names (first in its own search list).
            Pre::One { def, object }
                if (global && self.in_global_scope(g, object) == Some(true))
                    || (!global && self.own_object(g, handle) == Some(object)) =>
            {
                Some(def.bind())
            }
            // The one definition is in an object outside the global scope: `dlsym(RTLD_DEFAULT)`
            // finds nothing, until that object is promoted (an answer that is not sure).
            Pre::One { object, .. } if global && self.in_global_scope(g, object) == Some(false) => {
                unsure = Some(epoch);
                None
            }
            _ => {
                let found = lookup(Some(g), handle, name, version, &|| self.negatives_hold());
                if let (true, Some(a)) = (global, found) {
                    if let Some(k) = mark_global(g, a).filter(|&k| k < 64) {
                        self.global.set(self.global.get() | 1 << k);
                    }
                }
                return found;
            }
        };
        // No loaded object defines the name (a promotion loads nothing), or the one definition
        // is in the global scope or in `handle`'s library: answers that hold for the generation.
        remember(g, key, handle, name, version, found, unsure);
        found
    }

    /// Which recorded object of generation `g` the library `handle` (a `dlopen` handle) is.
    fn own_object(&self, g: (u64, u64), handle: *mut c_void) -> Option<u32> {
        match self.own_object.get() {
            Some((h, object)) if h == handle as usize => object,
            _ => {
                let object = link_map_word(handle, 2).and_then(|l_ld| object_at(g, l_ld));
                self.own_object.set(Some((handle as usize, object)));
                object
            }
        }
    }

    /// Whether recorded object `object` of generation `g` is in glibc's global scope: known
    /// in this pass, else asked once with a name it defines (as [`negatives_hold`] asks);
    /// `None` when that cannot tell (another object answered the name).
    fn in_global_scope(&self, g: (u64, u64), object: u32) -> Option<bool> {
        let bit = 1u64.checked_shl(object)?;
        if self.global.get() & bit != 0 {
            return Some(true);
        }
        if self.outside.get() & bit != 0 {
            return Some(false);
        }
        let (name, lo, hi) = object_probes(g, Some(object))?.pop()?;
        // SAFETY: a NUL-terminated name; dlsym only looks it up.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        if p == 0 {
            self.outside.set(self.outside.get() | bit);
            Some(false)
        } else if (lo..hi).contains(&p) {
            mark_global(g, p as u64);
            self.global.set(self.global.get() | bit);
            Some(true)
        } else {
            None
        }
    }

    /// Whether the cached answers "`dlsym(RTLD_DEFAULT)` found nothing" still hold in this
    /// pass (see [`negatives_hold`]); asked once per pass.
    fn negatives_hold(&self) -> bool {
        let Some(g) = self.generation else { return false };
        if let Some(known) = self.negatives.get() {
            return known;
        }
        let holds = negatives_hold(g);
        self.negatives.set(Some(holds));
        holds
    }
}

impl Scope {
    /// A reference to the thread-local variable `name` (`version`) in the global scope
    /// (`handle` none) or in one glibc-loaded library and its dependencies: glibc's
    /// `dlsym`/`dlvsym` answer, as for any symbol, turned into the defining object's TLS module
    /// id and the variable's offset in its block ([`tls_module_of_address`]). Never cached:
    /// `dlsym` answers the calling thread's copy of the variable.
    pub(crate) fn tls_symbol(
        &self,
        library: Option<&SystemLibrary>,
        name: Name<'_>,
        version: Option<Name<'_>>,
    ) -> Option<(u64, u64)> {
        let handle = library.map_or(libc::RTLD_DEFAULT, |l| l.handle as *mut c_void);
        tls_module_of_address(lookup_uncached(handle, name, version)?)
    }
}

/// The TLS module (glibc's `dlpi_tls_modid`) whose block in the calling thread holds `addr`,
/// and `addr`'s offset in that block: what a general-dynamic reference stores for a variable
/// glibc's `dlsym` answered `addr` for, in this thread.
pub(crate) fn tls_module_of_address(addr: u64) -> Option<(u64, u64)> {
    struct Find {
        addr: u64,
        found: Option<(u64, u64)>,
    }
    unsafe extern "C" fn visit_tls(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info; `data` is the `Find` below.
        let (info, find) = unsafe { (&*info, &mut *data.cast::<Find>()) };
        if info.dlpi_tls_modid == 0 || info.dlpi_tls_data.is_null() || info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers of a loaded object.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let Some(tls) = phdrs.iter().find(|p| p.p_type == libc::PT_TLS) else { return 0 };
        let start = info.dlpi_tls_data as u64;
        if find.addr >= start && find.addr - start < word(tls.p_memsz).max(1) {
            find.found = Some((word(info.dlpi_tls_modid as u64), find.addr - start));
            return 1;
        }
        0
    }
    let mut find = Find { addr, found: None };
    // SAFETY: the callback only reads glibc's info and writes `find`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit_tls), (&mut find as *mut Find).cast()) };
    find.found
}

impl Def {
    /// The address a reference binds to: the definition's, or for an IFUNC what its resolver
    /// returns, called as glibc's `dlvsym` calls it on x86_64 (`elf_ifunc_invoke`: no
    /// arguments; [`Defs::definition`] binds no IFUNC on other targets).
    fn bind(self) -> u64 {
        if self.ifunc {
            // SAFETY: the address of an IFUNC resolver in a relocated object glibc loaded
            // (still loaded: the pass's generation has not changed).
            return unsafe { crate::relocate::call_ifunc_resolver(self.addr) };
        }
        self.addr
    }
}

/// Records that the object holding `addr`, an answer of glibc's global scope in `generation`,
/// is in the global scope; returns its index in the recorded tables.
fn mark_global(generation: (u64, u64), addr: u64) -> Option<u32> {
    let addr = addr as usize;
    let mut cache = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((g, Some(tables))) = cache.as_mut() {
        if *g == generation {
            if let Some(k) = tables.iter().position(|t| t.lo <= addr && addr < t.hi) {
                tables[k].global = true;
                return u32::try_from(k).ok();
            }
        }
    }
    None
}

/// What [`prepass`] found.
struct Walked {
    generation: Option<(u64, u64)>,
    /// Per wanted name.
    pre: Vec<Pre>,
    /// Bit `k`: recorded object `k` is known to be in the global scope.
    global: u64,
}

/// Walks glibc's loaded objects (or the tables recorded for the same generation) once and
/// says, per wanted name, what they define for it (see [`Pre`]).
fn prepass(wants: &[Wanted<'_>]) -> Walked {
    let pre = vec![Pre::Absent; wants.len()];
    let mut walk = Walk {
        wants,
        pre,
        generation: None,
        first: true,
        // A process has a handful of objects (the program, the vDSO, libgcc_s, libc, ld.so).
        tables: Some(Vec::with_capacity(6)),
        cached: false,
        cached_global: 0,
    };
    // The callback only reads what glibc passes for the duration of the call (the program
    // headers and, through them, the mapped dynamic section, GNU hash, symbol, string and
    // version tables of an object glibc keeps loaded while it holds its load lock, or the
    // tables recorded for the same generation of loaded objects), and writes `walk`.
    // SAFETY: as above; `walk` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut walk as *mut Walk<'_, '_>).cast()) };
    let mut global = walk.cached_global;
    if let (false, Some(g)) = (walk.cached, walk.generation) {
        let tables = walk.tables.take();
        global = tables.as_deref().map_or(0, global_bits);
        *TABLES.lock().unwrap_or_else(|e| e.into_inner()) = Some((g, tables));
    }
    Walked { generation: walk.generation, pre: walk.pre, global }
}

/// Bit `k` set when `tables[k]` is known to be in the global scope.
fn global_bits(tables: &[GnuTable]) -> u64 {
    tables.iter().take(64).enumerate().filter(|(_, t)| t.global).fold(0, |m, (k, _)| m | 1 << k)
}

/// State of a [`prepass`].
struct Walk<'w, 'n> {
    wants: &'w [Wanted<'n>],
    /// Per wanted name: what the objects walked so far define for it.
    pre: Vec<Pre>,
    generation: Option<(u64, u64)>,
    first: bool,
    /// The tables of the objects walked, in order, for [`TABLES`]; `None` once an object
    /// could not be checked.
    tables: Option<Vec<GnuTable>>,
    /// Answered from [`TABLES`] (the generation had not changed).
    cached: bool,
    /// When answered from [`TABLES`]: bit `k`, recorded object `k` is known to be global.
    cached_global: u64,
}

/// The GNU hash tables of glibc's loaded objects (those that have one), recorded by the last
/// full walk for its generation, so that later walks skip reading program headers and dynamic
/// sections. The addresses are only read inside a `dl_iterate_phdr` callback (glibc's load
/// lock held) that saw the same generation: the same objects, still mapped.
static TABLES: Mutex<Option<Tables>> = Mutex::new(None);

/// A generation and its objects' GNU hash tables (`None`: some object has none).
type Tables = ((u64, u64), Option<Vec<GnuTable>>);

impl Walk<'_, '_> {
    /// Every wanted name goes to glibc (an object could not be checked).
    fn ask_all(&mut self) {
        self.pre.fill(Pre::Ask);
    }

    /// Updates what is known of every wanted name with object `object`'s table.
    ///
    /// # Safety
    /// As [`GnuTable::may_define`].
    unsafe fn check(&mut self, table: &GnuTable, object: usize) {
        let object = u32::try_from(object).unwrap_or(u32::MAX);
        for (w, p) in self.wants.iter().zip(self.pre.iter_mut()) {
            // SAFETY: function contract.
            if matches!(p, Pre::Ask) || !unsafe { table.bloom_may_define(w.name.hash) } {
                continue;
            }
            let Some(version) = w.version else {
                // SAFETY: function contract.
                if unsafe { table.may_define(w.name.hash) } {
                    *p = Pre::Ask;
                }
                continue;
            };
            // SAFETY: function contract.
            match unsafe { table.definition(w.name, version) } {
                Ok(None) => {}
                Ok(Some(def)) if matches!(p, Pre::Absent) => *p = Pre::One { def, object },
                _ => *p = Pre::Ask, // a second definition, or one this module does not bind
            }
        }
    }
}

/// The GNU hash table of a loaded object, at run-time addresses.
#[derive(Debug)]
struct GnuTable {
    nbuckets: u32,
    symoffset: u32,
    bloom_mask: u32,
    bloom_shift: u32,
    bloom: usize,
    buckets: usize,
    chains: usize,
    /// End of the mapped segment holding the table: chain reads stay below it.
    end: usize,
    /// The object's `PT_LOAD` extent `[lo, hi)`: which object an address lies in.
    lo: usize,
    hi: usize,
    /// What binding a name to this object's definition needs (`None`: its tables could not
    /// be checked; a name it may define then goes to glibc).
    defs: Option<Defs>,
    /// The object is known to be in glibc's global scope: it is the program, or a
    /// `dlsym`/`dlvsym(RTLD_DEFAULT)` answer of this generation lay in it (objects leave the
    /// global scope only by being unloaded, which changes the generation).
    global: bool,
}

/// An object's dynamic symbol, string and version tables, at run-time addresses, each checked
/// to lie in a mapped segment of the object.
#[derive(Debug)]
struct Defs {
    /// `dlpi_addr`: run-time minus link-time address.
    bias: usize,
    /// `DT_SYMTAB`, and the end of the segment holding it (symbol reads stay below it).
    symtab: usize,
    symtab_end: usize,
    /// `DT_STRTAB` and `DT_STRSZ` (the whole table lies in one segment).
    strtab: usize,
    strsz: usize,
    /// `DT_VERSYM` and the end of its segment, if the object has one.
    versym: Option<(usize, usize)>,
    /// `DT_VERDEF`, the end of the segment holding it (the entries read stay below it) and
    /// `DT_VERDEFNUM`, if the object has versions.
    verdef: Option<(usize, usize, usize)>,
    /// Per version index: `vd_hash` and the `.dynstr` offset of the name of the `DT_VERDEF`
    /// entry (none for the base version, which glibc does not match a version against); read
    /// the first time a definition of this object is checked (`None`: malformed).
    versions: OnceCell<Option<Versions>>,
}

/// Per version index of an object: `vd_hash` and the `.dynstr` offset of the version's name.
type Versions = Vec<Option<(u32, u32)>>;

impl GnuTable {
    /// Whether the bloom filter lets `h` through (`false`: the table has no symbol of that hash).
    ///
    /// # Safety
    /// As [`GnuTable::may_define`].
    #[inline]
    unsafe fn bloom_may_define(&self, h: u32) -> bool {
        // SAFETY: the index is reduced modulo the size `gnu_table` checked against the segment.
        let word = unsafe { *(self.bloom as *const u64).add(((h / 64) & self.bloom_mask) as usize) };
        let mask = (1u64 << (h % 64)) | (1u64 << ((h >> self.bloom_shift) % 64));
        word & mask == mask
    }

    /// Whether the table has a symbol whose hash is `h` (the name is not compared: a hash
    /// collision answers "maybe", which only costs a `dlsym`).
    ///
    /// # Safety
    /// The table must be mapped (see [`gnu_table`]): called during a `dl_iterate_phdr` callback
    /// of the generation the table was read in.
    unsafe fn may_define(&self, h: u32) -> bool {
        let (bloom, buckets, chains) =
            (self.bloom as *const u64, self.buckets as *const u32, self.chains as *const u32);
        // SAFETY: indices are reduced modulo the sizes `gnu_table` checked against the
        // segment; chain reads are bounded by `end`.
        unsafe {
            let word = *bloom.add(((h / 64) & self.bloom_mask) as usize);
            let mask = (1u64 << (h % 64)) | (1u64 << ((h >> self.bloom_shift) % 64));
            if word & mask != mask {
                return false;
            }
            let i = *buckets.add((h % self.nbuckets) as usize);
            if i < self.symoffset {
                return false;
            }
            let mut p = chains.add((i - self.symoffset) as usize);
            loop {
                if p as usize + 4 > self.end {
                    return true; // malformed: let glibc decide
                }
                let c = *p;
                if c | 1 == h | 1 {
                    return true;
                }
                if c & 1 != 0 {
                    return false;
                }
                p = p.add(1);
            }
        }
    }
}

impl GnuTable {
    /// This object's definition of `name` that a reference with version `version` binds to:
    /// `Ok(None)` when the object has none glibc would accept, `Err(())` when glibc might
    /// accept one this code does not bind itself (an unversioned or base-version definition,
    /// a TLS, `STB_GNU_UNIQUE` or absolute symbol, an IFUNC outside x86_64, two matches,
    /// tables that cannot be read).
    ///
    /// # Safety
    /// As [`GnuTable::may_define`].
    unsafe fn definition(&self, name: Name<'_>, version: Name<'_>) -> Result<Option<Def>, ()> {
        let h = name.hash;
        let (bloom, buckets, chains) =
            (self.bloom as *const u64, self.buckets as *const u32, self.chains as *const u32);
        // SAFETY: indices are reduced modulo the sizes `gnu_table` checked against the
        // segment; chain reads are bounded by `end`.
        let (mut index, mut p) = unsafe {
            let word = *bloom.add(((h / 64) & self.bloom_mask) as usize);
            let mask = (1u64 << (h % 64)) | (1u64 << ((h >> self.bloom_shift) % 64));
            if word & mask != mask {
                return Ok(None);
            }
            let i = *buckets.add((h % self.nbuckets) as usize);
            if i < self.symoffset {
                return Ok(None);
            }
            (i as usize, chains.add((i - self.symoffset) as usize))
        };
        let mut found = None;
        loop {
            if p as usize + 4 > self.end {
                return Err(());
            }
            // SAFETY: below `end`, in the table's segment (checked).
            let c = unsafe { *p };
            if c | 1 == h | 1 {
                let Some(defs) = &self.defs else { return Err(()) };
                // SAFETY: function contract.
                if let Some(a) = unsafe { defs.definition(index, name, version) }? {
                    if found.is_some() {
                        return Err(());
                    }
                    found = Some(a);
                }
            }
            if c & 1 != 0 {
                return Ok(found);
            }
            // SAFETY: the next chain word; checked against `end` at the top of the loop.
            p = unsafe { p.add(1) };
            index += 1;
        }
    }
}

impl GnuTable {
    /// A name this object defines that an unversioned `dlsym(RTLD_DEFAULT)` answers with the
    /// object's definition when the object is in glibc's global scope (unless an object before
    /// it defines the name too), and cannot answer with it otherwise: a global function or
    /// object with a value, exported, of the default version. The first of the hashed
    /// (exported) symbols that qualifies; `None` if none of the first 256 does.
    ///
    /// # Safety
    /// As [`GnuTable::may_define`].
    unsafe fn probe_name(&self) -> Option<CString> {
        let defs = self.defs.as_ref()?;
        for index in (self.symoffset as usize..).take(256) {
            let at = index.checked_mul(SYM_SIZE)?.checked_add(defs.symtab)?;
            if at.checked_add(SYM_SIZE).is_none_or(|e| e > defs.symtab_end) {
                return None;
            }
            // `Elf64_Sym`: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64.
            // SAFETY: inside the symbol table's segment (checked); unaligned reads.
            let (st_name, info, other, shndx, value) = unsafe {
                let p = at as *const u8;
                (
                    std::ptr::read_unaligned(p.cast::<u32>()) as usize,
                    *p.add(4),
                    *p.add(5),
                    std::ptr::read_unaligned(p.add(6).cast::<u16>()),
                    std::ptr::read_unaligned(p.add(8).cast::<u64>()),
                )
            };
            let qualifies = info >> 4 == STB_GLOBAL
                && matches!(info & 0xf, STT_FUNC | STT_OBJECT)
                && matches!(other & 3, STV_DEFAULT | STV_PROTECTED)
                && shndx != SHN_UNDEF
                && shndx != SHN_ABS
                && value != 0;
            if !qualifies || st_name == 0 || st_name >= defs.strsz {
                continue;
            }
            if let Some((versym, versym_end)) = defs.versym {
                let vat = index.checked_mul(2)?.checked_add(versym)?;
                if vat.checked_add(2).is_none_or(|e| e > versym_end) {
                    return None;
                }
                // SAFETY: inside the version table's segment (checked); unaligned read.
                let ndx = unsafe { std::ptr::read_unaligned(vat as *const u16) };
                if ndx & 0x8000 != 0 || ndx == 0 {
                    continue; // a hidden (non-default) version, or local
                }
            }
            // SAFETY: `[st_name, strsz)` lies in `.dynstr` (checked; the table lies in a
            // mapped segment).
            let text =
                unsafe { std::slice::from_raw_parts((defs.strtab + st_name) as *const u8, defs.strsz - st_name) };
            if let Ok(name) = CStr::from_bytes_until_nul(text) {
                return Some(name.to_owned());
            }
        }
        None
    }
}

/// A definition [`GnuTable::definition`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Def {
    /// Run-time address (of the resolver, for an IFUNC).
    addr: u64,
    /// `STT_GNU_IFUNC`: the address is the resolver's.
    ifunc: bool,
}

impl Defs {
    /// Symbol `index` as a definition of `name` with version `version` (see
    /// [`GnuTable::definition`]), following glibc's `check_match`.
    ///
    /// # Safety
    /// The object's segments must be mapped (as [`GnuTable::may_define`]).
    unsafe fn definition(&self, index: usize, name: Name<'_>, version: Name<'_>) -> Result<Option<Def>, ()> {
        let at = index.checked_mul(SYM_SIZE).and_then(|o| o.checked_add(self.symtab)).ok_or(())?;
        if at.checked_add(SYM_SIZE).is_none_or(|e| e > self.symtab_end) {
            return Err(());
        }
        // `Elf64_Sym`: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64.
        // SAFETY: inside the symbol table's segment (checked); unaligned reads.
        let (st_name, info, shndx, value) = unsafe {
            let p = at as *const u8;
            (
                std::ptr::read_unaligned(p.cast::<u32>()),
                *p.add(4),
                std::ptr::read_unaligned(p.add(6).cast::<u16>()),
                std::ptr::read_unaligned(p.add(8).cast::<u64>()),
            )
        };
        let (kind, bind) = (info & 0xf, info >> 4);
        if shndx == SHN_UNDEF {
            // Skipped by glibc unless st_value is set (a canonical PLT entry): not ours to bind.
            return if value == 0 { Ok(None) } else { Err(()) };
        }
        // glibc's `check_match` skips a definition without a value, unless absolute or TLS (an
        // absolute zero, as a version-name symbol is, is left to glibc below).
        if value == 0 && kind != STT_TLS && shndx != SHN_ABS {
            return Ok(None);
        }
        if !matches!(kind, STT_NOTYPE | STT_OBJECT | STT_FUNC | STT_COMMON | STT_TLS | STT_GNU_IFUNC) {
            return Ok(None);
        }
        let st_name = st_name as usize;
        if st_name >= self.strsz || name.bytes.len() > self.strsz - st_name {
            return Ok(None);
        }
        // SAFETY: inside `.dynstr` (bounds checked above; the table lies in a mapped segment).
        let text = unsafe { std::slice::from_raw_parts((self.strtab + st_name) as *const u8, name.bytes.len()) };
        if text != name.bytes {
            return Ok(None);
        }
        match bind {
            STB_GLOBAL | STB_WEAK => {}
            STB_GNU_UNIQUE => return Err(()),
            _ => return Ok(None), // glibc's do_lookup_x skips other bindings
        }
        // An object without DT_VERSYM: glibc accepts the definition for any version.
        let Some((versym, versym_end)) = self.versym else { return Err(()) };
        let vat = index.checked_mul(2).and_then(|o| o.checked_add(versym)).ok_or(())?;
        if vat.checked_add(2).is_none_or(|e| e > versym_end) {
            return Err(());
        }
        // SAFETY: inside the version table's segment (checked); unaligned read.
        let ndx = usize::from(unsafe { std::ptr::read_unaligned(vat as *const u16) } & 0x7fff);
        // Base or local version (glibc accepts it unless it is hidden) or an index without a
        // definition: not bound here.
        let versions = self.versions.get_or_init(|| {
            // SAFETY: function contract (the object's segments are mapped).
            unsafe { self.read_versions() }
        });
        let Some(Some((hash, vname))) = versions.as_ref().and_then(|v| v.get(ndx)) else { return Err(()) };
        let vname = *vname as usize;
        let same = *hash == version.hash
            && version.bytes.len() <= self.strsz - vname
            // SAFETY: inside `.dynstr` (`vname < strsz` checked when read; length checked).
            && unsafe { std::slice::from_raw_parts((self.strtab + vname) as *const u8, version.bytes.len()) }
                == version.bytes;
        if !same {
            return Ok(None); // another version of the name: glibc rejects it
        }
        // TLS (an offset, not an address), absolute symbols (no bias), and IFUNCs where
        // glibc passes its resolvers arguments (every target but x86_64): glibc's answer.
        let ifunc = kind == STT_GNU_IFUNC;
        if kind == STT_TLS || shndx == SHN_ABS || (ifunc && !cfg!(target_arch = "x86_64")) {
            return Err(());
        }
        Ok(Some(Def { addr: self.bias.wrapping_add(value as usize) as u64, ifunc }))
    }
}

/// Finds the GNU hash table of the object `info` describes; `Err` when the object has symbols
/// that cannot be checked this way (no `DT_GNU_HASH`, or addresses outside its segments),
/// `Ok(None)` when it has no dynamic symbols.
///
/// # Safety
/// `info` must be what `dl_iterate_phdr` passed to its callback, during the callback.
unsafe fn gnu_table(info: &libc::dl_phdr_info) -> Result<Option<GnuTable>, ()> {
    if info.dlpi_phdr.is_null() {
        return Ok(None);
    }
    // SAFETY: glibc's program header table of a loaded object (function contract).
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr as usize;
    let loads = || {
        phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD).map(|p| {
            let s = base.wrapping_add(p.p_vaddr as usize);
            (s, s.wrapping_add(p.p_memsz as usize))
        })
    };
    let segment_of =
        |a: usize, len: usize| loads().find(|&(s, e)| a >= s && a.checked_add(len).is_some_and(|x| x <= e));
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
        return Ok(None);
    };
    let dyn_at = base.wrapping_add(dynamic.p_vaddr as usize);
    let ndyn = dynamic.p_memsz as usize / 16;
    if ndyn == 0 || segment_of(dyn_at, ndyn * 16).is_none() || !dyn_at.is_multiple_of(8) {
        return Err(());
    }
    // SAFETY: `ndyn` entries at `dyn_at` lie in a mapped segment of the object (checked above,
    // function contract), 8-byte aligned.
    let tags = unsafe { Tags::read(dyn_at, ndyn) };
    let Some(v) = tags.gnu_hash else { return Err(()) };
    // glibc relocates the d_ptr entries of the dynamic sections it can write; read-only ones
    // (the vDSO's) keep link-time values.
    let fix = |v: usize| if segment_of(v, 1).is_some() { v } else { v.wrapping_add(base) };
    let at = if segment_of(v, 16).is_some() { v } else { v.wrapping_add(base) };
    let Some((_, end)) = segment_of(at, 16) else { return Err(()) };
    if at % 8 != 0 {
        return Err(());
    }
    // SAFETY: the 16-byte header is inside a mapped segment (checked).
    let head = unsafe { std::slice::from_raw_parts(at as *const u32, 4) };
    let (nbuckets, symoffset, bloom_size, bloom_shift) = (head[0], head[1], head[2], head[3]);
    if nbuckets == 0 {
        return Ok(None);
    }
    if !bloom_size.is_power_of_two() || bloom_shift >= 32 {
        return Err(());
    }
    let bloom = at + 16;
    let buckets = bloom + bloom_size as usize * 8;
    let chains = buckets + nbuckets as usize * 4;
    if chains > end {
        return Err(());
    }
    let (lo, hi) = loads().fold((usize::MAX, 0), |(lo, hi), (s, e)| (lo.min(s), hi.max(e)));
    // SAFETY: `info`'s object, during the callback (function contract).
    let defs = unsafe { defs(&tags, base, &fix, &segment_of) };
    Ok(Some(GnuTable {
        nbuckets,
        symoffset,
        bloom_mask: bloom_size - 1,
        bloom_shift,
        bloom,
        buckets,
        chains,
        end,
        lo,
        hi,
        defs,
        global: false,
    }))
}

/// The dynamic-section entries [`gnu_table`] reads.
#[derive(Default)]
struct Tags {
    gnu_hash: Option<usize>,
    symtab: Option<usize>,
    strtab: Option<usize>,
    strsz: Option<usize>,
    syment: Option<usize>,
    versym: Option<usize>,
    verdef: Option<usize>,
    verdefnum: Option<usize>,
}

impl Tags {
    /// Reads the entries of the dynamic section at `dyn_at` this module needs, up to `DT_NULL`
    /// or the `ndyn`th entry.
    ///
    /// # Safety
    /// `ndyn` 16-byte entries at `dyn_at` must be mapped and readable, and `dyn_at` 8-byte
    /// aligned.
    unsafe fn read(dyn_at: usize, ndyn: usize) -> Tags {
        let mut tags = Tags::default();
        for k in 0..ndyn {
            // SAFETY: `k < ndyn`: inside the mapped, aligned entries (function contract).
            let (tag, val) = unsafe {
                let p = (dyn_at as *const u64).add(2 * k);
                (*p, *p.add(1))
            };
            let val = val as usize;
            match tag {
                0 => break, // DT_NULL
                DT_GNU_HASH => tags.gnu_hash = Some(val),
                DT_SYMTAB => tags.symtab = Some(val),
                DT_STRTAB => tags.strtab = Some(val),
                DT_STRSZ => tags.strsz = Some(val),
                DT_SYMENT => tags.syment = Some(val),
                DT_VERSYM => tags.versym = Some(val),
                DT_VERDEF => tags.verdef = Some(val),
                DT_VERDEFNUM => tags.verdefnum = Some(val),
                _ => {}
            }
        }
        tags
    }
}

/// Size of an `Elf64_Sym`.
const SYM_SIZE: usize = 24;

/// Reads the symbol, string and version tables `tags` name; `None` if one is missing, of an
/// unexpected layout, or outside the object's segments. `fix` turns a `d_ptr` into a run-time
/// address; `segment_of(a, len)` is the mapped segment `[start, end)` holding `[a, a + len)`.
///
/// # Safety
/// The segments `segment_of` answers must be mapped (an object glibc keeps loaded during a
/// `dl_iterate_phdr` callback).
unsafe fn defs(
    tags: &Tags,
    bias: usize,
    fix: &dyn Fn(usize) -> usize,
    segment_of: &dyn Fn(usize, usize) -> Option<(usize, usize)>,
) -> Option<Defs> {
    if tags.syment.is_some_and(|e| e != SYM_SIZE) {
        return None;
    }
    let symtab = fix(tags.symtab?);
    let (_, symtab_end) = segment_of(symtab, SYM_SIZE)?;
    let (strtab, strsz) = (fix(tags.strtab?), tags.strsz?);
    segment_of(strtab, strsz)?;
    let versym = match tags.versym {
        Some(v) => {
            let v = fix(v);
            Some((v, segment_of(v, 2)?.1))
        }
        None => None,
    };
    let verdef = match tags.verdef {
        Some(d) => {
            let at = fix(d);
            let count = tags.verdefnum?;
            if count > 0x7fff {
                return None;
            }
            Some((at, segment_of(at, 20)?.1, count))
        }
        None => None,
    };
    Some(Defs { bias, symtab, symtab_end, strtab, strsz, versym, verdef, versions: OnceCell::new() })
}

impl Defs {
    /// Reads the version definitions (see [`Defs::versions`]); `None` when one lies outside
    /// the segment of the first or is malformed.
    ///
    /// # Safety
    /// The object's segments must be mapped (as [`GnuTable::may_define`]).
    unsafe fn read_versions(&self) -> Option<Versions> {
        let Some((mut at, end, count)) = self.verdef else { return Some(Vec::new()) };
        let inside = |a: usize, len: usize| a.checked_add(len).is_some_and(|e| e <= end);
        let mut versions = vec![None; count + 1];
        // `Elf64_Verdef`: vd_version u16, vd_flags u16, vd_ndx u16, vd_cnt u16, vd_hash u32,
        // vd_aux u32, vd_next u32; `Elf64_Verdaux`: vda_name u32, vda_next u32.
        for _ in 0..count {
            if !inside(at, 20) {
                return None;
            }
            // SAFETY: 20 bytes inside a mapped segment (checked); unaligned reads.
            let (flags, ndx, hash, aux, next) = unsafe {
                let p = at as *const u8;
                (
                    std::ptr::read_unaligned(p.add(2).cast::<u16>()),
                    std::ptr::read_unaligned(p.add(4).cast::<u16>()),
                    std::ptr::read_unaligned(p.add(8).cast::<u32>()),
                    std::ptr::read_unaligned(p.add(12).cast::<u32>()),
                    std::ptr::read_unaligned(p.add(16).cast::<u32>()),
                )
            };
            let name_at = at.checked_add(aux as usize)?;
            if !inside(name_at, 4) {
                return None;
            }
            // SAFETY: 4 bytes inside a mapped segment (checked).
            let name = unsafe { std::ptr::read_unaligned(name_at as *const u32) };
            if name as usize >= self.strsz {
                return None;
            }
            let ndx = usize::from(ndx & 0x7fff);
            if ndx > count {
                return None; // indices run 1..=DT_VERDEFNUM
            }
            // glibc leaves the base version's (the soname's) slot unnamed: a versioned
            // reference is never matched against it.
            if flags & VER_FLG_BASE == 0 {
                versions[ndx] = Some((hash, name));
            }
            if next == 0 {
                break;
            }
            at = at.checked_add(next as usize)?;
        }
        Some(versions)
    }
}

/// `DT_GNU_HASH`.
const DT_GNU_HASH: u64 = object::elf::DT_GNU_HASH as u64;
const DT_SYMTAB: u64 = object::elf::DT_SYMTAB as u64;
const DT_STRTAB: u64 = object::elf::DT_STRTAB as u64;
const DT_NEEDED: u64 = object::elf::DT_NEEDED as u64;
const DT_RPATH: u64 = object::elf::DT_RPATH as u64;
const DT_RUNPATH: u64 = object::elf::DT_RUNPATH as u64;
const DT_SONAME: u64 = object::elf::DT_SONAME as u64;
const DT_STRSZ: u64 = object::elf::DT_STRSZ as u64;
const DT_SYMENT: u64 = object::elf::DT_SYMENT as u64;
const DT_VERSYM: u64 = object::elf::DT_VERSYM as u64;
const DT_VERDEF: u64 = object::elf::DT_VERDEF as u64;
const DT_VERDEFNUM: u64 = object::elf::DT_VERDEFNUM as u64;
const VER_FLG_BASE: u16 = object::elf::VER_FLG_BASE;
const SHN_UNDEF: u16 = object::elf::SHN_UNDEF;
const SHN_ABS: u16 = object::elf::SHN_ABS;
const STT_NOTYPE: u8 = object::elf::STT_NOTYPE;
const STT_OBJECT: u8 = object::elf::STT_OBJECT;
const STT_FUNC: u8 = object::elf::STT_FUNC;
const STT_COMMON: u8 = object::elf::STT_COMMON;
const STT_TLS: u8 = object::elf::STT_TLS;
const STT_GNU_IFUNC: u8 = object::elf::STT_GNU_IFUNC;
const STB_GLOBAL: u8 = object::elf::STB_GLOBAL;
const STB_WEAK: u8 = object::elf::STB_WEAK;
const STB_GNU_UNIQUE: u8 = object::elf::STB_GNU_UNIQUE;
const STV_DEFAULT: u8 = object::elf::STV_DEFAULT;
const STV_PROTECTED: u8 = object::elf::STV_PROTECTED;

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: glibc passes a valid info; `data` is the `Walk` of `prepass`.
    let (info, walk) = unsafe { (&*info, &mut *data.cast::<Walk<'_, '_>>()) };
    // The first object is the program, always in the global scope.
    let program = walk.first;
    if walk.first {
        walk.first = false;
        let generation = (info.dlpi_adds, info.dlpi_subs);
        walk.generation = Some(generation);
        let cache = TABLES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, tables)) = cache.as_ref() {
            if *g == generation {
                match tables {
                    Some(tables) => {
                        for (k, t) in tables.iter().enumerate() {
                            // SAFETY: recorded in this generation; glibc holds its load lock.
                            unsafe { walk.check(t, k) };
                        }
                        walk.cached_global = global_bits(tables);
                    }
                    None => walk.ask_all(),
                }
                walk.cached = true;
                return 1;
            }
        }
    }
    let Some(tables) = walk.tables.as_ref() else {
        return 1; // an object could not be checked: every name goes to glibc
    };
    let object = tables.len();
    // SAFETY: `info` is the callback's argument, used during the callback.
    match unsafe { gnu_table(info) } {
        Ok(None) => {}
        Ok(Some(mut table)) => {
            table.global = program;
            // SAFETY: `gnu_table` checked the table lies in the object's segments.
            unsafe { walk.check(&table, object) };
            if let Some(tables) = walk.tables.as_mut() {
                tables.push(table);
            }
        }
        Err(()) => {
            walk.ask_all();
            walk.tables = None;
        }
    }
    0 // every object, so that the recorded tables are complete
}

/// Whether `name` is a `DT_NEEDED` name of the program (the executable glibc started, the
/// first object `dl_iterate_phdr` reports): glibc loaded that library at start-up, and a
/// library loaded at start-up is never unloaded (`dlclose` only unloads what `dlopen`
/// loaded). The names are read once per process.
fn program_needs(name: &str) -> bool {
    static NEEDED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NEEDED.get_or_init(program_needed).iter().any(|n| n == name)
}

/// The kernel's `AT_PLATFORM` string (`x86_64`, `aarch64`), glibc's `$PLATFORM`.
pub(crate) fn at_platform() -> Option<String> {
    // SAFETY: getauxval reads the process's auxiliary vector; AT_PLATFORM's value, when
    // present, points at a NUL-terminated string the kernel put on the initial stack, which
    // lives as long as the process; it is copied at once.
    unsafe {
        let p = libc::getauxval(libc::AT_PLATFORM) as *const std::ffi::c_char;
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// glibc's `$PLATFORM` (`GLRO(dl_platform)`, which `ld.so --list-diagnostics` prints): the
/// kernel's `AT_PLATFORM`, except that x86_64 glibc names an Intel CPU by what it can do
/// (`sysdeps/x86/cpu-features.c`): `xeon_phi` with AVX-512 CD, ER and PF usable, else `haswell`
/// with AVX2, FMA, BMI1, BMI2, LZCNT, MOVBE and POPCNT (most Intel CPUs since 2013). `None`
/// without either.
pub(crate) fn glibc_platform() -> Option<String> {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    return x86_64_glibc_platform(&X86Cpu::read());
    #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
    at_platform()
}

/// [`glibc_platform`] on x86_64 glibc, for the CPU `cpu` describes.
#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
fn x86_64_glibc_platform(cpu: &X86Cpu) -> Option<String> {
    intel_platform(cpu).map(str::to_owned).or_else(at_platform)
}

/// The name x86_64 glibc gives an Intel CPU as its platform, if it gives one (see
/// [`glibc_platform`]).
#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
fn intel_platform(cpu: &X86Cpu) -> Option<&'static str> {
    if !cpu.intel {
        return None;
    }
    if cpu.avx512f && cpu.avx512cd && cpu.avx512er && cpu.avx512pf {
        return Some("xeon_phi");
    }
    let haswell = cpu.avx2 && cpu.fma && cpu.bmi1 && cpu.bmi2 && cpu.lzcnt && cpu.movbe && cpu.popcnt;
    haswell.then_some("haswell")
}

/// The `glibc-hwcaps` subdirectories glibc searches in each directory of its search path
/// before the directory itself, best first, for this CPU (`dl_hwcaps_subdirs` and
/// `dl_hwcaps_subdirs_active` of `ld.so --list-diagnostics`): on x86_64 the micro-architecture
/// levels it supports (`x86-64-v4`, `x86-64-v3`, `x86-64-v2`, as glibc's
/// `sysdeps/x86_64/dl-hwcaps-subdirs.c` tests them); none elsewhere.
pub(crate) fn glibc_hwcaps_subdirs() -> &'static [&'static str] {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        static ACTIVE: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
        ACTIVE.get_or_init(|| {
            static LEVELS: [&str; 3] = ["x86-64-v4", "x86-64-v3", "x86-64-v2"];
            let c = X86Cpu::read();
            let v2 = c.cmpxchg16b && c.lahf && c.popcnt && c.sse3 && c.sse4_1 && c.sse4_2 && c.ssse3;
            let v3 = v2 && c.avx && c.avx2 && c.bmi1 && c.bmi2 && c.f16c && c.fma && c.lzcnt && c.movbe;
            let v4 = v3 && c.avx512f && c.avx512bw && c.avx512cd && c.avx512dq && c.avx512vl;
            let supported = [v4, v3, v2].iter().filter(|&&level| level).count();
            &LEVELS[LEVELS.len() - supported..]
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
    {
        &[]
    }
}

/// The legacy capability subdirectories glibc before 2.37 also searches in each directory of
/// its search path, after the `glibc-hwcaps` ones and before the directory itself (the legacy
/// part of `_dl_important_hwcaps`; glibc 2.37 removed it): every combination of `tls`, the
/// platform ([`glibc_platform`]) and the hardware capability names it keeps (`x86_64`, and
/// `avx512_1` on an Intel CPU with AVX-512 CD, BW, DQ and VL usable and not ER), most specific
/// first (`tls/x86_64/x86_64`, `tls/x86_64`, `tls`, `x86_64/x86_64`, `x86_64` on an AMD CPU),
/// as relative paths, each once. None with glibc 2.37 or later, or elsewhere than x86_64
/// glibc. (`GLIBC_TUNABLES=glibc.cpu.hwcap_mask` is not applied.)
pub(crate) fn glibc_legacy_hwcaps() -> &'static [String] {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        static LEGACY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        LEGACY.get_or_init(|| {
            // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
            let version = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) }.to_string_lossy().into_owned();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 37) {
                return Vec::new();
            }
            let cpu = X86Cpu::read();
            let avx512_1 = cpu.intel && cpu.avx512cd && !cpu.avx512er && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl;
            // glibc's order of the names: the capabilities by bit, the platform, `tls`; a path
            // names the chosen ones from the last to the first.
            let mut names = vec!["x86_64".to_owned()];
            names.extend(avx512_1.then(|| "avx512_1".to_owned()));
            names.extend(x86_64_glibc_platform(&cpu));
            names.push("tls".to_owned());
            let mut out: Vec<String> = Vec::new();
            for mask in (1u32..1 << names.len()).rev() {
                let path: Vec<&str> =
                    (0..names.len()).rev().filter(|&i| mask & (1 << i) != 0).map(|i| names[i].as_str()).collect();
                let path = path.join("/");
                if !out.contains(&path) {
                    out.push(path);
                }
            }
            out
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_env = "gnu")))]
    {
        &[]
    }
}

/// What x86_64 glibc asks of the CPU (`sysdeps/x86/cpu-features.c`): each feature usable as
/// glibc has it, the CPU has it and, for the vector ones, the OS saves their registers (`XCR0`).
#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
struct X86Cpu {
    intel: bool,
    cmpxchg16b: bool,
    lahf: bool,
    popcnt: bool,
    sse3: bool,
    ssse3: bool,
    sse4_1: bool,
    sse4_2: bool,
    avx: bool,
    avx2: bool,
    bmi1: bool,
    bmi2: bool,
    f16c: bool,
    fma: bool,
    lzcnt: bool,
    movbe: bool,
    avx512f: bool,
    avx512bw: bool,
    avx512cd: bool,
    avx512dq: bool,
    avx512vl: bool,
    avx512er: bool,
    avx512pf: bool,
}

#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
impl X86Cpu {
    fn read() -> X86Cpu {
        use core::arch::x86_64::{__cpuid_count, _xgetbv, CpuidResult};
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86_64 CPU, and no leaf above the maximum it reports
        // is read (the intrinsics are `unsafe` before Rust 1.89, the crate's rust-version is
        // older).
        let leaf = |leaf: u32| -> CpuidResult { unsafe { __cpuid_count(leaf, 0) } };
        let bit = |reg: u32, n: u32| reg & (1 << n) != 0;
        let l0 = leaf(0);
        let l1 = leaf(1);
        let l7 = if l0.eax >= 7 { leaf(7) } else { CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 } };
        let ext = if leaf(0x8000_0000).eax >= 0x8000_0001 { leaf(0x8000_0001).ecx } else { 0 };
        // XCR0: bits 1-2 the SSE and AVX state, 5-7 the AVX-512 state; readable once the OS
        // set CPUID.1:ECX.OSXSAVE.
        // SAFETY: XGETBV exists when OSXSAVE is set.
        let xcr0 = if bit(l1.ecx, 27) { unsafe { _xgetbv(0) } } else { 0 };
        let avx = xcr0 & 0b110 == 0b110 && bit(l1.ecx, 28);
        let avx512 = avx && xcr0 & 0b1110_0000 == 0b1110_0000 && bit(l7.ebx, 16);
        X86Cpu {
            // "GenuineIntel" in EBX, EDX, ECX.
            intel: [l0.ebx, l0.edx, l0.ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e],
            cmpxchg16b: bit(l1.ecx, 13),
            lahf: bit(ext, 0),
            lzcnt: bit(ext, 5),
            popcnt: bit(l1.ecx, 23),
            sse3: bit(l1.ecx, 0),
            ssse3: bit(l1.ecx, 9),
            sse4_1: bit(l1.ecx, 19),
            sse4_2: bit(l1.ecx, 20),
            movbe: bit(l1.ecx, 22),
            avx,
            fma: avx && bit(l1.ecx, 12),
            f16c: avx && bit(l1.ecx, 29),
            avx2: avx && bit(l7.ebx, 5),
            bmi1: bit(l7.ebx, 3),
            bmi2: bit(l7.ebx, 8),
            avx512f: avx512,
            avx512dq: avx512 && bit(l7.ebx, 17),
            avx512pf: avx512 && bit(l7.ebx, 26),
            avx512er: avx512 && bit(l7.ebx, 27),
            avx512cd: avx512 && bit(l7.ebx, 28),
            avx512bw: avx512 && bit(l7.ebx, 30),
            avx512vl: avx512 && bit(l7.ebx, 31),
        }
    }
}

/// The program's own search path, as glibc uses it: `(true, DT_RPATH entries)` when it has a
/// `DT_RPATH` and no `DT_RUNPATH`, `(false, DT_RUNPATH entries)` when it has a `DT_RUNPATH`,
/// `(false, [])` when neither (or its dynamic section cannot be read); unexpanded (`$ORIGIN`
/// is the executable's directory). Read once per process.
pub(crate) fn program_search_path() -> &'static (bool, Vec<String>) {
    static PATH: std::sync::OnceLock<(bool, Vec<String>)> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let (mut runpath, mut rpath) = (Vec::new(), Vec::new());
        let _ = first_object(&mut |info| {
            for (tag, out) in [(DT_RUNPATH, &mut runpath), (DT_RPATH, &mut rpath)] {
                let mut add = |s: Option<&CStr>| {
                    if let Some(s) = s.and_then(|s| s.to_str().ok()) {
                        out.extend(s.split(':').filter(|d| !d.is_empty()).map(str::to_owned));
                    }
                    false
                };
                // SAFETY: `info` is what `dl_iterate_phdr` passed, during its callback.
                unsafe { dynamic_strings(info, tag, &mut add) }?;
            }
            Some(())
        });
        if runpath.is_empty() {
            (true, rpath)
        } else {
            (false, runpath)
        }
    })
}

/// Calls `f` with the program's `dl_iterate_phdr` record (the first object), during the walk.
fn first_object(f: &mut dyn FnMut(&libc::dl_phdr_info) -> Option<()>) -> Option<()> {
    struct Call<'a>(&'a mut dyn FnMut(&libc::dl_phdr_info) -> Option<()>, Option<()>);
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info for the duration of the call; `data` is the `Call`
        // below.
        unsafe {
            let call = &mut *data.cast::<Call<'_>>();
            call.1 = (call.0)(&*info);
        }
        1 // the program only
    }
    let mut call = Call(f, None);
    // SAFETY: the callback reads what glibc passes for the duration of the call and writes
    // `call`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut call as *mut Call<'_>).cast()) };
    call.1
}

/// The program's `DT_NEEDED` names (none if its dynamic section cannot be read).
fn program_needed() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // SAFETY: `info` is what `dl_iterate_phdr` passed, during its callback.
    let _ = first_object(&mut |info| unsafe { needed_names(info) }.map(|names| out = names));
    out
}

/// The `DT_NEEDED` names of the object `info` describes; `None` if its dynamic section or
/// string table does not lie in its mapped segments.
///
/// # Safety
/// `info` must be what `dl_iterate_phdr` passed to its callback, during the callback.
unsafe fn needed_names(info: &libc::dl_phdr_info) -> Option<Vec<String>> {
    let mut needed = Some(Vec::new());
    // SAFETY: function contract.
    unsafe {
        dynamic_strings(info, DT_NEEDED, &mut |name| {
            match (needed.as_mut(), name.and_then(|n| n.to_str().ok())) {
                (Some(list), Some(n)) => list.push(n.to_owned()),
                _ => needed = None,
            }
            false
        })
    }?;
    needed
}

/// Calls `each` with every string of the object `info` describes that a dynamic entry with
/// tag `tag` names (`None` for one outside the string table's segment), until `each` says
/// `true`; `None` if the dynamic section or string table does not lie in its mapped segments.
///
/// # Safety
/// `info` must be what `dl_iterate_phdr` passed to its callback, during the callback.
unsafe fn dynamic_strings(
    info: &libc::dl_phdr_info,
    tag: u64,
    each: &mut dyn FnMut(Option<&CStr>) -> bool,
) -> Option<()> {
    if info.dlpi_phdr.is_null() {
        return None;
    }
    // SAFETY: glibc's program header table of a loaded object (function contract).
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr as usize;
    let segment_of = |a: usize, len: usize| {
        phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD).find_map(|p| {
            let s = base.wrapping_add(p.p_vaddr as usize);
            let e = s.wrapping_add(p.p_memsz as usize);
            (a >= s && a.checked_add(len).is_some_and(|x| x <= e)).then_some((s, e))
        })
    };
    let dynamic = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC)?;
    let dyn_at = base.wrapping_add(dynamic.p_vaddr as usize);
    // The process's own class: `Elf64_Dyn` (two 8-byte words) or `Elf32_Dyn` (two 4-byte).
    let word = std::mem::size_of::<usize>();
    let ndyn = dynamic.p_memsz as usize / (2 * word);
    segment_of(dyn_at, ndyn * 2 * word).filter(|_| ndyn > 0 && dyn_at.is_multiple_of(word))?;
    let entry = |k: usize| {
        // SAFETY: `k < ndyn`: inside the mapped, aligned entries (checked above).
        unsafe {
            let p = (dyn_at as *const usize).add(2 * k);
            (*p as u64, *p.add(1))
        }
    };
    let entries = (0..ndyn).map(entry).take_while(|&(t, _)| t != 0); // up to DT_NULL
    let strtab = entries.clone().find_map(|(t, v)| (t == DT_STRTAB).then_some(v));
    // glibc relocates the d_ptr entries of the dynamic sections it can write.
    let strtab = strtab.map(|v| if segment_of(v, 1).is_some() { v } else { v.wrapping_add(base) })?;
    let (_, end) = segment_of(strtab, 1)?;
    for (_, off) in entries.filter(|&(t, _)| t == tag) {
        let name = strtab.checked_add(off).filter(|&a| a < end).and_then(|at| {
            // SAFETY: `[at, end)` lies in a mapped segment of the object (checked), which glibc
            // keeps loaded during the callback; the name ends at a NUL inside it or is refused.
            let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, end - at) };
            CStr::from_bytes_until_nul(bytes).ok()
        });
        if each(name) {
            break;
        }
    }
    Some(())
}

/// `DT_SONAME` and the `DT_NEEDED` names of the object glibc loaded at load bias `bias`, read
/// from glibc's copy (no file is opened again); `None` when no loaded object has that bias or
/// its dynamic section cannot be read.
pub(crate) fn loaded_dynamic_names(bias: u64) -> Option<(Option<String>, Vec<String>)> {
    struct Find {
        bias: u64,
        found: Option<(Option<String>, Vec<String>)>,
    }
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info; `data` is the `Find` below.
        let (info, find) = unsafe { (&*info, &mut *data.cast::<Find>()) };
        if info.dlpi_addr as usize as u64 != find.bias {
            return 0;
        }
        let mut soname = None;
        // SAFETY: the callback's own `info`, during the callback.
        let read = unsafe {
            dynamic_strings(info, DT_SONAME, &mut |s| {
                soname = s.map(|s| s.to_string_lossy().into_owned());
                true
            })
        };
        // SAFETY: as above.
        let needed = unsafe { needed_names(info) };
        if let (Some(()), Some(needed)) = (read, needed) {
            find.found = Some((soname, needed));
        }
        1
    }
    if bias == 0 {
        return None;
    }
    let mut find = Find { bias, found: None };
    // SAFETY: the callback reads what glibc passes for the duration of the call and writes
    // `find`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut find as *mut Find).cast()) };
    find.found
}

/// Whether glibc has loaded an object it knows as `name` (a name without `/`): the file name
/// of its path or its `DT_SONAME`, the names `dlopen(name, RTLD_NOLOAD)` finds without
/// searching the file system. That search (`ld.so.cache`, opening the file to compare its
/// identity: 9 system calls) is only worth making for a name some object has; a library
/// loaded under a name that is neither, and asked for by this one, is still found by its
/// identity when the system linker loads the file found for the name.
fn loaded_under(name: &str) -> bool {
    struct Find<'a> {
        name: &'a [u8],
        found: bool,
    }
    unsafe extern "C" fn visit_names(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info; `data` is the `Find` below.
        let (info, find) = unsafe { (&*info, &mut *data.cast::<Find<'_>>()) };
        if !info.dlpi_name.is_null() {
            // SAFETY: glibc's NUL-terminated name of the object, valid during the callback.
            let path = unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes();
            let file = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            if file == find.name {
                find.found = true;
                return 1;
            }
        }
        let wanted = find.name;
        let mut found = false;
        // SAFETY: the callback's own `info`, during the callback.
        let read = unsafe {
            dynamic_strings(info, DT_SONAME, &mut |soname| {
                found = soname.is_some_and(|s| s.to_bytes() == wanted);
                found
            })
        };
        // An object whose names cannot be read might be it: let glibc tell.
        find.found = found || read.is_none();
        c_int::from(find.found)
    }
    let mut find = Find { name: name.as_bytes(), found: false };
    // SAFETY: the callback reads what glibc passes for the duration of the call and writes
    // `find`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit_names), (&mut find as *mut Find<'_>).cast()) };
    find.found
}

/// glibc's load and unload counters (`dlpi_adds`, `dlpi_subs`): while they are unchanged, the
/// set of glibc-loaded objects is unchanged, so earlier lookups in it still hold.
fn generation() -> Option<(u64, u64)> {
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info; `data` is the `Option<(u64, u64)>` below.
        unsafe {
            let out = &mut *data.cast::<Option<(u64, u64)>>();
            *out = Some(((*info).dlpi_adds, (*info).dlpi_subs));
        }
        1 // stop after the first object
    }
    let mut out: Option<(u64, u64)> = None;
    // SAFETY: the callback only writes `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut out as *mut Option<(u64, u64)>).cast()) };
    out
}

/// Lookups in glibc's objects, valid for one [`generation`]. Failed `dlsym` calls are costly
/// (glibc formats an error message), and every library asks for the same libc symbols.
/// `dlopen(RTLD_NOLOAD | RTLD_GLOBAL)` promotes a loaded library into the global scope without
/// changing the counters: the answers that can change then are marked (`Entry::sure` false)
/// and checked by [`negatives_hold`] before they are used.
static CACHE: Mutex<Option<Arc<Generation>>> = Mutex::new(None);

/// One cached lookup.
#[derive(Debug, Clone, Copy)]
struct Entry {
    handle: usize,
    /// Where the name (with its NUL) starts in [`Lookups::bytes`]; the version (with its NUL)
    /// follows it.
    at: u32,
    name_len: u32,
    /// 0: no version (a version has at least its NUL).
    version_len: u32,
    /// The address (`dlsym` never answers 0 for a name it found): 8 bytes, so that an entry
    /// is 40 (the cache's first vector is sized to stay within heap pages a first load has).
    found: Option<NonZeroU64>,
    /// The answer holds for the whole generation. False for a name `dlsym(RTLD_DEFAULT)` did
    /// not find although a loaded object defines it: promoting that object into the global
    /// scope (`dlopen(RTLD_NOLOAD | RTLD_GLOBAL)`, or any `dlopen(RTLD_GLOBAL)` of a library
    /// already loaded) changes the answer without changing glibc's load counters.
    sure: bool,
    /// The next entry with the same key hash, or `u32::MAX`.
    next: u32,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Entry>() == 40);

impl Entry {
    fn found(&self) -> Option<u64> {
        self.found.map(NonZeroU64::get)
    }

    fn is(&self, bytes: &[u8], handle: *mut c_void, name: Name<'_>, version: Option<Name<'_>>) -> bool {
        let (at, n, v) = (self.at as usize, self.name_len as usize, self.version_len as usize);
        self.handle == handle as usize
            && bytes.get(at..at + n) == Some(name.bytes)
            && match version {
                None => v == 0,
                Some(version) => bytes.get(at + n..at + n + v) == Some(version.bytes),
            }
    }
}

/// The cached lookups of one generation: the entries in one vector, their names and versions
/// in one byte buffer, and the newest entry of each [`key_hash`] in a map (so that neither a
/// probe nor an insertion allocates per entry, and copying the cache for a new entry while a
/// snapshot shares it is three flat copies).
#[derive(Debug, Clone)]
struct Lookups {
    newest: HashMap<u64, u32, BuildHasherDefault<FxHasher>>,
    entries: Vec<Entry>,
    bytes: Vec<u8>,
}

impl Lookups {
    /// Sized for a small library's lookups (libz makes ~55): larger would be fresh heap pages
    /// (page faults) on a process's first load. The map keeps at most 7/8 of its buckets full:
    /// 56 entries fill 64 buckets (a capacity of 64 would take 128).
    fn new() -> Lookups {
        Lookups {
            newest: HashMap::with_capacity_and_hasher(56, BuildHasherDefault::default()),
            entries: Vec::with_capacity(56),
            bytes: Vec::with_capacity(1024),
        }
    }

    fn get(&self, key: u64, handle: *mut c_void, name: Name<'_>, version: Option<Name<'_>>) -> Option<&Entry> {
        let mut i = *self.newest.get(&key)?;
        while let Some(e) = self.entries.get(i as usize) {
            if e.is(&self.bytes, handle, name, version) {
                return Some(e);
            }
            i = e.next;
        }
        None
    }

    /// Adds an entry; one for the same lookup already there is shadowed (`get` finds the
    /// newest first).
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        key: u64,
        handle: *mut c_void,
        name: Name<'_>,
        version: Option<Name<'_>>,
        found: Option<u64>,
        sure: bool,
    ) {
        let (Ok(index), Ok(at), Ok(name_len), Ok(version_len)) = (
            u32::try_from(self.entries.len()),
            u32::try_from(self.bytes.len()),
            u32::try_from(name.bytes.len()),
            u32::try_from(version.map_or(0, |v| v.bytes.len())),
        ) else {
            return; // not cached
        };
        self.bytes.extend_from_slice(name.bytes);
        if let Some(v) = version {
            self.bytes.extend_from_slice(v.bytes);
        }
        let next = self.newest.insert(key, index).unwrap_or(u32::MAX);
        let found = found.and_then(NonZeroU64::new);
        self.entries.push(Entry { handle: handle as usize, at, name_len, version_len, found, sure, next });
    }
}

/// The cached lookups of a generation.
type Generation = ((u64, u64), Lookups);

/// The crate's hasher for keys a caller does not choose (symbol hashes here, file identities
/// in the registry): an Fx-style multiply per word. std's `RandomState` would cost a
/// `getrandom` system call on a process's first load.
#[derive(Debug, Default, Clone)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// The name's and the version's hashes, mixed with the handle.
fn key_hash(handle: usize, name: Name<'_>, version: Option<Name<'_>>) -> u64 {
    let v = version.map_or(0, |v| v.hash);
    (u64::from(name.hash) | u64::from(v) << 32) ^ (handle as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `dlsym`/`dlvsym` on `handle`, through the cache of `generation`; a cached answer that is not
/// [`Entry::sure`] is used only if `negatives_hold` says so.
fn lookup(
    generation: Option<(u64, u64)>,
    handle: *mut c_void,
    name: Name<'_>,
    version: Option<Name<'_>>,
    negatives_hold: &dyn Fn() -> bool,
) -> Option<u64> {
    let Some(generation) = generation else {
        return lookup_uncached(handle, name, version);
    };
    let key = key_hash(handle as usize, name, version);
    let epoch = EPOCH.load(Ordering::Acquire);
    let hit = {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        cache.as_ref().filter(|c| c.0 == generation).and_then(|c| probe(&c.1, key, handle, name, version)).copied()
    };
    // Checked without the lock: the check may empty the cache.
    if let Some(hit) = hit.filter(|h| h.sure || negatives_hold()) {
        return hit.found();
    }
    // The lock is not held across dlsym: glibc takes its own lock there, and a library
    // constructor running under that lock may load a library with mmkit.
    let found = lookup_uncached(handle, name, version);
    let sure = found.is_some() || handle != libc::RTLD_DEFAULT;
    remember(generation, key, handle, name, version, found, (!sure).then_some(epoch));
    found
}

/// Counts the promotions [`negatives_hold`] found: an answer that is not sure, computed before
/// one, is not cached after it.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Whether no object of `generation` has joined glibc's global scope since the answers that
/// are not [`Entry::sure`] were cached: every recorded object not known to be global is asked
/// about with one name it defines (an unversioned `dlsym(RTLD_DEFAULT)` of that name answers
/// inside the object exactly when it is global, and nothing when it is not). A promoted object
/// is marked global and the cache of the generation emptied. False as well when some object
/// cannot be asked that way (the answers are then not used: every such name goes to glibc).
/// Costs one failed `dlsym` per object outside the global scope, only in passes that meet
/// such an answer.
fn negatives_hold(generation: (u64, u64)) -> bool {
    let Some(objects) = object_probes(generation, None) else { return false };
    let (mut holds, mut promoted) = (true, false);
    for (name, lo, hi) in objects {
        // SAFETY: a NUL-terminated name; dlsym only looks it up.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        if p == 0 {
            continue; // still outside the global scope
        }
        holds = false; // inside it (promoted, or there from the start), or another object's
        if (lo..hi).contains(&p) {
            mark_global(generation, p as u64);
            promoted = true;
        }
    }
    if promoted {
        EPOCH.fetch_add(1, Ordering::AcqRel);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_some_and(|c| c.0 == generation) {
            *cache = None;
        }
    }
    holds
}

/// The recorded objects of `generation` not known to be in the global scope (`only`: just
/// object `only`, if it is not), each with a name to ask `dlsym(RTLD_DEFAULT)` about (see
/// [`negatives_hold`]) and its `PT_LOAD` extent; `None` when the tables are not of that
/// generation or such an object has no such name.
fn object_probes(generation: (u64, u64), only: Option<u32>) -> Option<Vec<(CString, usize, usize)>> {
    struct Collect {
        generation: (u64, u64),
        only: Option<u32>,
        out: Option<Vec<(CString, usize, usize)>>,
    }
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info; `data` is the `Collect` below.
        let (info, c) = unsafe { (&*info, &mut *data.cast::<Collect>()) };
        if (info.dlpi_adds, info.dlpi_subs) != c.generation {
            return 1;
        }
        let tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
        let Some((g, Some(tables))) = tables.as_ref() else { return 1 };
        if *g == c.generation {
            let only = c.only;
            c.out = tables
                .iter()
                .enumerate()
                .filter(|(k, t)| !t.global && only.is_none_or(|o| u32::try_from(*k) == Ok(o)))
                // SAFETY: recorded in this generation; glibc holds its load lock.
                .map(|(_, t)| Some((unsafe { t.probe_name() }?, t.lo, t.hi)))
                .collect();
        }
        1 // the recorded tables cover every object
    }
    let mut c = Collect { generation, only, out: None };
    // SAFETY: the callback reads the recorded tables of the same generation (their objects
    // are mapped while glibc holds its load lock) and writes `c`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut c as *mut Collect).cast()) };
    c.out
}

/// Word `index` of glibc's link map of the object a live `dlopen` handle names
/// (`dlinfo(RTLD_DI_LINKMAP)`): 0 `l_addr`, the load bias; 1 `l_name`, its file name; 2
/// `l_ld`, the run-time address of its dynamic section. `index` must be 0, 1 or 2.
#[cfg(target_env = "gnu")]
fn link_map_word(handle: *mut c_void, index: usize) -> Option<usize> {
    assert!(index <= 2, "struct link_map's public part has three words before its list links");
    let mut map: *mut c_void = std::ptr::null_mut();
    // SAFETY: a live handle (the caller's `SystemLibrary`); dlinfo writes one pointer into `map`.
    let rc = unsafe { libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&mut map as *mut *mut c_void).cast()) };
    if rc != 0 || map.is_null() {
        return None;
    }
    // SAFETY: glibc's public `struct link_map` begins `l_addr`, `l_name`, `l_ld` (pointer-sized
    // each; `index <= 2`); the map lives while the handle does.
    Some(unsafe { *(map as *const usize).add(index) })
}

/// Unknown without glibc's `dlinfo`.
#[cfg(not(target_env = "gnu"))]
fn link_map_word(_handle: *mut c_void, _index: usize) -> Option<usize> {
    None
}

/// Registers handlers run around every `fork` of the process (`pthread_atfork`): `prepare` in
/// the forking thread before the copy, `parent` and `child` after it in each process. Whether
/// they could be registered.
pub(crate) fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) -> bool {
    // SAFETY: the handlers are functions of this program (never unloaded while it runs), safe
    // to call with no argument from any thread.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0 }
}

/// The index of the recorded object of `generation` whose `PT_LOAD` extent holds `addr`.
fn object_at(generation: (u64, u64), addr: usize) -> Option<u32> {
    let tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    let (g, Some(tables)) = tables.as_ref()? else { return None };
    if *g != generation {
        return None;
    }
    tables.iter().position(|t| t.lo <= addr && addr < t.hi).and_then(|k| u32::try_from(k).ok())
}

/// Caches `found` for `(handle, name, version)` (key hash `key`) in `generation`, unless the
/// cache already has that answer. `unsure`: the answer is not [`Entry::sure`]; it was computed
/// in this [`EPOCH`], and is not cached if a promotion was found since.
#[allow(clippy::too_many_arguments)]
fn remember(
    generation: (u64, u64),
    key: u64,
    handle: *mut c_void,
    name: Name<'_>,
    version: Option<Name<'_>>,
    found: Option<u64>,
    unsure: Option<u64>,
) {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if unsure.is_some_and(|epoch| epoch != EPOCH.load(Ordering::Acquire)) {
        return;
    }
    let cache = match cache.as_mut() {
        Some(c) if c.0 == generation => c,
        // No cache yet, or one of another generation (its answers no longer hold).
        _ => cache.insert(Arc::new((generation, Lookups::new()))),
    };
    let sure = unsure.is_none();
    if probe(&cache.1, key, handle, name, version).is_none_or(|e| (e.found(), e.sure) != (found, sure)) {
        // Copies the cache if a pass's snapshot still shares it (only on misses).
        Arc::make_mut(cache).1.insert(key, handle, name, version, found, sure);
    }
}

/// The entry for `(handle, name, version)` in `map`, if cached.
fn probe<'m>(
    map: &'m Lookups,
    key: u64,
    handle: *mut c_void,
    name: Name<'_>,
    version: Option<Name<'_>>,
) -> Option<&'m Entry> {
    map.get(key, handle, name, version)
}

fn lookup_uncached(handle: *mut c_void, name: Name<'_>, version: Option<Name<'_>>) -> Option<u64> {
    let name_in = name;
    let name = name.cstr()?;
    let version = match version {
        Some(v) => Some(v.cstr()?),
        None => None,
    };
    let p = match version {
        #[cfg(not(target_os = "android"))]
        // SAFETY: handle is RTLD_DEFAULT or a live dlopen handle; strings are NUL-terminated.
        Some(v) => unsafe { libc::dlvsym(handle, name.as_ptr(), v.as_ptr()) },
        // Android: the `libc` crate binds no `dlvsym` (bionic has it from API 24 only), so a
        // versioned reference falls back to the default version, which `dlsym` finds.
        #[cfg(target_os = "android")]
        // SAFETY: as above.
        Some(_) => unsafe { libc::dlsym(handle, name.as_ptr()) },
        // SAFETY: as above.
        None => unsafe { libc::dlsym(handle, name.as_ptr()) },
    };
    let versioned = (!p.is_null()).then_some(p as u64);
    if version.is_none() {
        // A relocation without a version binds the defining object's first version (index
        // 2) where it has one, not the default `dlsym` answers.
        return versioned.map(|d| oldest_version(d, name_in).unwrap_or(d));
    }
    // A versioned reference also binds to an *unversioned* definition in an object that comes
    // first in the scope (an LD_PRELOADed interposer with a version table of its own, as
    // jemalloc, tcmalloc and ASan have): glibc's relocation processing accepts it, dlvsym
    // does not. dlsym finds the first default or unversioned definition.
    // SAFETY: as above.
    let d = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if d.is_null() || Some(d as u64) == versioned {
        return versioned;
    }
    if unversioned_and_first(d as u64, versioned) {
        Some(d as u64)
    } else {
        versioned
    }
}

/// Android and 32-bit targets: `dlsym`'s answer is kept.
#[cfg(any(target_os = "android", not(target_pointer_width = "64")))]
fn oldest_version(_d: u64, _name: Name<'_>) -> Option<u64> {
    None
}

/// What a relocation *without* a version binds to where `dlsym` answered `d` (the default
/// version) for `name`: glibc's `check_match` without `DL_LOOKUP_RETURN_NEWEST` accepts at
/// once a definition of the object's first version (index 2, hidden or not: the oldest, which
/// a library linked before its dependency had versions, or against a stub without them, was
/// built for), where `dlsym` takes the default. `Some` with that definition when the object
/// holding `d` defines `name` at its first version and it is not `d`; `None` to keep `d`
/// (no such definition, or tables this module does not read). An unversioned `realpath`
/// reference binds libc's `realpath@GLIBC_2.2.5`, as under glibc, not `realpath@@GLIBC_2.3`.
#[cfg(all(not(target_os = "android"), target_pointer_width = "64"))]
fn oldest_version(d: u64, name: Name<'_>) -> Option<u64> {
    struct Find<'n> {
        d: usize,
        name: Name<'n>,
        found: Option<Def>,
    }
    unsafe extern "C" fn visit_holder(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid `info` for the call; `data` is the `Find` below.
        let (info, f) = unsafe { (&*info, &mut *data.cast::<Find<'_>>()) };
        // SAFETY: the callback's `info`, during the callback.
        let Ok(Some(table)) = (unsafe { gnu_table(info) }) else { return 0 };
        if !(table.lo <= f.d && f.d < table.hi) {
            return 0;
        }
        let Some(defs) = table.defs.as_ref() else { return 1 };
        // SAFETY: the object's segments are mapped (glibc holds its load lock during the call).
        let versions = defs.versions.get_or_init(|| unsafe { defs.read_versions() });
        let Some(Some((hash, at))) = versions.as_ref().and_then(|v| v.get(2)) else { return 1 };
        let at = *at as usize;
        // SAFETY: `[at, strsz)` lies in `.dynstr` (`at < strsz` checked when read).
        let text = unsafe { std::slice::from_raw_parts((defs.strtab + at) as *const u8, defs.strsz - at) };
        let Ok(v) = CStr::from_bytes_until_nul(text) else { return 1 };
        // SAFETY: as above (the table lies in the object's mapped segments, checked).
        if let Ok(Some(def)) = unsafe { table.definition(f.name, Name::new(v.to_bytes_with_nul(), *hash)) } {
            f.found = Some(def);
        }
        1
    }
    let mut find = Find { d: d as usize, name, found: None };
    // SAFETY: the callback reads only what glibc passes for the call and writes `find`.
    unsafe { libc::dl_iterate_phdr(Some(visit_holder), (&mut find as *mut Find<'_>).cast()) };
    // An IFUNC's resolver is called as glibc calls it (the object stays loaded: glibc never
    // unloads an object whose symbol this lookup bound, before the caller's relocation ends).
    find.found.map(Def::bind).filter(|&a| a != d)
}

/// Android: bionic has no `dladdr1`, so the versioned answer is kept (also on 32-bit targets,
/// where the loader does not run: `versym_of` reads 64-bit ELF tables).
#[cfg(any(target_os = "android", not(target_pointer_width = "64")))]
fn unversioned_and_first(_d: u64, _versioned: Option<u64>) -> bool {
    false
}

/// Whether the definition glibc's `dlsym` found at `d` is unversioned (no `DT_VERSYM`, or
/// version index 0 or 1, not hidden) and lies in an object loaded before the one holding
/// `versioned` (the scope order of the objects glibc loaded at start-up and `RTLD_GLOBAL`).
#[cfg(all(not(target_os = "android"), target_pointer_width = "64"))]
fn unversioned_and_first(d: u64, versioned: Option<u64>) -> bool {
    // SAFETY: an all-zero Dl_info is a valid value to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut sym: *mut c_void = std::ptr::null_mut();
    // SAFETY: dladdr1 writes `info` and `sym`, which live across the call.
    let found = unsafe { libc::dladdr1(d as *const c_void, &mut info, &mut sym, RTLD_DL_SYMENT) };
    if found == 0 || sym.is_null() || info.dli_saddr as u64 != d {
        return false; // an IFUNC's implementation, or unknown: keep the versioned answer
    }
    struct Probe {
        d: u64,
        versioned: Option<u64>,
        sym: u64,
        index: usize,
        d_index: Option<usize>,
        v_index: Option<usize>,
        /// `Some(None)`: the object has no `DT_VERSYM`.
        versym: Option<Option<u16>>,
    }
    unsafe extern "C" fn visit_order(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid `info` for the call; `data` is the `Probe` below.
        let (info, p) = unsafe { (&*info, &mut *data.cast::<Probe>()) };
        let i = p.index;
        p.index += 1;
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers of a loaded object.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let base = info.dlpi_addr;
        let contains = |a: u64| {
            phdrs.iter().any(|ph| {
                let s = base.wrapping_add(ph.p_vaddr);
                ph.p_type == libc::PT_LOAD && a >= s && a - s < ph.p_memsz
            })
        };
        if p.v_index.is_none() && p.versioned.is_some_and(contains) {
            p.v_index = Some(i);
        }
        if p.d_index.is_none() && contains(p.d) {
            p.d_index = Some(i);
            // SAFETY: this object's program headers, during the callback.
            p.versym = Some(unsafe { versym_of(info, phdrs, p.sym) });
        }
        0
    }
    let mut probe = Probe { d, versioned, sym: sym as u64, index: 0, d_index: None, v_index: None, versym: None };
    // SAFETY: the callback reads only what glibc passes for the call and writes `probe`.
    unsafe { libc::dl_iterate_phdr(Some(visit_order), (&mut probe as *mut Probe).cast()) };
    let unversioned = match probe.versym {
        Some(None) => true,
        Some(Some(v)) => v & 0x8000 == 0 && v & 0x7fff <= 1,
        None => false,
    };
    let first = match (probe.d_index, probe.v_index) {
        (Some(di), Some(vi)) => di < vi,
        (Some(_), None) => true,
        _ => false,
    };
    unversioned && first
}

/// The `DT_VERSYM` entry of the symbol table entry at `sym` in the object `info` describes:
/// `None` when the object has no `DT_VERSYM` (or it cannot be read: then treated the same).
///
/// # Safety
/// `info` and `phdrs` must be what `dl_iterate_phdr` passed, during the callback.
#[cfg(all(not(target_os = "android"), target_pointer_width = "64"))]
unsafe fn versym_of(info: &libc::dl_phdr_info, phdrs: &[libc::Elf64_Phdr], sym: u64) -> Option<u16> {
    let base = info.dlpi_addr;
    let mapped = |a: u64, len: u64| {
        phdrs.iter().any(|ph| {
            let s = base.wrapping_add(ph.p_vaddr);
            ph.p_type == libc::PT_LOAD && a >= s && a.checked_add(len).is_some_and(|e| e <= s + ph.p_memsz)
        })
    };
    let dynamic = phdrs.iter().find(|ph| ph.p_type == libc::PT_DYNAMIC)?;
    let dyn_at = base.wrapping_add(dynamic.p_vaddr);
    let ndyn = dynamic.p_memsz / 16;
    if ndyn == 0 || !mapped(dyn_at, ndyn * 16) || dyn_at % 8 != 0 {
        return None;
    }
    let (mut symtab, mut versym) = (None, None);
    for k in 0..ndyn {
        // SAFETY: inside the object's mapped PT_DYNAMIC (checked above), 8-byte aligned.
        let (tag, val) = unsafe {
            let p = (dyn_at as *const u64).add(2 * k as usize);
            (*p, *p.add(1))
        };
        match tag {
            0 => break,
            t if t == u64::from(object::elf::DT_SYMTAB) => symtab = Some(val),
            t if t == u64::from(object::elf::DT_VERSYM) => versym = Some(val),
            _ => {}
        }
    }
    // glibc relocates d_ptr entries of writable dynamic sections; others keep link-time values.
    let fix = |v: u64| if mapped(v, 1) { v } else { v.wrapping_add(base) };
    let (symtab, versym) = (fix(symtab?), fix(versym?));
    if sym < symtab || !(sym - symtab).is_multiple_of(24) {
        return None;
    }
    let at = versym + (sym - symtab) / 24 * 2;
    if !mapped(at, 2) {
        return None;
    }
    // SAFETY: inside a mapped segment of the object (checked); u16 reads may be unaligned.
    Some(unsafe { std::ptr::read_unaligned(at as *const u16) })
}

/// `RTLD_DL_SYMENT` of glibc's `<dlfcn.h>`: `dladdr1` returns the `ElfW(Sym)` it found.
#[cfg(not(target_os = "android"))]
const RTLD_DL_SYMENT: c_int = 1;

/// `ElfW(Sym)`: what `dladdr1` returns with [`RTLD_DL_SYMENT`].
#[cfg(all(not(target_os = "android"), target_pointer_width = "64"))]
type ElfSym = libc::Elf64_Sym;
#[cfg(all(not(target_os = "android"), target_pointer_width = "32"))]
type ElfSym = libc::Elf32_Sym;

/// An `ElfW(Addr)`/`ElfW(Word)` field widened to `u64` (the same type on 64-bit targets).
fn word<T: Into<u64>>(x: T) -> u64 {
    x.into()
}

/// The kind of the definition at run-time address `addr` in a library glibc loaded: the type
/// glibc's dynamic symbol table gives when a symbol starts exactly there (`dladdr1`), else
/// [`SymbolKind::Function`] when `addr` lies in an executable `PT_LOAD` segment (an IFUNC's
/// chosen implementation is often a local symbol), else [`SymbolKind::Untyped`].
#[cfg(not(target_os = "android"))]
pub(crate) fn kind_at(addr: u64) -> SymbolKind {
    // SAFETY: an all-zero Dl_info (null pointers, zero addresses) is a valid value to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut sym: *mut c_void = std::ptr::null_mut();
    // SAFETY: dladdr1 only reads the address (it is not dereferenced) and writes `info` and
    // `sym`, which live across the call.
    let found = unsafe { libc::dladdr1(addr as *const c_void, &mut info, &mut sym, RTLD_DL_SYMENT) };
    if found == 0 {
        return SymbolKind::Untyped;
    }
    if !sym.is_null() && info.dli_saddr as u64 == addr {
        // SAFETY: with RTLD_DL_SYMENT, a non-null `sym` points at the symbol table entry of a
        // loaded object, which stays mapped while the caller holds its library.
        let s = unsafe { &*(sym as *const ElfSym) };
        return SymbolKind::from_st_info(s.st_info, s.st_shndx);
    }
    if in_executable_segment(addr) {
        SymbolKind::Function
    } else {
        SymbolKind::Untyped
    }
}

/// Android (no `dladdr1` in bionic before API 30 nor in the `libc` crate): [`SymbolKind::Function`]
/// when `addr` lies in an executable `PT_LOAD` segment, else [`SymbolKind::Untyped`].
#[cfg(target_os = "android")]
pub(crate) fn kind_at(addr: u64) -> SymbolKind {
    if in_executable_segment(addr) {
        SymbolKind::Function
    } else {
        SymbolKind::Untyped
    }
}

/// Whether `addr` lies in an executable `PT_LOAD` segment of an object glibc has loaded.
pub(crate) fn in_executable_segment(addr: u64) -> bool {
    struct Probe {
        addr: u64,
        found: bool,
    }
    unsafe extern "C" fn visit_exec(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid `info` for the call; `data` is the `Probe` below.
        let (info, probe) = unsafe { (&*info, &mut *data.cast::<Probe>()) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers of a loaded object.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let hit = phdrs.iter().any(|p| {
            let start = word(info.dlpi_addr).wrapping_add(word(p.p_vaddr));
            p.p_type == libc::PT_LOAD
                && p.p_flags & 1 != 0 // PF_X (not in the libc crate for Android)
                && probe.addr >= start
                && probe.addr - start < word(p.p_memsz)
        });
        if hit {
            probe.found = true;
            return 1;
        }
        0
    }
    let mut probe = Probe { addr, found: false };
    // SAFETY: the callback reads only what glibc passes for the call and writes `probe`.
    unsafe { libc::dl_iterate_phdr(Some(visit_exec), (&mut probe as *mut Probe).cast()) };
    probe.found
}

/// What glibc's `dladdr` answers: the object's path and base, and the nearest symbol with its
/// address.
pub(crate) struct DlAddr {
    pub(crate) library: String,
    pub(crate) base: u64,
    pub(crate) symbol: Option<(String, u64)>,
}

/// glibc's `dladdr(addr)`.
pub(crate) fn dladdr(addr: u64) -> Option<DlAddr> {
    // SAFETY: an all-zero Dl_info is a valid value to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address value and writes `info`.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 {
        return None;
    }
    let text = |p: *const std::ffi::c_char| {
        // SAFETY: glibc's strings (the object's name, a symbol name) stay valid while the
        // object is loaded; they are copied at once.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    Some(DlAddr {
        library: text(info.dli_fname).unwrap_or_default(),
        base: info.dli_fbase as u64,
        symbol: text(info.dli_sname).map(|s| (s, info.dli_saddr as u64)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The value of `key` in what this process's ld.so says with `--list-diagnostics` (glibc
    /// 2.33 and later), quotes taken off; `None` where it cannot say (or under a user-mode
    /// emulator, whose ld.so is not the program's).
    pub(crate) fn ld_so_diagnostic(key: &str) -> Option<String> {
        if std::env::var_os("MMKIT_TEST_RUNNER").is_some_and(|r| !r.is_empty()) {
            return None;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let ld_so = maps
            .lines()
            .filter_map(|l| l.split_once('/').map(|(_, p)| format!("/{p}")))
            .find(|p| p.contains("/ld-linux"))?;
        let out = std::process::Command::new(ld_so).arg("--list-diagnostics").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let value = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))?;
        Some(value.trim_matches('"').to_owned())
    }

    /// The `glibc-hwcaps` levels are those glibc's ld.so finds active on this CPU.
    #[test]
    fn hwcaps_subdirs_are_glibcs() {
        let ours = glibc_hwcaps_subdirs();
        let (Some(all), Some(active)) =
            (ld_so_diagnostic("dl_hwcaps_subdirs"), ld_so_diagnostic("dl_hwcaps_subdirs_active"))
        else {
            eprintln!("skipped: no ld.so --list-diagnostics here; ours: {ours:?}");
            return;
        };
        let mask = u32::from_str_radix(active.trim_start_matches("0x"), 16).unwrap();
        // Bit i marks the i-th subdirectory of the list as active.
        let glibc: Vec<&str> = all
            .split(':')
            .filter(|s| !s.is_empty())
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(ours, glibc.as_slice(), "dl_hwcaps_subdirs={all} active={active}");
    }

    fn name(text: &'static [u8]) -> Name<'static> {
        Name::new(text, symbols::gnu_hash(&text[..text.len() - 1]))
    }

    fn version(text: &'static [u8]) -> Name<'static> {
        Name::new(text, symbols::sysv_hash(&text[..text.len() - 1]))
    }

    fn dlvsym(n: Name<'_>, v: Name<'_>) -> Option<u64> {
        // SAFETY: RTLD_DEFAULT; NUL-terminated strings.
        let p = unsafe { libc::dlvsym(libc::RTLD_DEFAULT, n.cstr()?.as_ptr(), v.cstr()?.as_ptr()) };
        (!p.is_null()).then_some(p as u64)
    }

    /// Serializes the tests that empty or read [`TABLES`] and check which path answered.
    static WALKS: Mutex<()> = Mutex::new(());

    /// The program's `DT_NEEDED` list is read from its dynamic section (in either ELF class), and
    /// a library in it is held through one handle for the whole process.
    #[test]
    fn the_programs_own_libraries_are_held_once_per_process() {
        // This test binary links libc directly (`ldd` lists it) and not libz.
        assert!(program_needs("libc.so.6"), "the program's DT_NEEDED: {:?}", program_needed());
        assert!(!program_needs("libz.so.1"));
        assert!(!program_needs("libc.so"));
        let (a, b) = (SystemLibrary::if_loaded_shared("libc.so.6"), SystemLibrary::if_loaded_shared("libc.so.6"));
        let (a, b) = (a.expect("libc is loaded"), b.expect("libc is loaded"));
        assert!(Arc::ptr_eq(&a, &b), "one handle per process for a start-up library");
        // A library the program does not need gets its own reference per load.
        let m = ["libm.so.6", "libgcc_s.so.1"].into_iter().find(|n| !program_needs(n));
        if let Some(n) = m.filter(|n| SystemLibrary::if_loaded(n).is_some()) {
            let (a, b) = (SystemLibrary::if_loaded_shared(n).unwrap(), SystemLibrary::if_loaded_shared(n).unwrap());
            assert!(!Arc::ptr_eq(&a, &b));
        }
    }

    /// Binding without `dlvsym` gives glibc's answer, for plain functions, data, IFUNCs
    /// (`memcpy`, `strlen`), a name with two versions in libc (`memcpy@GLIBC_2.2.5` is
    /// another function than `memcpy@GLIBC_2.14`), one the vDSO also defines under its own
    /// version (`clock_gettime`), and a version libc does not have.
    #[test]
    fn exact_binding_is_dlvsyms_answer() {
        let _serial = WALKS.lock().unwrap_or_else(|e| e.into_inner());
        let cases: [(&[u8], &[u8]); 8] = [
            (b"malloc\0", b"GLIBC_2.2.5\0"),
            (b"getpid\0", b"GLIBC_2.2.5\0"),
            (b"memcpy\0", b"GLIBC_2.14\0"),
            (b"memcpy\0", b"GLIBC_2.2.5\0"),
            (b"strlen\0", b"GLIBC_2.2.5\0"),
            (b"environ\0", b"GLIBC_2.2.5\0"),
            (b"clock_gettime\0", b"GLIBC_2.17\0"),
            (b"malloc\0", b"GLIBC_9.99\0"),
        ];
        let wants: Vec<Wanted<'_>> = cases
            .iter()
            .enumerate()
            .map(|(i, (n, v))| Wanted { index: i as u32, name: name(n), version: Some(version(v)) })
            .collect();
        // Other tests of this binary may load libraries meanwhile (a new generation: nothing
        // is bound exactly); retry until one round sees a single generation throughout.
        for _ in 0..20 {
            let Some(g) = generation() else { return };
            // A full walk records the objects' tables afresh: only the program is known to be
            // in the global scope then.
            *TABLES.lock().unwrap() = None;
            let first = prepass(&wants);
            let Some(m) = dlvsym(name(b"malloc\0"), version(b"GLIBC_2.2.5\0")) else { return };
            let libc = mark_global(g, m); // libc is in the global scope
            let second = prepass(&wants);
            // Through a pass's scope: the answers, cached or not, are dlvsym's.
            let scope = Scope::now();
            let names = WantedNames::new(wants.clone(), wants.len());
            let announce = || &names;
            let through_scope: Vec<_> =
                wants.iter().map(|w| scope.global_symbol(w.index, w.name, w.version, &announce)).collect();
            if generation() != Some(g) || first.generation != Some(g) || second.generation != Some(g) {
                continue;
            }
            let libc = libc.expect("malloc lies in a recorded object");
            assert_ne!(second.global & 1 << libc, 0);
            let mut bound = 0;
            for (i, (n, v)) in cases.iter().enumerate() {
                let (n, v) = (name(n), version(v));
                let want = dlvsym(n, v);
                assert_eq!(through_scope[i], want, "{:?}@{:?} through the scope", n.text(), v.text());
                match second.pre[i] {
                    Pre::One { def, object } => {
                        assert_eq!(object, libc, "{:?}@{:?}", n.text(), v.text());
                        assert_eq!(Some(def.bind()), want, "{:?}@{:?}", n.text(), v.text());
                        assert_eq!(first.pre[i], second.pre[i]);
                        bound += 1;
                    }
                    Pre::Absent => assert_eq!(want, None, "{:?}@{:?}", n.text(), v.text()),
                    Pre::Ask => {}
                }
            }
            // All but the unknown version, which no object defines.
            assert_eq!(bound, cases.len() - 1);
            assert_eq!(second.pre[cases.len() - 1], Pre::Absent);
            // libc's absolute, zero-valued version-name symbol: glibc's `check_match` accepts
            // it, so the walk must leave it to glibc, not call it absent.
            let abs = [Wanted { index: 0, name: name(b"GLIBC_2.2.5\0"), version: Some(version(b"GLIBC_2.2.5\0")) }];
            let walked = prepass(&abs);
            if walked.generation == Some(g) {
                assert_eq!(walked.pre[0], Pre::Ask);
            }
            return;
        }
        panic!("the generation changed in every round");
    }

    /// A versioned name only a library outside the global scope defines (libm, loaded
    /// `RTLD_LOCAL` as the system linker loads a mapped library's dependency): the global lookup
    /// answers nothing and the lookup in that library its definition, as glibc's `dlvsym`
    /// answers, from the walk of glibc's objects and one `dlsym` asking whether libm is global
    /// (not a `dlvsym` + `dlsym` per name and scope); once libm is promoted to the global scope,
    /// the global lookup finds the definition.
    // The walk binds 64-bit objects only (on 32-bit targets every name goes to glibc), and the
    // versions named below are x86_64's and aarch64's.
    #[cfg(all(target_pointer_width = "64", any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[test]
    fn a_definition_outside_the_global_scope_binds_in_its_library_only() {
        let _serial = WALKS.lock().unwrap_or_else(|e| e.into_inner());
        // glibc's first version on the machine.
        #[cfg(target_arch = "aarch64")]
        const FIRST: &[u8] = b"GLIBC_2.17\0";
        #[cfg(target_arch = "x86_64")]
        const FIRST: &[u8] = b"GLIBC_2.2.5\0";
        let cases: [(&[u8], &[u8]); 4] = [
            (b"cbrt\0", FIRST),             // a plain function
            (b"cos\0", FIRST),              // an IFUNC on x86_64
            (b"lgamma\0", b"GLIBC_2.23\0"), // the default of two versions
            (b"erf\0", FIRST),
        ];
        let wants: Vec<Wanted<'_>> = cases
            .iter()
            .enumerate()
            .map(|(i, (n, v))| Wanted { index: i as u32, name: name(n), version: Some(version(v)) })
            .collect();
        let in_handle = |h: usize, (n, v): (&[u8], &[u8])| {
            // SAFETY: a live handle; NUL-terminated strings.
            let p = unsafe { libc::dlvsym(h as *mut c_void, n.as_ptr().cast(), v.as_ptr().cast()) };
            (!p.is_null()).then_some(p as u64)
        };
        if SystemLibrary::if_loaded("libm.so.6").is_some() {
            return; // this binary links libm: nothing to check here
        }
        // SAFETY: libm's initializers are glibc's.
        let libm = unsafe { SystemLibrary::load("libm.so.6") }.expect("libm.so.6 loads");
        let names = WantedNames::new(wants.clone(), wants.len());
        let announce = || &names;
        let mut checked = false;
        for _ in 0..20 {
            let Some(g) = generation() else { return };
            let scope = Scope::now();
            let global: Vec<_> =
                wants.iter().map(|w| scope.global_symbol(w.index, w.name, w.version, &announce)).collect();
            let local: Vec<_> =
                wants.iter().map(|w| scope.symbol_in(&libm, w.index, w.name, w.version, &announce)).collect();
            if generation() != Some(g) {
                continue; // another test loaded or unloaded a library meanwhile
            }
            for (i, case) in cases.iter().enumerate() {
                assert_eq!(global[i], None, "{:?} in the global scope", cases[i].0);
                assert_eq!(global[i], in_handle(0, *case), "{:?}: dlvsym(RTLD_DEFAULT)", cases[i].0);
                assert!(local[i].is_some(), "{:?} in libm", cases[i].0);
                assert_eq!(local[i], in_handle(libm.handle, *case), "{:?}: dlvsym(libm)", cases[i].0);
            }
            // Answered by the walk: libm is a recorded object, outside the global scope, and
            // the one object defining each name.
            let object = scope.own_object(g, libm.handle as *mut c_void).expect("libm is a recorded object");
            assert_eq!(scope.in_global_scope(g, object), Some(false));
            for (w, case) in wants.iter().zip(&cases) {
                let pre = scope.pre(w.index, &announce);
                assert!(matches!(pre, Pre::One { object: o, .. } if o == object), "{:?}: {pre:?}", case.0);
            }
            checked = true;
            break;
        }
        assert!(checked, "the generation changed in every round");
        // Promoted: the cached "not found" answers no longer hold.
        let path = CString::new("libm.so.6").unwrap();
        // SAFETY: libm is loaded (RTLD_NOLOAD loads nothing); the reference is released below.
        let promoted = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        assert!(!promoted.is_null());
        let scope = Scope::now();
        for (i, w) in wants.iter().enumerate() {
            let found = scope.global_symbol(w.index, w.name, w.version, &announce);
            assert!(found.is_some(), "{:?} in the global scope after the promotion", cases[i].0);
            assert_eq!(found, in_handle(0, cases[i]), "{:?}: dlvsym(RTLD_DEFAULT)", cases[i].0);
        }
        // SAFETY: the reference taken above (libm stays: RTLD_NODELETE).
        unsafe { libc::dlclose(promoted) };
    }

    /// The names `dlopen(RTLD_NOLOAD)` finds are names [`loaded_under`] says glibc has (so
    /// skipping that call for the others loses nothing), by file name and by `DT_SONAME`, and a
    /// name no object has is not.
    #[test]
    fn loaded_under_knows_every_name_glibc_finds_without_searching() {
        let names = [
            "libc.so.6",
            "libgcc_s.so.1",
            "ld-linux-x86-64.so.2",
            "ld-linux-aarch64.so.1",
            "linux-vdso.so.1",
            "libm.so.6",
            "libz.so.1",
            "libstdc++.so.6",
            "libmmkit-no-such-library.so.3",
        ];
        let mut found = 0;
        for name in names {
            if SystemLibrary::if_loaded(name).is_some() {
                assert!(loaded_under(name), "{name}: dlopen(RTLD_NOLOAD) finds it");
                found += 1;
            }
        }
        assert!(found >= 2, "libc and the dynamic linker are loaded");
        assert!(!loaded_under("libmmkit-no-such-library.so.3"));
        // libc by its soname and its path's file name alike (they agree here); ld.so by the file
        // name of its path.
        assert!(loaded_under("libc.so.6"));
    }
}
