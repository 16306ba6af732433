"""The web dashboard (GET / on the admin port, docs/dashboard.md) in a real
browser: headless Chromium driven by Selenium against a real three-node
cluster. The page loads without console errors, lists the three members
with the leader marked, shows a retained message published with mosquitto_pub
in its Browse view, hands leadership over through its Operate view (the
confirm() accepted) and marks a killed node down within a few seconds. The
page is served with its Content-Security-Policy, and the event stream
(GET /api/v1/events) pushes snapshots that a plain HTTP client reads too.

Chromium, chromedriver and python3-selenium come from deploy/setup.sh: when
one is missing the tests fail (they are part of the default suite).
STARLING_SCREENSHOTS=DIR saves the main views to DIR/dashboard-*.png
(docs/img holds the committed ones).
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from harness import STARLINGD, Node, wait_for

CHROMIUM = os.environ.get("STARLING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("STARLING_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("STARLING_SCREENSHOTS", "")
PAGE_TIMEOUT = 15.0
DOWN_WITHIN = 5.0     # seconds from the kill until the page marks the node down
TRANSFER_TIMEOUT = 20.0


def browser():
    """A headless Chromium under chromedriver, its console log kept."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail("python3-selenium is missing (deploy/setup.sh installs it): %s" % e)
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.fail("%s not found at %s (deploy/setup.sh installs %s)" % (what, path, what))
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,960", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture
def driver():
    d = browser()
    yield d
    d.quit()


def console_errors(d):
    """The browser console's errors and warnings since the last call
    (Chromium's DEBUG/INFO hints about the page are not errors)."""
    return [e for e in d.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]


def screenshot(d, name):
    if SCREENSHOTS:
        out = pathlib.Path(SCREENSHOTS)
        out.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(out / ("dashboard-%s.png" % name)))


def rows(d):
    """{node id: (health, is leader)} of the members table as the page shows it."""
    return d.execute_script(
        "const r = {}; document.querySelectorAll('#members tbody tr').forEach(tr =>"
        " { r[tr.dataset.node] = [tr.dataset.health, tr.dataset.leader === 'true']; }); return r;")


def leader_shown(d):
    shown = [int(n) for n, (_, lead) in rows(d).items() if lead]
    return shown[0] if len(shown) == 1 else None


def click(d, css):
    d.find_element("css selector", css).click()


def text(d, element_id):
    return d.find_element("id", element_id).text


class Scenery:
    """Only for screenshots (STARLING_SCREENSHOTS): subscribers, a steady
    publish rate and a few hundred retained messages from starling-bench, so
    that the charts and listings have something to show."""

    def __init__(self, cluster):
        self.procs = []
        if not SCREENSHOTS:
            return
        bench = str(pathlib.Path(STARLINGD).parent.parent / "tools" / "starling-bench")
        n1, n2 = cluster.node(1), cluster.node(2)
        quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([bench, "pub", "-h", n1.host, "-p", str(n1.port), "-c", "4", "-i", "0", "-I", "0", "-q", "1",
                        "-r", "-t", "dash/sensors/%i/%s", "-m", "{\"celsius\": 21.5}", "--limit-per-client", "80"],
                       timeout=60, check=True, **quiet)
        self.procs.append(subprocess.Popen([bench, "sub", "-h", n1.host, "-p", str(n1.port), "-c", "12", "-i", "5",
                                            "-q", "1", "-t", "load/#", "-C", "false", "-x", "600"], **quiet))
        self.procs.append(subprocess.Popen([bench, "pub", "-h", n1.host, "-p", str(n1.port), "-c", "6", "-i", "20",
                                            "-I", "40", "-q", "1", "-t", "load/%i", "-s", "64"], **quiet))
        self.procs.append(subprocess.Popen([bench, "pub", "-h", n2.host, "-p", str(n2.port), "-c", "3", "-i", "20",
                                            "-I", "100", "-q", "0", "-t", "load/remote/%i", "-s", "64"], **quiet))
        self.procs.append(subprocess.Popen([bench, "pub", "-h", n1.host, "-p", str(n1.port), "-c", "2", "-i", "20",
                                            "-I", "300", "-q", "1", "-r", "-t", "dash/live/%i", "-s", "32"], **quiet))

    def settle(self):
        if SCREENSHOTS:
            time.sleep(25)  # half a minute of charts

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait(10)


