#!/usr/bin/python3
"""The dashboard with 100,000 retained messages: page load time and the node's memory.

Starts one starlingd (a one-voter cluster) on free loopback ports, fills it
with N retained messages (starling-bench pub, QoS 1, one topic each), then
drives headless Chromium (chromium, chromium-driver, python3-selenium from
deploy/setup.sh) over the dashboard and prints:

  - the node's RSS (VmRSS) empty, after the fill, and after the browsing;
  - the page load: from driver.get() to the members table drawn from the first
    event, and to the load event;
  - the Browse view's retained tab: the first page of 50 shown, a search that
    matches 1 % of the topics, the next page, the last page;
  - the listing endpoint alone (GET /api/v1/retained?limit=50, median of 20)
    and the event stream's snapshot interval while the listings run (whether
    the node's loop keeps its one-a-second pace).

Figures only, no assertions (docs/dashboard.md quotes a run).
usage: tools/bench/dashboard_bench.py [--build DIR] [--retained N] [--keep]
"""

import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get_json(url, timeout=60):
    with OPENER.open(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = predicate()
        except OSError:
            v = None
        if v:
            return v
        time.sleep(0.05)
    sys.exit("dashboard_bench: %s" % what)


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,960"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=o)


class EventGaps(threading.Thread):
    """Reads GET /api/v1/events and records the time between snapshots."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.times = []

    def run(self):
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return
                for _ in range(chunk.count(b"event: snapshot")):
                    self.times.append(time.monotonic())
        except OSError:
            return

    def max_gap(self, since):
        t = [x for x in self.times if x >= since]
        return max((b - a for a, b in zip(t, t[1:])), default=0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--retained", type=int, default=100000)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    starlingd = pathlib.Path(args.build) / "broker" / "starlingd"
    bench = pathlib.Path(args.build) / "tools" / "starling-bench"
    work = pathlib.Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    mqtt, admin = free_port(), free_port()
    base = "http://127.0.0.1:%d" % admin
    node = subprocess.Popen([str(starlingd), "-p", str(mqtt), "--bind", "127.0.0.1", "--data-dir", str(work / "data"),
                             "--set", "admin_listen=127.0.0.1:%d" % admin, "-q"],
                            stdin=subprocess.DEVNULL, stderr=open(work / "stderr.log", "w"))
    try:
        wait(lambda: get_json(base + "/api/v1/status")["state"] == "leader", 30, "the node did not start")
        rss0 = rss_kib(node.pid)
        clients = 20
        per = (args.retained + clients - 1) // clients
        t0 = time.monotonic()
        subprocess.run([str(bench), "pub", "-h", "127.0.0.1", "-p", str(mqtt), "-c", str(clients), "-i", "0",
                        "-I", "0", "-q", "1", "-r", "-t", "dash/%i/%s", "-m", "twenty-one and a half",
                        "--limit-per-client", str(per)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600, check=True)
        total = per * clients
        wait(lambda: get_json(base + "/api/v1/status")["retained"] >= total, 300, "the retained messages never arrived")
        fill = time.monotonic() - t0
        rss1 = rss_kib(node.pid)
        print("filled with %d retained messages in %.1f s" % (total, fill), flush=True)

        gaps = EventGaps("127.0.0.1", admin)
        gaps.start()
        api = []
        for _ in range(20):
            t = time.monotonic()
            get_json(base + "/api/v1/retained?limit=50&offset=50000")
            api.append(time.monotonic() - t)

        d = browser()
        try:
            browse_from = time.monotonic()
            t = time.monotonic()
            d.get(base + "/")
            loaded = time.monotonic() - t
            wait(lambda: d.execute_script("return document.querySelectorAll('#members tbody tr').length") == 1, 30,
                 "no members drawn")
            drawn = time.monotonic() - t

            def shown(fragment):
                return fragment in d.find_element("id", "range").text

            d.find_element("css selector", "button[data-view=browse]").click()
            t = time.monotonic()
            d.find_element("css selector", "button[data-kind=retained]").click()
            wait(lambda: shown("of %s" % format(total, ",")), 60, "the retained tab did not fill")
            first = time.monotonic() - t
            t = time.monotonic()
            d.find_element("id", "search").send_keys("dash/7/")
            wait(lambda: shown("of %s" % format(per, ",")), 60, "the search did not answer")
            search = time.monotonic() - t - 0.25  # the page waits 250 ms for more typing
            t = time.monotonic()
            d.find_element("id", "next").click()
            wait(lambda: shown("51–100 of"), 60, "the next page did not come")
            nxt = time.monotonic() - t
            from selenium.webdriver.common.keys import Keys
            d.find_element("id", "search").send_keys(Keys.CONTROL, "a")
            d.find_element("id", "search").send_keys(Keys.BACKSPACE)
            wait(lambda: shown("1–50 of %s" % format(total, ",")), 60, "the cleared search did not answer")
            t = time.monotonic()
            for _ in range(3):
                d.find_element("id", "next").click()
            wait(lambda: shown("151–200 of"), 60, "paging did not answer")
            page3 = (time.monotonic() - t) / 3
            time.sleep(2)
            rss2 = rss_kib(node.pid)
            max_gap = gaps.max_gap(browse_from)
        finally:
            d.quit()

        print("dashboard with %d retained messages (starlingd %s, one node)" % (total, starlingd))
        print("  fill: %.1f s (%.0f retained PUBLISHes/s, QoS 1, %d clients)" % (fill, total / fill, clients))
        print("  node RSS: %.1f MiB empty, %.1f MiB filled, %.1f MiB after browsing with the page open" % (
            rss0 / 1024, rss1 / 1024, rss2 / 1024))
        print("  page: load event %.0f ms, members drawn from the first event %.0f ms after driver.get()" % (
            loaded * 1000, drawn * 1000))
        print("  browse retained: first page %.0f ms, search (1 %% match) %.0f ms, next page %.0f ms, "
              "a page turn %.0f ms" % (first * 1000, search * 1000, nxt * 1000, page3 * 1000))
        print("  GET /api/v1/retained?limit=50&offset=50000: median %.1f ms, max %.1f ms (20 requests)" % (
            statistics.median(api) * 1000, max(api) * 1000))
        print("  event stream while browsing: longest gap between snapshots %.2f s (1 s expected)" % max_gap)
    finally:
        node.terminate()
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("data kept in %s" % work)


if __name__ == "__main__":
    main()
