//! Each kind's rule in words, with the definition's thresholds: the "why" of every incident
//! it opens (`explain.rule`).

use super::definition::KindParams;

/// `60s`, `10m`, `1h30m`, `30d`: the units detector files are written in.
pub fn duration_words(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    if secs > 0 && secs % 86_400 == 0 {
        return format!("{}d", secs / 86_400);
    }
    if secs >= 3_600 && secs % 3_600 == 0 {
        return format!("{}h", secs / 3_600);
    }
    if secs >= 3_600 && secs % 60 == 0 {
        return format!("{}h{}m", secs / 3_600, secs % 3_600 / 60);
    }
    if secs >= 60 && secs % 60 == 0 {
        return format!("{}m", secs / 60);
    }
    format!("{secs}s")
}

fn statuses(list: &[u16]) -> String {
    let parts: Vec<String> = list.iter().map(u16::to_string).collect();
    parts.join("/")
}

impl KindParams {
    pub fn rule(&self) -> String {
        match self {
            KindParams::RateSpike(p) => {
                let mut rule = format!(
                    "requests in {window} ≥ {min}, ≥ {own}x the entity's own baseline \
                     (half-life {half}) and ≥ {pop}x the p{q:.0} of its peers, Poisson p < {pv:e} \
                     and < {budget:e} / keys tracked",
                    window = duration_words(p.window.window_nanos()),
                    min = p.min_count,
                    own = p.own_ratio,
                    half = duration_words(
                        (p.half_life_buckets * p.window.bucket_nanos() as f64) as i64
                    ),
                    pop = p.population_ratio,
                    q = p.population_quantile * 100.0,
                    pv = p.p_value,
                    budget = p.false_alarm_budget,
                );
                if p.min_sources > 0 {
                    rule.push_str(&format!(", brought by ≥ {} new sources", p.min_sources));
                }
                rule
            }
            KindParams::Scanner(p) => format!(
                "≥ {min} probe points in {window} (a known exploit 2 each time; a sensitive \
                 path or attack pattern 2, another unreferred non-asset {st} 1, each path once), \
                 points ≥ {frac:.0}% of its requests",
                min = p.min_count,
                window = duration_words(p.window.window_nanos()),
                st = statuses(&p.statuses),
                frac = p.min_fraction * 100.0,
            ),
            KindParams::BruteForce(p) => {
                let mut text = format!(
                    "≥ {min} {st} answers on login-like routes in {window}",
                    min = p.min_count,
                    st = statuses(&p.statuses),
                    window = duration_words(p.window.window_nanos()),
                );
                if p.burst_count > 0 {
                    let refused = if p.refused_statuses.is_empty() {
                        String::new()
                    } else {
                        format!("{} answers anywhere or ", statuses(&p.refused_statuses))
                    };
                    text += &format!(
                        ", or {burst} identical refusals of one target ({refused}2xx to a \
                         login POST) within {within}",
                        burst = p.burst_count,
                        within = duration_words(p.burst_within_nanos),
                    );
                }
                text + &format!(", ≥ {:.0}% of its requests", p.min_fraction * 100.0)
            }
            KindParams::TokenManySources(p) => format!(
                "≥ {min} distinct addresses in {window} and ≥ {ratio}x the token's usual count",
                min = p.min_sources,
                window = duration_words(p.window.window_nanos()),
                ratio = p.ratio,
            ),
            KindParams::TokenNewSource(p) => format!(
                "a network outside the token's first {history} of addresses, used (≥ {min} \
                 requests) while its known client is still active within {confirm}",
                history = duration_words(p.min_history_nanos),
                min = p.min_requests,
                confirm = duration_words(p.confirm_nanos),
            ),
            KindParams::IpManyTokens(p) => format!(
                "≥ {tokens} distinct credentials, or ≥ {refused} refused (401/403), in {window}",
                tokens = p.min_tokens,
                refused = p.min_refused,
                window = duration_words(p.window.window_nanos()),
            ),
            KindParams::BadAgent(p) => format!(
                "an attack tool's user agent ({n} known) on ≥ {min} requests with ≥ {answered} \
                 answered 1xx–3xx, or on ≥ {any} requests, in {window}",
                n = p.agents.len(),
                min = p.min_requests,
                answered = p.min_answered,
                any = p.min_unanswered,
                window = duration_words(p.window.window_nanos()),
            ),
            KindParams::UnexpectedSource(p) => {
                let allow: Vec<String> = p.allow.iter().map(ToString::to_string).collect();
                format!(
                    "{} may only be called from {}",
                    p.rule.describe(),
                    allow.join(", ")
                )
            }
            KindParams::NewSource(p) => format!(
                "an answered request on {} from a source not seen there in {} (after {} of history)",
                p.rule.describe(),
                duration_words(p.forget_nanos),
                duration_words(p.min_history_nanos),
            ),
            KindParams::ErrorSpike(p) => format!(
                "≥ {min} 5xx in {window}, ≥ {share:.0}% of requests and ≥ {ratio}x the usual \
                 share (at least {floor}%), binomial p < {pv:e} and < {budget:e} / keys tracked",
                min = p.min_failures,
                window = duration_words(p.window.window_nanos()),
                share = p.min_share * 100.0,
                ratio = p.ratio,
                floor = p.usual_floor * 100.0,
                pv = p.p_value,
                budget = p.false_alarm_budget,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::definition::parse_definition;
    use crate::detect::definition::BUILTIN;

    #[test]
    fn durations_read_as_written() {
        let secs = 1_000_000_000;
        assert_eq!(duration_words(60 * secs), "1m");
        assert_eq!(duration_words(600 * secs), "10m");
        assert_eq!(duration_words(45 * secs), "45s");
        assert_eq!(duration_words(5400 * secs), "1h30m");
        assert_eq!(duration_words(30 * 86_400 * secs), "30d");
    }

    #[test]
    fn every_built_in_rule_quotes_its_thresholds() {
        for (file, text) in BUILTIN {
            let def = parse_definition(file, text).unwrap();
            let rule = def.params.rule();
            assert!(rule.chars().any(|c| c.is_ascii_digit()), "{file}: {rule}");
            assert!(!rule.contains("{"), "{file}: {rule}");
        }
        let scanner = BUILTIN.iter().find(|(f, _)| f.contains("scanner")).unwrap();
        let rule = parse_definition(scanner.0, scanner.1)
            .unwrap()
            .params
            .rule();
        assert!(rule.starts_with("≥ 8 probe points in 10m"), "{rule}");
    }
}
