//! Tables for people: long tables (a row per mapping or file) as padded columns built from one
//! buffer of cells, short summaries with comfy-table.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

/// A table's cells kept in one string (a row is `cols` consecutive cells): a long table costs
/// one growing buffer instead of a `String` per cell.
pub struct Cells {
    text: String,
    ends: Vec<usize>,
    cols: usize,
}

impl Cells {
    /// An empty table of `cols` columns with room for about `rows` rows.
    pub fn new(cols: usize, rows: usize) -> Cells {
        Cells { text: String::with_capacity(rows * cols * 6), ends: Vec::with_capacity(rows * cols), cols }
    }

    /// Appends a cell holding `s`.
    pub fn text(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    /// Appends a cell holding `v` formatted with `Display`.
    pub fn display(&mut self, v: impl std::fmt::Display) {
        use std::fmt::Write;
        let _ = write!(self.text, "{v}");
        self.ends.push(self.text.len());
    }

    /// Appends a cell holding `v` in decimal.
    pub fn dec(&mut self, v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[i..].iter().for_each(|d| self.text.push(char::from(*d)));
        self.ends.push(self.text.len());
    }

    /// Appends a cell holding `v` in lowercase hex, zero-padded to `width` digits.
    pub fn hex(&mut self, v: u64, width: usize) {
        let n = (64 - v.leading_zeros() as usize).div_ceil(4).max(width.min(16));
        self.text.extend((n..width).map(|_| '0'));
        for i in (0..n).rev() {
            let d = ((v >> (4 * i)) & 0xf) as u8;
            self.text.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
        }
        self.ends.push(self.text.len());
    }

    fn rows(&self) -> usize {
        self.ends.len() / self.cols
    }

    fn cell(&self, row: usize, col: usize) -> &str {
        let i = row * self.cols + col;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl From<&[Vec<String>]> for Cells {
    fn from(rows: &[Vec<String>]) -> Cells {
        let cols = rows.first().map_or(1, Vec::len);
        let mut cells = Cells::new(cols, rows.len());
        rows.iter().flatten().for_each(|c| cells.text(c));
        cells
    }
}

/// Renders rows as space-separated columns padded to their widest cell (right-aligned where
/// `right` says), the last column unpadded. Used for the long per-mapping and per-file tables,
/// where a general table layout would cost more than reading `/proc` does.
pub fn render_columns(header: &[&str], rows: &Cells, right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in 0..rows.rows() {
        for (c, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(width(rows.cell(r, c)));
        }
    }
    let is_right: Vec<bool> = (0..widths.len()).map(|c| right.contains(&c)).collect();
    let mut out = String::with_capacity((rows.rows() + 1) * (widths.iter().sum::<usize>() + 2 * widths.len() + 1));
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = w.saturating_sub(width(cell));
            let last = i + 1 == widths.len();
            if is_right[i] {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in 0..rows.rows() {
        line(&mut (0..rows.cols).map(|c| rows.cell(r, c)));
    }
    out
}

/// Display width of a cell: its bytes when ASCII, else its characters.
fn width(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// A comfy-table with no borders and no wrapping, for short summaries.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.to_vec());
    t
}

/// Right-aligns `columns` of `t` (numbers).
pub fn right_align(t: &mut Table, columns: &[usize]) {
    for &c in columns {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_pad_to_the_widest_cell() {
        let rows = [
            vec!["a".to_owned(), "1".to_owned(), "x y".to_owned()],
            vec!["bbb".to_owned(), "22".to_owned(), String::new()],
        ];
        let text = render_columns(&["K", "N", "Path"], &Cells::from(&rows[..]), &[1]);
        assert_eq!(text, "K     N  Path\na     1  x y\nbbb  22\n");
    }
}
