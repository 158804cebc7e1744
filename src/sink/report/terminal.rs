//! Text for a terminal: captured strings made safe to print, and cells measured by how wide they
//! show.
//!
//! Contract: [`escape`] turns any string (a client id from the wire, a file name) into one that
//! holds no character a terminal acts on: C0 controls (newline, tab, ESC...), DEL, C1 controls,
//! line and paragraph separators, and the bidirectional overrides, embeddings, isolates and marks
//! that reorder what follows them. Each is written as a Rust-style escape (`\n`, `\t`, `\r`,
//! `\x1b`, `\u{202e}`), and a backslash as `\\`, so the escaped form is unambiguous and one line
//! long; an empty string shows as `""`. [`width`] is the display width in terminal columns (wide
//! CJK and emoji count two), [`pad`] fills to a width, [`truncate`] cuts to a width with an
//! ellipsis. None of them panic, whatever the input.

use std::borrow::Cow;
use std::fmt::Write as _;
use unicode_width::UnicodeWidthStr;

/// True for characters a terminal acts on rather than shows (see the module doc).
fn unsafe_char(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c,
            '\u{061c}'                  // Arabic letter mark
            | '\u{200e}' | '\u{200f}'   // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{202a}'..='\u{202e}'   // embeddings and overrides
            | '\u{2066}'..='\u{2069}'   // isolates
        )
}

/// `s` made safe to print on a terminal (see the module doc); `""` when empty.
pub fn escape(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        return Cow::Borrowed("\"\"");
    }
    if !s.chars().any(|c| c == '\\' || unsafe_char(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && unsafe_char(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Columns `s` takes on a terminal (of an escaped string: it has no controls).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` followed by spaces up to `w` columns.
pub fn pad(out: &mut String, s: &str, w: usize) {
    out.push_str(s);
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
}

/// `s` cut to at most `max` columns, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if width(s) <= max {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        used += w;
        out.push(c);
    }
    if max > 0 {
        out.push('…');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_escapes_and_bidi_are_escaped() {
        assert_eq!(escape("dev-1"), "dev-1");
        assert_eq!(escape(""), "\"\"");
        assert_eq!(escape("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape("\x1b[31mred\x1b]0;title\x07"), "\\x1b[31mred\\x1b]0;title\\x07");
        assert_eq!(escape("del\x7f c1\u{9b}"), "del\\x7f c1\\x9b");
        assert_eq!(escape("evil\u{202e}txt.exe\u{2066}"), "evil\\u{202e}txt.exe\\u{2066}");
        assert_eq!(escape("back\\slash"), "back\\\\slash", "unambiguous");
        assert_eq!(escape("传感器-7 🌡"), "传感器-7 🌡", "printable text is kept");
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let e = escape(&c.to_string()).into_owned();
            assert!(!e.chars().any(unsafe_char), "{c:?} -> {e:?}");
        }
    }

    #[test]
    fn widths_count_columns_not_chars() {
        assert_eq!(width("传感器"), 6);
        assert_eq!(width("ab"), 2);
        let mut s = String::new();
        pad(&mut s, "传感", 6);
        assert_eq!(s, "传感  ");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("传感器传感器", 6), "传感…");
        assert_eq!(width(&truncate("传感器传感器", 6)), 5, "a wide char never straddles the cut");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abc", 0), "");
    }
}
