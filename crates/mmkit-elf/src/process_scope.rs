//! The process's own scope: symbols and libraries that glibc loaded, looked up in glibc's global
//! order (`dlopen(RTLD_NOLOAD)`, `dlsym`, `dlvsym`, `dladdr1`, `dlclose`). Not relocation: the
//! relocation modules ask this one what a name binds to.

pub(crate) use crate::image::Name;
use crate::symbols::{self, SymbolKind};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr, CString};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

/// A library glibc has loaded, held open (`dlopen(RTLD_NOLOAD)` took a reference).
#[derive(Debug)]
pub(crate) struct SystemLibrary {
    handle: usize,
    name: String,
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
            Some(SystemLibrary { handle: handle as usize, name: name.to_owned() })
        }
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
        Ok(SystemLibrary { handle: handle as usize, name: path.rsplit('/').next().unwrap_or(path).to_owned() })
    }

    /// The name it was found under.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its load bias (`l_addr` of glibc's link map, `dlinfo(RTLD_DI_LINKMAP)`).
    #[cfg(target_env = "gnu")]
    pub(crate) fn bias(&self) -> Option<u64> {
        let mut map: *mut c_void = std::ptr::null_mut();
        // SAFETY: a live handle; dlinfo writes one pointer into `map`.
        let rc = unsafe {
            libc::dlinfo(self.handle as *mut c_void, libc::RTLD_DI_LINKMAP, (&mut map as *mut *mut c_void).cast())
        };
        if rc != 0 || map.is_null() {
            return None;
        }
        // SAFETY: glibc's `struct link_map` begins with `ElfW(Addr) l_addr`; the map lives while
        // the handle does.
        Some(unsafe { *(map as *const usize) } as u64)
    }

    /// Its load bias: unknown without glibc's `dlinfo`.
    #[cfg(not(target_env = "gnu"))]
    pub(crate) fn bias(&self) -> Option<u64> {
        None
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
        lookup(generation(), self.handle as *mut c_void, name, version)
    }
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
/// without the lock). Only on a miss does the pass walk the loaded objects, once, to learn
/// which of its symbol names some glibc-loaded object may define: one `dl_iterate_phdr` walk
/// tests every name against every object's GNU hash table (bloom filter, then the hash chain),
/// as glibc's `do_lookup_x` does. Every object glibc has loaded is walked, a superset of its
/// global scope, and a hash match counts as "may define"; so a name no object may define is
/// certainly not in `RTLD_DEFAULT` and needs no `dlsym` (the answer is cached too), while the
/// others still go to glibc (which applies scope order, versions and IFUNCs).
#[derive(Debug)]
pub(crate) struct Scope {
    generation: Option<(u64, u64)>,
    /// Per symbol index: `false` only when no loaded object defines the name; computed by the
    /// first lookup that needs it.
    maybe: OnceCell<Vec<bool>>,
    /// The lookup cache of this generation as the pass began: probed without the lock.
    snapshot: Option<Arc<Generation>>,
}

impl Scope {
    /// Takes the snapshot: glibc's generation and the lookup cache of that generation.
    pub(crate) fn now() -> Scope {
        let generation = generation();
        let snapshot = generation.and_then(|g| {
            let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            cache.as_ref().filter(|c| c.0 == g).cloned()
        });
        Scope { generation, maybe: OnceCell::new(), snapshot }
    }

    /// Whether no glibc-loaded object defines symbol `index`'s name (so the global scope
    /// certainly does not). The first call walks the loaded objects with the names `announce`
    /// gives: per symbol index, the GNU hash of its name when the pass looks it up in the
    /// global scope, `None` otherwise (those count as "maybe").
    pub(crate) fn certainly_absent(&self, index: u32, announce: &dyn Fn() -> Vec<Option<u32>>) -> bool {
        let maybe = self.maybe.get_or_init(|| {
            let (generation, maybe) = walk(announce());
            if generation.is_some() && generation == self.generation {
                maybe
            } else {
                Vec::new() // glibc's objects changed since the snapshot: everything is "maybe"
            }
        });
        !maybe.get(index as usize).copied().unwrap_or(true)
    }

    /// Looks symbol `index` (`name`) up in the process's global scope (`RTLD_DEFAULT`), with the
    /// version the library asked for so that glibc picks the right implementation (and
    /// resolves its IFUNCs). `announce` is as for [`Scope::certainly_absent`].
    pub(crate) fn global_symbol(
        &self,
        index: u32,
        name: Name<'_>,
        version: Option<Name<'_>>,
        announce: &dyn Fn() -> Vec<Option<u32>>,
    ) -> Option<u64> {
        self.symbol(libc::RTLD_DEFAULT, index, name, version, announce)
    }

    /// [`Scope::global_symbol`] in one glibc-loaded library (and its dependencies).
    pub(crate) fn symbol_in(
        &self,
        library: &SystemLibrary,
        index: u32,
        name: Name<'_>,
        version: Option<Name<'_>>,
        announce: &dyn Fn() -> Vec<Option<u32>>,
    ) -> Option<u64> {
        self.symbol(library.handle as *mut c_void, index, name, version, announce)
    }

