#!/usr/bin/env python3
"""Generate gatewatch's synthetic access-log test data.

Writes, into testdata/ (or --out-dir):

  nginx-combined-attacks.log.gz
      25 minutes (2026-11-20T09:00:00Z .. 09:25:00Z) of nginx `combined`
      log for a made-up shop: ~1500 browsing client IPs (page + 2-6 asset/XHR
      sub-requests per burst, ~0.15 req/s per active IP), token-authenticated
      API clients, two slow crawlers, and these labelled events:
        benign_nat               one IP at ~6 req/s for the whole log
        rate_spike               new IP scraping /products/<n> at ~9 req/s,
                                 minutes 9-12
        scanner                  new IP probing sensitive paths at ~4 req/s,
                                 minutes 14-16, mostly 404
        brute_force              new IP POSTing /api/v1/auth/login at ~2 req/s,
                                 minutes 17-21, mostly 401
        benign_background_probe  3 IPs making 1-3 sensitive-path requests each
      Lines are in time order except that ~5% are logged up to 2 s early.
  nginx-combined-attacks.labels.jsonl
      Ground truth, one JSON object per labelled event; start/end are the
      logged times of the entity's first and last line (inclusive).
  ingress-nginx-sample.log
      ~40 lines in the ingress-nginx default (upstreaminfo) format with edge
      cases: IPv6 client, two upstream attempts, `-` upstream fields, empty
      `[]` upstream name, canary alternative upstream, `\\x22` in the UA.
  combined-sample.log
      ~30 combined lines with parser edge cases: IPv6 client, remote user,
      `-` body bytes (Apache style; nginx writes 0), TLS handshake bytes as
      the request line, empty request, `\\x22` in path and UA, escaped UTF-8 UA.

Why: gatewatch's parsers and detectors need realistic, reproducible input with
known answers. Output is byte-identical on every run (random.Random(7), gzip
mtime 0). All addresses are invented from reserved or documentation ranges
(100.64.0.0/10, 198.18.0.0/15, the three TEST-NETs, 2001:db8::/32).

Usage: gen_testdata.py [--out-dir DIR]
"""

import argparse
import gzip
import ipaddress
import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

LOG_START = datetime(2026, 11, 20, 9, 0, 0, tzinfo=timezone.utc)
LOG_SECONDS = 25 * 60
SITE = "https://shop.example.com"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

BACKGROUND_IPS = 1500
IPV6_SHARE = 0.12
JITTER_SHARE = 0.05
JITTER_MAX_S = 2.0
STRAY_404_SHARE = 0.04       # of requests for products/images/blog: ~1% of all
STRAY_404_PREFIXES = ("/products/", "/static/img/", "/blog/", "/api/v1/products/")

NAT_USERS = 40              # browsers behind the NAT, ~0.15 req/s each
SPIKE = (9 * 60, 12 * 60, 9.0)          # start s, end s, req/s
SCANNER = (14 * 60, 16 * 60, 4.0)
BRUTE_FORCE = (17 * 60, 21 * 60, 2.0)

V4_NETS = (  # (network, weight)
    (ipaddress.ip_network("100.64.0.0/10"), 70),
    (ipaddress.ip_network("198.18.0.0/15"), 20),
    (ipaddress.ip_network("192.0.2.0/24"), 3),
    (ipaddress.ip_network("198.51.100.0/24"), 3),
    (ipaddress.ip_network("203.0.113.0/24"), 4),
)
V6_PREFIX = int(ipaddress.IPv6Address("2001:db8::"))

