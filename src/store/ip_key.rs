//! Sortable keys for addresses, so "which incidents involve 10.0.0.0/8" is an index range
//! scan on both backends: every address as 32 hex digits of its IPv6 form (IPv4 mapped).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::event::{canonical_ip, EntityKind};

fn key(ip: IpAddr) -> String {
    let v6 = match canonical_ip(ip) {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    format!("{:032x}", u128::from(v6))
}

fn net_range(net: IpNet) -> (String, String) {
    (key(net.network()), key(net.broadcast()))
}

/// The first and last address an incident's entity covers, for ip and subnet entities.
pub(super) fn entity_range(kind: EntityKind, entity: &str) -> Option<(String, String)> {
    match kind {
        EntityKind::Ip => entity.parse::<IpAddr>().ok().map(|ip| (key(ip), key(ip))),
        EntityKind::Subnet => entity
            .parse::<IpNet>()
            .ok()
            .map(|net| net_range(net.trunc())),
        _ => None,
    }
}

/// What `--entity` asks for: an address or network (matching ip incidents inside it and
/// subnet incidents overlapping it), or any other entity (token fingerprint, route) exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntityFilter {
    Range { lo: String, hi: String },
    Exact(String),
}

impl EntityFilter {
    pub fn parse(text: &str) -> EntityFilter {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            let k = key(ip);
            return EntityFilter::Range {
                lo: k.clone(),
                hi: k,
            };
        }
        if let Ok(net) = text.parse::<IpNet>() {
            let (lo, hi) = net_range(net.trunc());
            return EntityFilter::Range { lo, hi };
        }
        EntityFilter::Exact(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_mapped_ipv4_share_a_key() {
        let a = entity_range(EntityKind::Ip, "203.0.113.7").unwrap();
        let b = entity_range(EntityKind::Ip, "::ffff:203.0.113.7").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0, "00000000000000000000ffffcb007107");
    }

    #[test]
    fn cidr_filter_spans_the_network() {
        let EntityFilter::Range { lo, hi } = EntityFilter::parse("203.0.113.9/24") else {
            panic!("a CIDR is a range");
        };
        let inside = entity_range(EntityKind::Ip, "203.0.113.200").unwrap().0;
        let outside = entity_range(EntityKind::Ip, "203.0.114.1").unwrap().0;
        assert!(lo <= inside && inside <= hi);
        assert!(outside > hi);
        // Keys order like addresses, IPv6 included.
        let v6 = entity_range(EntityKind::Ip, "2001:db8::1").unwrap().0;
        assert!(v6 > hi);
    }

    #[test]
    fn other_entities_are_exact() {
        assert_eq!(
            EntityFilter::parse("tok_3f2a9c81"),
            EntityFilter::Exact("tok_3f2a9c81".into())
        );
        assert_eq!(entity_range(EntityKind::Token, "tok_3f2a9c81"), None);
        assert_eq!(entity_range(EntityKind::Subnet, "not a net"), None);
    }
}
