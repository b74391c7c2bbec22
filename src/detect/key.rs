//! What a detector keys its statistics by, taken from a request: the client address, its
//! prefix (IPv4 /24, IPv6 /64), the route (method and path template with ids folded), or
//! the whole site. Keys print as the incident's entity and parse back from saved state.

use std::fmt::{self, Display};
use std::hash::Hash;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::event::{EntityKind, Request};

/// A detector key.
pub trait EntityKey: Hash + Eq + Ord + Clone + Display + FromStr + Send + 'static {
    const KIND: EntityKind;
    /// What a detector keeps between requests to build keys cheaply (routes reuse their
    /// templates instead of allocating one per request).
    type Scratch: Default + Send;

    /// The request's key; `None` when the request lacks what the key needs.
    fn of(req: &Request<'_>) -> Option<Self> {
        Self::of_with(req, &mut Self::Scratch::default())
    }

    /// `of`, reusing `scratch`.
    fn of_with(req: &Request<'_>, scratch: &mut Self::Scratch) -> Option<Self>;

    /// `of_with`, or what the engine built for this request already.
    fn of_request(
        req: &Request<'_>,
        _ctx: &super::Context<'_>,
        scratch: &mut Self::Scratch,
    ) -> Option<Self> {
        Self::of_with(req, scratch)
    }
}

impl EntityKey for IpAddr {
    const KIND: EntityKind = EntityKind::Ip;
    type Scratch = ();

    fn of_with(req: &Request<'_>, _: &mut ()) -> Option<Self> {
        req.client_ip
    }
}

/// The client's network: its IPv4 /24 or IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubnetKey(IpNet);

/// One write of the address and prefix (the derived hash made five, on every request).
impl Hash for SubnetKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self.0 {
            IpNet::V4(net) => {
                state.write_u64(u64::from(u32::from(net.addr())) << 8 | u64::from(net.prefix_len()))
            }
            IpNet::V6(net) => {
                state.write_u128(u128::from(net.addr()) ^ u128::from(net.prefix_len()) << 120)
            }
        }
    }
}

impl SubnetKey {
    pub fn of_ip(ip: IpAddr) -> SubnetKey {
        let prefix = if ip.is_ipv4() { 24 } else { 64 };
        SubnetKey(IpNet::new(ip, prefix).expect("valid prefix").trunc())
    }

    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl EntityKey for SubnetKey {
    const KIND: EntityKind = EntityKind::Subnet;
    type Scratch = ();

    fn of_with(req: &Request<'_>, _: &mut ()) -> Option<Self> {
        req.client_ip.map(SubnetKey::of_ip)
    }
}

impl Display for SubnetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SubnetKey {
    type Err = ipnet::AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SubnetKey(text.parse::<IpNet>()?.trunc()))
    }
}

/// Longest route template kept (the rest of a long path is cut).
const MAX_ROUTE: usize = 160;

/// Method and path template: `GET /api/orders/{id}`. Shared, so the copies a detector
/// keeps (table, episode) cost no allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey(std::sync::Arc<str>);

impl RouteKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Byte classes for `classified_id`, one table lookup per byte.
const DIGIT: u8 = 1;
/// A hex digit or `-` (UUIDs).
const HEXISH: u8 = 2;
/// A letter, digit, `-` or `_`.
const WORDISH: u8 = 4;

const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if c.is_ascii_digit() {
            class |= DIGIT;
        }
        if c.is_ascii_hexdigit() || c == b'-' {
            class |= HEXISH;
        }
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            class |= WORDISH;
        }
        table[b] = class;
        b += 1;
    }
    table
};

const ALL_CLASSES: u8 = DIGIT | HEXISH | WORDISH;

/// Whether a path segment names one item rather than a kind of thing: a number, a UUID, a
/// long hex string, or a token mixing letters and digits (`SKU-20083`, `a1b2c3d4`). Told
/// from its length, its count of digits and the byte classes all its bytes share.
fn classified_id(len: usize, digits: usize, all: u8) -> bool {
    if len == 0 {
        return false;
    }
    if digits == len {
        return true;
    }
    if all & HEXISH != 0 && len >= 8 && digits > 0 {
        return true;
    }
    // Mixed ids (SKU-20083, inv_2026_0042), but not versions such as v1 or v2, nor file
    // names (app.3f9a1c7e.js is one asset, asked for by every visitor).
    digits >= 2 && len >= 4 && all & WORDISH != 0
}

