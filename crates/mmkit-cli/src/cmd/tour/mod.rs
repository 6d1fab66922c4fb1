//! `mmkit tour`: demonstrates and measures mmap on this machine.
//!
//! Each theme is a section in its own module; every section returns facts that print as an
//! aligned report or, with `--json`, as one JSON document.

use crate::report::Section;

mod anon;
mod elf;
mod file;
mod mmio;
mod pager;

/// Arguments of `mmkit tour`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the temporary file used by the file-backed section (e.g. 256M, 1G, 4096).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub size: u64,
    /// Directory for temporary files (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Run only these sections (file, anon, elf, mmio, pager); default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Print one JSON document instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// Parses sizes like `4096`, `64K`, `256M`, `1G` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let unit = s[i..].trim_end_matches(['i', 'B', 'b']).to_ascii_uppercase();
            let mult = match unit.as_str() {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(format!("unknown size unit in {s:?} (use K, M, G or T)")),
            };
            (&s[..i], mult)
        }
    };
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {s:?}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} overflows"))
}

type SectionFn = fn(&Args) -> anyhow::Result<Section>;

const SECTIONS: &[(&str, SectionFn)] = &[
    ("file", file::section),
    ("anon", anon::section),
    ("elf", elf::section),
    ("mmio", mmio::section),
    ("pager", pager::section),
];

/// Runs `mmkit tour`.
pub fn run(args: Args) -> anyhow::Result<()> {
    for name in &args.only {
        if !SECTIONS.iter().any(|(id, _)| id == name) {
            anyhow::bail!("unknown tour section {name:?}");
        }
    }
    let mut sections = Vec::new();
    for (id, section) in SECTIONS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == id) {
            continue;
        }
        let s = section(&args)?;
        if !args.json {
            println!("{}", s.render());
        }
        sections.push(s);
    }
    if args.json {
        let doc = serde_json::json!({
            "sections": sections.iter().map(Section::to_json).collect::<Vec<_>>()
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("12345"), Ok(12345));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
