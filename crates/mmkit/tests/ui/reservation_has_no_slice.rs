// A `Reservation` is mostly inaccessible address space: no slice of it exists in safe code.
fn main() {
    let r = mmkit::Reservation::new(mmkit::page_size()).unwrap();
    let first = r[0];
    let _ = first;
}
