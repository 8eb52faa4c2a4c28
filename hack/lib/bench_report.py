#!/usr/bin/env python3
"""Helpers for hack/bench.sh: parse load-generator output, compute latency percentiles, and
write the summary (Markdown) and the chart (SVG, no third-party modules).

  bench_report.py parse-h2load RAW     prints req/s; exit 1 if any request failed or errored
  bench_report.py parse-wrk RAW        prints req/s; exit 1 on socket errors or non-2xx answers
  bench_report.py latency LOG          prints "p50_us p99_us count" from an h2load --log-file
  bench_report.py report OUT           writes OUT/summary.md and OUT/chart.svg from results.tsv
"""
import re
import sys


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def parse_h2load(path):
    text = open(path).read()
    m = re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", text)
    r = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (m and r and codes):
        fail(f"{path}: not an h2load report")
    total, _, done, ok, failed, errored, timeout = map(int, r.groups())
    c2, c3, c4, c5 = map(int, codes.groups())
    if ok == 0 or failed or errored or timeout or c3 or c4 or c5 or done < total:
        fail(f"{path}: {ok} succeeded, {failed} failed, {errored} errored, {timeout} timeout, "
             f"{c4} 4xx, {c5} 5xx of {total}")
    print(m.group(1))


def parse_wrk(path):
    text = open(path).read()
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if not m:
        fail(f"{path}: not a wrk report")
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if s and any(int(x) for x in s.groups()):
        fail(f"{path}: socket errors: {s.group(0)}")
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n and int(n.group(1)):
        fail(f"{path}: {n.group(1)} non-2xx answers")
    req = re.search(r"(\d+) requests in", text)
    if not req or int(req.group(1)) == 0:
        fail(f"{path}: no requests completed")
    print(m.group(1))


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def latency(path):
    vals = []
    for line in open(path):
        parts = line.split("\t")
        if len(parts) >= 3:
            vals.append(int(parts[2]))
    if not vals:
        fail(f"{path}: no requests logged")
    vals.sort()
    print(percentile(vals, 50), percentile(vals, 99), len(vals))


def load_results(out):
    rows = {}
    order = []
    with open(f"{out}/results.tsv") as f:
        next(f)
        for line in f:
            name, value, unit, cmd = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
            rows[name] = (value, unit, cmd)
            order.append(name)
    return rows, order


def num(rows, name):
    try:
        return float(rows[name][0])
    except (KeyError, ValueError):
        return None


API_WHO = (("keygate", "keygate key"), ("static", "static token"), ("bootstrap", "bootstrap token"))
API_COLORS = {"keygate": "#1f77b4", "static": "#ff7f0e", "bootstrap": "#2ca02c"}


def bar(out, x, y0, ph, bw, v, top, color):
    """One bar of height v/top × ph with its value written above it."""
    bh = ph * v / top
    out.append(f'<rect x="{x}" y="{y0 + ph - bh:.1f}" width="{bw}" height="{bh:.1f}" fill="{color}"/>')
    out.append(f'<text x="{x + bw / 2}" y="{y0 + ph - bh - 4:.1f}" text-anchor="middle" font-size="10">{v:,.0f}</text>')


def svg_api_panels(rows, y_top):
    """Part 4 (through kube-apiserver): req/s and p50/p99 of the three authenticators."""
    out = [f'<text x="10" y="{y_top}" font-size="15" font-weight="bold">Part 4: GET pods through kube-apiserver 1.20.2, one fresh token per request</text>']
    x0, y0, ph, bw = 40, y_top + 40, 200, 50
    out.append(f'<text x="{x0}" y="{y0 - 12}">Throughput (req/s, median)</text>')
    rates = {who: num(rows, f"api_rps_{who}") or 0 for who, _ in API_WHO}
    top = max(rates.values()) or 1
    for j, (who, _) in enumerate(API_WHO):
        bar(out, x0 + j * (bw + 6), y0, ph, bw, rates[who], top, API_COLORS[who])
    for k, (who, label) in enumerate((("static", "static"), ("bootstrap", "bootstrap"))):
        r = rows.get(f"api_ratio_keygate_{who}", ("",))[0]
        out.append(f'<text x="{x0}" y="{y0 + ph + 16 + 14 * k}" font-size="10">keygate / {label}: {r}</text>')
    x1 = 330
    out.append(f'<text x="{x1}" y="{y0 - 12}">Latency, 1 connection, one request at a time (µs, median of rounds)</text>')
    lat = {(who, p): num(rows, f"api_lat_{p}_us_{who}") or 0 for who, _ in API_WHO for p in ("p50", "p99")}
    top = max(lat.values()) or 1
    for i, p in enumerate(("p50", "p99")):
        gx = x1 + i * 240
        for j, (who, _) in enumerate(API_WHO):
            bar(out, gx + j * (bw + 6), y0, ph, bw, lat[(who, p)], top, API_COLORS[who])
        out.append(f'<text x="{gx + (3 * bw + 12) / 2}" y="{y0 + ph + 16}" text-anchor="middle">{p}</text>')
    ly = y0 + ph + 50
    for j, (who, label) in enumerate(API_WHO):
        out.append(f'<rect x="{40 + j * 140}" y="{ly - 10}" width="12" height="12" fill="{API_COLORS[who]}"/>')
        out.append(f'<text x="{58 + j * 140}" y="{ly}">{label}</text>')
    return out, ly + 20


