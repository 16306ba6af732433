"""Checkers: each takes the history (a list of ops, see history.py) and
returns a dict with at least "valid" (True, False or "unknown" when a bounded
search gave up) and the figures it counted. They read nothing but the
history, so a history file can be checked again later (run.py --check FILE).
"""

import collections

from history import pairs

INF = float("inf")


# ---------------------------------------------------------------------------
# Linearizability of registers (one per retained topic)


def register_ops(ops, key):
    """The operations on register key as (call, ret, f, value) with ret INF
    for a write whose outcome is unknown; failed operations and reads
    without an answer are left out (they have no effect)."""
    out = []
    for inv, done in pairs(ops):
        if inv.get("key") != key or inv["f"] not in ("read", "write"):
            continue
        type_ = done["type"] if done else "info"
        if type_ == "fail":
            continue
        if inv["f"] == "read":
            if type_ != "ok":
                continue
            out.append((inv["time"], done["time"], "read", done["value"]))
        else:
            out.append((inv["time"], done["time"] if type_ == "ok" else INF, "write", inv["value"]))
    return out


def linearizable(reg_ops, initial=None, max_states=200000):
    """Wing & Gong's search with Lowe's memoisation: is there an order of the
    operations, each placed between its call and return, in which every read
    returns the last write before it? Writes with ret INF may be placed
    anywhere after their call or left out. Returns (True|False|"unknown",
    explanation)."""
    n = len(reg_ops)
    ops = sorted(reg_ops, key=lambda o: o[0])
    required = 0
    for i, o in enumerate(ops):
        if o[1] != INF:
            required |= 1 << i
    seen = set()
    stack = [(0, initial)]
    best = (0, 0)  # (count linearized, mask): the furthest the search got
    while stack:
        mask, state = stack.pop()
        if (mask & required) == required:
            return True, "linearizable (%d operations, %d states searched)" % (n, len(seen))
        if (mask, state) in seen:
            continue
        seen.add((mask, state))
        if len(seen) > max_states:
            return "unknown", "search stopped after %d states (%d operations)" % (max_states, n)
        count = bin(mask).count("1")
        if count > best[0]:
            best = (count, mask)
        # The next operation must be called before every pending one returned.
        horizon = min((ops[i][1] for i in range(n) if not mask >> i & 1), default=INF)
        for i in range(n):
            if mask >> i & 1:
                continue
            call, ret, f, value = ops[i]
            if call > horizon:
                break
            if f == "read":
                if value == state:
                    stack.append((mask | 1 << i, state))
            else:
                stack.append((mask | 1 << i, value))
    mask = best[1]
    pending = [ops[i] for i in range(n) if not mask >> i & 1 and ops[i][1] != INF]
    stuck = min(pending, key=lambda o: o[1]) if pending else None
    return False, "not linearizable: at most %d of %d operations can be ordered; stuck at %s %r [%.3f, %.3f]" % (
        best[0], n, stuck[2], stuck[3], stuck[0], stuck[1]) if stuck else "not linearizable"


def check_registers(ops, max_states=200000):
    keys = sorted({op["key"] for op in ops if op.get("f") in ("read", "write") and "key" in op})
    results, valid = {}, True
    for k in keys:
        ok, why = linearizable(register_ops(ops, k), max_states=max_states)
        results[k] = why
        if ok is False:
            valid = False
        elif ok == "unknown" and valid is True:
            valid = "unknown"
    return {"checker": "linearizable", "valid": valid, "keys": results,
            "summary": "%d registers: %s" % (len(keys), "; ".join("%s %s" % (k, results[k].split(" (")[0])
                                                                   for k in keys))}


# ---------------------------------------------------------------------------
# Queue: numbered QoS 1 and QoS 2 publishes into persistent sessions


