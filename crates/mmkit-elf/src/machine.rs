//! The machines the loader knows: `e_machine`, relocation types and the TLS layout.
//!
//! The planner plans for any [`Machine`] on any host ([`Plan::for_machine`](crate::Plan::for_machine)),
//! so aarch64 images can be checked on an x86_64 build machine; the loader relocates and runs
//! images of the machine it was built for ([`Machine::host`]).
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use object::elf;

/// A processor architecture the loader relocates for (`e_machine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Machine {
    /// `EM_X86_64` (62).
    X86_64,
    /// `EM_AARCH64` (183).
    Aarch64,
}

/// Where a thread's static TLS blocks sit relative to the thread pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsVariant {
    /// Variant I (aarch64, arm, riscv): the thread pointer points at a thread control block
    /// (16 bytes on aarch64), and the blocks follow it (positive offsets).
    I {
        /// Bytes of the thread control block between the thread pointer and the first block.
        tcb_size: u64,
    },
    /// Variant II (x86, x86_64): the blocks lie below the thread pointer (negative offsets).
    II,
}

/// What a relocation does, whatever its machine's number for it (crate-internal: the shared
/// relocation pass matches on this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelocKind {
    None,
    /// `B + A`.
    Relative,
    /// `S + A`, 64 bits.
    Abs64,
    /// `S` (+ `A` on aarch64): a GOT entry.
    GlobDat,
    /// `S` (+ `A` on aarch64): a PLT GOT entry, bound eagerly.
    JumpSlot,
    /// The result of calling the resolver at `B + A`.
    Irelative,
    /// The TLS module id of `S`.
    DtpMod64,
    /// The offset of `S + A` in its module's block.
    DtpRel64,
    /// The offset of `S + A` from the thread pointer (initial-exec; needs static TLS).
    TpRel64,
    /// A TLS descriptor (two words: resolver, argument).
    TlsDesc,
    /// A copy relocation (executables only).
    Copy,
    /// Anything else (PC-relative, 32-bit, ...): a text relocation or a type the loader lacks.
    Other,
}

impl RelocKind {
    /// Is this a symbol reference bound through symbol lookup to an address (not TLS)?
    pub(crate) fn binds_address(self) -> bool {
        matches!(self, RelocKind::Abs64 | RelocKind::GlobDat | RelocKind::JumpSlot)
    }
}

/// `(number, name, kind)` of every x86_64 relocation type the loader names.
const X86_64_RELOCS: &[(u32, &str, RelocKind)] = &[
    (elf::R_X86_64_NONE, "R_X86_64_NONE", RelocKind::None),
    (elf::R_X86_64_64, "R_X86_64_64", RelocKind::Abs64),
    (elf::R_X86_64_PC32, "R_X86_64_PC32", RelocKind::Other),
    (elf::R_X86_64_GOT32, "R_X86_64_GOT32", RelocKind::Other),
    (elf::R_X86_64_PLT32, "R_X86_64_PLT32", RelocKind::Other),
    (elf::R_X86_64_COPY, "R_X86_64_COPY", RelocKind::Copy),
    (elf::R_X86_64_GLOB_DAT, "R_X86_64_GLOB_DAT", RelocKind::GlobDat),
    (elf::R_X86_64_JUMP_SLOT, "R_X86_64_JUMP_SLOT", RelocKind::JumpSlot),
    (elf::R_X86_64_RELATIVE, "R_X86_64_RELATIVE", RelocKind::Relative),
    (elf::R_X86_64_32, "R_X86_64_32", RelocKind::Other),
    (elf::R_X86_64_32S, "R_X86_64_32S", RelocKind::Other),
    (elf::R_X86_64_DTPMOD64, "R_X86_64_DTPMOD64", RelocKind::DtpMod64),
    (elf::R_X86_64_DTPOFF64, "R_X86_64_DTPOFF64", RelocKind::DtpRel64),
    (elf::R_X86_64_TPOFF64, "R_X86_64_TPOFF64", RelocKind::TpRel64),
    // Refused on x86_64 (no resolver there yet): see `applies_relocation`.
    (elf::R_X86_64_TLSDESC, "R_X86_64_TLSDESC", RelocKind::TlsDesc),
    (elf::R_X86_64_IRELATIVE, "R_X86_64_IRELATIVE", RelocKind::Irelative),
    (elf::R_X86_64_PC64, "R_X86_64_PC64", RelocKind::Other),
    (elf::R_X86_64_RELATIVE64, "R_X86_64_RELATIVE64", RelocKind::Other),
];

