//! The README's "A short tour of the API" stays the code that runs: every Rust block of that
//! section has an example program (`crates/*/examples/tour_*.rs`, run by `cargo test` through
//! their `#[cfg(test)]` tests), and every line of code in the block is in its example as
//! written (comments and whitespace aside, so rustfmt's line breaks do not count).

/// The README, compiled in: the test also runs where the source tree is not (the VMs).
const README: &str = include_str!("../../../README.md");

/// The tour's Rust blocks, in order, and the example that runs each (its path and source,
/// compiled in as the README is).
const EXAMPLES: [(&str, &str); 5] = [
    ("mmkit/examples/tour_file.rs", include_str!("../examples/tour_file.rs")),
    ("mmkit/examples/tour_anon.rs", include_str!("../examples/tour_anon.rs")),
    ("mmkit-elf/examples/tour_apk.rs", include_str!("../../mmkit-elf/examples/tour_apk.rs")),
    ("mmkit-mmio/examples/tour_mmio.rs", include_str!("../../mmkit-mmio/examples/tour_mmio.rs")),
    ("mmkit-pager/examples/tour_pager.rs", include_str!("../../mmkit-pager/examples/tour_pager.rs")),
];

/// A line without its `//` comment and without whitespace.
fn code(line: &str) -> String {
    let line = line.find("//").map_or(line, |i| &line[..i]);
    line.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The Rust blocks of the README's tour section.
fn tour_blocks(readme: &str) -> Vec<Vec<String>> {
    let start = readme.find("## A short tour of the API").expect("the README has its tour section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), line) => block.push(line.to_owned()),
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_line_of_the_readme_tour_is_in_the_example_that_runs_it() {
    let blocks = tour_blocks(README);
    assert_eq!(blocks.len(), EXAMPLES.len(), "one example per Rust block of the tour: {blocks:#?}");
    for (block, (example, source)) in blocks.iter().zip(EXAMPLES) {
        let source: String = source.lines().map(code).collect();
        for line in block {
            let want = code(line);
            assert!(
                want.is_empty() || source.contains(&want),
                "the README's tour line\n    {line}\nis not in crates/{example} (change both together)"
            );
        }
    }
}

#[test]
fn the_checker_sees_a_changed_line() {
    let readme = "## A short tour of the API\n```rust\nlet a = f(1); // one\n```\n## Next\n```rust\nx\n```\n";
    let blocks = tour_blocks(readme);
    assert_eq!(blocks, [vec!["let a = f(1); // one".to_owned()]]);
    let source: String = "let a =\n    f(2); // one".lines().map(code).collect();
    assert!(!source.contains(&code(&blocks[0][0])));
    let source: String = "let a =\n    f(1);".lines().map(code).collect();
    assert!(source.contains(&code(&blocks[0][0])));
}

/// The docs users copy from: the README, the tour's examples and the pager's crate and module
/// docs, compiled in.
const COPIED_DOCS: [(&str, &str); 4] = [
    ("README.md", README),
    ("mmkit-pager/examples/tour_pager.rs", EXAMPLES[4].1),
    ("mmkit-pager/src/lib.rs", include_str!("../../mmkit-pager/src/lib.rs")),
    ("mmkit-pager/src/seekable.rs", include_str!("../../mmkit-pager/src/seekable.rs")),
];

/// Regression: the pager's docs sized a region with `source.len() as usize`, which on a 32-bit
/// target silently truncates a `u64` length past 4 GiB (a region of the low bits, the rest of
/// the file unmapped); copied code converts with `usize::try_from` and a clear error.
#[test]
fn copied_docs_convert_a_u64_length_with_a_check() {
    for (name, text) in COPIED_DOCS {
        for (n, line) in text.lines().enumerate() {
            assert!(!line.contains("len() as usize"), "{name}:{}: {line}\nuse usize::try_from", n + 1);
        }
    }
}