def check_queue(ops):
    """Every acknowledged publish reaches every subscriber whose subscription
    was acknowledged before the publish was sent; QoS 2 messages never arrive
    twice at one subscriber (the recording client already drops a redelivery
    of a packet id it has not released, as MQTT asks of a receiver); QoS 1
    duplicates are counted but allowed; a delivery of something never
    published is an error."""
    subscribed = {}  # subscriber -> time its SUBACK arrived
    sent = {}        # message -> (qos, invoke time, outcome)
    delivered = collections.defaultdict(collections.Counter)  # subscriber -> Counter(message)
    for inv, done in pairs(ops):
        if inv["f"] == "subscribe" and done and done["type"] == "ok":
            subscribed.setdefault(inv["sub"], done["time"])
        elif inv["f"] == "publish":
            sent[inv["value"]] = (inv["qos"], inv["time"], done["type"] if done else "info")
    for op in ops:
        if op["f"] == "deliver" and op["type"] == "ok":
            delivered[op["sub"]][op["value"]] += 1
    acked = [m for m, (_, _, t) in sent.items() if t == "ok"]
    lost, dup1, dup2, unexpected, recovered = [], 0, [], [], 0
    for sub, since in subscribed.items():
        got = delivered[sub]
        for m in acked:
            if sent[m][1] > since and got[m] == 0:
                lost.append((sub, m))
        for m, c in got.items():
            if m not in sent:
                unexpected.append((sub, m))
            elif c > 1 and sent[m][0] == 2:
                dup2.append((sub, m, c))
            elif c > 1:
                dup1 += c - 1
            if m in sent and sent[m][2] != "ok":
                recovered += 1
    for sub in delivered:
        if sub not in subscribed:
            unexpected.extend((sub, m) for m in delivered[sub])
    valid = not lost and not dup2 and not unexpected
    return {"checker": "queue", "valid": valid, "acknowledged": len(acked), "subscribers": len(subscribed),
            "lost": len(lost), "lost_qos1": sum(1 for _, m in lost if sent[m][0] == 1),
            "lost_qos2": sum(1 for _, m in lost if sent[m][0] == 2),
            "duplicated": dup1 + sum(c - 1 for _, _, c in dup2), "qos1_duplicates": dup1,
            "qos2_duplicates": len(dup2), "unexpected": len(unexpected), "unacknowledged_delivered": recovered,
            "lost_messages": sorted({m for _, m in lost}),
            "examples": {"lost": sorted(lost)[:10], "qos2_duplicates": dup2[:10], "unexpected": unexpected[:10]},
            "summary": "%d acknowledged x %d subscribers: %d lost (QoS 1 %d, QoS 2 %d), %d QoS 1 duplicates, "
                       "%d QoS 2 duplicates, %d unexpected" % (
                           len(acked), len(subscribed), len(lost),
                           sum(1 for _, m in lost if sent[m][0] == 1), sum(1 for _, m in lost if sent[m][0] == 2),
                           dup1, len(dup2), len(unexpected))}


# ---------------------------------------------------------------------------
# Single owner of a client id


