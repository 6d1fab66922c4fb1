// `MADV_WIPEONFORK` zeroes the range in a forked child, behind the references the child
// inherits from the parent: a `&NonZeroU8` validated before the fork reads 0 in a fork probe.
// Calling `wipe_on_fork` needs `unsafe`.
use zerocopy::TryFromBytes;

fn main() {
    let mut mem = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
    mem[0] = 1;
    mem.wipe_on_fork(..).unwrap();
    let nz = std::num::NonZeroU8::try_ref_from_bytes(&mem[..1]).unwrap();
    let _zero = mmkit::process::in_forked_child_single_threaded(|| u64::from(nz.get()));
}