BROWSER_UAS = (  # (weight, user agent)
    (30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
    (8, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36"),
    (10, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
    (14, "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36"),
    (12, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1"),
    (6, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Safari/605.1.15"),
    (6, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36 Edg/142.0.0.0"),
    (5, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:145.0) Gecko/20100101 Firefox/145.0"),
    (2, "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0"),
    (2, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
    (3, "Mozilla/5.0 (iPad; CPU OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1"),
    (2, "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36"),
    (2, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:145.0) Gecko/20100101 Firefox/145.0"),
)
API_CLIENT_UAS = ("python-requests/2.32.3", "okhttp/4.12.0", "Go-http-client/2.0",
                  "acme-inventory-sync/2.4.1", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)")
CRAWLER_UAS = ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
               "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)")
SCANNER_UAS = ((5, "curl/7.88.1"), (3, "python-requests/2.28.2"), (2, "Go-http-client/1.1"))
SCRAPER_UA = "Scrapy/2.11.2 (+https://scrapy.org)"
BRUTE_FORCE_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"
STRAY_PROBE_UAS = ("Mozilla/5.0 zgrab/0.x", "curl/8.5.0",
                   "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36")

LANDING_REFERERS = ((40, "-"), (35, "https://www.google.com/"), (6, "https://www.bing.com/"),
                    (5, "https://duckduckgo.com/"), (5, "https://www.facebook.com/"),
                    (4, "https://t.co/"), (3, "android-app://com.google.android.gm/"),
                    (2, "https://news.ycombinator.com/"))
CATEGORIES = ("shoes", "jackets", "socks", "backpacks", "hats", "gloves", "sale", "new-arrivals")
SEARCH_TERMS = ("running+shoes", "rain+jacket", "wool%20socks", "backpack", "gift+card",
                "trail", "beanie", "waterproof+gloves", "size+guide")
BLOG_SLUGS = ("how-to-choose-trail-shoes", "layering-101", "packing-list-weekend-hike",
              "caring-for-merino", "winter-sale-2026")
CORE_ASSETS = {  # path -> size; what a cold-cache page load pulls in
    "/static/css/app.css": 48213,
    "/static/js/app.js": 183422,
    "/static/js/vendor.js": 412870,
    "/static/img/logo.png": 12872,
    "/static/fonts/inter-var.woff2": 97344,
    "/favicon.ico": 15086,
}

SCANNER_BASE_PROBES = (
    ("GET", "/.env"), ("GET", "/.git/config"), ("GET", "/wp-login.php"), ("GET", "/phpmyadmin/"),
    ("GET", "/admin/config.php"), ("GET", "/backup.sql"), ("GET", "/.env.production"),
    ("GET", "/.git/HEAD"), ("GET", "/.svn/entries"), ("GET", "/.DS_Store"), ("GET", "/wp-admin/"),
    ("GET", "/wp-config.php.bak"), ("POST", "/xmlrpc.php"), ("GET", "/phpMyAdmin/index.php"),
    ("GET", "/pma/"), ("GET", "/config.php"), ("GET", "/config.json"), ("GET", "/config/database.yml"),
    ("GET", "/actuator/env"), ("GET", "/actuator/heapdump"), ("GET", "/jolokia/list"),
    ("GET", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"),
    ("POST", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php"),
    ("GET", "/db.sql"), ("GET", "/dump.sql"), ("GET", "/backup.zip"), ("GET", "/site.tar.gz"),
    ("GET", "/.aws/credentials"), ("GET", "/.ssh/id_rsa"), ("GET", "/.htpasswd"),
    ("GET", "/phpinfo.php"), ("GET", "/info.php"), ("GET", "/_profiler/phpinfo"),
    ("GET", "/web.config"), ("GET", "/WEB-INF/web.xml"), ("GET", "/.vscode/sftp.json"),
    ("GET", "/docker-compose.yml"), ("GET", "/composer.json"), ("GET", "/debug/pprof/"),
    ("GET", "/telescope/requests"), ("HEAD", "/admin/"), ("GET", "/administrator/index.php"),
)
SCANNER_DIRS = ("", "/api", "/app", "/backup", "/old", "/public", "/v1", "/admin",
                "/laravel", "/wordpress", "/site", "/new", "/dev", "/staging")
SCANNER_ROOT_PROBES = (  # sent once, before the directory sweep
    ("GET", "/"), ("GET", "/robots.txt"), ("GET", "/sitemap.xml"),
    ("GET", "/../../etc/passwd"), ("GET", "/../../../../etc/passwd"),
    ("GET", "/cgi-bin/../../../../etc/passwd"), ("GET", "/static/..%2f..%2f..%2fetc%2fpasswd"),
    ("GET", "/index.php?page=../../../../etc/passwd"),
    ("GET", "/server-status"), ("GET", "/server-info"), ("GET", "/nginx_status"),
    ("GET", "/actuator/health"), ("GET", "/swagger-ui.html"), ("GET", "/api/v1/swagger.json"),
    ("GET", "/.well-known/security.txt"), ("GET", "/owa/auth/logon.aspx"),
    ("GET", "/cgi-bin/luci/;stok=/locale"), ("GET", "/HNAP1/"),
)
STRAY_PROBE_PATHS = ("/.env", "/.git/config", "/wp-login.php", "/phpmyadmin/", "/backup.sql",
                     "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/actuator/env")


def weighted(rng, pairs):
    return rng.choices([v for _, v in pairs], weights=[w for w, _ in pairs])[0]


def time_local(second):
    t = LOG_START + timedelta(seconds=second)
    return f"{t.day:02d}/{MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


def rfc3339(second):
    return (LOG_START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class AddressPool:
    """Hands out unique invented client addresses."""

    def __init__(self, rng):
        self.rng = rng
        self.used = set()

    def take(self, v6_share=IPV6_SHARE):
        rng = self.rng
        while True:
            if rng.random() < v6_share:
                addr = str(ipaddress.IPv6Address(
                    V6_PREFIX | rng.getrandbits(32) << 64 | rng.getrandbits(64)))
            else:
                net = weighted(rng, [(w, n) for n, w in V4_NETS])
                host = ipaddress.IPv4Address(int(net.network_address) + rng.randrange(net.num_addresses))
                if host.packed[3] in (0, 255):
                    continue
                addr = str(host)
            if addr not in self.used:
                self.used.add(addr)
                return addr


class Log:
    """Collects requests as (time, ip, user, method, path, proto, status, size, referer, ua)."""

    def __init__(self):
        self.events = []

    def add(self, t, ip, method, path, status, size, ua, referer="-", user="-", proto="HTTP/1.1"):
        if 0 <= t < LOG_SECONDS:
            self.events.append((t, ip, user, method, path, proto, status, size, referer, ua))


class Shop:
    """The made-up site: what pages link to and what it answers."""

    def __init__(self, rng):
        self.rng = rng
        self.sizes = dict(CORE_ASSETS)

    def product_id(self):
        return int(5000 ** self.rng.random())  # log-uniform: a few popular products

    def page(self):
        rng, r = self.rng, self.rng.random()
        if r < 0.45:
            return f"/products/{self.product_id()}"
        if r < 0.60:
            return f"/category/{rng.choice(CATEGORIES)}"
        if r < 0.70:
            return f"/search?q={rng.choice(SEARCH_TERMS)}"
        if r < 0.80:
            return "/"
        if r < 0.87:
            return "/cart"
        if r < 0.90:
            return "/checkout"
        if r < 0.95:
            return "/account"
        return f"/blog/{rng.choice(BLOG_SLUGS)}"

    def sub_requests(self, page, cold):
        """(method, path) pulled in by a page: static assets on a cold cache, then images and XHR."""
        pool = [("GET", p) for p in CORE_ASSETS] if cold else [
            ("GET", "/static/css/app.css"), ("GET", "/static/js/app.js"),
            ("POST", "/api/v1/events"), ("GET", "/api/v1/session"), ("GET", "/api/v1/cart")]
        if page.startswith("/products/"):
            n = page.rsplit("/", 1)[1]
            pool += [("GET", f"/static/img/products/{n}.png"), ("GET", f"/api/v1/products/{n}/reviews?page=1"),
                     ("GET", f"/api/v1/recommendations?product={n}")]
        elif page.startswith("/blog/"):
            pool.append(("GET", f"/static/img/blog/{page[6:]}.png"))
        elif page == "/cart":
            pool += [("POST", "/api/v1/cart/items"), ("GET", "/api/v1/shipping/estimate?country=DE")]
        elif page == "/checkout":
            pool += [("POST", "/api/v1/checkout/session"), ("GET", "/api/v1/payment/methods")]
        elif page == "/account":
            pool += [("POST", "/api/v1/auth/login"), ("GET", "/api/v1/orders")]
        else:
            pool += [("GET", f"/static/img/products/{self.product_id()}.png") for _ in range(3)]
        k = self.rng.randint(2, 6)
        return pool[:k] if cold else self.rng.sample(pool, min(k, len(pool)))

    def respond(self, method, path, cached):
        """(status, body bytes) for a background request; `cached` holds the client's cached assets."""
        rng = self.rng
        if path.startswith(STRAY_404_PREFIXES) and rng.random() < STRAY_404_SHARE:
            return 404, 555  # deleted product, stale link
        if rng.random() < 0.001:
            return 499, 0
        if path.startswith("/static/") or path == "/favicon.ico":
            if path in cached and rng.random() < 0.75:
                return 304, 0
            cached.add(path)
            return 200, self.sizes.setdefault(path, rng.randint(4000, 90000))
        if path == "/api/v1/auth/login":
            return (200, 312) if rng.random() < 0.9 else (401, 43)
        if path == "/api/v1/events":
            return 204, 0
        if method == "POST":
            return 201, rng.randint(300, 900)
        if path.startswith("/api/"):
            return 200, rng.randint(180, 4800)
        base = self.sizes.setdefault(path, rng.randint(9000, 48000))
        return 200, int(base * rng.uniform(0.97, 1.03))  # dynamic HTML varies a little


def browse(rng, shop, log, ip, ua, proto, start, bursts):
    """One visitor: bursts of page + 2-6 sub-requests separated by think times."""
    cached, prev, t = set(), None, start
    for _ in range(bursts):
        if t >= LOG_SECONDS:
            return t
        page = shop.page()
        referer = SITE + prev if prev else weighted(rng, LANDING_REFERERS)
        log.add(t, ip, "GET", page, *shop.respond("GET", page, cached), ua, referer, proto=proto)
        st = t
        for method, path in shop.sub_requests(page, cold=not cached):
            st += rng.uniform(0.02, 0.4)
            log.add(st, ip, method, path, *shop.respond(method, path, cached), ua, SITE + page, proto=proto)
        prev = page
        t = st + 2 + rng.expovariate(1 / 30)
    return t


def gen_background(rng, shop, log, pool):
    for _ in range(BACKGROUND_IPS):
        ip = pool.take()
        visitors = 2 if rng.random() < 0.1 else 1  # households / small offices
        for _ in range(visitors):
            ua = weighted(rng, BROWSER_UAS)
            proto = "HTTP/2.0" if rng.random() < 0.65 else "HTTP/1.1"
            end = browse(rng, shop, log, ip, ua, proto, rng.uniform(-60, LOG_SECONDS - 30),
                         1 + int(rng.expovariate(1 / 5)))
            if rng.random() < 0.2:  # returning visitor
                browse(rng, shop, log, ip, ua, proto, end + rng.uniform(300, 900),
                       1 + int(rng.expovariate(1 / 3)))


def gen_api_clients(rng, log, pool, count=10):
    for _ in range(count):
        token = f"tok_{rng.getrandbits(64):016x}"
        ips = [pool.take() for _ in range(rng.choice((1, 1, 2)))]
        ua = rng.choice(API_CLIENT_UAS)
        period = rng.uniform(5, 20)
        t = rng.uniform(0, period)
        while t < LOG_SECONDS:
            ip = rng.choice(ips)
            since = (LOG_START + timedelta(seconds=int(t) - 300)).strftime("%Y-%m-%dT%H:%M:%SZ")
            log.add(t, ip, "GET", f"/api/v1/orders?updated_since={since}&page=1",
                    200, rng.randint(400, 9000), ua, user=token)
            for _ in range(rng.randint(0, 2)):
                t += rng.uniform(0.05, 0.3)
                if rng.random() < 0.5:
                    log.add(t, ip, "GET", f"/api/v1/inventory?page={rng.randint(1, 40)}",
                            200, rng.randint(2000, 16000), ua, user=token)
                else:
                    log.add(t, ip, "POST", "/api/v1/inventory/sync", 202, 64, ua, user=token)
            t += period * rng.uniform(0.8, 1.2)


def gen_crawlers(rng, shop, log, pool):
    for ua in CRAWLER_UAS:
        ip = pool.take(v6_share=0)
        t = rng.uniform(0, 30)
        log.add(t, ip, "GET", "/robots.txt", 200, 214, ua)
        while t < LOG_SECONDS:
            t += rng.expovariate(0.25)
            page = shop.page()
            log.add(t, ip, "GET", page, *shop.respond("GET", page, set()), ua)


def gen_nat(rng, shop, log, pool):
    ip = pool.take(v6_share=0)
    for i in range(NAT_USERS):
        ua = weighted(rng, BROWSER_UAS[:3] + BROWSER_UAS[6:8])  # desktop office browsers
        start = 0.3 if i == 0 else rng.uniform(-120, 0)  # present from the first second
        browse(rng, shop, log, ip, ua, "HTTP/2.0", start, bursts=10**6)
    return ip


def probe_response(path):
    """How the shop's nginx answers scanner probes."""
    uri = path.split("?", 1)[0]
    if "/.." in uri:
        return 400, 157      # nginx rejects URIs that climb above the root
    if "/." in uri and not uri.startswith("/.well-known/"):
        return 403, 153      # location ~ /\. { deny all; }
    if path in ("/server-status", "/server-info", "/nginx_status"):
        return 403, 153
    if path in ("/", "/robots.txt", "/sitemap.xml"):
        return 200, {"/": 31874, "/robots.txt": 214, "/sitemap.xml": 48211}[path]
    return 404, 555


def gen_rate_spike(rng, log, pool):
    ip = pool.take(v6_share=0)
    start, end, rate = SPIKE
    t, n = start + rng.random() * 0.1, rng.randint(1000, 1200)
    while t < end:
        status, size = (404, 555) if rng.random() < 0.03 else (200, rng.randint(18000, 26000))
        log.add(t, ip, "GET", f"/products/{n}", status, size, SCRAPER_UA)
        n += 1
        t += rng.uniform(0.5, 1.5) / rate  # steady, like a scraper with fixed concurrency
    return ip


def gen_scanner(rng, log, pool):
    ip = pool.take(v6_share=0)
    start, end, rate = SCANNER
    probes = list(SCANNER_ROOT_PROBES) + [(m, d + p) for d in SCANNER_DIRS for m, p in SCANNER_BASE_PROBES]
    t = start + rng.random() * 0.1
    for method, path in probes:
        if t >= end:
            break
        status, size = probe_response(path)
        log.add(t, ip, method, path, status, 0 if method == "HEAD" else size, weighted(rng, SCANNER_UAS))
        t += rng.expovariate(rate)
    return ip


def gen_brute_force(rng, log, pool):
    ip = pool.take(v6_share=0)
    start, end, rate = BRUTE_FORCE
    t, locked = start + rng.random() * 0.1, 0
    while t < end:
        if locked == 0 and rng.random() < 0.015:
            locked = rng.randint(5, 9)  # account lockout answers 403 for a while
        status, size = (403, 41) if locked else (401, 43)
        locked = max(0, locked - 1)
        log.add(t, ip, "POST", "/api/v1/auth/login", status, size, BRUTE_FORCE_UA)
        t += rng.uniform(0.75, 1.25) / rate
    return ip


def gen_stray_probes(rng, log, pool, count=3):
    ips = []
    for _ in range(count):
        ip = pool.take()
        ua = rng.choice(STRAY_PROBE_UAS)
        t = rng.uniform(30, LOG_SECONDS - 30)
        for path in rng.sample(STRAY_PROBE_PATHS, rng.randint(1, 3)):
            log.add(t, ip, "GET", path, *probe_response(path), ua)
            t += rng.uniform(0.2, 1.5)
        ips.append(ip)
    return ips


def write_attack_log(rng, out_dir):
    pool, shop, log = AddressPool(rng), Shop(rng), Log()
    labelled = [("benign_nat", gen_nat(rng, shop, log, pool)),
                ("rate_spike", gen_rate_spike(rng, log, pool)),
                ("scanner", gen_scanner(rng, log, pool)),
                ("brute_force", gen_brute_force(rng, log, pool))]
    labelled += [("benign_background_probe", ip) for ip in gen_stray_probes(rng, log, pool)]
    gen_background(rng, shop, log, pool)
    gen_api_clients(rng, log, pool)
    gen_crawlers(rng, shop, log, pool)

    log.events.sort(key=lambda e: e[0])
    spans = {ip: [math.inf, -math.inf] for _, ip in labelled}
    lines = []
    for t, ip, user, method, path, proto, status, size, referer, ua in log.events:
        if rng.random() < JITTER_SHARE:
            t = max(0.0, t - rng.uniform(0, JITTER_MAX_S))
        second = int(t)
        if ip in spans:
            span = spans[ip]
            span[0], span[1] = min(span[0], second), max(span[1], second)
        lines.append(f'{ip} - {user} [{time_local(second)}] "{method} {path} {proto}" '
                     f'{status} {size} "{referer}" "{ua}"\n')

    with open(out_dir / "nginx-combined-attacks.log.gz", "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write("".join(lines).encode("ascii"))

    labels = sorted(({"kind": kind, "entity_kind": "ip", "entity": ip,
                      "start": rfc3339(spans[ip][0]), "end": rfc3339(spans[ip][1])}
                     for kind, ip in labelled), key=lambda d: (d["start"], d["entity"]))
    with open(out_dir / "nginx-combined-attacks.labels.jsonl", "w") as f:
        f.writelines(json.dumps(label) + "\n" for label in labels)
    return len(lines)


def sample_requests(rng, shop, count):
    """Ordinary (method, path, status, size, referer, ua) tuples for the small samples."""
    reqs = []
    for _ in range(count):
        page = shop.page()
        if rng.random() < 0.4:
            method, path, referer = "GET", page, weighted(rng, LANDING_REFERERS)
        else:
            (method, path), referer = rng.choice(shop.sub_requests(page, cold=False)), SITE + page
        reqs.append((method, path, *shop.respond(method, path, set()), referer, weighted(rng, BROWSER_UAS)))
    return reqs


def write_combined_sample(rng, shop, pool, path, count=30):
    specials = {  # line index -> combined line fields overriding the ordinary ones
        2: {"ip": "2001:db8:c0ff:ee::42"},
        5: {"user": "alice", "request": "GET /admin/reports?month=2026-10 HTTP/1.1", "status": 200, "size": 20391},
        8: {"request": "GET /static/css/app.css HTTP/1.1", "status": 304, "size": "-"},
        11: {"request": r"\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03", "status": 400, "size": 157,
             "referer": "-", "ua": "-"},
        14: {"request": "", "status": 400, "size": 0, "referer": "-", "ua": "-"},
        17: {"request": r"GET /search?q=\x22red+shoes\x22 HTTP/1.1", "status": 200, "size": 28712,
             "ua": r"Mozilla/5.0 (compatible; \x22Quoted\x22Bot/2.0)"},
        20: {"ua": r"\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82Bot/1.0 (+https://example.org/bot)"},
        23: {"request": "GET /static/js/app.js HTTP/2.0", "status": 304, "size": 0},
        26: {"request": "HEAD / HTTP/1.1", "status": 200, "size": 0, "ua": "curl/8.5.0", "referer": "-"},
    }
    t = 0.0
    with open(path, "w") as f:
        for i, (method, req_path, status, size, referer, ua) in enumerate(sample_requests(rng, shop, count)):
            proto = "HTTP/2.0" if rng.random() < 0.5 else "HTTP/1.1"
            line = {"ip": pool.take(v6_share=0), "user": "-", "request": f"{method} {req_path} {proto}",
                    "status": status, "size": size, "referer": referer, "ua": ua}
            line.update(specials.get(i, {}))
            f.write(f'{line["ip"]} - {line["user"]} [{time_local(int(t))}] "{line["request"]}" '
                    f'{line["status"]} {line["size"]} "{line["referer"]}" "{line["ua"]}"\n')
            t += rng.uniform(0.2, 3)


def write_ingress_sample(rng, shop, pool, path, count=40):
    frontend = ("10.42.3.30:80", "10.42.3.31:80", "10.42.1.17:80")
    api = ("10.42.2.11:8080", "10.42.2.12:8080")
    specials = {  # line index -> fields overriding the ordinary ones
        4: {"ip": "2001:db8:4f2a:10::8c3"},
        11: {"request": "GET /products/118 HTTP/1.1", "status": 502, "size": 150, "request_time": "0.031",
             "upstream": "shop-frontend-80", "upstream_addr": "10.42.3.30:80, 10.42.3.31:80",
             "upstream_len": "0, 150", "upstream_time": "0.010, 0.020", "upstream_status": "502, 502"},
        18: {"request": "GET /admin/ HTTP/1.1", "status": 403, "size": 146, "ua": "curl/8.5.0", "referer": "-",
             "request_time": "0.000", "upstream": "shop-admin-80", "upstream_addr": "-",
             "upstream_len": "-", "upstream_time": "-", "upstream_status": "-"},
        25: {"ua": r"Mozilla/5.0 (X11; Linux x86_64) \x22Quoted\x22 Agent/1.0"},
        30: {"request": "GET /category/new-arrivals HTTP/1.1", "status": 200, "size": 22014,
             "upstream": "shop-frontend-80", "alternative": "shop-frontend-canary-80",
             "upstream_addr": "10.42.4.8:80", "upstream_len": "22014", "upstream_status": "200"},
        35: {"status": 400, "size": 246, "request_length": 9120, "request_time": "0.000", "upstream": "",
             "upstream_addr": "-", "upstream_len": "-", "upstream_time": "-", "upstream_status": "-"},
    }
    t = 0.0
    with open(path, "w") as f:
        for i, (method, req_path, status, size, referer, ua) in enumerate(sample_requests(rng, shop, count)):
            is_api = req_path.startswith("/api/")
            upstream_time = rng.uniform(0.001, 0.12 if is_api else 0.03)
            request_time = upstream_time + rng.uniform(0, 0.002)
            line = {"ip": pool.take(v6_share=0), "request": f"{method} {req_path} HTTP/1.1",
                    "status": status, "size": size, "referer": referer, "ua": ua,
                    "request_length": rng.randint(700, 2500) if method == "POST" else rng.randint(250, 700),
                    "request_time": f"{request_time:.3f}",
                    "upstream": "shop-api-8080" if is_api else "shop-frontend-80", "alternative": "",
                    "upstream_addr": rng.choice(api if is_api else frontend), "upstream_len": str(size),
                    "upstream_time": f"{upstream_time:.3f}", "upstream_status": str(status)}
            line.update(specials.get(i, {}))
            f.write(f'{line["ip"]} - - [{time_local(int(t))}] "{line["request"]}" {line["status"]} '
                    f'{line["size"]} "{line["referer"]}" "{line["ua"]}" {line["request_length"]} '
                    f'{line["request_time"]} [{line["upstream"]}] [{line["alternative"]}] '
                    f'{line["upstream_addr"]} {line["upstream_len"]} {line["upstream_time"]} '
                    f'{line["upstream_status"]} {rng.getrandbits(128):032x}\n')
            t += rng.uniform(0.2, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent.parent / "testdata",
                        help="directory to write into (default: the repo's testdata/)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(7)
    lines = write_attack_log(rng, args.out_dir)
    shop, pool = Shop(rng), AddressPool(rng)
    write_ingress_sample(rng, shop, pool, args.out_dir / "ingress-nginx-sample.log")
    write_combined_sample(rng, shop, pool, args.out_dir / "combined-sample.log")
    print(f"wrote {lines} lines to {args.out_dir / 'nginx-combined-attacks.log.gz'}")


if __name__ == "__main__":
    main()
