//! Progress bars that appear only when a person is watching: stderr is a terminal, the output
//! is not JSON, and the work is long enough to be worth a bar.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes, shown with binary units and a rate.
    Bytes,
    /// Files.
    Files,
}

/// A bar of `len` units labelled `message`, drawn on stderr when `show` is true and stderr is a
/// terminal; otherwise a hidden bar (updates cost next to nothing).
pub fn bar(len: u64, message: &str, unit: Unit, show: bool) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        Unit::Files => "{msg} [{bar:40}] {pos}/{len} files ({eta})",
    };
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_owned());
    bar
}
