//! What `/proc/self/smaps` and `/proc/self/maps` say about one of this process's mappings: its
//! transparent huge pages, its resident bytes, its name. The proofs behind
//! [`HugePages::Transparent`](crate::HugePages::Transparent) and
//! [`MapOptions::name`](crate::MapOptions::name).

#![deny(unsafe_code)]

use crate::error::Result;
use crate::mapping::Mapping;

fn overlapping_smaps(map: &Mapping) -> Result<Vec<super::SmapsEntry>> {
    let (start, len) = map.kernel_region();
    let (start, end) = (start as u64, (start + len) as u64);
    Ok(super::smaps(std::process::id())?.into_iter().filter(|e| e.area.start < end && e.area.end > start).collect())
}

/// Bytes of `map` backed by transparent huge pages now: the `AnonHugePages` counters of the
/// areas of `/proc/self/smaps` that overlap its kernel region. This is the proof that
/// [`HugePages::Transparent`](crate::HugePages::Transparent) got huge pages.
pub fn huge_page_bytes(map: &Mapping) -> Result<u64> {
    Ok(overlapping_smaps(map)?.iter().map(|e| e.stats.anon_huge_pages * 1024).sum())
}

/// Resident bytes of `map` as `/proc/self/smaps` counts them (`Rss` of the overlapping areas).
///
/// smaps counts whole areas: when the kernel has merged the mapping with an adjacent anonymous
/// mapping of identical flags, the neighbour's pages count too. For an exact per-range count
/// use [`Mapping::residency`] (`mincore`).
pub fn resident_bytes(map: &Mapping) -> Result<u64> {
    Ok(overlapping_smaps(map)?.iter().map(|e| e.stats.rss * 1024).sum())
}

/// The name `/proc/self/maps` shows for the area holding `map`'s first byte (`[anon:NAME]`
/// gives `Some("NAME")`); `None` when unnamed or the kernel lacks names.
pub fn region_name(map: &Mapping) -> Result<Option<String>> {
    let addr = map.as_ptr() as u64;
    Ok(super::maps(std::process::id())?
        .into_iter()
        .find(|e| e.start <= addr && addr < e.end)
        .and_then(|e| e.backing.anon_name().map(str::to_owned)))
}
