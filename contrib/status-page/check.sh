#!/usr/bin/env bash
# The status page in a real browser: poetry-serve --metrics on loopback, serving a poem whose
# name is an HTML tag, five clients streaming it slowly (three from 127.0.0.1, two from
# 127.0.0.2); headless Chromium, driven by Selenium, loads http://METRICS/ and reads the pool's
# rows (five, with the clients' own addresses, the poem's name as text, the sources counted),
# waits until the page's script has refilled it from /status.json, reads the rows again and
# checks that every client's bytes grew. It saves a screenshot and prints its path.
#
# Needs Debian's chromium, chromium-driver and python3 (with venv), and Selenium from PyPI in a
# virtual environment under target/; installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(
  missing_packages chromium=chromium chromedriver=chromium-driver python3=python3
)
command -v python3 >/dev/null && python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
install_packages "${missing[@]}"

# Selenium in a virtual environment of its own, kept between runs (target/ is not committed).
venv=target/status-page/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import selenium' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'selenium>=4.20,<5'

bin=$(build_poetry_serve)
scratch
shot=$PWD/target/status-page/status.png
rm -f "$shot"

# A poem named like markup: if the page did not escape it, the browser would make an element
# of it and run its handler (an alert, which Selenium reports).
mkdir "$work/poems"
poem="$work/poems/<img src=x onerror=alert(1)>.txt"
for _ in $(seq 150); do echo 'The poem goes on, ten bytes at a time.'; done >"$poem"

"$bin" --port 0 --delay 0.05 --metrics 127.0.0.1:0 "$poem" >"$work/out" 2>"$work/log" &
pids+=($!)
port=$(wait_for_port "$work/out")
for _ in $(seq 50); do grep -q '^poetry-serve metrics on ' "$work/out" && break; sleep 0.05; done
metrics=$(sed -n 's#^poetry-serve metrics on http://\(.*\)/metrics$#\1#p' "$work/out")
[ -n "$metrics" ] || { echo "no metrics line" >&2; cat "$work/out" >&2; exit 1; }

# Five slow clients: they read what comes, for at most 60 s, and write their addresses first.
timeout 60 python3 - "$port" "$work/peers" <<'PY' &
import selectors, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
sources = ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.1"]
socks = [socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
         for src in sources]
with open(out + ".part", "w") as f:
    f.write("".join("%s:%d\n" % s.getsockname() for s in socks))
import os; os.rename(out + ".part", out)
sel = selectors.DefaultSelector()
for s in socks:
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
deadline = time.monotonic() + 60
while sel.get_map() and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        if not key.fileobj.recv(4096):
            sel.unregister(key.fileobj)
PY
pids+=($!)
for _ in $(seq 100); do [ -e "$work/peers" ] && break; sleep 0.05; done
[ -e "$work/peers" ] || { echo "the clients never connected" >&2; exit 1; }
# Every client taken by a worker before the browser looks: the page as served must list them.
timeout 10 python3 - "http://$metrics/status.json" <<'PY'
import json, sys, time, urllib.request
while len(json.load(urllib.request.urlopen(sys.argv[1], timeout=5))["connections"]) < 5:
    time.sleep(0.05)
PY

"$venv/bin/python" - "http://$metrics/" "$work/peers" "$(basename "$poem")" "$shot" \
  "$work/chromium" <<'PY'
import sys, time
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

url, peers_file, poem_name, shot, profile = sys.argv[1:6]
expected = set(open(peers_file).read().split())
options = Options()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + profile, "--window-size=1300,1000"]:
    options.add_argument(arg)
driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))

def fail(why):
    sys.exit("status page: %s\n%s" % (why, driver.find_element(By.TAG_NAME, "body").text))

def rows():
    """The pool's rows: peer -> (poem, bytes sent)."""
    found = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#pool tbody tr"):
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        found[cells[1]] = (cells[2], int(cells[3].split(" / ")[0]))
    return found

def updated():
    return driver.find_element(By.ID, "updated").text

try:
    driver.set_page_load_timeout(20)
    driver.get(url)
    first = rows()
    if set(first) != expected:
        fail("rows for %s, expected %s" % (sorted(first), sorted(expected)))
    if any(poem.rsplit("/", 1)[-1] != poem_name for poem, _ in first.values()):
        fail("the poem's name is not shown as text")
    if driver.find_elements(By.CSS_SELECTOR, "#pool img"):
        fail("the poem's name became an element")
    sources = [tr.text for tr in driver.find_elements(By.CSS_SELECTOR, "#sources tbody tr")]
    if sources != ["127.0.0.1 3", "127.0.0.2 2"]:
        fail("sources %s" % sources)
    # The script refills the page every second; wait for two refills.
    deadline = time.monotonic() + 15
    seen = set()
    while len(seen) < 2 and time.monotonic() < deadline:
        if updated().startswith("updated "):
            seen.add(updated())
        time.sleep(0.1)
    if len(seen) < 2:
        fail("the script never refilled the page: %r" % updated())
    second = rows()
    grew = {peer: (first[peer][1], second.get(peer, (None, 0))[1]) for peer in expected}
    if set(second) != expected or any(after <= before for before, after in grew.values()):
        fail("bytes sent did not grow for every client: %s" % grew)
    driver.save_screenshot(shot)
    print("status page: 5 rows with the clients' addresses, bytes grew between two reads "
          "(%s)" % ", ".join("%d->%d" % g for g in grew.values()))
finally:
    driver.quit()
PY
echo "status page: screenshot in $shot"