/// The route template of a request: method, then the path with id segments as `{id}`.
pub fn route_template(method: &[u8], path: &[u8]) -> String {
    let mut out = Vec::new();
    write_route_template(method, path, &mut out);
    route_text(&out).into_owned()
}

/// `route_template` as bytes into `out` (cleared first): this runs for every request, so
/// the buffer is reused and the text decoded only when the route is new.
fn write_route_template(method: &[u8], path: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(method.iter().map(u8::to_ascii_uppercase));
    out.push(b' ');
    if path.is_empty() {
        out.push(b'/');
    }
    // One pass over the path, classifying each segment's bytes as it goes (segments are a
    // few bytes: a search per segment costs more than it saves).
    let (mut start, mut digits, mut all) = (0, 0usize, ALL_CLASSES);
    for (at, &b) in path.iter().enumerate() {
        if b == b'/' {
            if push_segment(out, &path[start..at], digits, all) {
                return;
            }
            out.push(b'/');
            (start, digits, all) = (at + 1, 0, ALL_CLASSES);
        } else {
            let class = CLASSES[b as usize];
            digits += usize::from(class & DIGIT);
            all &= class;
        }
    }
    push_segment(out, &path[start..], digits, all);
}

/// Appends a segment, or `{id}` for an id; true when the template reached its length cap.
fn push_segment(out: &mut Vec<u8>, segment: &[u8], digits: usize, all: u8) -> bool {
    if classified_id(segment.len(), digits, all) {
        out.extend_from_slice(b"{id}");
    } else {
        out.extend_from_slice(segment);
    }
    if out.len() > MAX_ROUTE {
        out.truncate(MAX_ROUTE);
        return true;
    }
    false
}

/// A cut through a character, or bytes that are not UTF-8: replaced, as in evidence.
fn route_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    // The strict check first: it is fast on ASCII, the lossy one is not.
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Routes seen lately, so a request on a known route shares its key instead of allocating.
/// Bounded: forgotten wholesale when full (a flood of distinct paths costs allocations again,
/// never memory).
#[derive(Default)]
pub struct RouteScratch {
    template: Vec<u8>,
    known: hashbrown::HashTable<std::sync::Arc<str>>,
    hasher: foldhash::fast::RandomState,
    /// The routes of recent raw requests (method and path), direct-mapped: a site's
    /// requests go to a few thousand paths, and templating one costs more than the lookup.
    recent: Vec<RecentRoute>,
}

/// Routes remembered by `RouteScratch` at most.
const KNOWN_ROUTES: usize = 1 << 16;

/// Slots of `RouteScratch::recent`, and the longest method and path one keeps.
const RECENT_ROUTES: usize = 4096;
const RECENT_MAX_BYTES: usize = 256;

#[derive(Default)]
struct RecentRoute {
    /// Method then path, as requested (the slot's buffer is reused).
    raw: Vec<u8>,
    method_len: usize,
    route: Option<RouteKey>,
}

impl RecentRoute {
    fn is(&self, method: &[u8], path: &[u8]) -> bool {
        self.method_len == method.len()
            && self.raw.len() == method.len() + path.len()
            && self.raw[..method.len()] == *method
            && self.raw[method.len()..] == *path
    }
}

impl RouteScratch {
    fn key(&mut self, method: &[u8], path: &[u8]) -> RouteKey {
        use std::hash::BuildHasher;
        // Long targets are templated every time: slots stay small whatever is requested.
        if method.len() + path.len() > RECENT_MAX_BYTES {
            return self.templated(method, path);
        }
        if self.recent.is_empty() {
            self.recent.resize_with(RECENT_ROUTES, RecentRoute::default);
        }
        let slot = self.hasher.hash_one((method, path)) as usize % RECENT_ROUTES;
        if let Some(route) =
            (self.recent[slot].route.as_ref()).filter(|_| self.recent[slot].is(method, path))
        {
            return route.clone();
        }
        let route = self.templated(method, path);
        let recent = &mut self.recent[slot];
        recent.raw.clear();
        recent.raw.extend_from_slice(method);
        recent.raw.extend_from_slice(path);
        recent.method_len = method.len();
        recent.route = Some(route.clone());
        route
    }

    fn templated(&mut self, method: &[u8], path: &[u8]) -> RouteKey {
        use std::hash::BuildHasher;
        write_route_template(method, path, &mut self.template);
        let text = route_text(&self.template);
        let hash = self.hasher.hash_one(&*text);
        if let Some(known) = self.known.find(hash, |known| **known == *text) {
            return RouteKey(known.clone());
        }
        if self.known.len() >= KNOWN_ROUTES {
            self.known.clear();
        }
        let shared: std::sync::Arc<str> = text.into();
        let hasher = &self.hasher;
        self.known
            .insert_unique(hash, shared.clone(), |known| hasher.hash_one(&**known));
        RouteKey(shared)
    }
}

