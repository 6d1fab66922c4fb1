//! Announcing the libraries mmkit mapped to debuggers, through glibc's `r_debug` protocol.
//!
//! glibc 2.35 and later chain one `r_debug_extended` per link namespace (`r_next`), and gdb
//! (13 and later) lists the libraries of every namespace in the chain. mmkit appends its own
//! namespace entry once, keeps its own list of `link_map` records (the public part of the
//! structure: `l_addr`, `l_name`, `l_ld`, `l_next`, `l_prev`), and after each change calls
//! `r_brk` (glibc's `_dl_debug_state`, where debuggers keep a breakpoint) with `r_state` set to
//! `RT_ADD`/`RT_DELETE`, then `RT_CONSISTENT`, as glibc does. Older glibc (no `r_next`): not
//! announced.

use std::ffi::{c_char, c_int, CString};
use std::sync::Mutex;

const RT_CONSISTENT: c_int = 0;
const RT_ADD: c_int = 1;
const RT_DELETE: c_int = 2;

/// The public part of glibc's `struct link_map`.
#[repr(C)]
struct LinkMap {
    l_addr: usize,
    l_name: *const c_char,
    l_ld: usize,
    l_next: *mut LinkMap,
    l_prev: *mut LinkMap,
}

/// glibc's `struct r_debug_extended` (`<link.h>`, glibc 2.35+).
#[repr(C)]
struct RDebug {
    r_version: c_int,
    r_map: *mut LinkMap,
    r_brk: usize,
    r_state: c_int,
    r_ldbase: usize,
    r_next: *mut RDebug,
}

/// One announced library: its record and the name it points to (both at stable addresses).
struct Announced {
    record: Box<LinkMap>,
    _name: CString,
}

struct Debugger {
    /// mmkit's namespace entry, leaked: debuggers and glibc may read it until the process ends.
    ours: *mut RDebug,
    libraries: Vec<Announced>,
}

// SAFETY: the raw pointers are to the leaked entry, glibc's `_r_debug` (process lifetime) and
// boxes this value owns; every access happens under the `DEBUGGER` lock.
unsafe impl Send for Debugger {}

static DEBUGGER: Mutex<Option<Debugger>> = Mutex::new(None);

/// Bionic is not glibc: there is no `r_debug_extended` chain to join.
#[cfg(target_os = "android")]
fn glibc_has_r_next() -> bool {
    false
}

/// glibc's version is at least 2.35 (`r_debug_extended` with `r_next`).
#[cfg(not(target_os = "android"))]
fn glibc_has_r_next() -> bool {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_bytes();
    // Read in place ("2.36"): no allocation on a process's first load.
    let number = |p: &[u8]| std::str::from_utf8(p).ok().and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    let mut parts = v.split(|&b| b == b'.').map(number);
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 35)
}

/// Finds glibc's `_r_debug` and chains mmkit's entry to its end, once.
fn init(slot: &mut Option<Debugger>) -> Option<&mut Debugger> {
    if slot.is_none() {
        if !glibc_has_r_next() {
            return None;
        }
        // SAFETY: dlsym with a NUL-terminated name only reads it.
        let glibc = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_r_debug".as_ptr()) }.cast::<RDebug>();
        if glibc.is_null() {
            return None;
        }
        // The chain is only extended (never shortened) by glibc's dlmopen, under its load lock,
        // which a library load in another thread could hold: the append is one pointer store at
        // the tail, which glibc reads and extends the same way.
        // SAFETY: `_r_debug` is glibc's `r_debug_extended` (version checked above), alive for
        // the process; the append is safe against glibc as said just above.
        let ours = unsafe {
            let ours = Box::into_raw(Box::new(RDebug {
                r_version: 2,
                r_map: std::ptr::null_mut(),
                r_brk: (*glibc).r_brk,
                r_state: RT_CONSISTENT,
                r_ldbase: 0,
                r_next: std::ptr::null_mut(),
            }));
            let mut tail = glibc;
            while !(*tail).r_next.is_null() {
                tail = (*tail).r_next;
            }
            (*tail).r_next = ours;
            // Debuggers walk `r_next` only when the first entry says version 2.
            if (*glibc).r_version < 2 {
                (*glibc).r_version = 2;
            }
            ours
        };
        *slot = Some(Debugger { ours, libraries: Vec::new() });
    }
    slot.as_mut()
}

impl Debugger {
    /// Sets the state, relinks the list, calls `r_brk` around the change.
    fn change(&mut self, state: c_int, edit: impl FnOnce(&mut Vec<Announced>)) {
        // SAFETY: `ours` is the leaked entry; `r_brk` is glibc's `_dl_debug_state`, an empty
        // function that exists for debuggers to break on (`void (void)`).
        unsafe {
            (*self.ours).r_state = state;
            call_brk((*self.ours).r_brk);
        }
        edit(&mut self.libraries);
        let n = self.libraries.len();
        let ptrs: Vec<*mut LinkMap> = self.libraries.iter_mut().map(|a| &mut *a.record as *mut LinkMap).collect();
        for (i, a) in self.libraries.iter_mut().enumerate() {
            a.record.l_prev = if i == 0 { std::ptr::null_mut() } else { ptrs[i - 1] };
            a.record.l_next = if i + 1 == n { std::ptr::null_mut() } else { ptrs[i + 1] };
        }
        // SAFETY: as above; the records live in `self.libraries` until removed under the lock.
        unsafe {
            (*self.ours).r_map = ptrs.first().copied().unwrap_or(std::ptr::null_mut());
            (*self.ours).r_state = RT_CONSISTENT;
            call_brk((*self.ours).r_brk);
        }
    }
}

/// Calls glibc's `_dl_debug_state` (`r_brk`).
///
/// # Safety
/// `brk` must be `r_brk` from glibc's `_r_debug`.
unsafe fn call_brk(brk: usize) {
    if brk != 0 {
        // SAFETY: function contract: `void _dl_debug_state(void)`.
        unsafe { std::mem::transmute::<usize, extern "C" fn()>(brk)() };
    }
}

/// Announces a library mapped at load bias `bias` with its dynamic section at run-time `l_ld`.
pub(crate) fn announce(bias: u64, name: &str, l_ld: u64) {
    let mut guard = DEBUGGER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dbg) = init(&mut guard) else { return };
    let Ok(cname) = CString::new(name) else { return };
    let record = Box::new(LinkMap {
        l_addr: bias as usize,
        l_name: cname.as_ptr(),
        l_ld: l_ld as usize,
        l_next: std::ptr::null_mut(),
        l_prev: std::ptr::null_mut(),
    });
    dbg.change(RT_ADD, |libs| libs.push(Announced { record, _name: cname }));
}

/// The `link_map` record announced for the library with load bias `bias` (it stays at this
/// address until the library is withdrawn), if it was announced.
#[cfg_attr(not(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "aarch64"))), allow(dead_code))]
pub(crate) fn link_map_of(bias: u64) -> Option<usize> {
    let guard = DEBUGGER.lock().unwrap_or_else(|e| e.into_inner());
    let dbg = guard.as_ref()?;
    dbg.libraries.iter().find(|a| a.record.l_addr == bias as usize).map(|a| &*a.record as *const LinkMap as usize)
}

/// Withdraws the library announced with load bias `bias`.
pub(crate) fn retract(bias: u64) {
    let mut guard = DEBUGGER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dbg) = guard.as_mut() else { return };
    if !dbg.libraries.iter().any(|a| a.record.l_addr == bias as usize) {
        return;
    }
    dbg.change(RT_DELETE, |libs| libs.retain(|a| a.record.l_addr != bias as usize));
}