/// `(number, name, kind)` of every AArch64 relocation type the loader names.
const AARCH64_RELOCS: &[(u32, &str, RelocKind)] = &[
    (elf::R_AARCH64_NONE, "R_AARCH64_NONE", RelocKind::None),
    (elf::R_AARCH64_ABS64, "R_AARCH64_ABS64", RelocKind::Abs64),
    (elf::R_AARCH64_ABS32, "R_AARCH64_ABS32", RelocKind::Other),
    (elf::R_AARCH64_PREL64, "R_AARCH64_PREL64", RelocKind::Other),
    (elf::R_AARCH64_PREL32, "R_AARCH64_PREL32", RelocKind::Other),
    (elf::R_AARCH64_COPY, "R_AARCH64_COPY", RelocKind::Copy),
    (elf::R_AARCH64_GLOB_DAT, "R_AARCH64_GLOB_DAT", RelocKind::GlobDat),
    (elf::R_AARCH64_JUMP_SLOT, "R_AARCH64_JUMP_SLOT", RelocKind::JumpSlot),
    (elf::R_AARCH64_RELATIVE, "R_AARCH64_RELATIVE", RelocKind::Relative),
    (elf::R_AARCH64_TLS_DTPMOD, "R_AARCH64_TLS_DTPMOD64", RelocKind::DtpMod64),
    (elf::R_AARCH64_TLS_DTPREL, "R_AARCH64_TLS_DTPREL64", RelocKind::DtpRel64),
    (elf::R_AARCH64_TLS_TPREL, "R_AARCH64_TLS_TPREL64", RelocKind::TpRel64),
    (elf::R_AARCH64_TLSDESC, "R_AARCH64_TLSDESC", RelocKind::TlsDesc),
    (elf::R_AARCH64_IRELATIVE, "R_AARCH64_IRELATIVE", RelocKind::Irelative),
];

impl Machine {
    /// The machine this loader was built for, which [`Library::open`](crate::Library::open)
    /// relocates for; `None` on other architectures (the planner still works there).
    pub const HOST: Option<Machine> = if cfg!(target_arch = "x86_64") {
        Some(Machine::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Machine::Aarch64)
    } else {
        None
    };

    /// [`Machine::HOST`], or an [`ErrorKind::WrongMachine`] error naming this architecture.
    ///
    /// ```
    /// # #[cfg(target_arch = "x86_64")]
    /// assert_eq!(mmkit_elf::Machine::host()?, mmkit_elf::Machine::X86_64);
    /// # Ok::<(), mmkit_elf::Error>(())
    /// ```
    pub fn host() -> Result<Machine> {
        Machine::HOST.ok_or_else(|| {
            Error::new(
                "load",
                ErrorKind::WrongMachine,
                format!(
                    "mmkit-elf relocates x86_64 and aarch64 images; this is {}",
                    if cfg!(target_arch = "x86") { "i386" } else { std::env::consts::ARCH }
                ),
            )
        })
    }

    /// The machine an `e_machine` value names, if the loader knows it.
    pub fn from_e_machine(e_machine: u16) -> Option<Machine> {
        match e_machine {
            elf::EM_X86_64 => Some(Machine::X86_64),
            elf::EM_AARCH64 => Some(Machine::Aarch64),
            _ => None,
        }
    }

    /// Its `e_machine` value.
    pub fn e_machine(self) -> u16 {
        match self {
            Machine::X86_64 => elf::EM_X86_64,
            Machine::Aarch64 => elf::EM_AARCH64,
        }
    }