WHO = ("keygate", "floor", "bare")


def svg_chart(rows, path):
    """Two panels: req/s keygate vs floor per scenario; p50/p99 latency keygate vs floor.
    With part 4's figures, two more below: req/s and p50/p99 of the three authenticators."""
    scen = [("h1", "HTTP/1.1 keep-alive, 64 conns"), ("h2", "HTTP/2, 1 conn, max streams"),
            ("newconn", "new TLS conn per request")]
    servers = [who for who in WHO if num(rows, f"h1_rps_{who}") is not None] or ["keygate", "floor"]
    w, h = 900, 380
    api = num(rows, "api_rps_keygate") is not None
    if api:
        api_svg, api_bottom = svg_api_panels(rows, h + 10)
        h = api_bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="20" font-size="15" font-weight="bold">keygate vs floor (loopback TLS)</text>']
    colors = {"keygate": "#1f77b4", "floor": "#aaaaaa", "bare": "#dddddd"}
    # Panel 1: throughput, each scenario normalised to its own maximum, labelled with req/s.
    x0, y0, ph = 40, 60, 240
    out.append(f'<text x="{x0}" y="{y0 - 12}">Throughput (req/s, median)</text>')
    bw = 100 // len(servers)
    for i, (key, label) in enumerate(scen):
        vals = {who: num(rows, f"{key}_rps_{who}") or 0 for who in servers}
        top = max(vals.values()) or 1
        gx = x0 + i * 170
        for j, who in enumerate(servers):
            bar(out, gx + j * (bw + 6), y0, ph, bw, vals[who], top, colors[who])
        ratios = " ".join(f"{vals['keygate'] / vals[who]:.2f}" for who in servers[1:] if vals[who])
        out.append(f'<text x="{gx + bw + 3}" y="{y0 + ph + 16}" text-anchor="middle" font-size="10">{label}</text>')
        out.append(f'<text x="{gx + bw + 3}" y="{y0 + ph + 30}" text-anchor="middle" font-size="10">ratio {ratios}</text>')
    # Panel 2: latency at half of keygate's max rate.
    x1 = 580
    out.append(f'<text x="{x1}" y="{y0 - 12}">Latency at half max rate (µs)</text>')
    lat = {(who, p): num(rows, f"lat_{p}_us_{who}") or 0 for who in ("keygate", "floor") for p in ("p50", "p99")}
    top = max(lat.values()) or 1
    for i, p in enumerate(("p50", "p99")):
        gx = x1 + i * 150
        for j, who in enumerate(("keygate", "floor")):
            bar(out, gx + j * (bw + 6), y0, ph, bw, lat[(who, p)], top, colors[who])
        out.append(f'<text x="{gx + bw + 3}" y="{y0 + ph + 16}" text-anchor="middle">{p}</text>')
    ly = 380 - 20
    for j, who in enumerate(servers):
        out.append(f'<rect x="{40 + j * 110}" y="{ly - 10}" width="12" height="12" fill="{colors[who]}"/>')
        out.append(f'<text x="{58 + j * 110}" y="{ly}">{who}</text>')
    if api:
        out += api_svg
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def report(out):
    rows, order = load_results(out)
    machine = open(f"{out}/machine.txt").read()
    lines = ["# keygate bench results", "", "```", machine.rstrip(), "```", "",
             "## Targets", "", "| check | figure | target | met |", "| --- | --- | --- | --- |"]

    def ratio_row(label, key, target, floor="floor"):
        k, f = num(rows, f"{key}_rps_keygate"), num(rows, f"{key}_rps_{floor}")
        if k is None or not f:
            return
        r = k / f
        lines.append(f"| {label} | {k:,.0f} / {f:,.0f} req/s = **{r:.2f}** | ≥ {target} | {'yes' if r >= target else 'NO'} |")

    streams = rows.get("h2_rps_keygate", ("", "", ""))[2].split(" -m ")[-1].split()[0] if "h2_rps_keygate" in rows else "?"
    for floor, what in (("floor", "floor"), ("bare", "bare floor (default builders)")):
        ratio_row(f"HTTP/1.1 keep-alive, 64 conns: keygate / {what}", "h1", 0.85, floor)
        ratio_row(f"HTTP/2, 1 conn, {streams} streams: keygate / {what}", "h2", 0.85, floor)
        ratio_row(f"new TLS connection per request: keygate / {what}", "newconn", 0.9, floor)
    for floor, what in (("floor", "floor"), ("bare", "bare floor (default builders)")):
        ratio_row(f"POST /authorize, no opinion, HTTP/1.1 64 conns: keygate / {what}", "authz_h1", 0.85, floor)
        ratio_row(f"POST /authorize, no opinion, HTTP/2 1 conn, {streams} streams: keygate / {what}", "authz_h2", 0.85, floor)
    p99 = num(rows, "lat_p99_us_keygate")
    if p99 is not None:
        lines.append(f"| p99 latency at half of keygate's max rate | **{p99:,.0f} µs** ({rows['lat_p99_us_keygate'][1]}) | ≤ 1000 µs | {'yes' if p99 <= 1000 else 'NO'} |")
    sizes = sorted({int(n.split("_")[-1]) for n in order if n.startswith("bytes_per_key_")})
    for n in sizes:
        b = num(rows, f"bytes_per_key_{n}")
        if n >= 1000 and b is not None:
            lines.append(f"| memory per key, {n:,} keys | **{b:,.0f} bytes/key** | ≤ 512 | {'yes' if b <= 512 else 'NO'} |")
    if sizes:
        big, small = sizes[-1], sizes[0]
        a, b = num(rows, f"scale_rps_{big}"), num(rows, f"scale_rps_{small}")
        paired, ref = num(rows, f"scale_ratio_{big}"), num(rows, f"scale_ref_rps_{big}")
        if paired and ref and a:
            # Rounds alternating with a 10-key server: the ratio is taken per round.
            each = rows[f"scale_ratio_{big}"][1].split("median of: ")[-1].rstrip(")")
            lines.append(f"| throughput {big:,} keys / {small:,} keys (alternating rounds) | {a:,.0f} / {ref:,.0f} req/s; per round {each}: median **{paired:.2f}** | ≥ 0.95 | {'yes' if paired >= 0.95 else 'NO'} |")
        elif a and b and big != small:
            lines.append(f"| throughput {big:,} keys / {small:,} keys | {a:,.0f} / {b:,.0f} req/s = **{a / b:.2f}** | ≥ 0.95 | {'yes' if a / b >= 0.95 else 'NO'} |")
        fl, va = num(rows, f"flood_rps_{big}"), num(rows, f"valid_rps_{big}")
        paired = num(rows, f"flood_ratio_{big}")
        if fl and va and paired:
            # Flood and valid halves alternate: the ratio is taken pair by pair.
            each = rows[f"flood_ratio_{big}"][1].split("mean of: ")[-1].rstrip(")")
            lines.append(f"| unknown-ID flood rate / valid-key rate ({big:,} keys, alternating halves) | {fl:,.0f} / {va:,.0f} req/s; per pair {each}: mean **{paired:.2f}** | ≥ 1.0 | {'yes' if paired >= 1.0 else 'NO'} |")
        elif fl and va:
            lines.append(f"| unknown-ID flood rate / valid-key rate ({big:,} keys) | {fl:,.0f} / {va:,.0f} req/s = **{fl / va:.2f}** | ≥ 1.0 | {'yes' if fl >= va else 'NO'} |")
        rb, ra = num(rows, "flood_rss_kb_before"), num(rows, "flood_rss_kb_after")
        eb, ea = rows.get("flood_cache_entries_before", ("?",))[0], rows.get("flood_cache_entries_after", ("?",))[0]
        rm = num(rows, "flood_rss_kb_mid")
        if rb and ra and rm:
            ok = eb == ea and (ra - rm) <= max(0.02 * rb, 8192)
            lines.append(f"| flood memory: VmRSS before → half → after; cache entries | {rb:,.0f} → {rm:,.0f} ({rm - rb:+,.0f}) → {ra:,.0f} kB ({ra - rm:+,.0f}); entries {eb} → {ea} | no growth beyond the cache bound (second half grows < 2 %) | {'yes' if ok else 'NO'} |")
        elif rb and ra:
            lines.append(f"| flood memory: VmRSS before → after, cache entries | {rb:,.0f} → {ra:,.0f} kB ({ra - rb:+,.0f} kB); entries {eb} → {ea} | no growth beyond the cache bound | {'yes' if eb == ea else 'NO'} |")
    rk = num(rows, "api_rps_keygate")
    for who, label in API_WHO[1:]:
        ro = num(rows, f"api_rps_{who}")
        if rk is None or not ro:
            continue
        r = rk / ro
        lines.append(f"| through kube-apiserver (GET pods, fresh token per request): keygate key / {label} | {rk:,.0f} / {ro:,.0f} req/s = **{r:.2f}** | ≥ 0.9 | {'yes' if r >= 0.9 else 'NO'} |")
    rk, rs = num(rows, "api_reuse_rps_keygate"), num(rows, "api_reuse_rps_static")
    if rk and rs:
        k99, s99 = num(rows, "api_reuse_p99_us_keygate"), num(rows, "api_reuse_p99_us_static")
        lines.append(f"| through kube-apiserver, realistic reuse (1 000 keys, Zipf, caches as shipped): keygate key / static token | {rk:,.0f} / {rs:,.0f} req/s = **{rk / rs:.2f}**; p99 {k99:,.0f} vs {s99:,.0f} µs | reported | — |")
    ro_on = num(rows, "api_authz_on_rps_own")
    ro_rv = num(rows, "api_authz_revoke_rps_own")
    if ro_on and ro_rv:
        lines.append(f"| through kube-apiserver, a plain user's own token: instant-revocation mode (keygate first, TTLs 1s) / keygate after RBAC | {ro_rv:,.0f} / {ro_on:,.0f} req/s = **{ro_rv / ro_on:.2f}** | reported | — |")
    for mode, what in (("on", "authorization cache on (5m)"), ("off", "authorization cache off"), ("revoke", "instant-revocation mode")):
        ri, ro = num(rows, f"api_authz_{mode}_rps_inherit"), num(rows, f"api_authz_{mode}_rps_own")
        if ri and ro:
            i99, o99 = num(rows, f"api_authz_{mode}_p99_us_inherit"), num(rows, f"api_authz_{mode}_p99_us_own")
            lines.append(f"| through kube-apiserver, {what}: inheriting key / the creator's own token | {ri:,.0f} / {ro:,.0f} req/s = **{ri / ro:.2f}**; p99 {i99:,.0f} vs {o99:,.0f} µs | reported | — |")
    for who, label in API_WHO[1:]:
        a50, a99 = num(rows, f"api_added_p50_us_vs_{who}"), num(rows, f"api_added_p99_us_vs_{who}")
        if a50 is None:
            continue
        k50, k99 = num(rows, "api_lat_p50_us_keygate"), num(rows, "api_lat_p99_us_keygate")
        o50, o99 = num(rows, f"api_lat_p50_us_{who}"), num(rows, f"api_lat_p99_us_{who}")
        lines.append(f"| latency added per request vs {label} (1 connection) | p50 {k50:,.0f} − {o50:,.0f} = **{a50:+,.0f} µs**; p99 {k99:,.0f} − {o99:,.0f} = **{a99:+,.0f} µs** | reported | — |")
    lines += ["", "(Ratios are reported, never asserted: the machine is shared and noisy.)", "",
              "## Every figure", "", "| name | value | unit | command |", "| --- | --- | --- | --- |"]
    for n in order:
        v, u, c = rows[n]
        lines.append(f"| {n} | {v} | {u} | `{c}` |" if c else f"| {n} | {v} | {u} | |")
    open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
    svg_chart(rows, f"{out}/chart.svg")


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    cmd, arg = sys.argv[1], sys.argv[2]
    {"parse-h2load": parse_h2load, "parse-wrk": parse_wrk, "latency": latency, "report": report}.get(
        cmd, lambda _: fail(__doc__))(arg)


if __name__ == "__main__":
    main()
