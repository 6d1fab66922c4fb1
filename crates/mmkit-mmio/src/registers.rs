//! Register blocks: the [`Registers`] access trait, and typed registers described with
//! [`register_block!`](crate::register_block) and [`bitfields!`](crate::bitfields).
//!
//! A register block names each register with its offset, its value type (which fixes the
//! access width) and its access: [`ReadOnly`], [`WriteOnly`] or [`ReadWrite`], each either
//! [`Pure`] (reading changes nothing) or with [`SideEffects`] (reading pops a FIFO, clears a
//! status, ...). The block is checked against the region when it is created — every register
//! must fit and have a width the device accepts — so each later access cannot fail on bounds or
//! width. What the types allow:
//!
//! | access | `read` | `write` | `modify`, `set` (read-modify-write) | in `dump` |
//! |---|---|---|---|---|
//! | `ReadOnly<T>` | yes | – | – | yes |
//! | `ReadOnly<T, SideEffects>` | yes | – | – | no |
//! | `WriteOnly<T>` | – | yes | – | no |
//! | `ReadWrite<T>` | yes | yes | yes | yes |
//! | `ReadWrite<T, SideEffects>` | yes | yes | – | no |
#![deny(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;

use crate::access::Width;
use crate::error::{Error, ErrorKind, Result};
pub use crate::region::Registers;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// An unsigned integer that is one register access: `u8`, `u16`, `u32` or `u64`.
pub trait Primitive: sealed::Sealed + Copy + Eq + fmt::Debug + fmt::LowerHex {
    /// The access width of this type.
    const WIDTH: Width;
    /// Truncates a zero-extended access result to this type.
    fn from_u64(value: u64) -> Self;
    /// Zero-extends to `u64`.
    fn to_u64(self) -> u64;
}

macro_rules! primitive {
    ($($t:ty => $w:ident),*) => {$(
        impl Primitive for $t {
            const WIDTH: Width = Width::$w;
            fn from_u64(value: u64) -> Self { value as $t }
            fn to_u64(self) -> u64 { self as u64 }
        }
        impl RegisterValue for $t {
            type Raw = $t;
            fn from_raw(raw: $t) -> Self { raw }
            fn to_raw(self) -> $t { self }
        }
    )*};
}
primitive!(u8 => W8, u16 => W16, u32 => W32, u64 => W64);

/// A value held in a register: a [`Primitive`] or a type made with
/// [`bitfields!`](crate::bitfields).
pub trait RegisterValue: Copy {
    /// The primitive the register is accessed as (fixes the width).
    type Raw: Primitive;
    /// Builds the value from the register's bits.
    fn from_raw(raw: Self::Raw) -> Self;
    /// The register's bits.
    fn to_raw(self) -> Self::Raw;
}

/// Marks a register whose reads change nothing on the device.
#[derive(Debug, Clone, Copy)]
pub enum Pure {}

/// Marks a register whose reads change device state (pop a FIFO, clear a status): it is
/// never read behind the driver's back (no `modify`, not in `dump`).
#[derive(Debug, Clone, Copy)]
pub enum SideEffects {}

mod effects {
    pub trait Effects {
        const SIDE_EFFECTS: bool;
    }
    impl Effects for super::Pure {
        const SIDE_EFFECTS: bool = false;
    }
    impl Effects for super::SideEffects {
        const SIDE_EFFECTS: bool = true;
    }
}
use effects::Effects;

/// A read-only register holding a `T`; `E` is [`Pure`] (default) or [`SideEffects`].
#[derive(Debug)]
pub struct ReadOnly<T, E = Pure>(PhantomData<(T, E)>);
/// A write-only register holding a `T`.
#[derive(Debug)]
pub struct WriteOnly<T>(PhantomData<T>);
/// A read-write register holding a `T`; `E` is [`Pure`] (default) or [`SideEffects`].
#[derive(Debug)]
pub struct ReadWrite<T, E = Pure>(PhantomData<(T, E)>);

