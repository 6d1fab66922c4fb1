//! Tables for people: long tables (a row per mapping or file) as padded columns written into
//! one byte buffer ([`Columns`]), short summaries with comfy-table ([`table`]).

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

/// The layout of a long table: each column's width (its widest cell) and alignment. Cells are
/// written straight into a byte buffer, separated by two spaces; the last column is not
/// padded and a row's trailing spaces are trimmed, so a table of 60,000 rows costs no
/// allocation per cell.
#[derive(Debug, Clone)]
pub struct Columns {
    widths: Vec<usize>,
    right: Vec<bool>,
}

impl Columns {
    /// Columns as wide as their `header` names, right-aligned where `right` lists them.
    pub fn new(header: &[&str], right: &[usize]) -> Columns {
        Columns {
            widths: header.iter().map(|h| width(h)).collect(),
            right: (0..header.len()).map(|c| right.contains(&c)).collect(),
        }
    }

    /// Widens column `col` to hold a cell `width` characters wide.
    pub fn fit(&mut self, col: usize, width: usize) {
        self.widths[col] = self.widths[col].max(width);
    }

    /// Widens column `col` to hold `text`.
    pub fn fit_text(&mut self, col: usize, text: &str) {
        self.fit(col, width(text));
    }

    /// Writes cell `col` of a row: `text`, `width` characters wide, padded to the column.
    pub fn cell(&self, out: &mut Vec<u8>, col: usize, text: &[u8], width: usize) {
        /// The separator and a right-aligned cell's padding are one run of spaces.
        const SPACES: &[u8; 64] = &[b' '; 64];
        let sep = if col > 0 { 2 } else { 0 };
        let pad = self.widths[col].saturating_sub(width);
        if self.right[col] {
            match SPACES.get(..sep + pad) {
                Some(run) => out.extend_from_slice(run),
                None => out.resize(out.len() + sep + pad, b' '),
            }
            out.extend_from_slice(text);
        } else {
            out.extend_from_slice(&SPACES[..sep]);
            out.extend_from_slice(text);
            if col + 1 < self.widths.len() {
                out.resize(out.len() + pad, b' ');
            }
        }
    }

    /// Writes cell `col` holding `text`.
    pub fn text(&self, out: &mut Vec<u8>, col: usize, text: &str) {
        self.cell(out, col, text.as_bytes(), width(text));
    }

    /// Writes cell `col` holding `v` in decimal.
    pub fn dec(&self, out: &mut Vec<u8>, col: usize, v: u64) {
        let mut digits = [0u8; 20];
        let d = dec(&mut digits, v);
        self.cell(out, col, d, d.len());
    }

    /// Ends a row: trims its trailing spaces and adds the newline.
    pub fn end_row(&self, out: &mut Vec<u8>) {
        while out.last() == Some(&b' ') {
            out.pop();
        }
        out.push(b'\n');
    }

    /// Writes the header row.
    pub fn header(&self, out: &mut Vec<u8>, header: &[&str]) {
        for (c, h) in header.iter().enumerate() {
            self.text(out, c, h);
        }
        self.end_row(out);
    }

    /// The cells of a row before column `last`, at fixed places (the widths are final): for
    /// long tables, a row costs one fill with spaces, its digits and one copy, not a padded
    /// write per cell. `last` is usually the last column, which follows with
    /// [`FixedRow::line`] and is written as it comes.
    pub fn fixed_row(&self, last: usize) -> FixedRow {
        let last = last.min(self.widths.len());
        let mut fields = Vec::with_capacity(last);
        let mut at = 0;
        for col in 0..last {
            fields.push((at, self.widths[col], self.right[col]));
            at += self.widths[col] + 2;
        }
        FixedRow { line: vec![b' '; at], fields }
    }
}

/// A row's leading cells laid out at their places ([`Columns::fixed_row`]), as
/// [`Columns::cell`] would pad them, the separator before the next column included.
#[derive(Debug, Clone)]
pub struct FixedRow {
    line: Vec<u8>,
    /// Each column's start, width and alignment.
    fields: Vec<(usize, usize, bool)>,
}

impl FixedRow {
    /// Starts a row: all cells blank.
    pub fn clear(&mut self) {
        self.line.fill(b' ');
    }

    /// The row so far: its cells padded to their columns and the separator after the last.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// The bytes of cell `col` that a cell of `len` bytes fills, as aligned in its column;
    /// `None` when it does not fit (never, for widths fitted to the cells).
    fn place(&mut self, col: usize, len: usize) -> Option<&mut [u8]> {
        let &(start, width, right) = self.fields.get(col)?;
        let from = if right { start + width.checked_sub(len)? } else { start };
        self.line.get_mut(from..from + len)
    }

    /// Writes cell `col` holding ASCII `text`.
    pub fn text(&mut self, col: usize, text: &[u8]) {
        if let Some(cell) = self.place(col, text.len()) {
            cell.copy_from_slice(text);
        }
    }

    /// Writes cell `col` holding `v` in decimal.
    pub fn dec(&mut self, col: usize, v: u64) {
        // Most counters are one digit (0, 4).
        let len = if v < 10 { 1 } else { dec_len(v) };
        if let Some(cell) = self.place(col, len) {
            write_digits::<10>(cell, v);
        }
    }