/// Static files form no route: they follow their pages' visitors (a crowd on a page brings
/// its images along), and a flood on one file shows in the site-wide count. Skipping them
/// also spares the template of almost half of a site's requests.
const ASSET_SUFFIXES: [&[u8]; 16] = [
    b".js", b".css", b".png", b".jpg", b".jpeg", b".gif", b".svg", b".webp", b".avif", b".ico",
    b".woff", b".woff2", b".ttf", b".map", b".mjs", b".otf",
];

pub(super) fn is_asset(path: &[u8]) -> bool {
    // Only the last segment's extension matters; most paths have none.
    let Some(dot) = path.iter().rposition(|b| *b == b'.') else {
        return false;
    };
    let extension = &path[dot..];
    ASSET_SUFFIXES
        .iter()
        .any(|suffix| extension.eq_ignore_ascii_case(suffix))
}

impl EntityKey for RouteKey {
    const KIND: EntityKind = EntityKind::Route;
    type Scratch = RouteScratch;

    fn of_request(
        req: &Request<'_>,
        ctx: &super::Context<'_>,
        scratch: &mut RouteScratch,
    ) -> Option<Self> {
        match ctx.route {
            Some(route) => route.cloned(),
            None => Self::of_with(req, scratch),
        }
    }

    fn of_with(req: &Request<'_>, scratch: &mut RouteScratch) -> Option<Self> {
        let path = req.path.as_deref()?;
        if is_asset(path) {
            return None;
        }
        let method = req.method.as_deref().unwrap_or(b"-");
        Some(scratch.key(method, path))
    }
}

impl Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RouteKey {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(RouteKey(text.into()))
    }
}

/// The whole site: one key, `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlobalKey;

impl EntityKey for GlobalKey {
    const KIND: EntityKind = EntityKind::Global;
    type Scratch = ();

    fn of_with(_: &Request<'_>, _: &mut ()) -> Option<Self> {
        Some(GlobalKey)
    }
}

impl Display for GlobalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*")
    }
}

impl FromStr for GlobalKey {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "*" {
            Ok(GlobalKey)
        } else {
            Err("the global key is *")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_fold_and_names_stay() {
        assert_eq!(
            route_template(b"get", b"/api/v1/search"),
            "GET /api/v1/search"
        );
        assert_eq!(
            route_template(b"PUT", b"/api/v1/inventory/SKU-20083"),
            "PUT /api/v1/inventory/{id}"
        );
        assert_eq!(
            route_template(
                b"GET",
                b"/api/orders/12345/items/9f1c2e3a-1b2c-4d5e-8f90-0a1b2c3d4e5f"
            ),
            "GET /api/orders/{id}/items/{id}"
        );
        assert_eq!(
            route_template(b"GET", b"/static/js/app.3f9a1c7e.js"),
            "GET /static/js/app.3f9a1c7e.js"
        );
        assert_eq!(route_template(b"GET", b"/"), "GET /");
        assert_eq!(route_template(b"GET", b"/v2/users/me"), "GET /v2/users/me");
    }

    #[test]
    fn static_files_form_no_route() {
        let request = |path: &'static str| Request {
            method: Some(std::borrow::Cow::Borrowed(b"GET")),
            path: Some(std::borrow::Cow::Borrowed(path.as_bytes())),
            ..Request::default()
        };
        assert!(RouteKey::of(&request("/static/js/app.3f9a1c7e.js")).is_none());
        assert!(RouteKey::of(&request("/img/Logo.PNG")).is_none());
        assert_eq!(
            RouteKey::of(&request("/api/v1.2/items")).unwrap().as_str(),
            "GET /api/v1.2/items"
        );
        assert_eq!(
            RouteKey::of(&request("/report.pdf")).unwrap().as_str(),
            "GET /report.pdf"
        );
    }

