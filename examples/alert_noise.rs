//! How many messages a digest channel (Slack's defaults: grouped by detector, group_wait
//! 30 s, group_interval 5 m) would send for a replay's incidents, in event time:
//!
//! ```sh
//! gatewatch replay --output jsonl access.log > incidents.jsonl
//! cargo run --release --example alert_noise -- incidents.jsonl [GROUP_WAIT GROUP_INTERVAL]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use gatewatch::alert::timing::plan_digests;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: alert_noise INCIDENTS.jsonl [WAIT INTERVAL]"))?;
    let wait = humantime::parse_duration(args.get(1).map_or("30s", String::as_str))?;
    let interval = humantime::parse_duration(args.get(2).map_or("5m", String::as_str))?;
    let mut groups: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let incident: serde_json::Value = serde_json::from_str(line)?;
        let detected = incident["detected_at"].as_str().unwrap_or_default();
        let at = chrono::DateTime::parse_from_rfc3339(detected)?
            .timestamp_nanos_opt()
            .unwrap_or_default();
        let detector = incident["detector"].as_str().unwrap_or("?").to_owned();
        groups.entry(detector).or_default().push(at);
    }
    let (mut incidents, mut messages, mut digests) = (0, 0, 0);
    let mut span = (i64::MAX, i64::MIN);
    for (group, times) in &mut groups {
        times.sort_unstable();
        span = (span.0.min(times[0]), span.1.max(times[times.len() - 1]));
        let plan = plan_digests(times, wait, interval);
        let multi = plan.iter().filter(|(_, n)| *n > 1).count();
        println!(
            "{group}: {} incidents -> {} messages ({multi} digests)",
            times.len(),
            plan.len()
        );
        incidents += times.len();
        messages += plan.len();
        digests += multi;
    }
    let hours = Duration::from_nanos((span.1 - span.0).max(0) as u64).as_secs_f64() / 3600.0;
    println!(
        "total: {incidents} incidents -> {messages} messages ({digests} digests) over {hours:.1} h of traffic; group_wait {}, group_interval {}",
        humantime::format_duration(wait),
        humantime::format_duration(interval)
    );
    Ok(())
}