    /// The `EM_` constant's name.
    pub fn em_name(self) -> &'static str {
        match self {
            Machine::X86_64 => "EM_X86_64",
            Machine::Aarch64 => "EM_AARCH64",
        }
    }

    /// Where static TLS blocks sit relative to the thread pointer.
    pub fn tls_variant(self) -> TlsVariant {
        match self {
            Machine::X86_64 => TlsVariant::II,
            Machine::Aarch64 => TlsVariant::I { tcb_size: 16 },
        }
    }

    fn relocs(self) -> &'static [(u32, &'static str, RelocKind)] {
        match self {
            Machine::X86_64 => X86_64_RELOCS,
            Machine::Aarch64 => AARCH64_RELOCS,
        }
    }

    /// The name of relocation type `r_type` (`R_AARCH64_TLSDESC`), or `relocation type N`.
    ///
    /// ```
    /// use mmkit_elf::Machine;
    /// assert_eq!(Machine::Aarch64.relocation_name(1027), "R_AARCH64_RELATIVE");
    /// assert_eq!(Machine::X86_64.relocation_name(8), "R_X86_64_RELATIVE");
    /// ```
    pub fn relocation_name(self, r_type: u32) -> String {
        match self.relocs().iter().find(|r| r.0 == r_type) {
            Some(r) => r.1.to_owned(),
            None => format!("relocation type {r_type}"),
        }
    }

    pub(crate) fn relocation_kind(self, r_type: u32) -> RelocKind {
        self.relocs().iter().find(|r| r.0 == r_type).map_or(RelocKind::Other, |r| r.2)
    }

    /// Does the loader apply relocation type `r_type` of this machine in a library it maps?
    /// (`false` for copy relocations and text relocations. Initial-exec TLS (`TPREL64`) applies
    /// to a variable whose block is in static TLS: the library's own when it is built for it
    /// (`DF_STATIC_TLS`), or, on x86_64, one of glibc's static blocks (libc's `errno`); any
    /// other variable is an error at load.)
    pub fn applies_relocation(self, r_type: u32) -> bool {
        !matches!(self.relocation_kind(r_type), RelocKind::Copy | RelocKind::Other)
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.em_name(), self.e_machine())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_agree_with_the_abi() {
        assert_eq!(Machine::from_e_machine(62), Some(Machine::X86_64));
        assert_eq!(Machine::from_e_machine(183), Some(Machine::Aarch64));
        assert_eq!(Machine::from_e_machine(3), None);
        // From the AArch64 ELF ABI (IHI 0056): 1024..=1032 dynamic relocations.
        for (n, name) in [
            (257, "R_AARCH64_ABS64"),
            (1025, "R_AARCH64_GLOB_DAT"),
            (1026, "R_AARCH64_JUMP_SLOT"),
            (1027, "R_AARCH64_RELATIVE"),
            (1028, "R_AARCH64_TLS_DTPMOD64"),
            (1029, "R_AARCH64_TLS_DTPREL64"),
            (1030, "R_AARCH64_TLS_TPREL64"),
            (1031, "R_AARCH64_TLSDESC"),
            (1032, "R_AARCH64_IRELATIVE"),
        ] {
            assert_eq!(Machine::Aarch64.relocation_name(n), name);
        }
        assert!(Machine::Aarch64.applies_relocation(1031));
        assert!(Machine::Aarch64.applies_relocation(1030));
        assert!(!Machine::Aarch64.applies_relocation(1024), "R_AARCH64_COPY");
        assert!(!Machine::X86_64.applies_relocation(elf::R_X86_64_COPY));
        assert!(!Machine::X86_64.applies_relocation(elf::R_X86_64_PC32));
        assert_eq!(Machine::X86_64.relocation_name(9999), "relocation type 9999");
        assert_eq!(Machine::Aarch64.to_string(), "EM_AARCH64 (183)");
    }

    #[test]
    fn the_host_is_named_or_refused_with_its_architecture() {
        match Machine::HOST {
            Some(m) => assert_eq!(Machine::host().unwrap(), m),
            None => {
                let err = Machine::host().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::WrongMachine);
                let arch = if cfg!(target_arch = "x86") { "i386" } else { std::env::consts::ARCH };
                let want = format!("mmkit-elf relocates x86_64 and aarch64 images; this is {arch}");
                assert!(err.to_string().contains(&want), "{err}");
                // The planner refuses the same way: there is no host machine to plan for.
                let err = crate::Plan::new(&[0x7f, b'E', b'L', b'F'], 4, 4096).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::WrongMachine, "{err}");
            }
        }
    }
}
