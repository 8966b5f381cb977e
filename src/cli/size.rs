//! Byte sizes on the command line: `65536`, `64K`, `256M`, `1G`, `512MiB` (powers of 1024).

/// Parses a size with an optional K/M/G/T suffix (with or without `iB`/`B`), in powers of 1024.
///
/// # Errors
/// Anything else, zero, or an overflow.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let number = upper.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match number.chars().last() {
        Some('K') => (&number[..number.len() - 1], 10),
        Some('M') => (&number[..number.len() - 1], 20),
        Some('G') => (&number[..number.len() - 1], 30),
        Some('T') => (&number[..number.len() - 1], 40),
        _ => (number, 0),
    };
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{trimmed:?} is not a size (e.g. 65536, 64K, 256M, 1G)"))?;
    value
        .checked_mul(1 << shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{trimmed:?} is zero or too large"))
}

/// A size the way [`parse_size`] reads it and people write it: `256M`, `1G`, `48K`, or bytes
/// when no suffix divides it exactly.
#[must_use]
pub fn format_size(bytes: u64) -> String {
    for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::{format_size, parse_size};

    #[test]
    fn sizes_print_as_they_parse() {
        for (bytes, text) in [
            (256 << 20, "256M"),
            (1 << 30, "1G"),
            (48 << 10, "48K"),
            (768 << 20, "768M"),
            (1536 << 20, "1536M"),
            (1000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(format_size(bytes), text);
            if bytes > 0 {
                assert_eq!(parse_size(text), Ok(bytes));
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