    /// The cached answer, else none if no loaded object may define the name (cached too), else
    /// `dlsym`/`dlvsym` on `handle` (cached).
    fn symbol(
        &self,
        handle: *mut c_void,
        index: u32,
        name: Name<'_>,
        version: Option<Name<'_>>,
        announce: &dyn Fn() -> Vec<Option<u32>>,
    ) -> Option<u64> {
        let key = key_hash(handle as usize, name, version);
        if let (Some(snap), Some(g)) = (&self.snapshot, self.generation) {
            // The snapshot is immutable: a hit takes no lock.
            if let Some(hit) = probe(&snap.1, key, handle, name, version).filter(|_| snap.0 == g) {
                return hit.found;
            }
        }
        if self.certainly_absent(index, announce) {
            if let Some(g) = self.generation {
                remember(g, key, handle, name, version, None);
            }
            return None;
        }
        lookup(self.generation, handle, name, version)
    }
}

/// Walks glibc's loaded objects (or the tables recorded for the same generation) and returns
/// the generation and, per symbol index, whether some object may define the name whose GNU
/// hash is `hashes[i]` (`true` for indices without a hash).
fn walk(hashes: Vec<Option<u32>>) -> (Option<(u64, u64)>, Vec<bool>) {
    let maybe = hashes.iter().map(Option::is_none).collect();
    let pending = hashes.iter().enumerate().filter_map(|(i, h)| Some((i, (*h)?))).collect();
    let mut walk =
        Walk { pending, maybe, generation: None, first: true, tables: Some(Vec::new()), all: false, cached: false };
    // The callback only reads what glibc passes for the duration of the call (the program
    // headers and, through them, the mapped dynamic section and GNU hash table of an object
    // glibc keeps loaded while it holds its load lock, or the tables recorded for the same
    // generation of loaded objects), and writes `walk`.
    // SAFETY: as above; `walk` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut walk as *mut Walk).cast()) };
    if let (false, Some(g)) = (walk.cached, walk.generation) {
        *TABLES.lock().unwrap_or_else(|e| e.into_inner()) = Some((g, walk.tables.take()));
    }
    if walk.all {
        walk.maybe.fill(true);
    }
    (walk.generation, walk.maybe)
}

/// State of a [`walk`].
struct Walk {
    /// `(symbol index, GNU hash)` of the names no object walked so far may define.
    pending: Vec<(usize, u32)>,
    maybe: Vec<bool>,
    generation: Option<(u64, u64)>,
    first: bool,
    /// The tables of the objects walked, in order, for [`TABLES`]; `None` once an object
    /// could not be checked.
    tables: Option<Vec<GnuTable>>,
    /// An object could not be checked: every name is "maybe".
    all: bool,
    /// Answered from [`TABLES`] (the generation had not changed).
    cached: bool,
}

/// The GNU hash tables of glibc's loaded objects (those that have one), recorded by the last
/// full walk for its generation, so that later walks skip reading program headers and dynamic
/// sections. The addresses are only read inside a `dl_iterate_phdr` callback (glibc's load
/// lock held) that saw the same generation: the same objects, still mapped.
static TABLES: Mutex<Option<Tables>> = Mutex::new(None);

/// A generation and its objects' GNU hash tables (`None`: some object has none).
type Tables = ((u64, u64), Option<Vec<GnuTable>>);

