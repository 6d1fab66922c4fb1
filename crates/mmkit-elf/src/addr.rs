//! [`addr_info`]: which library and symbol an address belongs to, as `dladdr` answers, for the
//! libraries mmkit mapped (which glibc's `dladdr` does not know) and, through `dladdr`, for
//! everything else.
#![deny(unsafe_code)]

/// What [`addr_info`] knows about an address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AddrInfo {
    /// The library's path (`archive!/entry` for an APK entry, `memfd:name` for memory).
    pub library: String,
    /// Where the library starts in memory (`dli_fbase`).
    pub base: u64,
    /// The exported symbol the address lies in (`dli_sname`), if any.
    pub symbol: Option<String>,
    /// That symbol's address (`dli_saddr`).
    pub symbol_addr: Option<u64>,
    /// Whether mmkit mapped the library (else glibc loaded it).
    pub loaded_by_mmkit: bool,
}

/// `dladdr`'s answer for `addr`: the library holding it and the exported symbol it lies in.
/// Libraries mmkit mapped are answered from their own tables; other addresses go to glibc's
/// `dladdr`. `None` when no loaded library holds the address.
#[doc(alias = "dladdr")]
pub fn addr_info(addr: u64) -> Option<AddrInfo> {
    if let Some((obj, _)) = crate::group::containing(addr) {
        if !obj.holds(addr) {
            // In the reservation but past the library's memory (or in a gap): as `dladdr`.
            return None;
        }
        let symbol = obj.symbol_at(addr);
        return Some(AddrInfo {
            library: obj.source().to_owned(),
            base: obj.span().0,
            symbol_addr: symbol.as_ref().map(|s| s.1),
            symbol: symbol.map(|s| s.0),
            loaded_by_mmkit: true,
        });
    }
    let found = crate::process_scope::dladdr(addr)?;
    Some(AddrInfo {
        library: found.library,
        base: found.base,
        symbol_addr: found.symbol.as_ref().map(|s| s.1),
        symbol: found.symbol.map(|s| s.0),
        loaded_by_mmkit: false,
    })
}

/// `dladdr`'s fields for an address in a library mmkit mapped, pointing into that library's
/// own memory and bookkeeping (valid while it stays loaded, as glibc's answers are).
pub(crate) struct CAnswer {
    pub(crate) fname: *const std::ffi::c_char,
    pub(crate) fbase: u64,
    /// The load bias (glibc's `l_addr`): `backtrace_symbols` names an address without a symbol
    /// by its offset from it (bound on glibc hosts only).
    #[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
    pub(crate) bias: u64,
    /// Null when no exported symbol holds the address.
    pub(crate) sname: *const std::ffi::c_char,
    pub(crate) saddr: u64,
    /// The address of that symbol's `.dynsym` entry (`dladdr1`'s `RTLD_DL_SYMENT`, bound on
    /// glibc hosts only), 0 when none.
    #[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
    pub(crate) sym_entry: usize,
}

/// The answer of mmkit's `dladdr` (bound in the libraries it maps, see `executor::dladdr`):
/// `None` when mmkit mapped no library at `addr` (glibc's `dladdr` answers), `Some(None)` in
/// a library's reservation outside its memory (no object, as [`addr_info`]).
pub(crate) fn c_answer(addr: u64) -> Option<Option<CAnswer>> {
    let (obj, _) = crate::group::containing(addr)?;
    if !obj.holds(addr) {
        return Some(None);
    }
    let Some(fname) = obj.c_source() else { return Some(None) };
    let (sname, saddr, sym_entry) =
        obj.symbol_at_c(addr).map_or((std::ptr::null(), 0, 0), |(n, a, e)| (n.as_ptr(), a, e));
    // The object outlives this `Arc`: the registry holds it while it is loaded.
    Some(Some(CAnswer { fname: fname.as_ptr(), fbase: obj.span().0, bias: obj.bias(), sname, saddr, sym_entry }))
}
