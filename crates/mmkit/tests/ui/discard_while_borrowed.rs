// Dropping pages (they read back as zeros) needs `&mut`: no slice may be alive meanwhile.
fn main() {
    let mut map = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
    let bytes: &[u8] = &map;
    map.discard(..).unwrap();
    let _ = bytes[0];
}
