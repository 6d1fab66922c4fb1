//! Static TLS for a library built for it: `DF_STATIC_TLS`, initial-exec references
//! (`R_X86_64_TPOFF64`, `R_AARCH64_TLS_TPREL64`) to its own `__thread` variables, as Mesa's GL
//! dispatch, libgomp, libubsan and glibc's libc_malloc_debug are built.
//!
//! Such code adds a constant to the thread pointer, so the library's block must lie at the same
//! offset from the thread pointer in every thread, existing and future: in glibc's static TLS
//! area, whose spare room (the surplus) only glibc can hand out and put into each thread. So
//! mmkit-elf asks glibc for it the one way glibc offers: it writes a *donor*, a minimal shared
//! object holding nothing but a `PT_TLS` segment with the library's initialization image, size
//! and alignment, and one initial-exec relocation of its own block, into a memfd, and
//! `dlopen`s it (`/proc/<pid>/fd/N`). glibc then does for the donor what it does for a library
//! built that way: allocates the block in the surplus, copies the image into every running
//! thread's block and into every later thread's, and writes the block's offset from the
//! thread pointer into the donor's relocated word, which mmkit-elf reads back. The library's
//! own TLS then *is* the donor's module: initial-exec references get that offset,
//! general-dynamic ones the donor's glibc module id (glibc's `__tls_get_addr` answers with the
//! static block). When there is no room left, glibc's `dlopen` fails with glibc's own message
//! ("cannot allocate memory in static TLS block"), as it would for the library itself.
//!
//! The donor is `dlclose`d when the library is unloaded. It shows in glibc's list of loaded
//! objects (`dl_iterate_phdr`, a debugger's `info sharedlibrary`) under that path, which is why
//! it names the process by its id and the memfd stays open while the donor is loaded: a
//! debugger opens the names in the list *in its own process*, where `/proc/self/fd/N` is one of
//! the debugger's descriptors (gdb blocked for ever reading its own pipe), while
//! `/proc/<pid>/fd/N` is the donor itself for anyone allowed to trace the process.

use crate::machine::Machine;
use std::ffi::{c_void, CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};

/// Where the donor's relocated word sits (link-time address = file offset).
const SLOT: u64 = 0x178;
/// Where its dynamic section starts.
const DYNAMIC: u64 = 0x180;
/// Dynamic entries written (with `DT_NULL`).
const DYNAMIC_ENTRIES: u64 = 10;

/// A library's TLS block in glibc's static TLS area, held through its donor (see the module
/// documentation). Dropping it `dlclose`s the donor.
#[derive(Debug)]
pub(crate) struct StaticTls {
    handle: usize,
    module: u64,
    tp_offset: u64,
    /// The memfd the donor was loaded from: glibc's list names it by this descriptor.
    _file: Option<OwnedFd>,
}

// SAFETY: the handle is only passed to `dlclose` once (glibc's handles are process-wide).
unsafe impl Send for StaticTls {}
// SAFETY: nothing is mutated through a shared reference.
unsafe impl Sync for StaticTls {}

impl StaticTls {
    /// Allocates a static block of `mem_size` bytes aligned to `align`, whose first byte sits
    /// at `first_byte` modulo `align` as the library's `PT_TLS` does, initialized in every
    /// thread with `image` (`.tdata`; the rest is zeroed). `name` labels the memfd.
    pub(crate) fn allocate(
        machine: Machine,
        image: &[u8],
        mem_size: u64,
        align: u64,
        first_byte: u64,
        name: &str,
    ) -> Result<StaticTls, String> {
        let page = crate::library::page_size();
        let bytes = donor(machine, image, mem_size, align, first_byte, page)?;
        let fd = rustix::fs::memfd_create(format!("mmkit-static-tls:{name}"), rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| format!("memfd_create for the static TLS donor: {e}"))?;
        let mut done = 0;
        while done < bytes.len() {
            done +=
                rustix::io::write(&fd, &bytes[done..]).map_err(|e| format!("write of the static TLS donor: {e}"))?;
        }
        let path =
            CString::new(format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())).map_err(|e| e.to_string())?;
        let mut held = load_donor(&path)?;
        held._file = Some(fd);
        Ok(held)
    }

    /// glibc's module id of the block (what `DTPMOD64` stores; glibc's `__tls_get_addr`
    /// answers it with the static block).
    pub(crate) fn module(&self) -> u64 {
        self.module
    }

    /// The block's offset from the thread pointer (two's complement when negative, as on
    /// x86_64): what an initial-exec reference to offset 0 of the block holds.
    pub(crate) fn tp_offset(&self) -> u64 {
        self.tp_offset
    }
}

