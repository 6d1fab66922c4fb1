//! Sizes: parsed from the command line (`64K`, `1GiB`) and formatted for people (`1.5 MiB`).

/// Parses sizes like `4096`, `64K`, `256M`, `1G` (binary units; `K`, `KB` and `KiB` are the
/// same, in any case): a whole number of bytes, then at most one unit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    if digits.is_empty() {
        return Err(format!("not a size: {s:?} (a whole number of bytes, optionally followed by K, M, G or T)"));
    }
    if unit.starts_with(['.', ',']) {
        return Err(format!("not a whole number: {s:?} (use a smaller unit: 1536K, not 1.5M)"));
    }
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("unknown size unit {unit:?} in {s:?} (use K, M, G or T)")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("size {s:?} overflows"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} overflows"))
}

/// Formats a byte count with binary units (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats a throughput in GiB/s or MiB/s.
pub fn throughput(bytes: u64, d: std::time::Duration) -> String {
    let secs = d.as_secs_f64().max(1e-9);
    let per = bytes as f64 / secs;
    if per >= (1u64 << 30) as f64 {
        format!("{:.2} GiB/s", per / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB/s", per / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("12345"), Ok(12345));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_size("4k"), Ok(4 << 10));
        assert_eq!(parse_size("2mb"), Ok(2 << 20));
        assert_eq!(parse_size("7B"), Ok(7));
        // Units are one unit: any run of `i`, `B` and `b` after it was taken for its suffix.
        for bad in ["1KiBiB", "64bB", "1iiiiB", "1Bi", "1KK"] {
            assert!(parse_size(bad).unwrap_err().contains("unknown size unit"), "{bad}");
        }
        // What was wrong is said: a fraction, hex or a sign is not an "unknown size unit".
        assert!(parse_size("1.5M").unwrap_err().contains("not a whole number"));
        for bad in ["-5", "K", "+1", ""] {
            assert!(parse_size(bad).unwrap_err().starts_with("not a size"), "{bad}");
        }
        assert!(parse_size("99999999999999999999").unwrap_err().contains("overflows"));
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(256 << 20), "256.0 MiB");
    }
}