def check_owner(ops):
    """No message published after a newer connection of the client id got its
    CONNACK is delivered to an older connection. (A message published before
    may still be on its way to the old one: the broker sent it before the
    takeover.)

    "Newer" only where the history proves it: c2 is newer than c when c2's
    CONNECT was sent after c's CONNACK arrived. Two connections whose
    CONNECT/CONNACK intervals overlap have no known order (the threads'
    clocks cannot tell which CONNACK the broker sent first); of those, at most
    one may receive messages published after both CONNACKs arrived, or two
    connections were owners at once."""
    conns = {}      # conn -> (CONNECT sent, CONNACK arrived)
    published = {}  # message -> invoke time
    for inv, done in pairs(ops):
        if inv["f"] == "connect" and done and done["type"] == "ok" and "conn" in inv:
            conns[inv["conn"]] = (inv["time"], done["time"])
        elif inv["f"] == "publish":
            published[inv["value"]] = inv["time"]
    superseded = {}
    for c, (_, acked) in conns.items():
        superseded[c] = min((a2 for c2, (i2, a2) in conns.items() if c2 != c and i2 > acked), default=INF)
    stale, deliveries = [], 0
    late = collections.defaultdict(set)  # conn -> messages it got, by publish time
    for op in ops:
        if op["f"] != "deliver" or op["type"] != "ok":
            continue
        deliveries += 1
        c, m = op["conn"], op["value"]
        if c not in conns:
            stale.append((c, m, "delivery to a connection that never got CONNACK"))
            continue
        late[c].add(m)
        if published.get(m, -INF) > superseded[c]:
            stale.append((c, m, "published at %.3f, after a newer CONNACK at %.3f" % (published[m], superseded[c])))
    names = sorted(conns)
    for x, a in enumerate(names):
        for b in names[x + 1:]:
            (ia, aa), (ib, ab) = conns[a], conns[b]
            if ia > ab or ib > aa:
                continue  # ordered: handled above
            after = max(aa, ab)
            ma = sorted(m for m in late[a] if published.get(m, -INF) > after)
            mb = sorted(m for m in late[b] if published.get(m, -INF) > after)
            if ma and mb:
                stale.append((a, ma[0], "%s and %s both got messages published after both CONNACKs (e.g. %s)" % (
                    a, b, mb[0])))
    return {"checker": "single-owner", "valid": not stale, "connections": len(conns), "deliveries": deliveries,
            "stale_deliveries": len(stale), "examples": stale[:10],
            "summary": "%d connections, %d deliveries, %d to a superseded connection" % (
                len(conns), deliveries, len(stale))}


# ---------------------------------------------------------------------------
# Convergence of the replicated state after healing


def check_convergence(ops):
    """The final dump of every node (recorded as f "dump": node, applied_index
    and a digest of the state lines) is identical; a node that could not be
    dumped fails the check."""
    dumps = [op for op in ops if op["f"] == "dump" and op["type"] in ("ok", "fail")]
    failed = [op for op in dumps if op["type"] == "fail"]
    okd = [op for op in dumps if op["type"] == "ok"]
    digests = {op["value"]["node"]: op["value"]["digest"] for op in okd}
    valid = not failed and len(okd) >= 2 and len(set(digests.values())) == 1
    return {"checker": "convergence", "valid": valid, "nodes": len(dumps), "distinct_states": len(set(digests.values())),
            "summary": "%d nodes dumped, %d distinct states%s" % (
                len(dumps), len(set(digests.values())),
                "" if not failed else ", no dump from node(s) %s" % [op["value"]["node"] for op in failed])}


CHECKERS = {"linearizable": check_registers, "queue": check_queue, "single-owner": check_owner,
            "convergence": check_convergence}


# ---------------------------------------------------------------------------
# Figures common to every scenario


def figures(ops, gap=1.0):
    """Operations invoked, acknowledged (ok), failed, unknown (info), and
    unavailability: the seconds without any operation completing ok while
    operations were being attempted, counting only gaps above gap seconds,
    up to the end of the workload's run (the "workload-end" op; the final
    drains and dumps after it are not availability)."""
    ps = [(inv, done) for inv, done in pairs(ops) if inv["f"] not in ("dump",)]
    stop = min((op["time"] for op in ops if op["f"] == "workload-end"), default=INF)
    counts = collections.Counter(done["type"] if done else "info" for _, done in ps)
    oks = sorted(done["time"] for _, done in ps if done and done["type"] == "ok")
    total = longest = 0.0
    if ps and oks:
        start = min(inv["time"] for inv, _ in ps)
        end = min(stop, max(done["time"] if done else inv["time"] for inv, done in ps))
        prev = start
        for t in [t for t in oks if t < end] + [end]:
            if t - prev > gap:
                total += t - prev
                longest = max(longest, t - prev)
            prev = max(prev, t)
    return {"ops": len(ps), "ok": counts["ok"], "fail": counts["fail"], "info": counts["info"],
            "unavailable_s": round(total, 1), "longest_unavailable_s": round(longest, 1)}
