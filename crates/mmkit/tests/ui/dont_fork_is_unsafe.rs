// `MADV_DONTFORK` unmaps the range in a forked child while the child's copy of the face still
// points at it: calling `dont_fork` needs `unsafe`.
fn main() {
    let map = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
    map.dont_fork(..).unwrap();
}
