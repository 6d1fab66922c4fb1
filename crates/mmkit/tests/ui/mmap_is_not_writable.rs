// An `Mmap` is read-only: it has no `DerefMut`, so safe code cannot write its (possibly
// read-only) pages.
fn main() {
    let file = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: not run; this file must not compile.
    let map = unsafe { mmkit::Mmap::map(&file) }.unwrap();
    map[0] = 1;
}
