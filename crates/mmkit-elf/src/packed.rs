//! Android's packed relocations (`DT_ANDROID_RELA`, the "APS2" format `ld.lld
//! --pack-dyn-relocs=android` writes, and the NDK's clang asks for by default from API level
//! 23): the `RELA` entries of a library as a stream of SLEB128 numbers, in groups that share
//! the `r_info`, the offset step or the addend. bionic's linker decodes them
//! (`packed_reloc_iterator`); glibc does not know them.
//!
//! The stream: the magic `APS2`, then the number of relocations and the offset the first one
//! is relative to, then groups until that many relocations have been given. A group is its
//! size and flags, then (by its flags) the offset step, the `r_info` and the addend change
//! every relocation of the group shares, then per relocation whatever it does not share: its
//! offset step, its `r_info`, its addend change. Offsets and addends run on across groups; a
//! group without addends sets the addend to 0.
//!
//! Decoded once, when the dynamic section is read, into plain [`Rela`] entries, the bounds
//! checked: a stream that ends early, claims more relocations than [`MAX_RELOCATIONS`] or has a
//! group larger than what is left is an error naming it (a group sharing everything costs no
//! byte per relocation, so the count alone could ask for billions).

use crate::dynamic::Rela;

/// Group flags (bionic's `RELOCATION_GROUPED_BY_INFO_FLAG` ...).
const GROUPED_BY_INFO: u64 = 1;
const GROUPED_BY_OFFSET_DELTA: u64 = 2;
const GROUPED_BY_ADDEND: u64 = 4;
const GROUP_HAS_ADDEND: u64 = 8;

/// The most relocations a stream may hold: as many 24-byte `RELA` entries as the loader's
/// bound on one table (64 MiB) allows.
pub(crate) const MAX_RELOCATIONS: u64 = (64 << 20) / 24;

/// The relocations of the `DT_ANDROID_RELA` stream `bytes` (with its `APS2` magic), or why
/// they cannot be read.
pub(crate) fn decode_rela(bytes: &[u8]) -> Result<Vec<Rela>, String> {
    let Some(stream) = bytes.strip_prefix(b"APS2") else {
        return Err("DT_ANDROID_RELA does not start with the APS2 magic".into());
    };
    let mut s = Sleb { bytes: stream, at: 0 };
    let count = s.next("the relocation count")? as u64;
    if count > MAX_RELOCATIONS {
        return Err(format!("DT_ANDROID_RELA claims {count} relocations (at most {MAX_RELOCATIONS})"));
    }
    // Room for what the stream's bytes can hold at one byte a relocation; a stream of groups
    // that share everything grows it as it is read (up to the bound).
    let mut out = Vec::with_capacity((count as usize).min(stream.len()));
    let (mut offset, mut info, mut addend) = (s.next("the first offset")? as u64, 0u64, 0i64);
    while (out.len() as u64) < count {
        let size = s.next("a group's size")? as u64;
        let flags = s.next("a group's flags")? as u64;
        let left = count - out.len() as u64;
        if size == 0 || size > left {
            return Err(format!("a group of {size} relocations where {left} are left"));
        }
        let step =
            if flags & GROUPED_BY_OFFSET_DELTA != 0 { Some(s.next("a group's offset step")? as u64) } else { None };
        if flags & GROUPED_BY_INFO != 0 {
            info = s.next("a group's r_info")? as u64;
        }
        let has_addend = flags & GROUP_HAS_ADDEND != 0;
        if has_addend && flags & GROUPED_BY_ADDEND != 0 {
            addend = addend.wrapping_add(s.next("a group's addend")?);
        } else if !has_addend {
            addend = 0;
        }
        for _ in 0..size {
            offset = offset.wrapping_add(match step {
                Some(step) => step,
                None => s.next("an offset step")? as u64,
            });
            if flags & GROUPED_BY_INFO == 0 {
                info = s.next("an r_info")? as u64;
            }
            if has_addend && flags & GROUPED_BY_ADDEND == 0 {
                addend = addend.wrapping_add(s.next("an addend")?);
            }
            out.push(Rela { offset, r_type: (info & 0xffff_ffff) as u32, sym: (info >> 32) as u32, addend });
        }
    }
    Ok(out)
}

