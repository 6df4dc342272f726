//! Untrusted text made inert for a terminal or a log line: what a ticker, a dump or an event says
//! is shown, never obeyed. A line break cannot forge a second log line, an escape sequence cannot
//! recolour or clear an operator's terminal.

/// `s` with every control character (line breaks, ESC, NUL, …) and every Unicode direction
/// override written as an escape (`\n`, `\u{1b}`), cut to `max_chars` characters (then `…`).
pub fn inert(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 2));
    for (n, c) in s.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        // U+202A … U+202E and U+2066 … U+2069 reorder what follows on screen.
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::inert;

    #[test]
    fn escapes_and_line_breaks_are_shown_not_obeyed() {
        let hostile = "bad\n2026-12-06T10:00:00Z  INFO tickfill: all good\x1b[2J\r\u{202e}cba";
        let shown = inert(hostile, 200);
        assert!(!shown.chars().any(|c| c.is_control() || c == '\u{202e}'), "{shown}");
        assert!(shown.starts_with("bad\\n2026-12-06"), "{shown}");
        assert!(shown.contains("\\u{1b}[2J\\r\\u{202e}cba"), "{shown}");
        assert_eq!(inert("NIFTY 50 €", 200), "NIFTY 50 €");
        assert_eq!(inert("abcdef", 3), "abc…");
    }
}