def publish_retained(node, topic, payload):
    p = subprocess.run(["mosquitto_pub", *node.cli_args(), "-i", "dash-pub", "-q", "1", "-r",
                        "-t", topic, "-m", payload], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, "mosquitto_pub failed: %s" % p.stdout.decode(errors="replace")


def test_dashboard_in_a_browser(cluster, driver):
    leader, _ = cluster.wait_leader()
    page = cluster.node(1)
    publish_retained(cluster.node(3), "dash/room/temperature", "21.5 C")
    scenery = Scenery(cluster)
    try:
        check_page(cluster, leader, page, driver, scenery)
    finally:
        scenery.stop()


def check_page(cluster, leader, page, driver, scenery):

    started = time.monotonic()
    driver.get(page.admin_url + "/")
    wait_for(lambda: len(rows(driver)) == 3 and leader_shown(driver) is not None, PAGE_TIMEOUT,
             lambda: "the page shows members %s, not three with a leader" % rows(driver))
    print("the page showed three members %.2f s after the load began" % (time.monotonic() - started))
    assert leader_shown(driver) == leader.id, "page: leader %s, cluster: node %d" % (leader_shown(driver), leader.id)
    wait_for(lambda: all(h in ("self", "up") for h, _ in rows(driver).values()), PAGE_TIMEOUT,
             lambda: "members not all up: %s" % rows(driver))
    assert text(driver, "live") == "live"
    assert "cluster test" in text(driver, "identity")
    assert console_errors(driver) == []
    screenshot(driver, "cluster")

    # Traffic: the cards fill from the stream's snapshots (one per second)
    click(driver, "button[data-view=traffic]")
    retained = page.status()["retained"]
    wait_for(lambda: text(driver, "t-retained") == "{:,}".format(retained) and text(driver, "t-in") != "–",
             PAGE_TIMEOUT, lambda: "traffic cards: retained %r (node: %d), in %r" % (
                 text(driver, "t-retained"), retained, text(driver, "t-in")))
    scenery.settle()
    screenshot(driver, "traffic")

    # Browse: the retained message published on node 3, found by a search
    click(driver, "button[data-view=browse]")
    click(driver, "button[data-kind=retained]")
    wait_for(lambda: "of {:,}".format(retained) in text(driver, "range"), PAGE_TIMEOUT,
             lambda: "browse: %r, expected %d retained" % (text(driver, "range"), retained))
    screenshot(driver, "browse")
    driver.find_element("id", "search").send_keys("room")
    wait_for(lambda: "1–1 of 1" in text(driver, "range"), PAGE_TIMEOUT,
             lambda: "browse: %r after the search" % text(driver, "range"))
    assert "dash/room/temperature" in text(driver, "browse") and "21.5 C" in text(driver, "browse")

    # Operate: leadership to a chosen follower through the UI
    target = cluster.followers(leader)[-1]
    click(driver, "button[data-view=operate]")
    wait_for(lambda: driver.execute_script(
        "return [...document.querySelectorAll('#op-transfer-node option')].some(o => o.value == arguments[0])",
        str(target.id)), PAGE_TIMEOUT, "node %d offered as a transfer target" % target.id)
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element("id", "op-transfer-node")).select_by_value(str(target.id))
    click(driver, "#op-transfer")
    alert = wait_for(lambda: _alert(driver), PAGE_TIMEOUT, "the confirmation of the transfer")
    assert "node %d" % target.id in alert.text
    alert.accept()
    wait_for(lambda: "transfer to node %d: ok" % target.id in text(driver, "op-log"), TRANSFER_TIMEOUT,
             lambda: "operate log: %r" % text(driver, "op-log"))
    screenshot(driver, "operate")
    new_leader, _ = cluster.wait_leader()
    # the transfer made node target leader (its answer says so); on a loaded
    # machine a later election may move leadership on again, so the page is
    # held to the cluster's leader of the moment
    assert new_leader.id != leader.id or new_leader.id == target.id, new_leader
    click(driver, "button[data-view=cluster]")
    wait_for(lambda: leader_shown(driver) == cluster.wait_leader()[0].id, PAGE_TIMEOUT,
             lambda: "the page shows leader %s after the transfer to node %d (cluster: node %d)" % (
                 leader_shown(driver), target.id, cluster.wait_leader()[0].id))

    # a refused operation shows the API's message
    click(driver, "button[data-view=operate]")
    driver.find_element("id", "op-topic").send_keys("dash/no/such/topic")
    click(driver, "#op-clear")
    wait_for(lambda: _alert(driver), PAGE_TIMEOUT, "the confirmation of the clear").accept()
    refusal = wait_for(lambda: _alert(driver), PAGE_TIMEOUT, "the refusal of the clear")
    assert "no retained message on this topic" in refusal.text
    refusal.accept()
    # a console error for the 404 answer is Chromium's network log, not the page's
    errors = [e for e in console_errors(driver) if "404" not in e.get("message", "")]
    assert errors == []

    # a killed node is marked down within a few seconds
    victim = next(n for n in cluster if n.id != page.id)
    click(driver, "button[data-view=cluster]")
    victim.kill()
    killed = time.monotonic()
    wait_for(lambda: rows(driver).get(str(victim.id), ("",))[0] in ("down", "unreachable"), DOWN_WITHIN,
             lambda: "node %d still shown %s %.1f s after its kill" % (victim.id, rows(driver).get(str(victim.id)),
                                                                     time.monotonic() - killed))
    print("node %d shown %s %.2f s after its kill" % (victim.id, rows(driver)[str(victim.id)][0],
                                                    time.monotonic() - killed))
    screenshot(driver, "node-down")
    assert console_errors(driver) == []