/// What a register's access marker says about it.
pub trait RegisterSpec {
    /// The value type.
    type Value: RegisterValue;
    /// Whether it can be read.
    const READABLE: bool;
    /// Whether it can be written.
    const WRITABLE: bool;
    /// Whether reading it has side effects.
    const READ_SIDE_EFFECTS: bool;
}
/// Registers that can be read.
pub trait Readable: RegisterSpec {}
/// Registers that can be written.
pub trait Writable: RegisterSpec {}
/// Registers whose reads have no side effects (may be read-modify-written and dumped).
pub trait PureRead: Readable {}

impl<T: RegisterValue, E: Effects> RegisterSpec for ReadOnly<T, E> {
    type Value = T;
    const READABLE: bool = true;
    const WRITABLE: bool = false;
    const READ_SIDE_EFFECTS: bool = E::SIDE_EFFECTS;
}
impl<T: RegisterValue> RegisterSpec for WriteOnly<T> {
    type Value = T;
    const READABLE: bool = false;
    const WRITABLE: bool = true;
    const READ_SIDE_EFFECTS: bool = false;
}
impl<T: RegisterValue, E: Effects> RegisterSpec for ReadWrite<T, E> {
    type Value = T;
    const READABLE: bool = true;
    const WRITABLE: bool = true;
    const READ_SIDE_EFFECTS: bool = E::SIDE_EFFECTS;
}
impl<T: RegisterValue, E: Effects> Readable for ReadOnly<T, E> {}
impl<T: RegisterValue> PureRead for ReadOnly<T, Pure> {}
impl<T: RegisterValue> Writable for WriteOnly<T> {}
impl<T: RegisterValue, E: Effects> Readable for ReadWrite<T, E> {}
impl<T: RegisterValue, E: Effects> Writable for ReadWrite<T, E> {}
impl<T: RegisterValue> PureRead for ReadWrite<T, Pure> {}

/// One register of a block, as listed in the block's `LAYOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterInfo {
    /// The register's name in the block.
    pub name: &'static str,
    /// Byte offset in the block.
    pub offset: usize,
    /// Access width.
    pub width: Width,
    /// Whether it can be read.
    pub readable: bool,
    /// Whether it can be written.
    pub writable: bool,
    /// Whether reading it has side effects.
    pub read_side_effects: bool,
}

impl RegisterInfo {
    /// Describes the register `name` at `offset` with access marker `S`.
    pub const fn of<S: RegisterSpec>(name: &'static str, offset: usize) -> Self {
        RegisterInfo {
            name,
            offset,
            width: <<S::Value as RegisterValue>::Raw as Primitive>::WIDTH,
            readable: S::READABLE,
            writable: S::WRITABLE,
            read_side_effects: S::READ_SIDE_EFFECTS,
        }
    }

    /// Whether `dump` reads it (readable without side effects).
    pub const fn dumpable(&self) -> bool {
        self.readable && !self.read_side_effects
    }
}

/// Checks every register of `layout` against `regs` (bounds, alignment, width rules).
///
/// Called by the `new` function that [`register_block!`](crate::register_block) generates.
pub fn check_layout<R: Registers + ?Sized>(regs: &R, block: &str, layout: &[RegisterInfo]) -> Result<()> {
    for info in layout {
        regs.check("map register block on", info.offset, info.width)
            .map_err(|e| e.context(format_args!("register {block}::{}", info.name)))?;
    }
    Ok(())
}

/// The width rules a register block's layout states: inside each register only its width is
/// allowed; offsets between registers accept any width. Named `name`, so the rules are
/// [known](crate::AccessRules::is_known). `register_block!` generates `access_rules()` with it.
///
/// Registers may overlap (a 32-bit register and its low byte as an 8-bit one): a byte where
/// several lie allows each of their widths, so every register of the layout passes the rules.
pub fn layout_rules(name: &str, layout: &[RegisterInfo]) -> crate::AccessRules {
    let span = |r: &RegisterInfo| (r.offset as u64, (r.offset as u64).saturating_add(r.width.bytes() as u64));
    let mut bounds: Vec<u64> = layout.iter().flat_map(|r| <[u64; 2]>::from(span(r))).collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds.windows(2).fold(crate::AccessRules::any().named(name), |rules, w| {
        let widths = layout
            .iter()
            .filter(|r| (span(r).0..span(r).1).contains(&w[0]))
            .fold(crate::Widths::NONE, |acc, r| acc.and(r.width));
        if widths == crate::Widths::NONE {
            rules
        } else {
            rules.allow(w[0]..w[1], widths)
        }
    })
}

