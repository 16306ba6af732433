"""Output of a run: the verdict line of a scenario, its picture (latency of
every operation over time, failures marked, fault intervals shaded) and the
index page linking every scenario's files."""

import html
import json

import history as hist


def verdict_line(result):
    f = result["figures"]
    q = result.get("checks", {}).get("queue", {})
    parts = ["%-34s %s" % (result["scenario"], {True: "PASS", False: "FAIL", "unknown": "UNKNOWN"}.get(
        result["valid"], "ERROR")),
             "ops=%d" % f["ops"], "acknowledged=%d" % f["ok"], "failed=%d" % f["fail"], "unknown=%d" % f["info"],
             "lost=%s" % q.get("lost", "-"), "duplicated=%s" % q.get("duplicated", "-"),
             "unavailable=%.1fs" % f["unavailable_s"]]
    bad = [name for name, c in result.get("checks", {}).items() if c["valid"] is not True]
    if bad:
        parts.append("[%s]" % "; ".join("%s: %s" % (n, result["checks"][n]["summary"]) for n in bad))
    if result.get("problems"):
        parts.append("{%s}" % "; ".join(result["problems"]))
    return " ".join(parts)


def plot(ops, path, title, lost=()):
    """Writes a PNG; returns False when matplotlib is missing. Colour: the
    operation (f); marker: dot ok, cross failed, triangle unknown; black
    diamonds: acknowledged publishes a subscriber never got (lost)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(13, 4.8))
    for start, end, fault in hist.fault_intervals(ops):
        ax.axvspan(start, end, color="tab:red", alpha=0.12, lw=0)
    for op in ops:
        if op["process"] == "nemesis" and op["f"] == "fault" and op["value"]:
            label = " ".join("%s=%s" % kv for kv in op["value"].items() if kv[0] not in ("fault", "lines"))
            ax.annotate("%s %s" % (op["value"].get("fault"), label), (op["time"], 0.98),
                        xycoords=("data", "axes fraction"), fontsize=7, va="top", color="tab:red")
    markers = {"ok": ".", "fail": "x", "info": "^"}
    colours = {}
    palette = ["tab:blue", "tab:green", "tab:purple", "tab:cyan", "tab:olive", "tab:brown", "tab:pink"]
    by = {}
    lost = set(lost)
    lost_pts = []
    for inv, done in hist.pairs(ops):
        if inv["f"] == "dump":
            continue
        t = done["type"] if done else "info"
        end = done["time"] if done else inv["time"]
        pt = (inv["time"], max(end - inv["time"], 1e-4))
        by.setdefault((inv["f"], t), []).append(pt)
        if inv["f"] == "publish" and inv["value"] in lost:
            lost_pts.append(pt)
    for (f, t), pts in sorted(by.items(), key=lambda kv: ("okfailinfo".index(kv[0][1]), kv[0][0])):
        colour = colours.setdefault(f, palette[len(colours) % len(palette)])
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=6 if t == "ok" else 30, c=colour,
                   marker=markers[t], alpha=0.5 if t == "ok" else 0.9, label="%s %s (%d)" % (f, t, len(pts)))
    if lost_pts:
        ax.scatter([p[0] for p in lost_pts], [p[1] for p in lost_pts], s=30, c="black", marker="D",
                   label="publish acknowledged, lost (%d)" % len(lost_pts))
    ax.set_yscale("log")
    ax.set_xlabel("invocation time since start (s); shaded: fault on")
    ax.set_ylabel("latency (s)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def short_title(result):
    f = result["figures"]
    q = result.get("checks", {}).get("queue", {})
    return "%s: %s  ops %d, acknowledged %d, lost %s, duplicated %s, unavailable %.1f s" % (
        result["scenario"], {True: "PASS", False: "FAIL"}.get(result["valid"], "UNKNOWN"), f["ops"], f["ok"],
        q.get("lost", "-"), q.get("duplicated", "-"), f["unavailable_s"])


def index(results, path):
    rows = []
    for res in results:
        d = res["scenario"]
        rows.append("<tr class='%s'><td>%s</td><td><pre>%s</pre></td><td>%s%s <a href='%s/history.jsonl'>history</a> "
                    "<a href='%s/result.json'>result</a> <a href='%s/nodes/'>node logs</a></td></tr>" % (
                        "pass" if res["valid"] is True else "fail", html.escape(d), html.escape(verdict_line(res)),
                        "<a href='%s/latency.png'><img src='%s/latency.png' width=420></a>" % (d, d)
                        if res.get("png") else "", "", d, d, d))
    path.write_text("""<!doctype html><meta charset="utf-8"><title>Starling fault suite</title>
<style>body{font-family:sans-serif} td{vertical-align:top;border-bottom:1px solid #ccc;padding:4px}
pre{white-space:pre-wrap;max-width:40em} .fail td:first-child{color:#b00;font-weight:bold}</style>
<h1>Starling fault suite</h1><p>One row per scenario: the verdict with its figures, the latency of every
operation over time (shaded: a fault was on), the recorded history and the checkers' results.
See docs/jepsen.md.</p><table>%s</table>""" % "\n".join(rows))
