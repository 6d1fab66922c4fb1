//! The README's "A short tour of the API" stays the code that runs: every Rust block of that
//! section has an example program (`crates/*/examples/tour_*.rs`, run by `cargo test` through
//! their `#[cfg(test)]` tests), and every line of code in the block is in its example as
//! written (comments and whitespace aside, so rustfmt's line breaks do not count).

use std::path::Path;

/// The tour's Rust blocks, in order, and the example that runs each.
const EXAMPLES: [&str; 5] = [
    "mmkit/examples/tour_file.rs",
    "mmkit/examples/tour_anon.rs",
    "mmkit-elf/examples/tour_apk.rs",
    "mmkit-mmio/examples/tour_mmio.rs",
    "mmkit-pager/examples/tour_pager.rs",
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
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(crates.join("../README.md")).unwrap();
    let blocks = tour_blocks(&readme);
    assert_eq!(blocks.len(), EXAMPLES.len(), "one example per Rust block of the tour: {blocks:#?}");
    for (block, example) in blocks.iter().zip(EXAMPLES) {
        let source = std::fs::read_to_string(crates.join(example)).unwrap();
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
