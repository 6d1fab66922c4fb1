//! `thread_local` destructors of libraries mmkit mapped: the library must stay mapped until
//! they run (bionic interposes the same function for the same reason).
//!
//! C++ registers the destructor of a `thread_local` object with `__cxa_thread_atexit(func, obj,
//! dso)` (libstdc++), which hands it to glibc's `__cxa_thread_atexit_impl`; glibc keeps the
//! library `dso` belongs to loaded until the thread's destructors have run, but it does not
//! know libraries mmkit mapped. So the loader binds both names, in the libraries it maps, to
//! [`thread_atexit`]: it takes a pin on the library that holds `dso` (a reference that keeps it
//! loaded, from the hook the library layer installs), registers a trampoline with glibc, and
//! the trampoline runs the destructor, then drops the pin (which may unload the library).

use std::any::Any;
use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

/// Names bound to [`thread_atexit`] in libraries mmkit maps.
pub(crate) const INTERPOSED: [&[u8]; 2] = [b"__cxa_thread_atexit", b"__cxa_thread_atexit_impl"];

/// A pin: while it lives, the library stays loaded.
pub(crate) type Pin = Box<dyn Any + Send>;

/// The library layer's hook: a pin on the loaded library containing an address.
static PIN_HOOK: OnceLock<fn(u64) -> Option<Pin>> = OnceLock::new();

/// Installs the hook (once; later calls are ignored).
pub(crate) fn set_pin_hook(hook: fn(u64) -> Option<Pin>) {
    let _ = PIN_HOOK.set(hook);
}

type Dtor = unsafe extern "C" fn(*mut c_void);
type AtExitImpl = unsafe extern "C" fn(Dtor, *mut c_void, *mut c_void) -> c_int;

struct Registration {
    func: Dtor,
    obj: *mut c_void,
    _pin: Option<Pin>,
}

/// glibc's `__cxa_thread_atexit_impl`, found once.
fn glibc_impl() -> Option<AtExitImpl> {
    static IMPL: OnceLock<usize> = OnceLock::new();
    let addr = *IMPL.get_or_init(|| {
        let name: &CStr = c"__cxa_thread_atexit_impl";
        // SAFETY: dlsym with a NUL-terminated name only reads it.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
    });
    // SAFETY: a non-null address of glibc's `__cxa_thread_atexit_impl`, whose signature is
    // `int (void (*)(void *), void *, void *)`.
    (addr != 0).then(|| unsafe { std::mem::transmute::<usize, AtExitImpl>(addr) })
}

unsafe extern "C" fn trampoline(reg: *mut c_void) {
    // SAFETY: `reg` is the `Box<Registration>` leaked by `thread_atexit`, passed back once.
    let reg = unsafe { Box::from_raw(reg.cast::<Registration>()) };
    // SAFETY: the destructor and object the library registered; the pin keeps the library
    // mapped until after this call.
    unsafe { (reg.func)(reg.obj) };
    drop(reg); // the pin last
}

/// mmkit's `__cxa_thread_atexit`/`__cxa_thread_atexit_impl` for the libraries it maps.
///
/// # Safety
/// As glibc's: `func(obj)` must be safe to call when the thread exits.
pub(crate) unsafe extern "C" fn thread_atexit(func: Dtor, obj: *mut c_void, dso: *mut c_void) -> c_int {
    let Some(real) = glibc_impl() else { return -1 };
    let pin = PIN_HOOK.get().and_then(|hook| hook(dso as u64));
    let reg = Box::into_raw(Box::new(Registration { func, obj, _pin: pin }));
    // Our own address as the DSO: glibc then keeps whatever contains mmkit loaded as well.
    let me = thread_atexit as *const () as *mut c_void;
    // SAFETY: glibc's function with a destructor that frees `reg` exactly once.
    let rc = unsafe { real(trampoline, reg.cast(), me) };
    if rc != 0 {
        // SAFETY: glibc did not take `reg`: free it here.
        drop(unsafe { Box::from_raw(reg) });
    }
    rc
}
