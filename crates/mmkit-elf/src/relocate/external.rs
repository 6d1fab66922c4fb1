//! Symbols and libraries of the process that glibc loaded: `dlopen(RTLD_NOLOAD)`, `dlsym`,
//! `dlvsym`, `dlclose`.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CString};
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
            Some(SystemLibrary {
                handle: handle as usize,
                name: name.to_owned(),
            })
        }
    }

    /// The name it was found under.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `dlvsym(handle, name, version)` or `dlsym(handle, name)`.
    pub(crate) fn symbol(&self, name: &str, version: Option<&str>) -> Option<u64> {
        lookup(self.handle as *mut c_void, name, version)
    }
}

impl Drop for SystemLibrary {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken by dlopen in `if_loaded`, exactly once.
        unsafe { libc::dlclose(self.handle as *mut c_void) };
    }
}

/// Looks `name` up in the process's global scope (`RTLD_DEFAULT`), with the version the
/// library asked for so that glibc picks the right implementation (and resolves its IFUNCs).
pub(crate) fn global_symbol(name: &str, version: Option<&str>) -> Option<u64> {
    lookup(libc::RTLD_DEFAULT, name, version)
}

/// glibc's load and unload counters (`dlpi_adds`, `dlpi_subs`): while they are unchanged, the
/// set of glibc-loaded objects is unchanged, so earlier lookups in it still hold.
fn generation() -> Option<(u64, u64)> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
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

type Key = (usize, String, Option<String>);

/// Lookups in glibc's objects, valid for one [`generation`]. Failed `dlsym` calls are costly
/// (glibc formats an error message), and every library asks for the same libc symbols.
/// Known gap: `dlopen(RTLD_NOLOAD | RTLD_GLOBAL)` promotes a loaded library into the global
/// scope without changing the counters; lookups cached before that miss it.
static CACHE: Mutex<Option<Generation>> = Mutex::new(None);

/// The cached lookups of one generation.
type Generation = ((u64, u64), HashMap<Key, Option<u64>>);

fn lookup(handle: *mut c_void, name: &str, version: Option<&str>) -> Option<u64> {
    let Some(generation) = generation() else {
        return lookup_uncached(handle, name, version);
    };
    let key: Key = (handle as usize, name.to_owned(), version.map(str::to_owned));
    {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match cache.as_mut() {
            Some((g, map)) if *g == generation => {
                if let Some(hit) = map.get(&key) {
                    return *hit;
                }
            }
            _ => *cache = Some((generation, HashMap::new())),
        }
    }
    let found = lookup_uncached(handle, name, version);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((g, map)) = cache.as_mut() {
        if *g == generation {
            map.insert(key, found);
        }
    }
    found
}

fn lookup_uncached(handle: *mut c_void, name: &str, version: Option<&str>) -> Option<u64> {
    let cname = CString::new(name).ok()?;
    let p = match version {
        Some(v) => {
            let cver = CString::new(v).ok()?;
            // SAFETY: handle is RTLD_DEFAULT or a live dlopen handle; strings are NUL-terminated.
            unsafe { libc::dlvsym(handle, cname.as_ptr(), cver.as_ptr()) }
        }
        // SAFETY: as above.
        None => unsafe { libc::dlsym(handle, cname.as_ptr()) },
    };
    if p.is_null() {
        None
    } else {
        Some(p as u64)
    }
}
