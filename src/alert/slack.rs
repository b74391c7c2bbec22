//! Slack incoming-webhook messages (Block Kit). Everything that came from a log (entity,
//! summary, evidence lines) is escaped for Slack's mrkdwn, so it cannot mention `<!channel>`,
//! ping `<@U…>`, hide a link behind `<https://evil|click>` or close the evidence code block;
//! every text stays within Slack's limits, cut with a visible marker.

use serde_json::{json, Value};

use super::notice::Notice;

/// Slack's limit on a section's text.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Evidence lines shown at most (the rest is counted).
const MAX_EVIDENCE_LINES: usize = 20;
const CUT_MARKER: &str = "… (cut)";

/// Escapes text for mrkdwn: Slack reads only `&`, `<` and `>` as control characters.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Control characters (a terminal escape, a NUL) have no business in a message.
            c if c.is_control() && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters: cut on a character boundary, with a marker when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(CUT_MARKER.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(CUT_MARKER);
    out
}

/// Lines in a code block that no line can close: each backtick is followed by a zero-width
/// space, so "```" from a log never ends the block.
pub fn code_block(lines: &[&str], max_chars: usize) -> String {
    let fence = "```";
    let budget = max_chars.saturating_sub(2 * fence.len() + 2);
    let mut body = String::new();
    for line in lines {
        let safe = escape(line).replace('`', "`\u{200B}").replace('\n', " ");
        body.push_str(&safe);
        body.push('\n');
    }
    let body = truncate(body.trim_end(), budget);
    format!("{fence}\n{body}\n{fence}")
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, MAX_SECTION_CHARS)}})
}

/// The Block Kit message for one incident event; `public_url` links to the incident.
pub fn message(notice: &Notice, public_url: Option<&str>) -> Value {
    let title = format!(
        "{} incident {}: {} on {} {}",
        escape(&notice.severity.to_uppercase()),
        escape(&notice.event),
        escape(&notice.detector),
        escape(&notice.entity_kind),
        escape(&notice.entity)
    );
    let incident = notice;
    let mut blocks = vec![
        section(format!("*{}*", truncate(&title, 300))),
        section(escape(&incident.summary)),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Observed*\n{:.1}", incident.score.observed)},
            {"type": "mrkdwn", "text": format!("*Expected*\n{:.1}", incident.score.expected)},
            {"type": "mrkdwn", "text": format!("*First seen*\n{}", escape(&incident.started_at))},
            {"type": "mrkdwn", "text": format!("*Last seen*\n{}", escape(&incident.last_seen))},
            {"type": "mrkdwn", "text": format!("*Requests*\n{}", incident.count)},
            {"type": "mrkdwn", "text": format!("*Id*\n`{}`", escape(&incident.id))},
        ]}),
    ];
    if !incident.evidence.is_empty() {
        let lines: Vec<&str> = incident
            .evidence
            .iter()
            .take(MAX_EVIDENCE_LINES)
            .map(|e| e.line.as_str())
            .collect();
        let mut text = code_block(&lines, MAX_SECTION_CHARS - 40);
        let more = incident.evidence.len().saturating_sub(MAX_EVIDENCE_LINES);
        if more > 0 {
            text.push_str(&format!("\n…and {more} more lines"));
        }
        blocks.push(section(text));
    }
    if let Some(base) = public_url {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": incident_link(base, &incident.id, "Open in gatewatch")}
        ]}));
    }
    blocks.truncate(MAX_BLOCKS);
    json!({"text": truncate(&title, 300), "blocks": blocks})
}

/// A mrkdwn link to an incident's console page.
pub fn incident_link(base: &str, id: &str, label: &str) -> String {
    let link = format!("{}/ui/incidents/{}", base.trim_end_matches('/'), id);
    format!("<{}|{}>", escape(&link), escape(label))
}

/// Slack's plain-text fallback (notifications): the title without markup.
pub fn fallback(text: &str) -> String {
    truncate(text, 300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{incident_id, Evidence, Incident, Score, Severity, Status};
    use crate::event::{EntityKind, Timestamp};
    use crate::store::EventKind;

    fn hostile_incident(lines: usize) -> Incident {
        let start = Timestamp(1_700_000_000_000_000_000);
        let line = r#"203.0.113.7 - - [20/Nov/2026:10:00:00 +0000] "GET /<!channel>/<@U123>/<https://evil.example|click> HTTP/1.1" 404 0 "-" "curl ```x``` & more""#;
        Incident {
            id: incident_id("scanner-ip", "203.0.113.7", start),
            detector: "scanner-ip".into(),
            kind: "scanner".into(),
            severity: Severity::High,
            entity_kind: EntityKind::Ip,
            entity: "203.0.113.7".into(),
            started_at: start,
            detected_at: start,
            last_seen: start,
            count: 12,
            score: Score {
                observed: 12.0,
                expected: 1.0,
                p_value: None,
            },
            summary: "203.0.113.7 asked for /<!channel> and <@U123>".into(),
            status: Status::Open,
            evidence: (0..lines)
                .map(|_| Evidence::new(start, line.as_bytes()))
                .collect(),
            explain: Default::default(),
            related: Vec::new(),
        }
    }

    /// Every mrkdwn text of a message.
    fn texts(message: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for block in message["blocks"].as_array().unwrap() {
            if let Some(text) = block["text"]["text"].as_str() {
                out.push(text.to_string());
            }
            for field in block["fields"].as_array().into_iter().flatten() {
                out.push(field["text"].as_str().unwrap().to_string());
            }
            for element in block["elements"].as_array().into_iter().flatten() {
                out.push(element["text"].as_str().unwrap().to_string());
            }
        }
        out
    }

    #[test]
    fn log_text_cannot_mention_link_or_close_the_code_block() {
        let message = message(&Notice::of(&hostile_incident(3), EventKind::Opened), None);
        for text in texts(&message) {
            assert!(!text.contains("<!channel>"), "{text}");
            assert!(!text.contains("<@U123>"), "{text}");
            assert!(!text.contains("<https://evil"), "{text}");
        }
        let evidence = texts(&message)
            .into_iter()
            .find(|t| t.starts_with("```"))
            .unwrap();
        // Only the opening and the closing fence remain.
        assert_eq!(evidence.matches("```").count(), 2, "{evidence}");
        assert!(evidence.contains("&lt;!channel&gt;"));
    }

    #[test]
    fn a_thousand_evidence_lines_stay_within_block_kit_limits() {
        let message = message(
            &Notice::of(&hostile_incident(1000), EventKind::Escalated),
            Some("https://gw.example/"),
        );
        let blocks = message["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        for text in texts(&message) {
            assert!(text.chars().count() <= MAX_SECTION_CHARS, "{}", text.len());
        }
        let all = texts(&message).join("\n");
        assert!(all.contains("more lines"), "the rest is counted");
        assert!(all.contains("<https://gw.example/ui/incidents/"), "{all}");
    }

    #[test]
    fn truncation_is_marked_and_respects_characters() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(100), 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with(CUT_MARKER));
        assert_eq!(escape("a<b>&\u{1b}[31m"), "a&lt;b&gt;&amp;\u{FFFD}[31m");
    }
}
