"""The retained quota holds cluster-wide: every node holds the replicated
retained index, and the node receiving a retained PUBLISH checks it there
(issue 11)."""

from clients import uid

from cluster_mqtt import PUBACK_OK, retain
from harness import http_json, wait_for


def test_retained_quota_is_checked_against_the_replicated_index(start_cluster):
    cluster = start_cluster(settings={"max_retained": 2})
    n1, n2, n3 = cluster.nodes
    base = "rq/" + uid("c")
    assert retain(n1, base + "/a", b"1") in PUBACK_OK
    assert retain(n2, base + "/b", b"1") in PUBACK_OK
    wait_for(lambda: http_json(n3.admin_url + "/api/v1/status")[1]["retained"] == 2, 10,
             "node 3 to apply both retained messages")
    # a third topic is refused on any node; a replacement is accepted
    assert retain(n3, base + "/c", b"1") == 0x97
    assert retain(n1, base + "/c", b"1") == 0x97
    assert retain(n3, base + "/a", b"2") in PUBACK_OK