/// The layout of a register block: implemented by [`register_block!`](crate::register_block).
pub trait Layout {
    /// The block's name (for error messages).
    const NAME: &'static str;
    /// Every register of the block.
    const LAYOUT: &'static [RegisterInfo];
}

/// Whether `layout` has a register at `offset` of `width` (usable in constants).
pub const fn layout_has(layout: &[RegisterInfo], offset: usize, width: Width) -> bool {
    let mut i = 0;
    while i < layout.len() {
        if layout[i].offset == offset && layout[i].width as u8 == width as u8 {
            return true;
        }
        i += 1;
    }
    false
}

/// A register space whose every register of layout `L` was checked — in bounds, aligned, of a
/// width the device accepts — once, when it was created. It hands out [`Reg`] handles only for
/// those registers (a compile-time check), so typed accesses cost no run-time checks.
///
/// ```compile_fail
/// use mmkit_mmio::{register_block, FakeRegisters, ReadOnly};
/// register_block! {
///     /// One register.
///     pub struct One {
///         /// The only register.
///         0x0 => id: ReadOnly<u32>,
///     }
/// }
/// let checked = mmkit_mmio::registers::Checked::<_, One<FakeRegisters>>::new(FakeRegisters::new(4)).unwrap();
/// // 0x100 is not a register of `One`: this does not compile.
/// let _ = checked.reg::<ReadOnly<u32>, 0x100>("bogus").read();
/// ```
pub struct Checked<R, L> {
    regs: R,
    layout: PhantomData<fn() -> L>,
}

impl<R: Registers, L: Layout> Checked<R, L> {
    /// Checks every register of `L` against `regs`.
    pub fn new(regs: R) -> Result<Self> {
        check_layout(&regs, L::NAME, L::LAYOUT)?;
        Ok(Checked { regs, layout: PhantomData })
    }

    /// The register space.
    pub fn registers(&self) -> &R {
        &self.regs
    }

    /// Gives back the register space.
    pub fn into_inner(self) -> R {
        self.regs
    }

    /// The register of `L` at `OFFSET` with access `S`; a register that is not in the layout
    /// (with `S`'s width) does not compile.
    #[inline]
    pub fn reg<S: RegisterSpec, const OFFSET: usize>(&self, name: &'static str) -> Reg<'_, R, S> {
        const {
            assert!(
                layout_has(L::LAYOUT, OFFSET, <<S::Value as RegisterValue>::Raw as Primitive>::WIDTH),
                "the register is not in the checked layout"
            )
        };
        Reg { regs: &self.regs, offset: OFFSET, name, spec: PhantomData }
    }
}

impl<R: fmt::Debug, L> fmt::Debug for Checked<R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.regs.fmt(f)
    }
}

/// One value read by a register block's `dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpedRegister {
    /// The register.
    pub info: RegisterInfo,
    /// Its value, zero-extended.
    pub value: u64,
}

/// Reads every side-effect-free readable register of `layout`.
pub fn dump_layout<R: Registers + ?Sized>(regs: &R, layout: &[RegisterInfo]) -> Result<Vec<DumpedRegister>> {
    layout
        .iter()
        .filter(|info| info.dumpable())
        .map(|info| Ok(DumpedRegister { info: *info, value: regs.read(info.offset, info.width)? }))
        .collect()
}

/// A handle to one typed register of a block; what it allows follows from its marker `S`.
///
/// Only a [`Checked`] register space hands them out, for registers of its validated layout, so
/// their accesses need no further checks.
///
/// A handle borrows its block, and a block over `&region` borrows the region, so neither can be
/// dropped (unmapping the registers) while a handle is alive:
///
/// ```compile_fail,E0505
/// use mmkit_mmio::{register_block, FakeRegisters, ReadOnly};
/// register_block! {
///     /// One register.
///     pub struct One {
///         /// The only register.
///         0x0 => id: ReadOnly<u32>,
///     }
/// }
/// let block = One::new(FakeRegisters::new(4)).unwrap();
/// let id = block.id();
/// drop(block); // the registers go away: does not compile
/// let _ = id.read();
/// ```
///
/// ```compile_fail,E0505
/// use mmkit_mmio::{register_block, FakeRegisters, ReadOnly};
/// register_block! {
///     /// One register.
///     pub struct One {
///         /// The only register.
///         0x0 => id: ReadOnly<u32>,
///     }
/// }
/// let region = FakeRegisters::new(4);
/// let block = One::new(&region).unwrap();
/// drop(region); // unmapped under the block: does not compile
/// let _ = block.id().read();
/// ```
pub struct Reg<'a, R: ?Sized, S> {
    pub(crate) regs: &'a R,
    pub(crate) offset: usize,
    pub(crate) name: &'static str,
    spec: PhantomData<S>,
}

