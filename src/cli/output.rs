//! Rendering records and incidents for people and programs. Log data is attacker-controlled:
//! everything shown on a terminal goes through `escape_for_terminal`.

use std::io::Write;

use super::table::{render, Column};
use crate::detect::{Incident, Severity};
use crate::event::Timestamp;
use crate::store::{StoredIncident, TriageState};

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

/// A short UTC time for tables: `11-20 09:14` (the header says UTC).
fn short_time(ts: Timestamp) -> String {
    ts.to_datetime().format("%m-%d %H:%M").to_string()
}

/// A severity in four letters or fewer, for narrow tables.
fn short_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "low",
        Severity::Medium => "med",
        Severity::High => "high",
        Severity::Critical => "crit",
    }
}

/// Replay's `--output table`, oldest detection first, fitted to `width` (none: whole).
pub fn incidents_table(incidents: &[&Incident], width: Option<usize>) -> Vec<String> {
    const COLUMNS: [Column; 6] = [
        Column::fixed("TIME (UTC)"),
        Column::flex("DETECTOR", 1),
        Column::fixed("SEV"),
        Column::flex("ENTITY", 0),
        Column::number("COUNT"),
        Column::flex("SUMMARY", 2),
    ];
    let mut sorted: Vec<&Incident> = incidents.to_vec();
    sorted.sort_by_key(|i| (i.detected_at, i.id.clone()));
    let rows: Vec<Vec<String>> = (sorted.iter())
        .map(|i| {
            vec![
                short_time(i.detected_at),
                escape_for_terminal(&i.detector),
                short_severity(i.severity).to_owned(),
                escape_for_terminal(&i.entity),
                i.count.to_string(),
                escape_for_terminal(&i.summary),
            ]
        })
        .collect();
    render(&COLUMNS, &rows, width)
}

/// The analyst's state in one word: the detector's `open`/`closed` until triaged.
fn state(stored: &StoredIncident) -> &'static str {
    match stored.triage.state {
        TriageState::New => stored.incident.status.as_str(),
        TriageState::Acknowledged => "acked",
        TriageState::Resolved => "resolved",
    }
}

/// `incidents list --output table`, oldest detection first. Narrow (the default): short
/// ids (a prefix `show` takes) and times, cut to `width`; `wide`: every field whole.
pub fn stored_incidents_table(
    incidents: &[StoredIncident],
    width: Option<usize>,
    wide: bool,
) -> Vec<String> {
    let mut sorted: Vec<&StoredIncident> = incidents.iter().collect();
    sorted.sort_by_key(|s| (s.incident.detected_at, s.incident.id.clone()));
    if wide {
        const COLUMNS: [Column; 10] = [
            Column::fixed("ID"),
            Column::fixed("STARTED"),
            Column::fixed("LAST SEEN"),
            Column::fixed("SEVERITY"),
            Column::fixed("STATUS"),
            Column::fixed("TRIAGE"),
            Column::fixed("DETECTOR"),
            Column::fixed("ENTITY"),
            Column::number("COUNT"),
            Column::fixed("SUMMARY"),
        ];
        let rows: Vec<Vec<String>> = (sorted.iter())
            .map(|s| {
                let i = &s.incident;
                vec![
                    i.id.clone(),
                    i.started_at.to_rfc3339_millis(),
                    i.last_seen.to_rfc3339_millis(),
                    i.severity.as_str().to_owned(),
                    i.status.as_str().to_owned(),
                    s.triage.state.as_str().to_owned(),
                    escape_for_terminal(&i.detector),
                    escape_for_terminal(&i.entity),
                    i.count.to_string(),
                    escape_for_terminal(&i.summary),
                ]
            })
            .collect();
        return render(&COLUMNS, &rows, None);
    }
    const COLUMNS: [Column; 8] = [
        Column::fixed("ID"),
        Column::fixed("TIME (UTC)"),
        Column::fixed("SEV"),
        Column::fixed("STATE"),
        Column::flex("DETECTOR", 1),
        Column::flex("ENTITY", 0),
        Column::number("COUNT"),
        Column::flex("SUMMARY", 2),
    ];
    let rows: Vec<Vec<String>> = (sorted.iter())
        .map(|s| {
            let i = &s.incident;
            vec![
                i.id[..i.id.len().min(8)].to_owned(),
                short_time(i.detected_at),
                short_severity(i.severity).to_owned(),
                state(s).to_owned(),
                escape_for_terminal(&i.detector),
                escape_for_terminal(&i.entity),
                i.count.to_string(),
                escape_for_terminal(&i.summary),
            ]
        })
        .collect();
    render(&COLUMNS, &rows, width)
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
            // Scientific notation: 1.58e-49, not 0.000…00158.
            i.score
                .p_value
                .map(|p| format!("{p:e}"))
                .unwrap_or_default(),
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
