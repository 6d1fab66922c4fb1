// `GrowableMmap::grow` takes `&mut self`: no slice of the old length is alive across it.
fn main() {
    // SAFETY: not run; this file must not compile.
    let mut g = unsafe { mmkit::GrowableMmap::new(std::fs::File::open("/dev/null").unwrap(), 1 << 20) }.unwrap();
    let bytes: &[u8] = &g;
    g.grow(4096).unwrap();
    let _ = bytes.len();
}
