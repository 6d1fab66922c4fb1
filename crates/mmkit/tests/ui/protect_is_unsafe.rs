// Removing a permission under a face (an `MmapMut` made read-only or `PROT_NONE`) would break
// its slices: `Mapping::protect` needs `unsafe`.
fn main() {
    let mut map = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
    map.mapping_mut().protect(.., mmkit::Protection::NONE).unwrap();
}