impl Drop for StaticTls {
    fn drop(&mut self) {
        // SAFETY: the handle `dlopen` returned, closed once; nothing refers to the donor's
        // block any more (the library using it is unmapped first).
        unsafe { libc::dlclose(self.handle as *mut c_void) };
        // The memfd closes after this, once glibc no longer lists the donor.
    }
}

/// `dlopen`s the donor at `path` and reads back its module id and block offset.
#[cfg(target_env = "gnu")]
fn load_donor(path: &CStr) -> Result<StaticTls, String> {
    // SAFETY: the donor has no code, no initializers and no dependencies: loading it only
    // maps it, allocates its static TLS block and relocates its one word.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("glibc could not load its static TLS donor: {}", dl_error()));
    }
    // Closed on every error path below (dropped), kept on success.
    let mut held = StaticTls { handle: handle as usize, module: 0, tp_offset: 0, _file: None };
    let mut map: *mut c_void = std::ptr::null_mut();
    // SAFETY: a live handle; RTLD_DI_LINKMAP writes one pointer.
    let rc = unsafe { libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&mut map as *mut *mut c_void).cast()) };
    if rc != 0 || map.is_null() {
        return Err(format!("dlinfo(RTLD_DI_LINKMAP) of the static TLS donor: {}", dl_error()));
    }
    let mut module: usize = 0;
    // SAFETY: a live handle; RTLD_DI_TLS_MODID writes one size_t.
    let rc = unsafe { libc::dlinfo(handle, libc::RTLD_DI_TLS_MODID, (&mut module as *mut usize).cast()) };
    if rc != 0 || module == 0 {
        return Err(format!("dlinfo(RTLD_DI_TLS_MODID) of the static TLS donor: {}", dl_error()));
    }
    // SAFETY: glibc's `struct link_map` begins with `l_addr`, the donor's load bias; the
    // donor maps its whole file (it is one segment), so the relocated word is readable.
    held.tp_offset = unsafe {
        let bias = *(map as *const usize);
        std::ptr::read_unaligned((bias + SLOT as usize) as *const u64)
    };
    held.module = module as u64;
    Ok(held)
}

/// Only glibc's `dlopen` hands out static TLS to an object it loads.
#[cfg(not(target_env = "gnu"))]
fn load_donor(_path: &CStr) -> Result<StaticTls, String> {
    Err("a static TLS block needs glibc's dlopen (this C library gives none to a library it did not load)".to_owned())
}

#[cfg(target_env = "gnu")]
fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message valid until the next dl* call
    // on this thread; it is copied at once.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
    }
}

