//! `dladdr` for the libraries mmkit maps. glibc's `dladdr` knows only the objects glibc
//! loaded: asked about an address in a library mmkit mapped, it answers "no object", and a
//! library that asks where it lives (to find its data files beside it, or to name itself in a
//! message) gets nothing. So the loader binds `dladdr`, in the libraries it maps, to
//! [`dladdr`]: it answers for mmkit's libraries from their own tables (the answers of
//! [`crate::addr_info`]) and hands every other address to glibc's. glibc's
//! `backtrace_symbols` and `backtrace_symbols_fd` name frames through glibc's own `dladdr`, so
//! they are bound to [`backtrace_symbols`] and [`backtrace_symbols_fd`], which write glibc's
//! line for a frame in a library mmkit mapped and leave every other frame to glibc's.

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
    unsafe { info.write(dl_info(&a)) };
    1
}

/// `dladdr`'s answer for an address in a library mmkit mapped.
fn dl_info(a: &crate::addr::CAnswer) -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: a.fname,
        dli_fbase: a.fbase as *mut c_void,
        dli_sname: a.sname,
        dli_saddr: a.saddr as *mut c_void,
    }
}

/// `dladdr1`'s flags (glibc's `<dlfcn.h>`; the `libc` crate does not have them).
#[cfg(target_env = "gnu")]
const RTLD_DL_SYMENT: c_int = 1;
#[cfg(target_env = "gnu")]
const RTLD_DL_LINKMAP: c_int = 2;

/// mmkit's `dladdr1(addr, info, extra, flags)` for the libraries it maps: `dladdr`'s answer,
/// and with `RTLD_DL_SYMENT` the symbol's `.dynsym` entry (null when no symbol holds `addr`),
/// with `RTLD_DL_LINKMAP` the library's `link_map` (the record announced to debuggers, which
/// `dlinfo(RTLD_DI_LINKMAP)` answers too; null when there is none). glibc's `dladdr1` does not
/// know mmkit's libraries and answered 0.
///
/// # Safety
/// As glibc's: `info` points to a writable `Dl_info`, `extra` to a writable pointer when
/// `flags` asks for one.
#[cfg(target_env = "gnu")]
pub(crate) unsafe extern "C" fn dladdr1(
    addr: *const c_void,
    info: *mut libc::Dl_info,
    extra: *mut *mut c_void,
    flags: c_int,
) -> c_int {
    let Some(answer) = crate::addr::c_answer(addr as u64) else {
        // SAFETY: the caller's arguments, as glibc's `dladdr1` takes them.
        return unsafe { libc::dladdr1(addr, info, extra, flags) };
    };
    let Some(a) = answer else { return 0 };
    let extra_value = match flags {
        RTLD_DL_SYMENT => Some(a.sym_entry),
        RTLD_DL_LINKMAP => Some(crate::executor::debugger::link_map_of(a.bias).unwrap_or(0)),
        _ => None,
    };
    // SAFETY: the caller gives a writable `Dl_info`, and a writable pointer for the flags that
    // fill one (glibc's contract); what is stored stays valid while the library is loaded.
    unsafe {
        info.write(dl_info(&a));
        if let Some(v) = extra_value {
            extra.write(v as *mut c_void);
        }
    }
    1
}

/// The function of mmkit's bound to `name` (`backtrace_symbols` or `backtrace_symbols_fd`) in
/// the libraries mmkit maps.
#[cfg(target_env = "gnu")]
pub(crate) fn backtrace_bound_to(name: &[u8]) -> Option<u64> {
    match name {
        b"backtrace_symbols" => Some(backtrace_symbols as *const () as usize as u64),
        b"backtrace_symbols_fd" => Some(backtrace_symbols_fd as *const () as usize as u64),
        _ => None,
    }
}

/// glibc's line for a frame at `addr` in a library mmkit mapped, `None` for any other address.
/// `backtrace_symbols` writes `path(symbol+0x1c) [0x7f...]`, `path(+0x1139) [0x7f...]` (the
/// offset from the load bias) when no exported symbol holds it, `[0x7f...]` outside a
/// library; `backtrace_symbols_fd` the same without the space before the address (`sep`).
#[cfg(target_env = "gnu")]
fn frame_line(addr: u64, sep: &str) -> Option<String> {
    let Some(a) = crate::addr::c_answer(addr)? else { return Some(format!("[{addr:#x}]")) };
    // SAFETY: `c_answer`'s strings are NUL-terminated and live while the library is loaded (it
    // holds this frame's code, which the caller is asking about).
    let (fname, sname) = unsafe {
        (
            std::ffi::CStr::from_ptr(a.fname).to_string_lossy(),
            (!a.sname.is_null()).then(|| std::ffi::CStr::from_ptr(a.sname).to_string_lossy()),
        )
    };
    let from = if sname.is_some() { a.saddr } else { a.bias };
    let (sign, off) = if addr >= from { ('+', addr - from) } else { ('-', from - addr) };
    Some(format!("{fname}({}{sign}{off:#x}){sep}[{addr:#x}]", sname.unwrap_or_default()))
}

