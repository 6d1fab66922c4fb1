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