def mosquitto_pub_as(node, user, password, topic):
    """mosquitto_pub's exit status and output, as user on node."""
    p = subprocess.run(["mosquitto_pub", "-h", node.host, "-p", str(node.port), "-V", "mqttv5", "-u", user,
                        "-P", password, "-q", "1", "-t", topic, "-m", "x"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode(errors="replace")


def browse_rows(d):
    return d.execute_script("return [...document.querySelectorAll('#browse tbody tr')].map(tr => tr.dataset.key || '')")


@pytest.mark.own_auth  # the users of the page's cluster only (authmode.py)
def test_users_and_rules_managed_in_the_page(cluster, driver):
    """A user and an ACL rule added through the Operate view on node 1 hold
    on node 3 (mosquitto_pub with the password is accepted there, a wrong
    one refused), are listed in Browse, and are deleted from there."""
    from selenium.webdriver.support.ui import Select
    cluster.wait_leader()
    page, other = cluster.node(1), cluster.node(3)
    driver.get(page.admin_url + "/#operate")
    wait_for(lambda: text(driver, "live") == "live", PAGE_TIMEOUT, "the page goes live")
    driver.find_element("id", "op-user").send_keys("dash-alice")
    driver.find_element("id", "op-password").send_keys("dash-secret-1")
    click(driver, "#op-add-user")
    wait_for(lambda: _alert(driver), PAGE_TIMEOUT, "the confirmation of the user").accept()
    wait_for(lambda: "add user dash-alice: created" in text(driver, "op-log"), PAGE_TIMEOUT,
             lambda: "operate log: %r" % text(driver, "op-log"))
    assert driver.find_element("id", "op-password").get_attribute("value") == "", "the password stays in the form"
    Select(driver.find_element("id", "op-rule-kind")).select_by_value("user")
    driver.find_element("id", "op-rule-user").send_keys("dash-alice")
    Select(driver.find_element("id", "op-rule-access")).select_by_value("write")
    driver.find_element("id", "op-rule-topic").send_keys("dash/alice/#")
    click(driver, "#op-add-rule")
    wait_for(lambda: _alert(driver), PAGE_TIMEOUT, "the confirmation of the rule").accept()
    wait_for(lambda: "add rule dash/alice/#: created" in text(driver, "op-log"), PAGE_TIMEOUT,
             lambda: "operate log: %r" % text(driver, "op-log"))

    # on another node: the password works there, a wrong one does not, and
    # the rule grants dash/alice/# only
    wait_for(lambda: mosquitto_pub_as(other, "dash-alice", "dash-secret-1", "dash/alice/x")[0] == 0, PAGE_TIMEOUT,
             lambda: "node 3 refused the user added on node 1: %s" % (
                 mosquitto_pub_as(other, "dash-alice", "dash-secret-1", "dash/alice/x"),))
    rc, out = mosquitto_pub_as(other, "dash-alice", "wrong-password", "dash/alice/x")
    assert rc != 0 and "not authorised" in out.lower() or "bad user name or password" in out.lower(), (rc, out)

    # Browse lists them; delete both from there
    click(driver, "button[data-view=browse]")
    click(driver, "button[data-kind=users]")
    wait_for(lambda: "dash-alice" in browse_rows(driver), PAGE_TIMEOUT, lambda: "users: %s" % browse_rows(driver))
    assert "yes" in text(driver, "browse"), "the user added by the page has SCRAM credentials"
    click(driver, "button[data-kind=acl]")
    wait_for(lambda: "dash/alice/#" in browse_rows(driver), PAGE_TIMEOUT, lambda: "rules: %s" % browse_rows(driver))
    screenshot(driver, "users")
    click(driver, "#browse tbody tr[data-key='dash/alice/#'] button")
    wait_for(lambda: _alert(driver), PAGE_TIMEOUT, "the confirmation of the rule's deletion").accept()
    wait_for(lambda: "dash/alice/#" not in browse_rows(driver), PAGE_TIMEOUT, lambda: "rules: %s" % browse_rows(driver))
    click(driver, "button[data-kind=users]")
    wait_for(lambda: "dash-alice" in browse_rows(driver), PAGE_TIMEOUT, lambda: "users: %s" % browse_rows(driver))
    click(driver, "#browse tbody tr[data-key='dash-alice'] button")
    wait_for(lambda: _alert(driver), PAGE_TIMEOUT, "the confirmation of the user's deletion").accept()
    wait_for(lambda: "dash-alice" not in browse_rows(driver), PAGE_TIMEOUT, lambda: "users: %s" % browse_rows(driver))
    host, port = other.admin_addr.split(":")
    wait_for(lambda: json.loads(_get(host, int(port), "/api/v1/users")[1])["users"] == [] and
             json.loads(_get(host, int(port), "/api/v1/acl")[1])["rules"] == [], PAGE_TIMEOUT,
             lambda: "node 3 still lists %s" % _get(host, int(port), "/api/v1/users")[1])
    assert console_errors(driver) == []


def test_token_asked_once_and_sent_as_a_header(tmp_path, driver):
    """With admin_token set, the page (served without it) asks for the token
    when the API answers 401, then streams with it; the token appears in no
    URL and no cookie, and a wrong one is asked for again."""
    token = "dash-token-0123456789"
    node = Node(tmp_path / "tok", 1, "127.0.0.1", {"admin_token": token}).start()
    try:
        node.wait_listening()
        driver.get(node.admin_url + "/")
        wait_for(lambda: driver.find_element("id", "token").is_displayed(), PAGE_TIMEOUT, "the token dialog")
        field = driver.find_element("id", "token-input")
        field.send_keys("not-the-token")
        click(driver, "#token-ok")
        wait_for(lambda: driver.find_element("id", "token").is_displayed() and
                 "not this node's admin_token" in text(driver, "token-why"), PAGE_TIMEOUT,
                 lambda: "the dialog again after a wrong token: %r" % text(driver, "token-why"))
        field.send_keys(token)
        click(driver, "#token-ok")
        wait_for(lambda: text(driver, "live") == "live" and len(rows(driver)) == 1, PAGE_TIMEOUT,
                 lambda: "live %r, members %s" % (text(driver, "live"), rows(driver)))
        assert not driver.find_element("id", "token").is_displayed()
        assert driver.get_cookies() == []
        assert token not in driver.current_url
        assert driver.execute_script("return sessionStorage.getItem('starling.token')") == token
        urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and not [u for u in urls if token in u], urls
        # the only console errors are Chromium's lines for the two 401 answers
        errors = [e for e in console_errors(driver) if "401" not in e.get("message", "")]
        assert errors == []
    finally:
        assert node.terminate() == 0, node.log()[-3000:]


def _alert(d):
    try:
        a = d.switch_to.alert
        a.text  # raises while there is none
        return a
    except Exception:  # selenium's NoAlertPresentException
        return None


def test_page_headers_and_event_stream(cluster):
    """The page's files carry the security headers; the event stream is
    text/event-stream and pushes a snapshot a second with the members."""
    node = cluster.node(2)
    host, port = node.admin_addr.split(":")
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")):
        head, body = _get(host, int(port), path)
        assert head.startswith("HTTP/1.1 200"), head
        assert "content-type: %s" % kind in head.lower(), head
        assert "content-security-policy: default-src 'none'; script-src 'self';" in head.lower(), head
        assert "x-content-type-options: nosniff" in head.lower()
        assert "frame-ancestors 'none'" in head
        assert body
    _, html = _get(host, int(port), "/")
    assert b"<script src=\"/app.js\"" in html and b"<script>" not in html, "no inline script"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        s.settimeout(10)
        got = b""
        started = time.monotonic()
        while got.count(b"event: snapshot") < 3 and time.monotonic() - started < 10:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    head, _, events = got.partition(b"\r\n\r\n")
    assert b"Content-Type: text/event-stream" in head
    assert events.count(b"event: snapshot") >= 3, got[:2000]
    snap = json.loads(events.split(b"data: ", 1)[1].split(b"\n", 1)[0])
    assert snap["node"] == 2 and len(snap["members"]) == 3 and snap["leader"] in (1, 2, 3)
    for key in ("messages_received", "messages_sent", "messages_dropped", "commits", "commit_us_total", "time_ms"):
        assert key in snap


def _get(host, port, path):
    """(status line and headers as text, body) of GET path."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy for 127.0.0.x
    with opener.open("http://%s:%d%s" % (host, port, path), timeout=10) as resp:
        head = "HTTP/1.1 %d %s\r\n%s" % (resp.status, resp.reason, resp.headers)
        return head, resp.read()