    /// Writes cell `col` holding `v` in lowercase hex, zero-padded to `min` digits.
    pub fn hex(&mut self, col: usize, v: u64, min: usize) {
        if let Some(cell) = self.place(col, hex_len(v, min)) {
            write_digits::<16>(cell, v);
        }
    }
}

/// Fills `cell` with the last `cell.len()` digits of `v` in base `RADIX` (at most 16), leading
/// zeros included.
#[inline]
fn write_digits<const RADIX: u64>(cell: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut cell = cell;
    if RADIX == 10 {
        // Two digits at a time: half the divisions of long numbers (addresses in decimal).
        while let [rest @ .., a, b] = cell {
            let pair = (v % 100) as usize;
            (*a, *b) = (DIGIT_PAIRS[2 * pair], DIGIT_PAIRS[2 * pair + 1]);
            v /= 100;
            cell = rest;
        }
    }
    for b in cell.iter_mut().rev() {
        *b = DIGITS[(v % RADIX) as usize & 15];
        v /= RADIX;
    }
}

/// "00" to "99".
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// `v` in decimal, written at the end of `buf`: the digits.
pub fn dec(buf: &mut [u8; 20], v: u64) -> &[u8] {
    let from = buf.len() - dec_len(v);
    write_digits::<10>(&mut buf[from..], v);
    &buf[from..]
}

/// `v` in decimal at the start of `buf`: the number of digits.
#[inline]
pub fn dec_left(buf: &mut [u8; 20], v: u64) -> usize {
    let n = dec_len(v);
    write_digits::<10>(&mut buf[..n], v);
    n
}

/// Number of decimal digits of `v`.
pub fn dec_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// `v` in lowercase hex, zero-padded to `min` digits (at most 16), written into `buf`.
pub fn hex(buf: &mut [u8; 16], v: u64, min: usize) -> &[u8] {
    let n = hex_len(v, min);
    write_digits::<16>(&mut buf[..n], v);
    &buf[..n]
}

/// Number of hex digits of `v`, at least `min` (at most 16).
pub fn hex_len(v: u64, min: usize) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(4).max(min.min(16)).max(1)
}

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

/// Renders `rows` under `header` as [`Columns`] (right-aligned where `right` says).
pub fn render_columns(header: &[&str], rows: &Cells, right: &[usize]) -> String {
    let mut columns = Columns::new(header, right);
    for r in 0..rows.rows() {
        (0..rows.cols).for_each(|c| columns.fit_text(c, rows.cell(r, c)));
    }
    let mut out = Vec::new();
    columns.header(&mut out, header);
    for r in 0..rows.rows() {
        (0..rows.cols).for_each(|c| columns.text(&mut out, c, rows.cell(r, c)));
        columns.end_row(&mut out);
    }
    // Only whole `&str` cells and ASCII padding were written.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `name` for a terminal: control characters (which a file name may hold, and the kernel leaves
/// in a mapping's path, all but the newline it prints as `\012`, and in a command line) written
/// as `\xNN`, so a file name or a command line another user chose cannot send escape sequences
/// to the terminal of whoever lists the mappings or counts the tree (`maps`, `residency`). JSON
/// escapes them itself.
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    if !name.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Display width of a cell: its bytes when ASCII, else its characters.
pub fn width(s: &str) -> usize {
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

    #[test]
    fn fixed_rows_lay_out_as_cells_do() {
        let header = ["Addr", "Perm", "N", "Hex", "Name"];
        let mut c = Columns::new(&header, &[2, 3]);
        for (col, w) in [(0, 12), (2, 5), (3, 4)] {
            c.fit(col, w);
        }
        let mut row = c.fixed_row(4);
        for (addr, n, h) in [(0x7f00_1234_5000u64, 0u64, 0xau64), (0x10, 12345, 0xffff), (0, 7, 0)] {
            let (mut want, mut got) = (Vec::new(), Vec::new());
            let mut digits = [0u8; 16];
            let d = hex(&mut digits, addr, 12);
            c.cell(&mut want, 0, d, d.len());
            c.text(&mut want, 1, "rw-p");
            c.dec(&mut want, 2, n);
            let d = hex(&mut digits, h, 2);
            c.cell(&mut want, 3, d, d.len());
            c.text(&mut want, 4, "x y");
            c.end_row(&mut want);
            row.clear();
            row.hex(0, addr, 12);
            row.text(1, b"rw-p");
            row.dec(2, n);
            row.hex(3, h, 2);
            got.extend_from_slice(row.line());
            got.extend_from_slice(b"x y");
            c.end_row(&mut got);
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
        }
        // A cell wider than its column is left out, not a panic.
        row.dec(2, 1234567);
        row.text(9, b"x");
        assert_eq!(row.line().len(), 12 + 2 + 4 + 2 + 5 + 2 + 4 + 2);
    }

    #[test]
    fn numbers_format_in_place() {
        let (mut d, mut h) = ([0u8; 20], [0u8; 16]);
        for v in [0, 7, 10, 99, 100, 12345, 140_737_488_355_328, u64::MAX] {
            assert_eq!(dec(&mut d, v), v.to_string().as_bytes());
            let n = dec_left(&mut d, v);
            assert_eq!(&d[..n], v.to_string().as_bytes());
            assert_eq!(dec_len(v), v.to_string().len());
            for min in [0, 2, 8, 12] {
                let want = format!("{v:0min$x}");
                assert_eq!(hex(&mut h, v, min), want.as_bytes());
                assert_eq!(hex_len(v, min), want.len());
            }
        }
    }
}
