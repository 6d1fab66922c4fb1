//! Symbols and libraries of the process that glibc loaded: `dlopen(RTLD_NOLOAD)`, `dlsym`,
//! `dlvsym`, `dlclose`.

use std::ffi::{c_void, CString};

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

fn lookup(handle: *mut c_void, name: &str, version: Option<&str>) -> Option<u64> {
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
