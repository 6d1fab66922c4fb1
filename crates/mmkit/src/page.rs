//! Page size and alignment arithmetic.
//!
//! The page size is asked of the kernel once ([`page_size`]); nothing in mmkit assumes 4096
//! (Android's arm64 devices use 16 KiB pages, some servers 64 KiB). The helpers here are pure
//! and overflow-checked: they return `None` instead of wrapping.

#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};

/// The longest mapping, reservation, allocation or slice mmkit creates: `isize::MAX` bytes.
/// Rust forbids a slice (or any object) longer than that, and on 32-bit targets the kernel
/// would happily map `0x8000_0000` bytes, so every constructor checks with [`check_len`].
pub(crate) const MAX_LEN: u64 = isize::MAX as u64;

/// Checks that an object of `len` bytes may exist in Rust (`len <= isize::MAX`) and returns it
/// as a `usize`. Every constructor of a mapping, reservation or block calls this on the length
/// it is about to ask the kernel for (after rounding to pages), so an over-long request is an
/// [`ErrorKind::OutOfBounds`] error naming `op` and the length, and never reaches the kernel.
pub(crate) fn check_len(op: &'static str, len: u64) -> Result<usize> {
    match usize::try_from(len) {
        Ok(l) if len <= MAX_LEN => Ok(l),
        _ => Err(Error::new(op, ErrorKind::OutOfBounds).with_range(0, len).with_detail(format!(
            "length {len:#x} is longer than isize::MAX ({MAX_LEN:#x}), the largest object Rust allows"
        ))),
    }
}

/// `len` rounded up to whole pages of `page` bytes, checked with [`check_len`] (the rounding
/// may not overflow either).
pub(crate) fn check_page_len(op: &'static str, len: u64, page: u64) -> Result<usize> {
    check_len(op, len)?;
    check_len(op, align_up(len, page).unwrap_or(u64::MAX))
}

/// The size of a base page, as the kernel reports it (`sysconf(_SC_PAGESIZE)`).
///
/// ```
/// let page = mmkit::page_size();
/// assert!(page.is_power_of_two() && page >= 4096);
/// ```
#[doc(alias = "sysconf")]
#[doc(alias = "getpagesize")]
pub fn page_size() -> usize {
    crate::sys::page_size()
}

/// Rounds `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    value & !(align - 1)
}

/// Rounds `value` up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Whether `value` is a multiple of `align` (a power of two).
pub const fn is_aligned(value: u64, align: u64) -> bool {
    value & (align - 1) == 0
}

/// The pages that hold the bytes `[offset, offset + len)`: `(first page start, length)`, both
/// multiples of `page`. An empty range spans no pages. `None` on overflow.
///
/// ```
/// use mmkit::page::page_span;
/// assert_eq!(page_span(4095, 2, 4096), Some((0, 8192)));
/// assert_eq!(page_span(4096, 4096, 4096), Some((4096, 4096)));
/// assert_eq!(page_span(10, 0, 4096), Some((0, 0)));
/// ```
pub const fn page_span(offset: u64, len: u64, page: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return Some((align_down(offset, page), 0));
    }
    let end = match offset.checked_add(len) {
        Some(e) => e,
        None => return None,
    };
    let start = align_down(offset, page);
    match align_up(end, page) {
        Some(end) => Some((start, end - start)),
        None => None,
    }
}

/// Number of pages needed to hold `len` bytes (`None` on overflow).
pub const fn pages_for(len: u64, page: u64) -> Option<u64> {
    match align_up(len, page) {
        Some(v) => Some(v / page),
        None => None,
    }
}

/// Checks that `[offset, offset + len)` lies inside `[0, total)` without overflow.
pub const fn range_within(offset: u64, len: u64, total: u64) -> bool {
    match offset.checked_add(len) {
        Some(end) => end <= total,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn page_size_is_from_the_kernel() {
        let p = page_size();
        assert!(p.is_power_of_two());
        assert_eq!(p as u64, rustix::param::page_size() as u64);
    }

    #[test]
    fn lengths_past_isize_max_are_refused() {
        let max = isize::MAX as u64;
        assert_eq!(check_len("t", max).unwrap(), isize::MAX as usize);
        assert_eq!(check_len("t", 0).unwrap(), 0);
        for bad in [max + 1, u64::MAX, 1 << 63] {
            let e = check_len("mmap", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfBounds);
            assert_eq!(e.errno(), None);
            assert!(e.to_string().contains("isize::MAX"), "{e}");
        }
        // Rounding up past isize::MAX is refused too.
        assert!(check_page_len("t", max - 5, 4096).is_err());
        assert_eq!(check_page_len("t", 1, 16384).unwrap(), 16384);
    }

    #[test]
    fn edges() {
        assert_eq!(align_up(u64::MAX, 4096), None);
        assert_eq!(align_up(0, 16384), Some(0));
        assert_eq!(page_span(u64::MAX, 1, 4096), None);
        assert_eq!(page_span(u64::MAX - 10, 5, 4096), None);
        assert_eq!(pages_for(1, 65536), Some(1));
        assert!(!range_within(u64::MAX, 1, u64::MAX));
        assert!(range_within(0, 0, 0));
    }

    fn pages() -> impl Strategy<Value = u64> {
        prop_oneof![Just(4096u64), Just(16384), Just(65536), Just(1 << 21)]
    }

    proptest! {
        #[test]
        fn align_down_is_aligned_and_close(v in any::<u64>(), p in pages()) {
            let d = align_down(v, p);
            prop_assert!(is_aligned(d, p));
            prop_assert!(d <= v && v - d < p);
        }

        #[test]
        fn align_up_is_aligned_and_close(v in any::<u64>(), p in pages()) {
            match align_up(v, p) {
                Some(u) => { prop_assert!(is_aligned(u, p)); prop_assert!(u >= v && u - v < p); }
                None => prop_assert!(v > u64::MAX - (p - 1)),
            }
        }

        #[test]
        fn span_covers_range(off in any::<u64>(), len in any::<u64>(), p in pages()) {
            match page_span(off, len, p) {
                Some((s, l)) => {
                    prop_assert!(is_aligned(s, p) && is_aligned(l, p));
                    prop_assert!(s <= off);
                    if len > 0 {
                        prop_assert!(s + l >= off + len);
                        prop_assert!(s + l - (off + len) < p);
                    } else {
                        prop_assert_eq!(l, 0);
                    }
                }
                None => prop_assert!(off.checked_add(len).and_then(|e| align_up(e, p)).is_none()),
            }
        }

        #[test]
        fn check_len_matches_isize(len in prop_oneof![any::<u64>(), (isize::MAX as u64 - 70000)..=(isize::MAX as u64 + 70000)], p in pages()) {
            prop_assert_eq!(check_len("t", len).is_ok(), len <= isize::MAX as u64);
            match check_page_len("t", len, p) {
                Ok(l) => { prop_assert!(l as u64 >= len && l as u64 - len < p && l as u64 <= isize::MAX as u64); }
                Err(_) => prop_assert!(len as u128 + (p as u128 - 1) > isize::MAX as u128),
            }
        }

        #[test]
        fn range_within_matches_wide_math(off in any::<u64>(), len in any::<u64>(), total in any::<u64>()) {
            prop_assert_eq!(range_within(off, len, total), (off as u128 + len as u128) <= total as u128);
        }
    }
}
