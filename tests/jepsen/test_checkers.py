"""Each checker on small hand-written histories: the good ones it must
accept and the bad ones it must reject (a checker that accepts everything
would pass every scenario)."""

import checkers
from checkers import check_convergence, check_owner, check_queue, check_registers, figures, linearizable


class H:
    """Builds a history: ops with increasing times unless given."""

    def __init__(self):
        self.ops = []
        self.t = 0.0

    def op(self, process, type_, f, value=None, t=None, **kw):
        self.t = self.t + 1 if t is None else t
        self.ops.append(dict(process=process, type=type_, f=f, value=value, time=self.t, **kw))
        return self

    def call(self, process, f, value, result_type, result=None, **kw):
        self.op(process, "invoke", f, value, **kw)
        return self.op(process, result_type, f, value if result is None and f != "read" else result, **kw)


# -- linearizability --------------------------------------------------------


def reg(*ops):
    """(call, ret, f, value) tuples."""
    return list(ops)


def test_sequential_register_is_linearizable():
    assert linearizable(reg((0, 1, "write", "a"), (2, 3, "read", "a"), (4, 5, "write", "b"),
                            (6, 7, "read", "b")))[0] is True


def test_stale_read_is_rejected():
    ok, why = linearizable(reg((0, 1, "write", "a"), (2, 3, "write", "b"), (4, 5, "read", "a")))
    assert ok is False and "read 'a'" in why


def test_read_of_a_never_written_value_is_rejected():
    assert linearizable(reg((0, 1, "write", "a"), (2, 3, "read", "zzz")))[0] is False


def test_read_of_nothing_after_a_write_is_rejected():
    assert linearizable(reg((0, 1, "write", "a"), (2, 3, "read", None)))[0] is False


def test_concurrent_operations_may_take_either_order():
    # The read overlaps both writes: either value is fine.
    for seen in ("a", "b", None):
        assert linearizable(reg((0, 10, "read", seen), (1, 2, "write", "a"), (3, 4, "write", "b")))[0] is True


def test_two_readers_must_agree_on_one_order():
    # a and b written concurrently; one reader sees a then b, the other b
    # then a, after both writes completed: no single order explains both.
    ops = reg((0, 5, "write", "a"), (0, 5, "write", "b"),
              (6, 7, "read", "a"), (8, 9, "read", "b"), (10, 11, "read", "a"))
    assert linearizable(ops)[0] is False


def test_indeterminate_write_may_or_may_not_happen():
    INF = checkers.INF
    assert linearizable(reg((0, 1, "write", "a"), (2, INF, "write", "b"), (3, 4, "read", "a"),
                            (5, 6, "read", "b")))[0] is True
    assert linearizable(reg((0, 1, "write", "a"), (2, INF, "write", "b"), (3, 4, "read", "a")))[0] is True
    # ...but not before it was invoked, and not undone once seen.
    assert linearizable(reg((0, 1, "write", "a"), (1.5, 1.8, "read", "b"), (2, INF, "write", "b")))[0] is False
    assert linearizable(reg((0, 1, "write", "a"), (2, INF, "write", "b"), (3, 4, "read", "b"),
                            (5, 6, "read", "a")))[0] is False


def test_bounded_search_says_unknown():
    # 10 writes of unknown outcome, then a read no order explains: proving
    # that means trying the subsets of the writes.
    ops = [(0, checkers.INF, "write", str(i)) for i in range(10)] + [(1, 2, "read", "9"), (3, 4, "read", "nope")]
    assert linearizable(ops, max_states=50)[0] == "unknown"
    assert linearizable(ops)[0] is False


def test_check_registers_uses_the_history():
    h = H().call(0, "write", "a", "ok", key="k").call(1, "read", None, "ok", result="a", key="k")
    h.call(0, "write", "b", "fail", key="k").call(1, "read", None, "ok", result="a", key="k")
    assert check_registers(h.ops)["valid"] is True
    # A failed write that a read then sees: it did happen after all.
    h.call(1, "read", None, "ok", result="b", key="k")
    assert check_registers(h.ops)["valid"] is False
    # Registers are independent: a value of another key is not a value of this one.
    h2 = H().call(0, "write", "a", "ok", key="k1").call(1, "read", None, "ok", result="a", key="k2")
    assert check_registers(h2.ops)["valid"] is False


def test_unanswered_write_is_indeterminate():
    h = H().call(0, "write", "a", "ok", key="k")
    h.op(0, "invoke", "write", "b", key="k")  # never answered: the run ended
    h.call(1, "read", None, "ok", result="b", key="k")
    assert check_registers(h.ops)["valid"] is True


# -- queue ------------------------------------------------------------------


def queue_history():
    h = H()
    h.call("s", "subscribe", "t", "ok", sub="s0")
    h.call("p", "publish", "m1", "ok", qos=1)
    h.call("p", "publish", "m2", "ok", qos=2)
    h.call("p", "publish", "m3", "info", qos=1)  # unknown: may or may not arrive
    h.call("p", "publish", "m4", "fail", qos=1)
    return h


def test_queue_all_delivered():
    h = queue_history()
    h.op("s", "ok", "deliver", "m1", sub="s0").op("s", "ok", "deliver", "m2", sub="s0")
    r = check_queue(h.ops)
    assert r["valid"] is True and r["lost"] == 0 and r["acknowledged"] == 2


def test_queue_acknowledged_message_lost():
    h = queue_history()
    h.op("s", "ok", "deliver", "m2", sub="s0").op("s", "ok", "deliver", "m3", sub="s0")
    r = check_queue(h.ops)
    assert r["valid"] is False and r["lost"] == 1 and r["lost_qos1"] == 1 and r["unacknowledged_delivered"] == 1