impl<R: ?Sized, S> fmt::Debug for Reg<'_, R, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reg").field("name", &self.name).field("offset", &self.offset).finish()
    }
}

impl<'a, R: Registers + ?Sized, S: RegisterSpec> Reg<'a, R, S> {
    /// The register's byte offset.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The register's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn width() -> Width {
        <<S::Value as RegisterValue>::Raw as Primitive>::WIDTH
    }

    /// Reads the register.
    #[inline]
    pub fn read(&self) -> Result<S::Value>
    where
        S: Readable,
    {
        self.read_raw().map(S::Value::from_raw)
    }

    /// Writes the register.
    #[inline]
    pub fn write(&self, value: S::Value) -> Result<()>
    where
        S: Writable,
    {
        self.write_raw(value.to_raw())
    }

    /// Reads, applies `f`, writes back (only for registers whose reads are [`Pure`]).
    pub fn modify(&self, f: impl FnOnce(S::Value) -> S::Value) -> Result<()>
    where
        S: PureRead + Writable,
    {
        let value = self.read()?;
        self.write(f(value))
    }

    /// Reads the register and extracts `field`.
    pub fn get(&self, field: Field<S::Value>) -> Result<u64>
    where
        S: Readable,
    {
        Ok(field.get(self.read_raw()?.to_u64()))
    }

    /// Sets `field` to `value` by read-modify-write; a `value` wider than the field is an
    /// error.
    pub fn set(&self, field: Field<S::Value>, value: u64) -> Result<()>
    where
        S: PureRead + Writable,
    {
        if value > field.max() {
            return Err(Error::new("set field of", ErrorKind::InvalidArgument)
                .with_target(self.name)
                .with_detail(format!("value {value:#x} does not fit in {} bits", field.bits())));
        }
        let raw = self.read_raw()?.to_u64();
        self.write_raw(Primitive::from_u64(field.insert(raw, value)))
    }
}

/// A bit field of a register value of type `V`: `bits` bits starting at bit `shift`.
///
/// Made by [`bitfields!`](crate::bitfields); tied to its value type so fields of one register
/// cannot be applied to another.
pub struct Field<V> {
    shift: u32,
    bits: u32,
    value: PhantomData<fn() -> V>,
}

impl<V> Clone for Field<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Field<V> {}
impl<V> PartialEq for Field<V> {
    fn eq(&self, other: &Self) -> bool {
        self.shift == other.shift && self.bits == other.bits
    }
}
impl<V> Eq for Field<V> {}
impl<V> fmt::Debug for Field<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Field[{}..={}]", self.shift, self.shift + self.bits - 1)
    }
}

impl<V> Field<V> {
    /// The field of bits `lo..=hi` (`hi` defaults to `lo`: one bit), given as `&[]` or
    /// `&[hi]`. Panics (at compile time in a `const`) when `hi < lo` or `hi > 63`.
    pub const fn from_spec(lo: u32, hi: &[u32]) -> Self {
        Self::from_spec_in(lo, hi, 64)
    }

    /// [`Field::from_spec`] for a register of `register_bits` bits: also panics (at compile
    /// time in a `const`) when the field reaches past the register's top bit, whose bits
    /// [`bitfields!`](crate::bitfields) could not store.
    pub const fn from_spec_in(lo: u32, hi: &[u32], register_bits: u32) -> Self {
        let hi = if hi.is_empty() { lo } else { hi[0] };
        assert!(hi >= lo && hi < 64, "a bit field needs lo <= hi <= 63");
        assert!(hi < register_bits, "a bit field reaches past the register's top bit");
        Field { shift: lo, bits: hi - lo + 1, value: PhantomData }
    }

