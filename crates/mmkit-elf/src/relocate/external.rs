//! Symbols and libraries of the process that glibc loaded: `dlopen(RTLD_NOLOAD)`, `dlsym`,
//! `dlvsym`, `dlclose`.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr, CString};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

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

    /// The name it was found under.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `dlvsym(handle, name, version)` or `dlsym(handle, name)`.
    pub(crate) fn symbol(&self, name: &str, version: Option<&str>) -> Option<u64> {
        let name = CString::new(name).ok()?;
        let version = match version {
            Some(v) => Some(CString::new(v).ok()?),
            None => None,
        };
        lookup(generation(), self.handle as *mut c_void, &name, version.as_deref())
    }

    /// [`SystemLibrary::symbol`] during a relocation pass that took a [`Scope`] snapshot.
    pub(crate) fn symbol_in(&self, scope: &Scope, name: &CStr, version: Option<&CStr>) -> Option<u64> {
        lookup(scope.generation, self.handle as *mut c_void, name, version)
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
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope {
    generation: Option<(u64, u64)>,
}

impl Scope {
    /// Takes the snapshot.
    pub(crate) fn now() -> Scope {
        Scope { generation: generation() }
    }

    /// Looks `name` up in the process's global scope (`RTLD_DEFAULT`), with the version the
    /// library asked for so that glibc picks the right implementation (and resolves its
    /// IFUNCs).
    pub(crate) fn global_symbol(&self, name: &CStr, version: Option<&CStr>) -> Option<u64> {
        lookup(self.generation, libc::RTLD_DEFAULT, name, version)
    }
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
static CACHE: Mutex<Option<Generation>> = Mutex::new(None);

/// One cached lookup.
#[derive(Debug)]
struct Entry {
    handle: usize,
    name: Box<CStr>,
    version: Option<Box<CStr>>,
    found: Option<u64>,
}

/// The cached lookups of one generation, bucketed by [`key_hash`] (no allocation to probe).
type Generation = ((u64, u64), HashMap<u64, Vec<Entry>, BuildHasherDefault<PreHashed>>);

/// The keys are already hashes: pass them through.
#[derive(Debug, Default)]
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

/// GNU hash of the name and the version, mixed with the handle.
fn key_hash(handle: usize, name: &CStr, version: Option<&CStr>) -> u64 {
    let h = |b: &[u8]| b.iter().fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(u32::from(c)));
    let v = version.map_or(0, |v| h(v.to_bytes()));
    (u64::from(h(name.to_bytes())) | u64::from(v) << 32) ^ (handle as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn lookup(generation: Option<(u64, u64)>, handle: *mut c_void, name: &CStr, version: Option<&CStr>) -> Option<u64> {
    let Some(generation) = generation else {
        return lookup_uncached(handle, name, version);
    };
    let hash = key_hash(handle as usize, name, version);
    let same = |e: &Entry| e.handle == handle as usize && *e.name == *name && e.version.as_deref() == version;
    {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match cache.as_mut() {
            Some((g, map)) if *g == generation => {
                if let Some(hit) = map.get(&hash).and_then(|b| b.iter().find(|e| same(e))) {
                    return hit.found;
                }
            }
            _ => *cache = Some((generation, HashMap::default())),
        }
    }
    // The lock is not held across dlsym: glibc takes its own lock there, and a library
    // constructor running under that lock may load a library with mmkit.
    let found = lookup_uncached(handle, name, version);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((g, map)) = cache.as_mut() {
        if *g == generation {
            let bucket = map.entry(hash).or_default();
            if !bucket.iter().any(same) {
                bucket.push(Entry {
                    handle: handle as usize,
                    name: name.into(),
                    version: version.map(Into::into),
                    found,
                });
            }
        }
    }
    found
}

fn lookup_uncached(handle: *mut c_void, name: &CStr, version: Option<&CStr>) -> Option<u64> {
    let p = match version {
        // SAFETY: handle is RTLD_DEFAULT or a live dlopen handle; strings are NUL-terminated.
        Some(v) => unsafe { libc::dlvsym(handle, name.as_ptr(), v.as_ptr()) },
        // SAFETY: as above.
        None => unsafe { libc::dlsym(handle, name.as_ptr()) },
    };
    if p.is_null() {
        None
    } else {
        Some(p as u64)
    }
}
