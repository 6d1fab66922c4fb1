//! What the machine's memory allows: the kernel's estimate of memory available for new work,
//! and whether a file system keeps its files in memory.

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let kb = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    kb.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?.checked_mul(1024)
}

/// Whether `f_type` (of `statfs(2)`) is a file system whose files live in memory: tmpfs or
/// ramfs (`TMPFS_MAGIC`, `RAMFS_MAGIC` of linux/magic.h). Their pages are not reclaimed
/// without swap, so every page a file gains there is memory taken for good.
pub fn lives_in_memory(f_type: u64) -> bool {
    // 32-bit magic numbers; `f_type` is signed 32-bit on 32-bit targets (RAMFS_MAGIC is negative
    // there), so only the low 32 bits are compared.
    matches!(f_type as u32, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// `TMPFS_MAGIC` of linux/magic.h.
pub const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `RAMFS_MAGIC` of linux/magic.h.
pub const RAMFS_MAGIC: u32 = 0x8584_58f6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let m = "MemTotal:       24684544 kB\nMemFree:        20119528 kB\nMemAvailable:   23410964 kB\n";
        assert_eq!(mem_available(m), Some(23_410_964 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn tmpfs_and_ramfs_live_in_memory() {
        assert!(lives_in_memory(0x0102_1994));
        assert!(lives_in_memory(0x8584_58f6));
        // RAMFS_MAGIC as a signed 32-bit f_type, sign-extended.
        assert!(lives_in_memory(0x8584_58f6_u32 as i32 as i64 as u64));
        assert!(!lives_in_memory(0xef53)); // ext4
    }
}
