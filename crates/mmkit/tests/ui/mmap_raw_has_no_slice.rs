// `MmapRaw` may be unreadable (any protection) or truncated under it: it hands out raw
// pointers only, never a slice.
fn main() {
    let raw = mmkit::MapOptions::new().len(mmkit::page_size()).protection(mmkit::Protection::NONE).map_anon_raw().unwrap();
    let bytes: &[u8] = &raw;
    let _ = bytes;
}