/// mmkit's `backtrace_symbols(array, size)` for the libraries it maps: glibc's answer, with the
/// lines of frames in mmkit's libraries (which glibc cannot name) written as glibc writes them.
///
/// # Safety
/// As glibc's: `array` holds `size` addresses. The result is one `malloc` block the caller
/// frees.
#[cfg(target_env = "gnu")]
pub(crate) unsafe extern "C" fn backtrace_symbols(
    array: *const *mut c_void,
    size: c_int,
) -> *mut *mut std::ffi::c_char {
    // SAFETY: the caller's arguments, as glibc's `backtrace_symbols` takes them.
    let theirs = unsafe { libc::backtrace_symbols(array, size) };
    let Ok(n @ 1..) = usize::try_from(size) else { return theirs };
    if theirs.is_null() {
        return theirs;
    }
    // SAFETY: `array` holds `size` addresses (the caller's contract), glibc's answer as many
    // NUL-terminated strings.
    let (addrs, lines) = unsafe { (std::slice::from_raw_parts(array, n), std::slice::from_raw_parts(theirs, n)) };
    let ours: Vec<Option<String>> = addrs.iter().map(|&a| frame_line(a as u64, " ")).collect();
    if ours.iter().all(Option::is_none) {
        return theirs;
    }
    let texts: Vec<&[u8]> = ours
        .iter()
        .zip(lines)
        .map(|(o, &l)| match o {
            Some(o) => o.as_bytes(),
            // SAFETY: one of glibc's NUL-terminated strings, freed below after the copy.
            None => unsafe { std::ffi::CStr::from_ptr(l) }.to_bytes(),
        })
        .collect();
    // As glibc's: the pointers, then the strings they point to, in one block.
    let table = n * std::mem::size_of::<*mut std::ffi::c_char>();
    let total = table + texts.iter().map(|t| t.len() + 1).sum::<usize>();
    // SAFETY: a plain allocation, freed by the caller with `free` as glibc's answer is.
    let block = unsafe { libc::malloc(total) }.cast::<*mut std::ffi::c_char>();
    if !block.is_null() {
        let mut at = table;
        for (i, t) in texts.iter().enumerate() {
            // SAFETY: `block` has `total` bytes: the table's `n` pointers, then every text and
            // its NUL at `at` (the sum above); `i < n`.
            unsafe {
                let dst = block.cast::<u8>().add(at);
                std::ptr::copy_nonoverlapping(t.as_ptr(), dst, t.len());
                dst.add(t.len()).write(0);
                block.add(i).write(dst.cast());
            }
            at += t.len() + 1;
        }
    }
    // SAFETY: glibc's block, no longer used (its strings were copied).
    unsafe { libc::free(theirs.cast()) };
    block
}

/// mmkit's `backtrace_symbols_fd(array, size, fd)` for the libraries it maps: a line per
/// frame, glibc's own for frames outside mmkit's libraries.
///
/// # Safety
/// As glibc's: `array` holds `size` addresses.
#[cfg(target_env = "gnu")]
pub(crate) unsafe extern "C" fn backtrace_symbols_fd(array: *const *mut c_void, size: c_int, fd: c_int) {
    let Ok(n) = usize::try_from(size) else { return };
    for i in 0..n {
        // SAFETY: `array` holds `size` addresses (the caller's contract); `i < size`.
        let at = unsafe { array.add(i) };
        // SAFETY: read within the caller's array, as above.
        match frame_line(unsafe { at.read() } as u64, "") {
            Some(line) => {
                let line = format!("{line}\n");
                // SAFETY: writes the bytes of `line` to the caller's descriptor, as glibc's
                // `writev` does (its result is ignored there too).
                unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
            }
            // SAFETY: one address of the caller's array, as glibc's function takes it.
            None => unsafe { libc::backtrace_symbols_fd(at, 1, fd) },
        }
    }
}