def test_queue_qos2_twice_is_rejected_qos1_twice_counted():
    h = queue_history()
    h.op("s", "ok", "deliver", "m1", sub="s0").op("s", "ok", "deliver", "m1", sub="s0")
    h.op("s", "ok", "deliver", "m2", sub="s0")
    r = check_queue(h.ops)
    assert r["valid"] is True and r["qos1_duplicates"] == 1 and r["duplicated"] == 1
    h.op("s", "ok", "deliver", "m2", sub="s0")
    r = check_queue(h.ops)
    assert r["valid"] is False and r["qos2_duplicates"] == 1 and r["duplicated"] == 2


def test_queue_phantom_delivery_is_rejected():
    h = queue_history()
    h.op("s", "ok", "deliver", "m1", sub="s0").op("s", "ok", "deliver", "m2", sub="s0")
    h.op("s", "ok", "deliver", "never-sent", sub="s0")
    assert check_queue(h.ops)["unexpected"] == 1 and check_queue(h.ops)["valid"] is False


def test_queue_counts_per_subscriber_from_its_subscription():
    h = H()
    h.call("p", "publish", "early", "ok", qos=1)  # before s1 subscribed: not owed to s1
    h.call("s", "subscribe", "t", "ok", sub="s1")
    h.call("p", "publish", "m1", "ok", qos=1)
    h.op("s", "ok", "deliver", "m1", sub="s1")
    assert check_queue(h.ops)["valid"] is True
    h.call("t", "subscribe", "t", "ok", sub="s2")
    h.call("p", "publish", "m2", "ok", qos=1)
    h.op("s", "ok", "deliver", "m2", sub="s1")
    r = check_queue(h.ops)
    assert r["valid"] is False and r["lost"] == 1 and r["examples"]["lost"] == [("s2", "m2")]


# -- single owner -------------------------------------------------------------


def owner_history():
    h = H()
    h.call("a", "connect", "cid", "ok", conn="a1")        # t 2
    h.call("p", "publish", "m1", "ok", qos=1)             # t 3-4
    h.op("a", "ok", "deliver", "m1", conn="a1")           # t 5
    h.call("b", "connect", "cid", "ok", conn="b1")        # t 6-7: b1 owns from 7
    return h


def test_owner_delivery_in_flight_before_takeover_is_fine():
    h = owner_history()
    h.call("p", "publish", "m2", "ok", qos=1)             # published after b1's CONNACK
    h.op("b", "ok", "deliver", "m2", conn="b1")
    h.op("a", "ok", "deliver", "m1", conn="a1")           # a late copy of m1 (sent before): allowed
    r = check_owner(h.ops)
    assert r["valid"] is True and r["connections"] == 2


def test_owner_delivery_to_old_connection_is_rejected():
    h = owner_history()
    h.call("p", "publish", "m2", "ok", qos=1)
    h.op("a", "ok", "deliver", "m2", conn="a1")
    r = check_owner(h.ops)
    assert r["valid"] is False and r["stale_deliveries"] == 1


def test_owner_failed_connect_does_not_take_over():
    h = owner_history()
    h.call("c", "connect", "cid", "fail", conn="c1")
    h.call("p", "publish", "m2", "ok", qos=1)
    h.op("b", "ok", "deliver", "m2", conn="b1")
    assert check_owner(h.ops)["valid"] is True
    h.op("c", "ok", "deliver", "m2", conn="c1")
    assert check_owner(h.ops)["valid"] is False


def test_owner_racing_connects_have_no_order():
    # c1 and d1 CONNECT before either CONNACK arrived: either may be the
    # newer one, so messages to one of them are fine...
    h = H()
    h.op("c", "invoke", "connect", "cid", conn="c1")    # t 1
    h.op("d", "invoke", "connect", "cid", conn="d1")    # t 2
    h.op("d", "ok", "connect", "cid", conn="d1")        # t 3
    h.op("c", "ok", "connect", "cid", conn="c1")        # t 4
    h.call("p", "publish", "m1", "ok", qos=1)
    h.op("d", "ok", "deliver", "m1", conn="d1")
    assert check_owner(h.ops)["valid"] is True
    # ...but not to both: then two connections owned the session at once.
    h.call("p", "publish", "m2", "ok", qos=1)
    h.op("c", "ok", "deliver", "m2", conn="c1")
    r = check_owner(h.ops)
    assert r["valid"] is False and "both got" in r["examples"][0][2]


# -- convergence ----------------------------------------------------------------


def dumps(*digests, failed=()):
    h = H()
    for i, d in enumerate(digests, 1):
        h.call("checker", "dump", None, "ok", result={"node": i, "digest": d, "applied_index": 5}, node=i)
    for i in failed:
        h.call("checker", "dump", None, "fail", result={"node": i}, node=i)
    return h.ops


def test_convergence():
    assert check_convergence(dumps("x", "x", "x"))["valid"] is True
    assert check_convergence(dumps("x", "y", "x"))["valid"] is False
    assert check_convergence(dumps("x", "x", failed=[3]))["valid"] is False
    assert check_convergence(dumps("x"))["valid"] is False


# -- figures ----------------------------------------------------------------------


def test_figures_count_unavailability():
    h = H()
    h.call(0, "write", "a", "ok", key="k", t=None)        # t 1-2
    h.op(0, "invoke", "write", "b", key="k", t=2.5)
    h.op(0, "info", "write", "b", key="k", t=7.5)
    h.op(0, "invoke", "write", "c", key="k", t=7.6)
    h.op(0, "ok", "write", "c", key="k", t=8.0)
    f = figures(h.ops)
    assert f["ops"] == 3 and f["ok"] == 2 and f["info"] == 1
    assert f["unavailable_s"] == 6.0 and f["longest_unavailable_s"] == 6.0
