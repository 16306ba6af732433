#!/usr/bin/python3
"""Authentication and authorization benchmark: Starling next to Mosquitto
with the same password file and ACL file, and each without them.

The files: a password file written by the real mosquitto_passwd ($7$,
PBKDF2-SHA512, 101 rounds) with 100 users, and an ACL of 1,000+ rules:
500 `pattern` rules (with %u and %c) that never match the benchmark's
topics, 100 users of 4 rules each, and the benchmark user's own 400 rules
with its grants last, so every check walks the rules. The "auth" variant of
a broker loads both and refuses anonymous clients; "open" has neither.
starling-bench connects as the benchmark user with its password.

Scenarios (a fresh broker per row, measured from /proc like compare.py):
  connect      `starling-bench conn -c N --max-connecting 50 -u USER -P PW`:
               CONNECTs per second, each checked against the password file
  fanin4_q0/1  fan-in 4:1 at the maximum rate: messages delivered per second
  p2p20_q0/1   20 point-to-point pairs at the maximum rate (QoS 1: 10 in flight)
  fanin100_q0  fan-in 100:1: a subscription receiving 100 topics
Each delivery is checked against the ACL (read on the topic), each PUBLISH
too (write). The load average (1 min) is printed beside each row: other
processes on the machine move the figures.

  /usr/bin/python3 tools/bench/auth_bench.py --out bench-results/auth   # ~3 min
"""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the broker processes, starling-bench runs, /proc readings)
from compare import Bench, drain, log  # noqa: E402

USER, PASSWORD = "bench", "bench-pw"


def make_files(directory, users=100):
    """(password file, ACL file, rule count) in directory."""
    pw = os.path.join(directory, "passwd")
    subprocess.run(["mosquitto_passwd", "-c", "-b", pw, USER, PASSWORD], check=True, capture_output=True)
    for i in range(users - 1):
        subprocess.run(["mosquitto_passwd", "-b", pw, f"user{i}", f"pw{i}"], check=True, capture_output=True)
    lines, rules = [], 0
    for i in range(500):
        lines.append(f"pattern read other/%u/p{i}/#" if i % 2 else f"pattern readwrite clients/%c/p{i}/+")
        rules += 1
    for i in range(users - 1):
        lines.append(f"\nuser user{i}")
        for j in range(4):
            lines.append(f"topic readwrite user{i}/t{j}/#")
            rules += 1
    lines.append(f"\nuser {USER}")
    for i in range(398):
        lines.append(f"topic readwrite noise/{i}/+/x")
        rules += 1
    lines += ["topic readwrite fanin/#", "topic readwrite p2p/#"]
    rules += 2
    acl = os.path.join(directory, "acl")
    with open(acl, "w") as f:
        f.write("\n".join(lines) + "\n")
    return pw, acl, rules


class AuthMosquitto(compare.Mosquitto):
    def __init__(self, workdir, binary, files):
        super().__init__(workdir, binary)
        self.files = files

    def listener_lines(self):
        lines = super().listener_lines()
        if self.files:
            # as root Mosquitto drops to 'mosquitto', who could not read the files
            lines += f"password_file {self.files[0]}\nacl_file {self.files[1]}\n"
            lines += "user root\n" if os.geteuid() == 0 else ""
        return lines

    def command(self):
        cmd = super().command()
        if self.files:
            conf = cmd[-1]
            with open(conf) as f:
                text = f.read().replace("allow_anonymous true", "allow_anonymous false")
            with open(conf, "w") as f:
                f.write(text)
        return cmd


class AuthStarling(compare.Starling):
    def __init__(self, workdir, binary, files):
        super().__init__(workdir, binary)
        self.files = files

    def command(self):
        cmd = super().command()
        if self.files:
            cmd += ["--set", f"password_file={self.files[0]}", "--set", f"acl_file={self.files[1]}",
                    "--set", "allow_anonymous=false"]
        return cmd


def conn_args(broker, auth):
    return ["-h", "127.0.0.1", "-p", broker.port] + (["-u", USER, "-P", PASSWORD] if auth else [])