impl Walk {
    /// Marks the pending names `table` may define.
    ///
    /// # Safety
    /// As [`GnuTable::may_define`].
    unsafe fn check(&mut self, table: &GnuTable) {
        let maybe = &mut self.maybe;
        self.pending.retain(|&(i, h)| {
            // SAFETY: function contract.
            let found = unsafe { table.may_define(h) };
            if found {
                maybe[i] = true;
            }
            !found
        });
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
}

impl GnuTable {
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
    let mut gnu_hash = None;
    for k in 0..ndyn {
        // SAFETY: inside the object's mapped PT_DYNAMIC (checked above), 8-byte aligned.
        let (tag, val) = unsafe {
            let p = (dyn_at as *const u64).add(2 * k);
            (*p, *p.add(1))
        };
        if tag == 0 {
            break; // DT_NULL
        }
        if tag == DT_GNU_HASH {
            gnu_hash = Some(val as usize);
        }
    }
    let Some(v) = gnu_hash else { return Err(()) };
    // glibc relocates the d_ptr entries of the dynamic sections it can write; read-only ones
    // (the vDSO's) keep link-time values.
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
    Ok(Some(GnuTable { nbuckets, symoffset, bloom_mask: bloom_size - 1, bloom_shift, bloom, buckets, chains, end }))
}

/// `DT_GNU_HASH`.
const DT_GNU_HASH: u64 = object::elf::DT_GNU_HASH as u64;

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: glibc passes a valid info; `data` is the `Walk` of `walk`.
    let (info, walk) = unsafe { (&*info, &mut *data.cast::<Walk>()) };
    if walk.first {
        walk.first = false;
        let generation = (info.dlpi_adds, info.dlpi_subs);
        walk.generation = Some(generation);
        let cache = TABLES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, tables)) = cache.as_ref() {
            if *g == generation {
                match tables {
                    Some(tables) => {
                        for t in tables {
                            if walk.pending.is_empty() {
                                break;
                            }
                            // SAFETY: recorded in this generation; glibc holds its load lock.
                            unsafe { walk.check(t) };
                        }
                    }
                    None => walk.all = true,
                }
                walk.cached = true;
                return 1;
            }
        }
    }
    // SAFETY: `info` is the callback's argument, used during the callback.
    match unsafe { gnu_table(info) } {
        Ok(None) => {}
        Ok(Some(table)) => {
            if !walk.pending.is_empty() {
                // SAFETY: `gnu_table` checked the table lies in the object's segments.
                unsafe { walk.check(&table) };
            }
            if let Some(tables) = walk.tables.as_mut() {
                tables.push(table);
            }
        }
        Err(()) => {
            walk.all = true;
            walk.tables = None;
            walk.pending.clear();
        }
    }
    0 // every object, so that the recorded tables are complete
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
/// Known gap: `dlopen(RTLD_NOLOAD | RTLD_GLOBAL)` promotes a loaded library into the global
/// scope without changing the counters; lookups cached before that miss it.
static CACHE: Mutex<Option<Arc<Generation>>> = Mutex::new(None);

/// One cached lookup.
#[derive(Debug, Clone)]
struct Entry {
    handle: usize,
    /// The name, with its NUL.
    name: Box<[u8]>,
    /// The version, with its NUL.
    version: Option<Box<[u8]>>,
    found: Option<u64>,
}

impl Entry {
    fn is(&self, handle: *mut c_void, name: Name<'_>, version: Option<Name<'_>>) -> bool {
        self.handle == handle as usize
            && *self.name == *name.bytes
            && self.version.as_deref() == version.map(|v| v.bytes)
    }
}

/// The cached lookups of one generation, bucketed by [`key_hash`] (no allocation to probe).
type Generation = ((u64, u64), HashMap<u64, Vec<Entry>, BuildHasherDefault<PreHashed>>);

/// The keys are already hashes: pass them through.
#[derive(Debug, Default, Clone)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The name's and the version's hashes, mixed with the handle.
fn key_hash(handle: usize, name: Name<'_>, version: Option<Name<'_>>) -> u64 {
    let v = version.map_or(0, |v| v.hash);
    (u64::from(name.hash) | u64::from(v) << 32) ^ (handle as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn lookup(
    generation: Option<(u64, u64)>,
    handle: *mut c_void,
    name: Name<'_>,
    version: Option<Name<'_>>,
) -> Option<u64> {
    let Some(generation) = generation else {
        return lookup_uncached(handle, name, version);
    };
    let key = key_hash(handle as usize, name, version);
    {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) =
            cache.as_ref().filter(|c| c.0 == generation).and_then(|c| probe(&c.1, key, handle, name, version))
        {
            return hit.found;
        }
    }
    // The lock is not held across dlsym: glibc takes its own lock there, and a library
    // constructor running under that lock may load a library with mmkit.
    let found = lookup_uncached(handle, name, version);
    remember(generation, key, handle, name, version, found);
    found
}

/// Caches `found` for `(handle, name, version)` (key hash `key`) in `generation`, unless the
/// cache already has the entry.
fn remember(
    generation: (u64, u64),
    key: u64,
    handle: *mut c_void,
    name: Name<'_>,
    version: Option<Name<'_>>,
    found: Option<u64>,
) {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = match cache.as_mut() {
        Some(c) if c.0 == generation => c,
        // No cache yet, or one of another generation (its answers no longer hold).
        _ => cache.insert(Arc::new((generation, HashMap::default()))),
    };
    if probe(&cache.1, key, handle, name, version).is_none() {
        // Copies the map if a pass's snapshot still shares it (only on misses).
        Arc::make_mut(cache).1.entry(key).or_default().push(Entry {
            handle: handle as usize,
            name: name.bytes.into(),
            version: version.map(|v| v.bytes.into()),
            found,
        });
    }
}

/// The entry for `(handle, name, version)` in `map`, if cached.
fn probe<'m>(
    map: &'m HashMap<u64, Vec<Entry>, BuildHasherDefault<PreHashed>>,
    key: u64,
    handle: *mut c_void,
    name: Name<'_>,
    version: Option<Name<'_>>,
) -> Option<&'m Entry> {
    map.get(&key)?.iter().find(|e| e.is(handle, name, version))
}

fn lookup_uncached(handle: *mut c_void, name: Name<'_>, version: Option<Name<'_>>) -> Option<u64> {
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
        return versioned;
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
fn in_executable_segment(addr: u64) -> bool {
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
