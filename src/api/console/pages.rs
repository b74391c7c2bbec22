//! The console's HTML, server-rendered with maud (every interpolated string is HTML-escaped:
//! paths, user agents and evidence lines are attackers' text). No script anywhere: the
//! Content-Security-Policy forbids it, and the timeline is an SVG drawn here.

use maud::{html, Markup, DOCTYPE};

use crate::detect::{Incident, Tally};
use crate::event::Timestamp;
use crate::store::StoredIncident;

/// The filters as the list page shows them back in its form (and in its paging links).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub until: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub severity: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entity: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cursor: String,
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · gatewatch" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body {
                header {
                    a.brand href="/ui/" { "gatewatch" }
                    form.logout method="post" action="/ui/logout" {
                        button type="submit" { "Log out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · gatewatch" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body.login {
                main {
                    h1 { "gatewatch" }
                    @if let Some(error) = error { p.error { (error) } }
                    form method="post" action="/ui/login" {
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

fn time(ts: Timestamp) -> String {
    ts.to_datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn select(name: &str, current: &str, options: &[&str]) -> Markup {
    html! {
        select name=(name) id=(name) {
            option value="" selected[current.is_empty()] { "any" }
            @for option in options {
                option value=(option) selected[current == *option] { (option) }
            }
        }
    }
}

pub fn list(
    filters: &Filters,
    incidents: &[StoredIncident],
    next: Option<String>,
    error: Option<&str>,
) -> Markup {
    let text = |name: &str, value: &str, hint: &str| {
        html! {
            label for=(name) { (name) }
            input type="text" id=(name) name=(name) value=(value) placeholder=(hint);
        }
    };
    let next_link = next.map(|cursor| {
        let mut page = filters.clone();
        page.cursor = cursor;
        format!(
            "/ui/?{}",
            serde_urlencoded::to_string(&page).unwrap_or_default()
        )
    });
    layout(
        "Incidents",
        html! {
            h1 { "Incidents" }
            form.filters method="get" action="/ui/" {
                (text("since", &filters.since, "24h or 2026-11-20"))
                (text("until", &filters.until, "RFC 3339 or duration"))
                label for="severity" { "severity ≥" }
                (select("severity", &filters.severity, &["low", "medium", "high", "critical"]))
                (text("detector", &filters.detector, "scanner-ip"))
                (text("kind", &filters.kind, "rate_spike"))
                (text("entity", &filters.entity, "address, CIDR, token, route"))
                label for="status" { "status" }
                (select("status", &filters.status, &["open", "closed", "new", "acknowledged", "resolved"]))
                button type="submit" { "Filter" }
            }
            @if let Some(error) = error { p.error { (error) } }
            table.incidents {
                thead { tr { th { "detected" } th { "severity" } th { "detector" } th { "entity" } th { "summary" } th { "triage" } } }
                tbody {
                    @for stored in incidents {
                        @let i = &stored.incident;
                        tr {
                            td { (time(i.detected_at)) }
                            td { span class={"sev " (i.severity.as_str())} { (i.severity.as_str()) } }
                            td { (i.detector) }
                            td.entity { a href={"/ui/incidents/" (i.id)} { (i.entity) } }
                            td.summary { (i.summary) }
                            td { (stored.triage.state.as_str()) }
                        }
                    }
                }
            }
            @if incidents.is_empty() && error.is_none() { p { "No incident matches." } }
            @if let Some(link) = next_link { p { a.next href=(link) { "Next page →" } } }
        },
    )
}

fn tallies(name: &str, list: &[Tally]) -> Markup {
    html! {
        @if !list.is_empty() {
            h3 { (name) }
            table.tally {
                @for tally in list { tr { td.count { (tally.count) } td { code { (tally.value) } } } }
            }
        }
    }
}

/// Requests per minute as bars (SVG attributes only: the CSP allows no inline style).
fn timeline(incident: &Incident) -> Markup {
    let points = &incident.explain.timeline;
    let peak = points.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
    let (width, height) = (600u32, 120u32);
    let bar = (width as usize / points.len().max(1)).clamp(2, 40) as u32;
    html! {
        @if !points.is_empty() {
            h2 { "Requests per minute" }
            svg.timeline xmlns="http://www.w3.org/2000/svg" width=(width) height=(height + 20) role="img" {
                title { "requests per minute during the episode (peak " (peak) ")" }
                @for (n, (minute, count)) in points.iter().enumerate() {
                    @let h = (*count as f64 / peak as f64 * height as f64).round().max(1.0) as u32;
                    rect x=(n as u32 * bar) y=(height - h) width=(bar.saturating_sub(1).max(1)) height=(h) fill="#c0392b" {
                        title { (time(Timestamp(minute * 1_000_000_000))) ": " (count) }
                    }
                }
                text x="0" y=(height + 15) font-size="11" { (time(Timestamp(points[0].0 * 1_000_000_000))) }
                text x=(width) y=(height + 15) font-size="11" text-anchor="end" { "peak " (peak) "/min" }
            }
        }
    }
}

pub fn incident(
    stored: &StoredIncident,
    related: &[StoredIncident],
    csrf: Option<&str>,
    notice: Option<&str>,
) -> Markup {
    let i = &stored.incident;
    layout(
        &format!("Incident {}", i.id),
        html! {
            p { a href="/ui/" { "← all incidents" } }
            h1 { span class={"sev " (i.severity.as_str())} { (i.severity.as_str()) } " " (i.detector) ": " span.entity { (i.entity) } }
            @if let Some(notice) = notice { p.notice { (notice) } }
            p.summary { (i.summary) }
            dl {
                dt { "id" } dd { code { (i.id) } }
                dt { "kind" } dd { (i.kind) " by " (i.entity_kind.as_str()) }
                dt { "started" } dd { (time(i.started_at)) }
                dt { "detected" } dd { (time(i.detected_at)) }
                dt { "last seen" } dd { (time(i.last_seen)) }
                dt { "requests" } dd { (i.count) }
                dt { "score" } dd {
                    "observed " (i.score.observed) ", expected " (format!("{:.2}", i.score.expected))
                    @if let Some(p) = i.score.p_value { ", p " (format!("{p:.3e}")) }
                }
                dt { "status" } dd { (i.status.as_str()) ", triage " span.triage { (stored.triage.state.as_str()) } }
                @if let Some(note) = &stored.triage.note { dt { "note" } dd.note { (note) } }
            }
            h2 { "Why" }
            p.rule { (i.explain.rule) }
            (tallies("Top paths", &i.explain.top_paths))
            (tallies("Statuses", &i.explain.statuses))
            (tallies("User agents", &i.explain.user_agents))
            (tallies("Upstreams", &i.explain.upstreams))
            (timeline(i))
            h2 { "Evidence" }
            @for evidence in &i.evidence {
                pre.evidence { (time(evidence.ts)) "  " (evidence.line) }
            }
            @if !related.is_empty() || !i.related.is_empty() {
                h2 { "Related incidents" }
                ul.related {
                    @for other in related {
                        li { a href={"/ui/incidents/" (other.incident.id)} { (other.incident.detector) " on " (other.incident.entity) } " — " (other.incident.summary) }
                    }
                    @for id in i.related.iter().filter(|id| !related.iter().any(|r| &r.incident.id == *id)) {
                        li { code { (id) } " (not stored)" }
                    }
                }
            }
            h2 { "Triage" }
            form.triage method="post" action={"/ui/incidents/" (i.id) "/triage"} {
                @if let Some(csrf) = csrf { input type="hidden" name="csrf" value=(csrf); }
                label for="note" { "note" }
                textarea #note name="note" rows="3" {}
                button type="submit" name="action" value="acknowledge" { "Acknowledge" }
                button type="submit" name="action" value="resolve" { "Resolve" }
            }
        },
    )
}

pub fn problem(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! { h1 { (title) } p.error { (message) } p { a href="/ui/" { "← all incidents" } } },
    )
}

pub const STYLE: &str = include_str!("console.css");
