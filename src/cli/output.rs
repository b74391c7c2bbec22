//! Rendering records and incidents for people and programs. Log data is attacker-controlled:
//! everything shown on a terminal goes through `escape_for_terminal`.

use std::io::Write;

use crate::detect::Incident;
use crate::store::StoredIncident;

/// Replaces control characters (C0, DEL, C1: the ANSI escape vocabulary) with visible
/// escapes, so a user agent cannot move the cursor or recolour an analyst's terminal; and
/// the bidi controls and line/paragraph separators, which reorder or break what is shown
/// (an entity that reads as another, a line that looks like two).
pub fn escape_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_layout_control(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Bidi marks, embeddings, overrides and isolates; line and paragraph separators.
fn is_layout_control(c: char) -> bool {
    matches!(
        c,
        '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
    )
}

/// Column header of `--output table`.
pub fn table_header() -> String {
    format!(
        "{:<24} {:<16} {:<8} {:<39} {:>7}  {}",
        "DETECTED", "DETECTOR", "SEVERITY", "ENTITY", "COUNT", "SUMMARY"
    )
}

/// One incident as a table row, escaped for the terminal.
pub fn table_row(incident: &Incident) -> String {
    format!(
        "{:<24} {:<16} {:<8} {:<39} {:>7}  {}",
        incident.detected_at.to_rfc3339_millis(),
        escape_for_terminal(&incident.detector),
        incident.severity.as_str(),
        escape_for_terminal(&incident.entity),
        incident.count,
        escape_for_terminal(&incident.summary),
    )
}

/// Column header of `incidents list --output table`.
pub fn incident_table_header() -> String {
    format!(
        "{:<16} {:<24} {:<24} {:<8} {:<6} {:<12} {:<16} {:<39} {:>7}  {}",
        "ID",
        "STARTED",
        "LAST SEEN",
        "SEVERITY",
        "STATUS",
        "TRIAGE",
        "DETECTOR",
        "ENTITY",
        "COUNT",
        "SUMMARY"
    )
}

/// One stored incident as a table row, escaped for the terminal.
pub fn incident_table_row(stored: &StoredIncident) -> String {
    let incident = &stored.incident;
    format!(
        "{:<16} {:<24} {:<24} {:<8} {:<6} {:<12} {:<16} {:<39} {:>7}  {}",
        incident.id,
        incident.started_at.to_rfc3339_millis(),
        incident.last_seen.to_rfc3339_millis(),
        incident.severity.as_str(),
        incident.status.as_str(),
        stored.triage.state.as_str(),
        escape_for_terminal(&incident.detector),
        escape_for_terminal(&incident.entity),
        incident.count,
        escape_for_terminal(&incident.summary),
    )
}

/// A text cell for CSV: control characters escaped, and a leading `=`, `+`, `-`, `@` quoted
/// with `'` so a spreadsheet never evaluates log text as a formula.
fn csv_text(text: &str) -> String {
    let text = escape_for_terminal(text);
    if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text
    }
}

/// `incidents list --output csv`.
pub fn write_csv(out: &mut impl Write, incidents: &[StoredIncident]) -> csv::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "id",
        "detector",
        "kind",
        "severity",
        "entity_kind",
        "entity",
        "started_at",
        "detected_at",
        "last_seen",
        "count",
        "score_observed",
        "score_expected",
        "score_p_value",
        "status",
        "triage",
        "triage_note",
        "summary",
    ])?;
    for stored in incidents {
        let i = &stored.incident;
        writer.write_record([
            i.id.clone(),
            csv_text(&i.detector),
            csv_text(&i.kind),
            i.severity.as_str().to_owned(),
            i.entity_kind.as_str().to_owned(),
            csv_text(&i.entity),
            i.started_at.to_rfc3339_millis(),
            i.detected_at.to_rfc3339_millis(),
            i.last_seen.to_rfc3339_millis(),
            i.count.to_string(),
            i.score.observed.to_string(),
            i.score.expected.to_string(),
            i.score.p_value.map(|p| p.to_string()).unwrap_or_default(),
            i.status.as_str().to_owned(),
            stored.triage.state.as_str().to_owned(),
            stored
                .triage
                .note
                .as_deref()
                .map(csv_text)
                .unwrap_or_default(),
            csv_text(&i.summary),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_cannot_become_formulas_or_escapes() {
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_text("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(csv_text("203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn ansi_sequences_are_neutralised() {
        let hostile = "curl\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m";
        let shown = escape_for_terminal(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert_eq!(shown, "curl\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{9b}31m");
    }

    #[test]
    fn bidi_controls_and_separators_are_escaped() {
        // "admin" written backwards behind a right-to-left override, a forged second line.
        let hostile =
            "user \u{202e}nimda\u{202c} ok\u{2028}FAKE\u{2029}\u{200e}\u{200f}\u{2066}\u{2069}";
        let shown = escape_for_terminal(hostile);
        assert_eq!(
            shown,
            "user \\u{202e}nimda\\u{202c} ok\\u{2028}FAKE\\u{2029}\\u{200e}\\u{200f}\\u{2066}\\u{2069}"
        );
        for c in ['\u{202a}', '\u{202b}', '\u{202d}', '\u{2067}', '\u{2068}'] {
            assert!(!escape_for_terminal(&c.to_string()).contains(c), "{c:?}");
        }
        // Other non-ASCII text is left as it is.
        assert_eq!(
            escape_for_terminal("Grüße 日本 \u{200d}"),
            "Grüße 日本 \u{200d}"
        );
    }
}
