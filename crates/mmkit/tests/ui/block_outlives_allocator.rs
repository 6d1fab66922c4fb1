// A `MapBlock` borrows its allocator: it cannot outlive it (the allocator's drop unmaps).
fn main() {
    let block = {
        let arena = mmkit::alloc::MapAlloc::new();
        arena.alloc_block(1 << 20).unwrap()
    };
    let _ = block[0];
}
