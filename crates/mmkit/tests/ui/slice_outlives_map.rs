// A slice of a map cannot outlive it (the bytes are unmapped on drop).
fn main() {
    let bytes: &[u8] = {
        let map = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
        &map[..]
    };
    let _ = bytes[0];
}
