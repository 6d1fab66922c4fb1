//! `dladdr` for the libraries mmkit maps. glibc's `dladdr` knows only the objects glibc
//! loaded: asked about an address in a library mmkit mapped, it answers "no object", and a
//! library that asks where it lives (to find its data files beside it, or to name itself in a
//! message) gets nothing. So the loader binds `dladdr`, in the libraries it maps, to
//! [`dladdr`]: it answers for mmkit's libraries from their own tables (the answers of
//! [`crate::addr_info`]) and hands every other address to glibc's.

use std::ffi::{c_int, c_void};

/// The name bound to [`dladdr`] in libraries mmkit maps.
pub(crate) const INTERPOSED: &[u8] = b"dladdr";

/// mmkit's `dladdr(addr, info)` for the libraries it maps.
///
/// # Safety
/// As glibc's: `info` points to a writable `Dl_info`. The strings it receives live while the
/// library holding `addr` stays loaded.
pub(crate) unsafe extern "C" fn dladdr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int {
    let Some(answer) = crate::addr::c_answer(addr as u64) else {
        // SAFETY: the caller's arguments, as glibc's `dladdr` takes them.
        return unsafe { libc::dladdr(addr, info) };
    };
    let Some(a) = answer else { return 0 };
    // SAFETY: the caller gives a writable `Dl_info`; the pointers stored into it stay valid
    // while the library is loaded (its `.dynstr` and its bookkeeping).
    unsafe {
        info.write(libc::Dl_info {
            dli_fname: a.fname,
            dli_fbase: a.fbase as *mut c_void,
            dli_sname: a.sname,
            dli_saddr: a.saddr as *mut c_void,
        });
    }
    1
}
