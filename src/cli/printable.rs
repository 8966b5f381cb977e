//! Text from torrents and other input, made safe for a terminal: control characters in a
//! file name or comment must not move the cursor, hide text or forge a line of the report.

use std::fmt;

/// Shows a string with its control characters escaped: C0 controls, DEL and C1 controls as
/// `\n`, `\r`, `\t` or `\xHH`, and the Unicode line separators and bidirectional overrides
/// (which can reorder what a terminal shows) as `\u{HHHH}`. Everything else, backslashes
/// included, is shown as it is. JSON output never needs this: it is exact and escaped by JSON.
#[derive(Clone, Copy, Debug)]
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if u32::from(c) < 0x80 => write!(f, "\\x{:02x}", u32::from(c))?,
                c => write!(f, "\\u{{{:04x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// True for the characters a terminal acts on instead of showing.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printable(text: &str) -> String {
        Printable(text).to_string()
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("a.bin\nOK\n\x1b[8m"), "a.bin\\nOK\\n\\x1b[8m");
        assert_eq!(
            printable("cr\rtab\tdel\x7fnul\0"),
            "cr\\rtab\\tdel\\x7fnul\\x00"
        );
        assert_eq!(printable("c1\u{9b}31m"), "c1\\u{009b}31m");
        assert_eq!(printable("rtl\u{202e}gpj.exe"), "rtl\\u{202e}gpj.exe");
        assert_eq!(
            printable("Ünïcødé \\ back slash é b.txt"),
            "Ünïcødé \\ back slash é b.txt"
        );
        assert_eq!(printable(""), "");
    }
}