    proptest! {
        /// A scratch that has seen many other requests (its recent routes overwritten,
        /// repeated, long) gives each request the route its template says.
        #[test]
        fn a_reused_scratch_gives_each_request_its_own_route(
            requests in proptest::collection::vec(
                (prop::sample::select(vec!["GET", "post", "PUT", "DELETE"]),
                 "(/[a-z0-9-]{1,12}){1,4}|/[a-z]{300}"),
                1..300,
            ),
        ) {
            let mut scratch = RouteScratch::default();
            for round in 0..3 {
                for (method, path) in &requests {
                    let req = Request {
                        method: Some(std::borrow::Cow::Borrowed(method.as_bytes())),
                        path: Some(std::borrow::Cow::Borrowed(path.as_bytes())),
                        ..Request::default()
                    };
                    let route = RouteKey::of_with(&req, &mut scratch).unwrap();
                    prop_assert_eq!(
                        route.as_str(),
                        route_template(method.as_bytes(), path.as_bytes()),
                        "round {}", round
                    );
                }
            }
        }
    }

    #[test]
    fn a_recent_slot_answers_only_its_own_method_and_path() {
        let mut scratch = RouteScratch::default();
        // More distinct paths than slots: every slot is overwritten, some several times.
        for n in 0..3 * RECENT_ROUTES {
            // Same bytes, split differently between method and path.
            for (method, path) in [("GET", format!("/p{n}/x")), ("GE", format!("T/p{n}/x"))] {
                let route = scratch.key(method.as_bytes(), path.as_bytes());
                assert_eq!(
                    route.as_str(),
                    route_template(method.as_bytes(), path.as_bytes())
                );
            }
        }
    }

    #[test]
    fn subnets_are_the_24_or_the_64() {
        let v4 = SubnetKey::of_ip("198.51.100.77".parse().unwrap());
        assert_eq!(v4.to_string(), "198.51.100.0/24");
        let v6 = SubnetKey::of_ip("2001:db8:1:2:3:4:5:6".parse().unwrap());
        assert_eq!(v6.to_string(), "2001:db8:1:2::/64");
        assert_eq!(v6.to_string().parse::<SubnetKey>().unwrap(), v6);
        assert_eq!("*".parse::<GlobalKey>().unwrap().to_string(), "*");
    }

    /// The template as first written (three passes per segment, `split`): the model the
    /// one-pass version must agree with.
    fn model_template(method: &[u8], path: &[u8]) -> String {
        fn model_is_id(segment: &[u8]) -> bool {
            if segment.is_empty() {
                return false;
            }
            let digits = segment.iter().filter(|b| b.is_ascii_digit()).count();
            let hex = segment.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-');
            digits == segment.len()
                || (hex && segment.len() >= 8 && digits > 0)
                || (digits >= 2
                    && segment.len() >= 4
                    && segment
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
        }
        let mut out: Vec<u8> = method.iter().map(u8::to_ascii_uppercase).collect();
        out.push(b' ');
        if path.is_empty() {
            out.push(b'/');
        }
        for (i, segment) in path.split(|b| *b == b'/').enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            if model_is_id(segment) {
                out.extend_from_slice(b"{id}");
            } else {
                out.extend_from_slice(segment);
            }
            if out.len() > MAX_ROUTE {
                out.truncate(MAX_ROUTE);
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Mostly path-like bytes (slashes, digits, hex, words), sometimes anything.
        prop_oneof![
            proptest::collection::vec(
                prop_oneof![
                    Just(b'/'),
                    Just(b'-'),
                    Just(b'_'),
                    b'0'..=b'9',
                    b'a'..=b'h',
                    b'A'..=b'Z',
                    Just(0xc3u8),
                    Just(0xa9u8),
                ],
                0..200
            ),
            proptest::collection::vec(any::<u8>(), 0..200),
        ]
    }

    proptest! {
        #[test]
        fn one_pass_templates_agree_with_the_model(method in "[a-zA-Z]{0,7}", path in path_bytes()) {
            prop_assert_eq!(route_template(method.as_bytes(), &path), model_template(method.as_bytes(), &path));
            let mut scratch = RouteScratch::default();
            let request = Request {
                method: Some(std::borrow::Cow::Borrowed(method.as_bytes())),
                path: Some(std::borrow::Cow::Borrowed(&path)),
                ..Request::default()
            };
            let twice = (RouteKey::of_with(&request, &mut scratch), RouteKey::of_with(&request, &mut scratch));
            prop_assert_eq!(twice.0.clone(), RouteKey::of(&request));
            prop_assert_eq!(twice.0, twice.1);
        }

        #[test]
        fn templates_are_bounded_and_stable(path in proptest::collection::vec(any::<u8>(), 0..600)) {
            let once = route_template(b"GET", &path);
            prop_assert!(once.chars().count() <= MAX_ROUTE + 4);
            prop_assert_eq!(route_template(b"GET", &path), once);
        }
    }
}
