//! Which partition a request's keys land in, one per detector family, so that each
//! detector's key is seen whole by one analyzer: an address with its /24 or /64 prefix
//! (by the prefix), a token by its fingerprint, a route by its template, the site's global
//! counts in one partition. The hash is FNV-1a, fixed for all versions: every agent of a
//! cluster must agree where a key goes.

use crate::detect::family;
use crate::detect::key::SubnetKey;

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn of(bytes: &[u8], partitions: u32) -> u32 {
    (fnv1a(bytes) % u64::from(partitions.max(1))) as u32
}

/// The partition of an address's family: by its prefix.
pub fn of_address(ip: std::net::IpAddr, partitions: u32) -> u32 {
    let net = SubnetKey::of_ip(crate::event::canonical_ip(ip)).net();
    let mut bytes = [0u8; 17];
    let len = match net.network() {
        std::net::IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            4
        }
        std::net::IpAddr::V6(v6) => {
            bytes[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    bytes[len] = net.prefix_len();
    of(&bytes[..=len], partitions)
}

pub fn of_token(fingerprint: &[u8], partitions: u32) -> u32 {
    of(fingerprint, partitions)
}

pub fn of_route(template: &str, partitions: u32) -> u32 {
    of(template.as_bytes(), partitions)
}

pub fn of_global(partitions: u32) -> u32 {
    of(b"global", partitions)
}

/// (partition, families) for a request's keys, families that land together merged: at
/// most four entries.
pub fn targets(
    address: Option<u32>,
    token: Option<u32>,
    route: Option<u32>,
    global: u32,
) -> Vec<(u32, u8)> {
    let mut out: Vec<(u32, u8)> = Vec::with_capacity(4);
    let mut add = |partition: Option<u32>, bit: u8| {
        let Some(p) = partition else { return };
        match out.iter_mut().find(|(q, _)| *q == p) {
            Some(slot) => slot.1 |= bit,
            None => out.push((p, bit)),
        }
    };
    add(address, family::ADDRESS);
    add(token, family::TOKEN);
    add(route, family::ROUTE);
    add(Some(global), family::GLOBAL);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_and_its_prefix_share_a_partition() {
        let p = |s: &str| of_address(s.parse().unwrap(), 16);
        assert_eq!(p("203.0.113.9"), p("203.0.113.200"));
        assert_eq!(p("2001:db8:1:2::1"), p("2001:db8:1:2:ffff::9"));
        assert_eq!(p("::ffff:203.0.113.9"), p("203.0.113.9"));
        // Spread: 256 prefixes over 16 partitions touch every one.
        let used: std::collections::HashSet<u32> = (0..=255)
            .map(|i| of_address(format!("198.51.{i}.1").parse().unwrap(), 16))
            .collect();
        assert_eq!(used.len(), 16);
    }

    #[test]
    fn the_hash_is_fixed_across_versions() {
        // FNV-1a test vectors: agents of different builds must agree.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(of_route("GET /", 1), 0);
    }

    #[test]
    fn families_that_land_together_travel_once() {
        assert_eq!(
            targets(Some(3), Some(3), Some(5), 5),
            vec![
                (3, family::ADDRESS | family::TOKEN),
                (5, family::ROUTE | family::GLOBAL)
            ]
        );
        assert_eq!(targets(None, None, None, 0), vec![(0, family::GLOBAL)]);
    }
}