def run_connect(broker, bench, auth, n, rawdir, tag):
    cpu0 = broker.cpu_s()
    c = Bench(bench, "conn", conn_args(broker, auth) + ["-c", n, "-i", 0, "--max-connecting", 50, "-d", 600],
              rawdir, f"{tag}-connect")
    if not c.wait_ready(timeout=300):
        c.interrupt()
        raise RuntimeError("connect: did not finish: " + "".join(c.stderr_lines[-3:]))
    cpu = broker.cpu_s() - cpu0
    c.interrupt()
    r = c.result()
    ok = r["connect"]["connected"]
    return {"rate": r["connect"]["rate_per_s"], "unit": "conn/s", "sent": n, "recv": ok, "cpu_s": cpu}


def message_scenarios():
    rows = []
    for qos in (0, 1):
        window = ["-F", "10"] if qos else []
        rows.append((f"fanin4_q{qos}", f"fan-in 4:1 QoS {qos}",
                     ["-c", 4, "-t", "fanin/%i", "-I", 0, "-q", qos] + window, ["-c", 1, "-t", "fanin/+", "-q", qos]))
        rows.append((f"p2p20_q{qos}", f"p2p 20 pairs QoS {qos}",
                     ["-c", 20, "-t", "p2p/%i", "-I", 0, "-q", qos] + window, ["-c", 20, "-t", "p2p/%i", "-q", qos]))
    # 100 topics into one subscription: more than a session remembers decisions for
    rows.append(("fanin100_q0", "fan-in 100:1 QoS 0", ["-c", 100, "-t", "fanin/%i", "-I", 0, "-q", 0],
                 ["-c", 1, "-t", "fanin/+", "-q", 0]))
    return rows


def run_messages(broker, bench, auth, scen, duration, rawdir, tag):
    sid, _, pub_args, sub_args = scen
    cpu0 = broker.cpu_s()
    conn = conn_args(broker, auth)
    sub = Bench(bench, "sub", conn + ["-i", 0] + sub_args + ["-d", duration + 120], rawdir, f"{tag}-{sid}-sub")
    if not sub.wait_ready():
        sub.interrupt()
        raise RuntimeError(f"{sid}: subscribers did not get ready: " + "".join(sub.stderr_lines[-3:]))
    pub = Bench(bench, "pub", conn + ["-i", 0] + pub_args + ["-w", "-d", duration, "-s", 256], rawdir,
                f"{tag}-{sid}-pub")
    p = pub.result(timeout=duration + 120)
    s = drain([sub])[0]
    recv = s["receive"]["count"]
    return {"rate": s["receive"]["rate_per_s"], "unit": "msg/s", "sent": p["publish"]["sent"], "recv": recv,
            "cpu_s": broker.cpu_s() - cpu0}


def run_all(make, bench, args, rawdir, name, variant, only):
    auth = variant == "auth"
    plan = [("connect", "CONNECT with password" if auth else "CONNECT", None)]
    plan += [(s[0], s[1], s) for s in message_scenarios()]
    rows = []
    for sid, label, scen in plan:
        if only and sid not in only:
            continue
        broker = make()
        if not broker.start():
            broker.stop()
            raise RuntimeError(f"{name} did not start (see {broker.workdir})")
        load = os.getloadavg()[0]
        tag = f"{name}-{variant}"
        try:
            log(f"  {name} {variant}: {sid} ...")
            if scen is None:
                r = run_connect(broker, bench, auth, args.connects, rawdir, tag)
            else:
                r = run_messages(broker, bench, auth, scen, args.duration, rawdir, tag)
        except RuntimeError as e:
            log(f"  {name} {variant}: {sid} failed: {e}")
            r = {"error": str(e)}
        finally:
            broker.stop()
        r.update({"id": sid, "scenario": label, "broker": name, "variant": variant, "load": load})
        if "error" not in r:
            log(f"    {r['rate']:,.0f} {r['unit']}, delivered {pct(r)}, load {load:.2f}")
        rows.append(r)
    return rows


def cpu_per(r):
    """The broker's CPU seconds per 1,000 CONNECTs or per million delivered
    messages: steadier than the rate on a loaded machine."""
    if not r or "error" in r or not r.get("recv"):
        return None
    return r["cpu_s"] / r["recv"] * (1e3 if r["unit"] == "conn/s" else 1e6)


def pct(r):
    return f"{100.0 * r['recv'] / r['sent']:.1f} %" if r.get("sent") else "-"


