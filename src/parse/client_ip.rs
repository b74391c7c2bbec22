//! The real client behind proxies: the right-most address of `X-Forwarded-For` + peer that
//! is not a trusted proxy. Addresses left of an untrusted hop could be forged by the client,
//! so they are never believed.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::event::{parse_ip, Request};

/// CIDRs whose hops are our own proxies / load balancers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8,192.0.2.7` (a bare address is a /32 or /128).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not a CIDR or an IP address"))?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// Rewrites `req.client_ip` to the real client. Without trusted proxies the peer stays;
    /// a format with no peer (Envoy's default) uses the right-most forwarded address.
    pub fn resolve(&self, req: &mut Request<'_>) {
        if let Some(client) = self.client(req.client_ip, req.x_forwarded_for.as_deref()) {
            req.client_ip = Some(client);
        }
    }

    fn client(&self, peer: Option<IpAddr>, forwarded: Option<&[u8]>) -> Option<IpAddr> {
        if let Some(peer) = peer {
            if !self.contains(&peer) {
                return Some(peer);
            }
        }
        let hops: Vec<IpAddr> = forwarded
            .map(|list| list.split(|&b| b == b',').filter_map(parse_ip).collect())
            .unwrap_or_default();
        hops.iter()
            .rev()
            .find(|hop| !self.contains(hop))
            // Every hop is ours: the left-most is the closest we have to the client.
            .or(hops.first())
            .copied()
            .or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn resolved(trusted: &str, peer: Option<&str>, xff: Option<&'static str>) -> Option<IpAddr> {
        let mut req = Request {
            client_ip: peer.map(ip),
            x_forwarded_for: xff.map(|x| std::borrow::Cow::Borrowed(x.as_bytes())),
            ..Request::default()
        };
        TrustedProxies::parse(trusted).unwrap().resolve(&mut req);
        req.client_ip
    }

    #[test]
    fn right_most_untrusted_hop_wins() {
        let xff = Some("198.51.100.1, 203.0.113.9, 10.0.0.4");
        assert_eq!(
            resolved("10.0.0.0/8", Some("10.0.0.2"), xff),
            Some(ip("203.0.113.9"))
        );
        // The forged left-most entry is never believed while an untrusted hop is right of it.
        assert_eq!(resolved("", Some("10.0.0.2"), xff), Some(ip("10.0.0.2")));
        assert_eq!(
            resolved("10.0.0.0/8", Some("192.0.2.1"), xff),
            Some(ip("192.0.2.1"))
        );
    }

    #[test]
    fn no_peer_uses_forwarded_addresses() {
        assert_eq!(
            resolved("", None, Some("198.51.100.23,10.0.0.4")),
            Some(ip("10.0.0.4"))
        );
        assert_eq!(
            resolved("10.0.0.0/8", None, Some("198.51.100.23,10.0.0.4")),
            Some(ip("198.51.100.23"))
        );
        assert_eq!(
            resolved("10.0.0.0/8", None, Some("10.1.1.1, 10.0.0.4")),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(resolved("10.0.0.0/8", None, None), None);
    }

    #[test]
    fn ipv6_brackets_ports_and_bare_addresses() {
        assert_eq!(
            resolved(
                "2001:db8::/32,192.0.2.7",
                Some("192.0.2.7"),
                Some("[2001:db8::5]:443, [2a01:4f8::1]:80")
            ),
            Some(ip("2a01:4f8::1"))
        );
        assert!(TrustedProxies::parse("10.0.0.0/8, nonsense").is_err());
    }
}
