// The safe `Advice` (and so `advise` and `MapOptions::advice`) cannot ask for `MADV_DONTFORK`:
// it is `UncheckedAdvice::DontFork`, for the `unsafe` `advise_unchecked` only.
fn main() {
    let map = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon().unwrap();
    map.advise(.., mmkit::Advice::DontFork).unwrap();
}
