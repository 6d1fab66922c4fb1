// A typed view is a reference to `T`s over mapped bytes, which the file (or memory another
// process writes) may hold in any pattern: only types valid for every pattern (`FromBytes`)
// qualify, and `bool` is not one (a byte 2 is neither `true` nor `false`).
fn main() {
    let map = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
    let flags: &[bool] = map.as_slice_of::<bool>().unwrap();
    let _ = flags;
}
