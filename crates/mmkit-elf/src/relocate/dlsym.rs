//! `dlsym` and `dlvsym` for the libraries mmkit maps, for `RTLD_NEXT`.
//!
//! `dlsym(RTLD_NEXT, name)` answers the next definition of `name` after the calling object in
//! that object's lookup scope: how a wrapper (a `malloc`, `open` or `getpid` shim, a tracing
//! library) finds the function it wraps. The system linker finds the calling object from the
//! return address, and it does not know the libraries mmkit maps: from one of them it answered
//! NULL ("RTLD_NEXT used in code not dynamically loaded"). So the loader binds `dlsym` and
//! `dlvsym`, in the libraries it maps, to the entry points here. A small assembly entry passes
//! the return address on (as glibc's `dlsym` reads `__builtin_return_address(0)`); with
//! `RTLD_NEXT` from a library mmkit mapped the answer is the first definition in that
//! library's dependencies, breadth-first (its own lookup scope after itself: what glibc answers
//! for a library it loaded with `dlopen`); every other handle, and a caller that is in no
//! library mmkit mapped, goes to the system linker's `dlsym`/`dlvsym` unchanged.
//!
//! A name not found answers NULL without setting `dlerror`'s message (it is the system
//! linker's thread state). Only x86_64 and aarch64, the hosts the loader relocates for, have
//! the entries; elsewhere nothing is bound.

/// The entry bound to `name` in libraries mmkit maps, if `name` is `dlsym` or `dlvsym`.
pub(crate) fn bound_to(name: &[u8]) -> Option<u64> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        if name == b"dlsym" {
            return Some(entries::dlsym_entry as *const () as usize as u64);
        }
        #[cfg(target_env = "gnu")]
        if name == b"dlvsym" {
            return Some(entries::dlvsym_entry as *const () as usize as u64);
        }
    }
    let _ = name;
    None
}

/// The entries and what they answer (on the hosts the loader relocates for).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod entries {
    use std::ffi::{c_char, c_void, CStr};

    use super::super::Target;
    use crate::symbols::Want;

    /// `dlsym(handle, name)`, called with the caller's return address in the third argument.
    ///
    /// # Safety
    /// As [`dlsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(target_arch = "x86_64")]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlsym_entry(handle: *mut c_void, name: *const c_char) -> *mut c_void {
        // The return address is on top of the stack at entry; a tail jump keeps it there.
        core::arch::naked_asm!("mov rdx, [rsp]", "jmp {f}", f = sym dlsym_from)
    }

    /// `dlsym(handle, name)`, called with the caller's return address in the third argument.
    ///
    /// # Safety
    /// As [`dlsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(target_arch = "aarch64")]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlsym_entry(handle: *mut c_void, name: *const c_char) -> *mut c_void {
        // The return address is in the link register at entry; a branch keeps it there.
        // `hint #34` is `bti c`: the landing pad of an indirect call where branch protection is on.
        core::arch::naked_asm!("hint #34", "mov x2, x30", "b {f}", f = sym dlsym_from)
    }

    /// `dlvsym(handle, name, version)`, called with the caller's return address in the fourth
    /// argument.
    ///
    /// # Safety
    /// As [`dlvsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlvsym_entry(
        handle: *mut c_void,
        name: *const c_char,
        version: *const c_char,
    ) -> *mut c_void {
        core::arch::naked_asm!("mov rcx, [rsp]", "jmp {f}", f = sym dlvsym_from)
    }

    /// `dlvsym(handle, name, version)`, called with the caller's return address in the fourth
    /// argument.
    ///
    /// # Safety
    /// As [`dlvsym_from`]'s; only ever called by code of a library mmkit mapped.
    #[cfg(all(target_arch = "aarch64", target_env = "gnu"))]
    #[unsafe(naked)]
    pub(super) unsafe extern "C" fn dlvsym_entry(
        handle: *mut c_void,
        name: *const c_char,
        version: *const c_char,
    ) -> *mut c_void {
        core::arch::naked_asm!("hint #34", "mov x3, x30", "b {f}", f = sym dlvsym_from)
    }

    /// `dlsym` as called from `caller`.
    ///
    /// # Safety
    /// As the system linker's `dlsym`: `name` is a NUL-terminated string, `handle` a handle it
    /// gave, `RTLD_DEFAULT` or `RTLD_NEXT`.
    unsafe extern "C" fn dlsym_from(handle: *mut c_void, name: *const c_char, caller: usize) -> *mut c_void {
        if handle != libc::RTLD_NEXT || name.is_null() {
            // SAFETY: the caller's arguments, as the system linker's `dlsym` takes them.
            return unsafe { libc::dlsym(handle, name) };
        }
        // SAFETY: the caller's contract: a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(name) };
        next(name, None, caller).unwrap_or_else(|| {
            // SAFETY: as above; the system linker answers for callers it loaded.
            unsafe { libc::dlsym(handle, name.as_ptr()) }
        })
    }

    /// `dlvsym` as called from `caller`.
    ///
    /// # Safety
    /// As the system linker's `dlvsym`: `name` and `version` are NUL-terminated strings, `handle`
    /// a handle it gave, `RTLD_DEFAULT` or `RTLD_NEXT`.
    #[cfg(target_env = "gnu")]
    unsafe extern "C" fn dlvsym_from(
        handle: *mut c_void,
        name: *const c_char,
        version: *const c_char,
        caller: usize,
    ) -> *mut c_void {
        if handle != libc::RTLD_NEXT || name.is_null() || version.is_null() {
            // SAFETY: the caller's arguments, as the system linker's `dlvsym` takes them.
            return unsafe { libc::dlvsym(handle, name, version) };
        }
        // SAFETY: the caller's contract: NUL-terminated strings.
        let (name, version) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(version)) };
        next(name, Some(version), caller).unwrap_or_else(|| {
            // SAFETY: as above; the system linker answers for callers it loaded.
            unsafe { libc::dlvsym(handle, name.as_ptr(), version.as_ptr()) }
        })
    }

    /// `RTLD_NEXT`'s answer for a caller at `caller`: `None` when no library mmkit mapped holds
    /// it (the system linker answers), else the next definition, or NULL.
    fn next(name: &CStr, version: Option<&CStr>, caller: usize) -> Option<*mut c_void> {
        let (obj, _registry) = crate::group::containing(caller as u64)?;
        let not_found = Some(std::ptr::null_mut());
        let (Ok(name), Ok(version)) = (name.to_str(), version.map(CStr::to_str).transpose()) else { return not_found };
        let want = version.map_or(Want::Default, Want::Exact);
        let address = match obj.find_in_dependencies(name, want) {
            None => return not_found,
            Some(Target::Addr(a)) => a,
            // SAFETY: the resolver of an IFUNC defined by a loaded, relocated library (the
            // caller's dependency, held by `obj`), called as `dlsym` calls it.
            Some(Target::Ifunc(resolver)) => unsafe { super::super::call_ifunc_resolver(resolver) },
            Some(Target::Tls { module, offset }) => super::super::tls::address(module, offset, "dlsym") as usize as u64,
        };
        Some(address as usize as *mut c_void)
    }
}