    /// The lowest bit.
    pub const fn shift(self) -> u32 {
        self.shift
    }

    /// The number of bits.
    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// The largest value the field holds.
    pub const fn max(self) -> u64 {
        if self.bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        }
    }

    /// The field's bits in place.
    pub const fn mask(self) -> u64 {
        self.max() << self.shift
    }

    /// Extracts the field from `raw`.
    pub const fn get(self, raw: u64) -> u64 {
        (raw >> self.shift) & self.max()
    }

    /// `raw` with the field replaced by `value` (masked to the field's width).
    pub const fn insert(self, raw: u64, value: u64) -> u64 {
        (raw & !self.mask()) | ((value & self.max()) << self.shift)
    }
}

/// Describes a block of typed registers over any [`Registers`].
///
/// Each register is `offset => name: Access<Type>`, where `Access` is [`ReadOnly`],
/// [`WriteOnly`] or [`ReadWrite`] (optionally `ReadOnly<T, SideEffects>`), and `Type` a
/// primitive (`u8` .. `u64`, which fixes the width) or a [`bitfields!`](crate::bitfields) type.
/// The generated struct is generic over the register space (default
/// [`MmioRegion`](crate::MmioRegion)); its `new` checks the whole layout against the region,
/// and one method per register returns a [`Reg`] handle.
///
/// ```
/// use mmkit_mmio::{bitfields, register_block, FakeRegisters, ReadOnly, ReadWrite, WriteOnly};
///
/// bitfields! {
///     /// Control register.
///     pub struct Control(u32) {
///         /// Start the engine.
///         START: 0;
///         /// Engine speed.
///         SPEED: 4..=7;
///     }
/// }
///
/// register_block! {
///     /// A tiny device.
///     pub struct Tiny {
///         /// Identification.
///         0x00 => id: ReadOnly<u32>,
///         /// Control.
///         0x04 => control: ReadWrite<Control>,
///         /// Doorbell.
///         0x08 => doorbell: WriteOnly<u32>,
///     }
/// }
///
/// let fake = FakeRegisters::new(0x10);
/// fake.poke(0x00, 0xabcd);
/// let tiny = Tiny::new(fake)?;
/// assert_eq!(tiny.id().read()?, 0xabcd);
/// tiny.control().set(Control::SPEED, 5)?;
/// tiny.control().modify(|c| c.with(Control::START, 1))?;
/// assert_eq!(tiny.control().read()?.get(Control::SPEED), 5);
/// assert_eq!(tiny.registers().peek(0x04), 0x51);
///
/// // Checked at creation: a block that does not fit its region is an error.
/// assert!(Tiny::new(FakeRegisters::new(0x8)).is_err());
/// # Ok::<(), mmkit_mmio::Error>(())
/// ```
#[macro_export]
macro_rules! register_block {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$rmeta:meta])*
                $offset:literal => $reg:ident : $spec:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name<R: $crate::Registers = $crate::MmioRegion> {
            regs: $crate::registers::Checked<R, $name<R>>,
        }

        impl<R: $crate::Registers> $crate::registers::Layout for $name<R> {
            const NAME: &'static str = stringify!($name);
            const LAYOUT: &'static [$crate::RegisterInfo] = &[
                $( $crate::RegisterInfo::of::<$spec>(stringify!($reg), $offset) ),*
            ];
        }

        impl<R: $crate::Registers> $name<R> {
            /// Every register of the block: name, offset, width and access.
            pub const LAYOUT: &'static [$crate::RegisterInfo] =
                <Self as $crate::registers::Layout>::LAYOUT;

            /// The width rules the layout states (each register answers only its own
            /// width), for a raw region of the same device:
            /// [`MmioRegion::set_rules`](crate::MmioRegion::set_rules).
            pub fn access_rules() -> $crate::AccessRules {
                $crate::registers::layout_rules(stringify!($name), Self::LAYOUT)
            }

            /// Wraps `regs` after checking that every register fits, is aligned and has a
            /// width the device accepts.
            pub fn new(regs: R) -> ::core::result::Result<Self, $crate::Error> {
                Ok($name { regs: $crate::registers::Checked::new(regs)? })
            }

            /// The underlying register space.
            pub fn registers(&self) -> &R {
                self.regs.registers()
            }

            /// Gives back the underlying register space.
            pub fn into_registers(self) -> R {
                self.regs.into_inner()
            }

            /// Reads every register that is readable without side effects.
            pub fn dump(&self) -> ::core::result::Result<
                ::std::vec::Vec<$crate::registers::DumpedRegister>,
                $crate::Error,
            > {
                $crate::registers::dump_layout(self.regs.registers(), Self::LAYOUT)
            }

            $(
                $(#[$rmeta])*
                #[inline]
                pub fn $reg(&self) -> $crate::Reg<'_, R, $spec> {
                    self.regs.reg::<$spec, $offset>(stringify!($reg))
                }
            )*
        }

        impl<R: $crate::Registers + ::core::fmt::Debug> ::core::fmt::Debug for $name<R> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(stringify!($name)).field("regs", &self.regs).finish()
            }
        }
    };
}