/// A reader of signed LEB128 numbers.
struct Sleb<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Sleb<'_> {
    /// The next number (`what` names it in the error when the stream ends inside it).
    fn next(&mut self, what: &str) -> Result<i64, String> {
        let (mut value, mut shift) = (0u64, 0u32);
        loop {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(format!("DT_ANDROID_RELA ends at byte {} inside {what}", self.at + 4));
            };
            self.at += 1;
            if shift >= 64 {
                return Err(format!("DT_ANDROID_RELA has a number longer than 64 bits at byte {}", self.at + 3));
            }
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= u64::MAX << shift; // sign-extend
                }
                return Ok(value as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SLEB128 encoding of `v` (the test's own writer).
    fn sleb(out: &mut Vec<u8>, mut v: i64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
            out.push(if done { byte } else { byte | 0x80 });
            if done {
                break;
            }
        }
    }

    fn stream(numbers: &[i64]) -> Vec<u8> {
        let mut out = b"APS2".to_vec();
        for &n in numbers {
            sleb(&mut out, n);
        }
        out
    }

    const RELATIVE: i64 = 8; // R_X86_64_RELATIVE
    const GLOB_DAT: i64 = 6 | (3 << 32); // R_X86_64_GLOB_DAT against symbol 3

    #[test]
    fn groups_share_what_their_flags_say() {
        let bytes = stream(&[
            5,      // relocations
            0x1000, // offsets start here
            // 3 RELATIVE, 8 bytes apart, addends 0x10, 0x30, 0x20 (changes given one by one)
            3,
            (GROUPED_BY_INFO | GROUPED_BY_OFFSET_DELTA | GROUP_HAS_ADDEND) as i64,
            8,
            RELATIVE,
            0x10,
            0x20,
            -0x10,
            // 2 GLOB_DAT without addends, offsets given one by one
            2,
            GROUPED_BY_INFO as i64,
            GLOB_DAT,
            0x100,
            -0x8,
        ]);
        let got: Vec<(u64, u32, u32, i64)> =
            decode_rela(&bytes).unwrap().iter().map(|r| (r.offset, r.r_type, r.sym, r.addend)).collect();
        assert_eq!(
            got,
            [(0x1008, 8, 0, 0x10), (0x1010, 8, 0, 0x30), (0x1018, 8, 0, 0x20), (0x1118, 6, 3, 0), (0x1110, 6, 3, 0)]
        );
    }

    #[test]
    fn an_addend_shared_by_a_group_runs_on_and_info_per_relocation() {
        let flags = (GROUPED_BY_ADDEND | GROUP_HAS_ADDEND | GROUPED_BY_OFFSET_DELTA) as i64;
        let bytes = stream(&[2, 0, 2, flags, 16, -4, RELATIVE, GLOB_DAT]);
        let got: Vec<(u64, u32, i64)> =
            decode_rela(&bytes).unwrap().iter().map(|r| (r.offset, r.r_type, r.addend)).collect();
        assert_eq!(got, [(16, 8, -4), (32, 6, -4)]);
    }

    #[test]
    fn bad_streams_are_errors_not_loops_or_huge_allocations() {
        assert!(decode_rela(b"APS1\x00\x00").unwrap_err().contains("APS2 magic"));
        // Ends inside a group.
        let e = decode_rela(&stream(&[3, 0, 3, GROUPED_BY_INFO as i64, RELATIVE, 8])).unwrap_err();
        assert!(e.contains("ends at byte"), "{e}");
        // A count past the bound, and one that a group sharing everything would make free.
        let e = decode_rela(&stream(&[i64::MAX, 0])).unwrap_err();
        assert!(e.contains("claims"), "{e}");
        let all = (GROUPED_BY_INFO | GROUPED_BY_OFFSET_DELTA) as i64;
        let e = decode_rela(&stream(&[4, 0, 5, all, 8, RELATIVE])).unwrap_err();
        assert!(e.contains("a group of 5 relocations where 4 are left"), "{e}");
        let e = decode_rela(&stream(&[4, 0, 0, all])).unwrap_err();
        assert!(e.contains("a group of 0"), "{e}");
        // A number of more than ten bytes.
        let mut long = b"APS2".to_vec();
        long.extend([0x80u8; 11]);
        long.push(0);
        assert!(decode_rela(&long).unwrap_err().contains("longer than 64 bits"));
        // The empty stream's count.
        assert!(decode_rela(b"APS2").unwrap_err().contains("the relocation count"));
        assert!(decode_rela(&stream(&[0, 0])).unwrap().is_empty());
    }
}
