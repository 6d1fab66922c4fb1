// A mutable typed view writes `T`s into the mapping, whose bytes are then read as plain bytes
// (`&[u8]`, the file): a `T` with interior padding would leave uninitialized bytes there, so it
// must be `IntoBytes` (no padding), which this struct is not.
#[derive(zerocopy::FromBytes, zerocopy::KnownLayout)]
#[repr(C)]
struct Padded {
    a: u8,
    b: u32,
}

fn main() {
    let mut map = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
    let records: &mut [Padded] = map.as_mut_slice_of::<Padded>().unwrap();
    records[0].a = 1;
}