def write_markdown(path, rows, meta):
    table = {}
    for r in rows:
        table.setdefault(r["id"], {})[(r["broker"], r["variant"])] = r
    with open(path, "w") as f:
        f.write(f"# Authentication and ACL: Starling vs Mosquitto, {meta['date']}\n\n")
        for line in meta["lines"]:
            f.write(f"- {line}\n")
        f.write("\n| scenario | broker | rate auth | rate open | auth / open | CPU s/unit auth | CPU s/unit open "
                "| delivered auth | delivered open | load auth | load open |\n"
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        for sid, entry in table.items():
            rates = {}
            for b in ("mosquitto", "starling"):
                a, o = entry.get((b, "auth")), entry.get((b, "open"))
                if not a and not o:
                    continue
                ok = lambda r: r and "error" not in r  # noqa: E731
                ra = a["rate"] if ok(a) else None
                ro = o["rate"] if ok(o) else None
                rates[b] = ra
                unit = (a or o).get("unit", "")
                f.write(f"| {(a or o)['scenario']} | {b} | {compare.fmt(ra, '{:,.0f}')} {unit} | "
                        f"{compare.fmt(ro, '{:,.0f}')} | {compare.fmt(compare.ratio(ra, ro), '{:.3f}x')} | "
                        f"{compare.fmt(cpu_per(a), '{:.3f}')} | {compare.fmt(cpu_per(o), '{:.3f}')} | "
                        f"{pct(a) if ok(a) else '-'} | {pct(o) if ok(o) else '-'} | "
                        f"{a['load']:.2f} | {o['load']:.2f} |\n" if a and o else "\n")
            if rates.get("starling") and rates.get("mosquitto"):
                f.write(f"| | **Starling / Mosquitto, auth** | "
                        f"{compare.ratio(rates['starling'], rates['mosquitto']):.3f}x | | | | | | | | |\n")
        f.write("\nrate: CONNECTs per second (CONNECT to CONNACK, 50 in flight) or messages delivered per "
                "second at the subscribers; CPU s/unit: the broker's user + system CPU seconds per 1,000 CONNECTs "
                "or per million delivered messages (steadier than the rate when other work shares the CPUs); "
                "auth: the password and ACL files loaded, open: neither; "
                "delivered: received / published (connected / attempted for CONNECT); load: the 1-minute "
                "load average when the row started.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    compare.broker_arguments(ap, "bench-results/auth")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of publishing per message row [5]")
    ap.add_argument("--connects", type=int, default=2000, help="clients of the CONNECT row [2000]")
    ap.add_argument("--only", help="comma-separated ids: connect, fanin4_q0, p2p20_q0, fanin4_q1, p2p20_q1, "
                                   "fanin100_q0")
    ap.add_argument("--variants", default="auth,open", help="auth, open or both [auth,open]")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None

    bench, rawdir, workdir = compare.prepare(args, "starling-auth-bench-")
    os.chmod(workdir, 0o755)
    pw, acl, rules = make_files(workdir)
    files = (pw, acl)

    brokers, alone = compare.choose_brokers(
        args, lambda: AuthMosquitto(workdir, args.mosquitto, files),
        lambda: AuthStarling(workdir, args.starlingd, files), lambda probe: True, "auth_bench.py")
    factories = {
        "mosquitto": lambda f: (lambda: AuthMosquitto(workdir, args.mosquitto, f)),
        "starling": lambda f: (lambda: AuthStarling(workdir, args.starlingd, f)),
    }
    versions = {name: make().version() for name, make in brokers}
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "lines": [f"machine: {compare.machine()}"] + [f"{n}: {v}" for n, v in versions.items()]
        + [f"command: `/usr/bin/python3 tools/bench/auth_bench.py {' '.join(sys.argv[1:])}`",
           f"password file: 100 users by mosquitto_passwd ($7$, 101 rounds); ACL: {rules} rules "
           f"(500 patterns, 99 users x 4, the benchmark user's 400 with its grants last)",
           f"{args.duration:g} s of publishing per message row, 256-byte payloads, MQTT 5; "
           f"{args.connects} CONNECTs, 50 in flight; a fresh broker per row"]
        + ([f"**{alone}**"] if alone else []),
    }
    rows = []
    for name, _ in brokers:
        for variant in args.variants.split(","):
            log(f"auth_bench.py: {name} {variant}")
            rows += run_all(factories[name](files if variant == "auth" else None), bench, args, rawdir, name,
                            variant, only)
    out = os.path.join(args.out, "results.md")
    write_markdown(out, rows, meta)
    shutil.rmtree(workdir, ignore_errors=True)
    with open(out) as f:
        print(f.read())
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