/// Describes a register value made of bit fields.
///
/// Fields are `NAME: lo;` (one bit) or `NAME: lo..=hi;`; each becomes an associated
/// [`Field`] constant. The type is a newtype over its primitive with `get`, `with`, `set`
/// and `is_set`, and can be the value of a [`register_block!`](crate::register_block)
/// register.
///
/// ```
/// mmkit_mmio::bitfields! {
///     /// Status.
///     pub struct Status(u32) {
///         /// Busy.
///         BUSY: 0;
///         /// Error code.
///         CODE: 8..=11;
///     }
/// }
/// let s = Status(0).with(Status::CODE, 0xa).with(Status::BUSY, 1);
/// assert_eq!(s.0, 0xa01);
/// assert!(s.is_set(Status::BUSY));
/// assert_eq!(s.get(Status::CODE), 0xa);
/// ```
///
/// A field must fit its register: bits 28..=35 of a `u32` do not compile (their top bits
/// could never be stored).
///
/// ```compile_fail
/// mmkit_mmio::bitfields! {
///     /// Too wide.
///     pub struct Wide(u32) {
///         /// Past bit 31.
///         STRADDLE: 28..=35;
///     }
/// }
/// ```
#[macro_export]
macro_rules! bitfields {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($raw:ty) {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $lo:literal $(..= $hi:literal)?
            );* $(;)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        $vis struct $name(pub $raw);

        impl $name {
            $(
                $(#[$fmeta])*
                pub const $field: $crate::Field<$name> =
                    $crate::Field::from_spec_in($lo, &[$($hi)?], <$raw>::BITS);
            )*

            /// Every field with its name.
            pub const FIELDS: &'static [(&'static str, $crate::Field<$name>)] =
                &[$( (stringify!($field), $name::$field) ),*];

            /// The value of `field`.
            pub fn get(self, field: $crate::Field<$name>) -> $raw {
                field.get(self.0 as u64) as $raw
            }

            /// A copy with `field` set to `value` (masked to the field's width).
            #[must_use]
            pub fn with(self, field: $crate::Field<$name>, value: $raw) -> Self {
                $name(field.insert(self.0 as u64, value as u64) as $raw)
            }

            /// Sets `field` to `value` (masked to the field's width).
            pub fn set(&mut self, field: $crate::Field<$name>, value: $raw) {
                *self = self.with(field, value);
            }

            /// Whether any bit of `field` is set.
            pub fn is_set(self, field: $crate::Field<$name>) -> bool {
                field.get(self.0 as u64) != 0
            }
        }

        // Evaluates every field's constant, so a field past the register's width is a
        // compile error even when nothing names it.
        const _: () = { $( let _ = $name::$field; )* };

        impl $crate::RegisterValue for $name {
            type Raw = $raw;
            fn from_raw(raw: $raw) -> Self {
                $name(raw)
            }
            fn to_raw(self) -> $raw {
                self.0
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                let mut s = f.debug_struct(stringify!($name));
                s.field("raw", &format_args!("{:#x}", self.0));
                for (name, field) in Self::FIELDS {
                    s.field(name, &field.get(self.0 as u64));
                }
                s.finish()
            }
        }
    };
}
