//! `mmkit tour`: demonstrates and measures mmap on this machine.
//!
//! Each theme is a section in its own module; every section returns facts that print as an
//! aligned report or, with `--json`, as one JSON document. A section that fails is reported in
//! its place with its error (and `"error"` in the JSON), the others still run, and the tour
//! fails at the end with one line naming each failed section.

use crate::cli::report::Section;

mod anon;
mod elf;
mod file;
mod limits;
mod mmio;
mod pager;

pub use limits::{catch_termination_signals, check_interrupted, termination_signal};

/// Arguments of `mmkit tour`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the temporary file used by the file-backed section (e.g. 256M, 1G, 64K; at
    /// least 4 pages). The temp dir must have that much free space.
    #[arg(long, default_value = "256M", value_parser = parse_file_size)]
    pub size: u64,
    /// Directory for temporary files (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Run only these sections (file, anon, elf, mmio, pager); default: all.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(SECTION_NAMES))]
    pub only: Vec<String>,
    /// Print one JSON document instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// Fewest pages in the file section's file: it maps, touches and forks over distinct pages.
const MIN_FILE_PAGES: u64 = 4;

/// Parses `--size`: a size (see [`crate::cli::size::parse_size`]) of at least [`MIN_FILE_PAGES`] pages.
fn parse_file_size(s: &str) -> Result<u64, String> {
    let size = crate::cli::size::parse_size(s)?;
    let min = MIN_FILE_PAGES * mmkit::page_size() as u64;
    if size < min {
        return Err(format!(
            "{size} bytes is too small: the file section needs at least {MIN_FILE_PAGES} pages ({min} bytes here)"
        ));
    }
    Ok(size)
}

type SectionFn = fn(&Args) -> anyhow::Result<Section>;

/// Each section's id, title and function, in the order they run.
const SECTIONS: &[(&str, &str, SectionFn)] = &[
    ("file", file::TITLE, file::section),
    ("anon", anon::TITLE, anon::section),
    ("elf", elf::TITLE, elf::section),
    ("mmio", mmio::TITLE, mmio::section),
    ("pager", pager::TITLE, pager::section),
];

const SECTION_NAMES: [&str; 5] = ["file", "anon", "elf", "mmio", "pager"];

/// Runs `mmkit tour`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let chosen = |id: &str| args.only.is_empty() || args.only.iter().any(|o| o == id);
    // Before anything is written: room for the files, memory for the anon section.
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    // Saturating: `--size` may be up to u64::MAX, and the check below must then refuse it.
    let files =
        if chosen("file") { args.size } else { 0 }.saturating_add(if chosen("elf") { limits::ELF_DISK } else { 0 });
    // The pager section runs after the others have removed their files.
    let pager = if chosen("pager") { pager::disk_needed(args.size) } else { 0 };
    let disk = files.max(pager);
    if disk > 0 {
        limits::check_dir(&dir, args.dir.is_some())?;
        let what = if pager > files {
            "the pager section".to_owned()
        } else if chosen("file") {
            format!("the file section's --size {} file", args.size)
        } else {
            "the elf section".to_owned()
        };
        limits::check_disk(&dir, disk, &what)?;
    }
    if chosen("anon") {
        limits::check_memory(limits::ANON_MEMORY, "the anon section")?;
    }
    limits::catch_termination_signals()?;
    let mut sections = Vec::new();
    // A failing section is reported in its place and the others still run; the tour fails at
    // the end. Ctrl-C stops it at once.
    let mut failed = Vec::new();
    for (id, title, section) in SECTIONS {
        if !chosen(id) {
            continue;
        }
        let result = section(&args);
        check_interrupted()?;
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                let error = format!("{e:#}").replace('\n', "; ");
                failed.push(format!("the {id} section failed: {error}"));
                Section::failed(id, title, &error)
            }
        };
        if !args.json {
            outln!("{}", s.render())?;
        }
        sections.push(s);
    }
    if args.json {
        let doc = serde_json::json!({
            "sections": sections.iter().map(Section::to_json).collect::<Vec<_>>()
        });
        crate::cli::json::print(&doc)?;
    }
    if !failed.is_empty() {
        anyhow::bail!("tour: {}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_sizes_have_a_minimum() {
        let page = mmkit::page_size() as u64;
        for small in ["0", "1", "4095"] {
            assert!(super::parse_file_size(small).unwrap_err().contains("too small"));
        }
        assert_eq!(super::parse_file_size(&(4 * page).to_string()), Ok(4 * page));
    }
}
