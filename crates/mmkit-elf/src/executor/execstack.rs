//! Executable stacks for the libraries that ask for one (`PT_GNU_STACK` with `PF_X`: GNU C
//! nested functions called through trampolines on the stack, assembly without a
//! `.note.GNU-stack` section).
//!
//! glibc's `dlopen` of such a library makes the stacks of every thread executable, and those
//! of threads started later (`_dl_make_stack_executable`, its `dl_stack_flags`), before 2.41;
//! from 2.41 it refuses the library unless the stack is executable already (tunable
//! `glibc.rtld.execstack`). Only glibc knows its threads' stacks, so mmkit asks glibc to do what
//! it would do: it has the system linker load a tiny object of its own that asks for an
//! executable stack (no code, no symbols, no initializers), once per process. The outcome is
//! then glibc's for the same process, whatever its version: stacks made executable, or the
//! library refused with glibc's message.

use crate::error::{Error, ErrorKind, Result};
use object::elf;
use rustix::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once glibc made the stacks executable (it never makes them non-executable again).
static DONE: AtomicBool = AtomicBool::new(false);

/// Has glibc make the process's stacks executable, as its `dlopen` does for a library whose
/// `PT_GNU_STACK` has `PF_X`; an error (glibc's message) when it refuses.
pub(crate) fn make_stacks_executable() -> Result<()> {
    if DONE.load(Ordering::Acquire) {
        return Ok(());
    }
    let op = "make the stacks executable (the library's PT_GNU_STACK asks for an executable stack)";
    let machine = crate::Machine::host()?;
    let bytes = execstack_object(machine.e_machine(), crate::library::page_size());
    let fd = crate::source::memfd_holding("mmkit-execstack", &bytes, rustix::fs::MemfdFlags::empty())
        .map_err(|(what, e)| Error::os(format!("{op}: {what}"), e))?;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // SAFETY: the object is ours (`execstack_object`): it has no code, no initializers and no
    // symbols; loading it runs nothing. It stays loaded (RTLD_NODELETE), a few hundred bytes,
    // once per process.
    let loaded = unsafe { crate::process_scope::SystemLibrary::load(&path) };
    match loaded {
        Ok(_) => {
            DONE.store(true, Ordering::Release);
            Ok(())
        }
        Err(msg) => Err(Error::new(
            op,
            ErrorKind::Io,
            format!("the system linker refused (as its dlopen refuses the library itself): {msg}"),
        )),
    }
}

/// A minimal `ET_DYN` object for the host (64-bit, little-endian) whose only request is an
/// executable stack: one read-write `PT_LOAD` holding the headers, a dynamic section (an empty
/// string table, the null symbol and a one-bucket SysV hash table), `PT_DYNAMIC`, and
/// `PT_GNU_STACK` with `PF_R | PF_W | PF_X`.
fn execstack_object(e_machine: u16, page_size: u64) -> Vec<u8> {
    const PHDRS: u64 = 64;
    const DYNAMIC: u64 = PHDRS + 3 * 56;
    const STRTAB: u64 = DYNAMIC + 6 * 16;
    const SYMTAB: u64 = STRTAB + 8;
    const HASH: u64 = SYMTAB + 24;
    const END: u64 = HASH + 16;
    let mut b = Vec::with_capacity(END as usize);
    let (u16_, u32_, u64_) = (
        |b: &mut Vec<u8>, v: u16| b.extend_from_slice(&v.to_le_bytes()),
        |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes()),
        |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_le_bytes()),
    );
    // ELF header.
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', elf::ELFCLASS64, elf::ELFDATA2LSB, elf::EV_CURRENT]);
    b.resize(16, 0); // EI_OSABI (System V), EI_ABIVERSION 0, padding
    u16_(&mut b, elf::ET_DYN);
    u16_(&mut b, e_machine);
    u32_(&mut b, u32::from(elf::EV_CURRENT));
    u64_(&mut b, 0); // e_entry
    u64_(&mut b, PHDRS); // e_phoff
    u64_(&mut b, 0); // e_shoff
    u32_(&mut b, 0); // e_flags
    u16_(&mut b, 64); // e_ehsize
    u16_(&mut b, 56); // e_phentsize
    u16_(&mut b, 3); // e_phnum
    u16_(&mut b, 64); // e_shentsize
    u16_(&mut b, 0); // e_shnum
    u16_(&mut b, 0); // e_shstrndx

    // Program headers: type, flags, offset, vaddr, paddr, filesz, memsz, align.
    let phdr = |b: &mut Vec<u8>, p_type: u32, flags: u32, at: u64, len: u64, align: u64| {
        u32_(b, p_type);
        u32_(b, flags);
        for v in [at, at, at, len, len, align] {
            u64_(b, v);
        }
    };
    let (r, w, x) = (elf::PF_R, elf::PF_W, elf::PF_X);
    phdr(&mut b, elf::PT_LOAD, r | w, 0, END, page_size);
    phdr(&mut b, elf::PT_DYNAMIC, r | w, DYNAMIC, STRTAB - DYNAMIC, 8);
    phdr(&mut b, elf::PT_GNU_STACK, r | w | x, 0, 0, 16);
    // Dynamic section.
    for (tag, val) in [
        (elf::DT_HASH, HASH),
        (elf::DT_STRTAB, STRTAB),
        (elf::DT_SYMTAB, SYMTAB),
        (elf::DT_STRSZ, 1),
        (elf::DT_SYMENT, 24),
        (elf::DT_NULL, 0),
    ] {
        u64_(&mut b, u64::from(tag));
        u64_(&mut b, val);
    }
    b.resize(SYMTAB as usize, 0); // the string table: "\0", padded
    b.resize(HASH as usize, 0); // the null symbol
    for v in [1, 1, 0, 0] {
        u32_(&mut b, v); // nbucket, nchain, bucket[0], chain[0]
    }
    debug_assert_eq!(b.len() as u64, END);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_plans_as_a_library_asking_for_an_executable_stack() {
        for page in [4096, 16384, 65536] {
            let bytes = execstack_object(elf::EM_X86_64, page);
            let plan = crate::plan::Plan::for_machine(&bytes, bytes.len() as u64, page, crate::Machine::X86_64)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(plan.exec_stack);
            assert_eq!(plan.segments.len(), 1);
            assert_eq!(plan.dynamic, Some((64 + 3 * 56, 6 * 16)));
        }
    }
}
