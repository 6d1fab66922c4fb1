// A `GuardedMmap` never hands out its mapping mutably: a resize or protect would move the tail
// guard into the usable bytes or make them unwritable.
fn main() {
    let mut g = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon_guarded(1).unwrap();
    let _ = g.mapping_mut();
}