/// The donor's bytes: one read-write `PT_LOAD` segment over the whole file (ELF header,
/// program headers, an empty symbol table with its GNU hash, one relocation, the relocated
/// word, the dynamic section, the TLS image), `PT_DYNAMIC`, `PT_TLS` and a non-executable
/// `PT_GNU_STACK` (without it glibc would make every thread's stack executable).
fn donor(
    machine: Machine,
    image: &[u8],
    mem_size: u64,
    align: u64,
    first_byte: u64,
    page: u64,
) -> Result<Vec<u8>, String> {
    let align = align.max(1);
    if !align.is_power_of_two() || align > page || first_byte >= align || image.len() as u64 > mem_size {
        return Err(format!(
            "a PT_TLS segment of {mem_size} bytes aligned to {align} (image {} bytes) cannot be placed in static TLS",
            image.len()
        ));
    }
    let tpoff = match machine {
        Machine::X86_64 => object::elf::R_X86_64_TPOFF64,
        Machine::Aarch64 => object::elf::R_AARCH64_TLS_TPREL,
    };
    let dynamic_end = DYNAMIC + 16 * DYNAMIC_ENTRIES;
    // The image's address keeps the library's first-byte offset modulo the alignment.
    let tls_vaddr = (dynamic_end + align - 1 - first_byte) / align * align + first_byte;
    let file_len = tls_vaddr + image.len() as u64;
    let mut b: Vec<u8> = Vec::with_capacity(file_len as usize);
    let (w16, w32, w64) = (
        |b: &mut Vec<u8>, v: u16| b.extend_from_slice(&v.to_le_bytes()),
        |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes()),
        |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_le_bytes()),
    );
    // ELF header (64 bytes).
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    w16(&mut b, object::elf::ET_DYN);
    w16(&mut b, machine.e_machine());
    w32(&mut b, 1); // e_version
    w64(&mut b, 0); // e_entry
    w64(&mut b, 64); // e_phoff
    w64(&mut b, 0); // e_shoff
    w32(&mut b, 0); // e_flags
    for v in [64u16, 56, 4, 64, 0, 0] {
        w16(&mut b, v); // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    }
    // Program headers (4 x 56 bytes, to 0x120).
    let phdr = |b: &mut Vec<u8>, p_type: u32, flags: u32, off: u64, filesz: u64, memsz: u64, align: u64| {
        w32(b, p_type);
        w32(b, flags);
        for v in [off, off, off, filesz, memsz, align] {
            w64(b, v); // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        }
    };
    let rw = object::elf::PF_R | object::elf::PF_W;
    phdr(&mut b, object::elf::PT_LOAD, rw, 0, file_len, file_len, page);
    phdr(&mut b, object::elf::PT_DYNAMIC, rw, DYNAMIC, 16 * DYNAMIC_ENTRIES, 16 * DYNAMIC_ENTRIES, 8);
    phdr(&mut b, object::elf::PT_TLS, object::elf::PF_R, tls_vaddr, image.len() as u64, mem_size, align);
    phdr(&mut b, object::elf::PT_GNU_STACK, rw, 0, 0, 0, 16);
    debug_assert_eq!(b.len(), 0x120);
    // Symbol table at 0x120: the null symbol (24 bytes).
    b.resize(0x138, 0);
    // String table at 0x138: one empty string; GNU hash at 0x140: one bucket (empty), symbols
    // from 1 (none), a one-word Bloom filter of zeros.
    b.resize(0x140, 0);
    for v in [1u32, 1, 1, 6] {
        w32(&mut b, v); // nbuckets, symoffset, bloom_size, bloom_shift
    }
    w64(&mut b, 0); // Bloom filter
    w32(&mut b, 0); // bucket 0: empty
    b.resize(0x160, 0);
    // The relocation at 0x160: initial-exec, no symbol (the donor's own block), addend 0.
    w64(&mut b, SLOT);
    w64(&mut b, u64::from(tpoff));
    w64(&mut b, 0);
    debug_assert_eq!(b.len() as u64, SLOT);
    w64(&mut b, 0);
    // Dynamic section.
    for (tag, val) in [
        (object::elf::DT_GNU_HASH, 0x140),
        (object::elf::DT_STRTAB, 0x138),
        (object::elf::DT_SYMTAB, 0x120),
        (object::elf::DT_STRSZ, 1),
        (object::elf::DT_SYMENT, 24),
        (object::elf::DT_RELA, 0x160),
        (object::elf::DT_RELASZ, 24),
        (object::elf::DT_RELAENT, 24),
        (object::elf::DT_FLAGS, u64::from(object::elf::DF_STATIC_TLS)),
        (object::elf::DT_NULL, 0),
    ] {
        w64(&mut b, u64::from(tag));
        w64(&mut b, val);
    }
    debug_assert_eq!(b.len() as u64, dynamic_end);
    b.resize(tls_vaddr as usize, 0);
    b.extend_from_slice(image);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_donor_keeps_the_first_byte_offset_and_refuses_what_cannot_be_placed() {
        let d = donor(Machine::X86_64, &[1, 2, 3], 16, 16, 8, 4096).unwrap();
        let tls_at = d.len() - 3;
        assert_eq!(tls_at % 16, 8);
        assert_eq!(&d[tls_at..], &[1, 2, 3]);
        assert!(donor(Machine::X86_64, &[], 16, 3, 0, 4096).is_err(), "alignment not a power of two");
        assert!(donor(Machine::X86_64, &[], 16, 8192, 0, 4096).is_err(), "alignment above a page");
        assert!(donor(Machine::X86_64, &[0; 32], 16, 8, 0, 4096).is_err(), "image larger than the block");
    }
}
