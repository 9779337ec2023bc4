#!/usr/bin/env python3
"""End-to-end test of the web console (`syncconfig serve` at /ui/; the DOM contract it relies on
is in tests/ui/README.md) in a real headless Chromium, against real `syncconfig serve` processes on a real,
throwaway PostgreSQL cluster. Nothing is mocked.

    python3 tests/ui/console_e2e_test.py --bin build/src/cli/syncconfig \
        [--screenshots DIR] [--keep-logs DIR] [--ui-dir src/ui] [--only REGEX]

Set-up: a PostgreSQL cluster in a temporary directory (initdb/pg_ctl, as the postgres user when
run as root), two `serve` processes on its database (the page talks to server 1; server 2 plays
"another writer"), a few hundred keys seeded through the HTTP API; later a third server with
--auth for the token scenario. Every process is stopped and the cluster removed at exit, also
on failure. Each scenario prints PASS or FAIL; a failure saves a screenshot, the page's HTML and
the browser console log (and the servers' logs) and says where. Exit 0: all passed; 1: a
scenario failed or the set-up broke; 77 (CTest's skip code): selenium, chromium or chromedriver
is missing.
"""

import argparse
import concurrent.futures
import ctypes
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 20.0  # seconds for any one condition: a busy 2-core CI machine is slow, never hang


def import_selenium_or_skip():
    """Debian's python3-selenium lives in /usr/bin/python3's dist-packages; a `python3` earlier
    on PATH (pyenv, a venv) does not see it, so re-run under the system interpreter once."""
    try:
        import selenium  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel
        return
    except ImportError as e:
        why = str(e)
    system = "/usr/bin/python3"
    if (os.path.exists(system) and not os.environ.get("SYNCCONFIG_UI_E2E_REEXEC")
            and os.path.realpath(sys.executable) != os.path.realpath(system)):
        os.environ["SYNCCONFIG_UI_E2E_REEXEC"] = "1"
        sys.stdout.flush()
        os.execv(system, [system] + sys.argv)
    print(f"SKIP: selenium is not importable ({why}); install python3-selenium")
    sys.exit(SKIP)


import_selenium_or_skip()

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    ElementClickInterceptedException, ElementNotInteractableException, NoSuchElementException,
    StaleElementReferenceException, TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

RUNNING_AS_ROOT = os.geteuid() == 0
TRANSIENT = (NoSuchElementException, StaleElementReferenceException,
             ElementClickInterceptedException, ElementNotInteractableException)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pretty(value):
    """What the console must show in #editor: JSON.stringify(value, null, 2)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def enc(key):
    """encodeURIComponent(key)."""
    return urllib.parse.quote(key, safe="-_.!~*'()")


def numbers_in(text):
    return re.findall(r"\d+", text or "")


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies without its finally (CTest's
    timeout kills with SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(desc, probe, accept=bool, timeout=WAIT, interval=0.1):
    """Waits (WebDriverWait) until accept(probe()), with a deadline; on timeout fails saying
    what it waited for and what it saw last. Elements not there yet, re-rendered or covered,
    and a server not answering yet, count as "not yet"."""
    seen = ["(nothing observed)"]

    def check(_):
        try:
            seen[0] = probe()
        except TRANSIENT as e:
            seen[0] = type(e).__name__
            return False
        except (urllib.error.URLError, ConnectionError) as e:
            seen[0] = f"{type(e).__name__}: {e}"
            return False
        return accept(seen[0])

    try:
        WebDriverWait(None, timeout, poll_frequency=interval).until(check)
    except TimeoutException:
        raise AssertionError(f"{desc}: not within {timeout:g} s; last seen: {seen[0]!r}") \
            from None
    return seen[0]


# ---------------------------------------------------------------------------------------------
# PostgreSQL


class Cluster:
    """A throwaway PostgreSQL cluster: trust auth, 127.0.0.1 only, socket in its own dir."""

    def __init__(self, root):
        self.root = root
        self.data = os.path.join(root, "pgdata")
        self.logfile = os.path.join(root, "postgresql.log")
        self.bindir = self.find_bindir()
        self.port = None
        self.started = False

    @staticmethod
    def find_bindir():
        best = None
        for d in glob.glob("/usr/lib/postgresql/*/bin"):
            major = d.split("/")[-2]
            if (major.isdigit() and os.path.exists(os.path.join(d, "initdb"))
                    and os.path.exists(os.path.join(d, "pg_ctl"))):
                if best is None or int(major) > int(best.split("/")[-2]):
                    best = d
        if best is None:
            for name in ("initdb", "pg_ctl"):
                if shutil.which(name) is None:
                    raise RuntimeError("no PostgreSQL server programs (initdb, pg_ctl) in "
                                       "/usr/lib/postgresql/*/bin or on PATH: install postgresql")
            return os.path.dirname(shutil.which("initdb"))
        return best

    def as_server_user(self, argv):
        if not RUNNING_AS_ROOT:
            return argv
        runuser = "/usr/sbin/runuser" if os.path.exists("/usr/sbin/runuser") else "runuser"
        return [runuser, "-u", "postgres", "--"] + argv

    def run(self, argv, timeout=120):
        r = subprocess.run(self.as_server_user(argv), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}")
        return r.stdout

    def start(self):
        if RUNNING_AS_ROOT:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# console_e2e_test\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.root}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 100\n")
        last_error = None
        for _ in range(3):  # a port picked free can be taken before the server binds it
            self.port = free_port()
            try:
                self.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                          self.logfile, "-o", f"-p {self.port}", "-w", "-t", "60", "start"])
                self.started = True
                return
            except RuntimeError as e:
                last_error = e
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self):
        if not self.started:
            return
        self.started = False
        try:
            self.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "stop", "-m",
                      "immediate", "-w", "-t", "30"], timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(f"pg_ctl stop: {e}")
            try:  # the postmaster's pid is the first line of postmaster.pid
                with open(os.path.join(self.data, "postmaster.pid")) as f:
                    os.kill(int(f.readline()), signal.SIGQUIT)
            except (OSError, ValueError):
                pass


# ---------------------------------------------------------------------------------------------
# syncconfig serve


SERVING = re.compile(r"http: serving \d+ store\(s\) on https?://127\.0\.0\.1:(\d+)")


class Server:
    """One `syncconfig serve` child; its port comes from its own log line."""

    count = 0

    def __init__(self, harness, name, extra=()):
        self.h = harness
        self.name = name
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.logs = []

    def start(self, port=0, timeout=30.0):
        Server.count += 1
        logpath = os.path.join(self.h.tmp, f"serve-{self.name}-{Server.count}.log")
        self.logs.append(logpath)
        argv = [self.h.bin, "serve", "--dsn", self.h.cluster.dsn, "--listen",
                f"127.0.0.1:{port}"] + self.extra
        if self.h.ui_dir:
            argv += ["--ui-dir", self.h.ui_dir]
        with open(logpath, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            with open(logpath, "rb") as f:
                m = SERVING.search(f.read().decode("utf-8", "replace"))
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                with open(logpath, "rb") as f:
                    tail = f.read().decode("utf-8", "replace")[-2000:]
                raise RuntimeError(f"serve {self.name} exited {self.proc.returncode}:\n{tail}")
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(f"serve {self.name}: no 'http: serving' line in {timeout} s "
                                   f"(log {logpath})")
            time.sleep(0.05)

    def restart_on_same_port(self, timeout=30.0):
        """After a kill: the same address again (the page reconnects to it); the port may take
        a moment to be free, so retry the bind until the deadline."""
        port = self.port
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start(port=port, timeout=max(5.0, deadline - time.monotonic()))
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.3)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Api:
    """The HTTP API as any program uses it (urllib), for seeding, writing as "someone else" and
    checking what the console stored."""

    def __init__(self, server, token=None):
        self.server = server
        self.token = token

    def call(self, method, path, body=None, headers=None, timeout=15):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status, hdrs = r.read(), r.status, r.headers
        except urllib.error.HTTPError as e:
            raw, status, hdrs = e.read(), e.code, e.headers
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return status, hdrs, parsed

    def put(self, key, value, comment):
        status, _, body = self.call("PUT", f"/settings/{enc(key)}", value,
                                    {"X-Syncconfig-Comment": enc(comment)})
        assert status == 200, f"PUT {key} via {self.server.name}: {status} {body}"
        return body["revision"]

    def entry(self, key):
        """(value, revision) from GET /entries/{key}; (None, 0) when absent."""
        status, _, body = self.call("GET", f"/entries/{enc(key)}")
        if status == 404:
            return None, 0
        assert status == 200, f"GET /entries/{key}: {status} {body}"
        return body["value"], body["revision"]

    def history(self, key, limit=5):
        status, _, body = self.call("GET", f"/history/{enc(key)}?limit={limit}")
        assert status == 200, f"GET /history/{key}: {status} {body}"
        return body["history"]

    def settings(self):
        status, _, body = self.call("GET", "/settings")
        assert status == 200, f"GET /settings: {status} {body}"
        return body


# ---------------------------------------------------------------------------------------------
# Seed data: folders app:, db/, feature:, and bulk/ with more than 500 children (button.more).

KEY_A = "app:checkout:limits"          # a: found in the tree and by search
KEY_B = "app:checkout:retry"           # b: edited with a comment
KEY_C = "feature:dark_mode"            # c: changed live by server 2 (unmodified editor)
KEY_C_OTHER = "feature:new_search"     # c: another key changed: its row gets .changed
KEY_C_DEEP = "db/replica2/host"        # c: changed under the collapsed db/ folder
KEY_C_MOD = "feature:beta_banner"      # c: changed live while the editor is modified
KEY_D = "db/primary/pool"              # d: conflict
KEY_E = "app:pricing:tax"              # e: history, compare, restore
KEY_F = "app:status:banner"            # f: changed while the page's server is down
KEY_H = "app:created:by_ui"            # h: created and deleted through the console
BULK = 520

E_VERSIONS = [
    ({"rate": 19, "label": "standard", "reduced": 7}, "initial tax rates"),
    ({"rate": 20, "label": "standard", "reduced": 7}, "raise the standard rate"),
    ({"rate": 21, "label": "standard", "reduced": 7, "note": "temporary"}, "temporary raise"),
]


def seed_data():
    data = {
        KEY_A: {"max_items": 50, "currency": "EUR", "regions": ["eu", "us"]},
        KEY_B: {"attempts": 3, "backoff_ms": 200},
        KEY_C: {"enabled": False, "rollout": 10},
        KEY_C_OTHER: {"enabled": False},
        KEY_C_MOD: {"text": "Welcome", "enabled": True},
        KEY_D: {"size": 10, "timeout_s": 5},
        KEY_F: {"message": "all good", "level": "info"},
    }
    for i in range(40):
        data[f"app:svc{i:02d}:timeout_ms"] = 1000 + i
        data[f"app:svc{i:02d}:endpoint"] = f"https://svc{i:02d}.internal:8443"
        data[f"app:svc{i:02d}:owners"] = [f"team-{i % 7}"]
    for i in range(8):
        data[f"db/replica{i}/host"] = f"10.0.1.{10 + i}"
        data[f"db/replica{i}/port"] = 5432
        data[f"db/replica{i}/weight"] = i % 3 + 1
    for i in range(60):
        data[f"feature:flag_{i:03d}"] = {"enabled": i % 2 == 0, "rollout": i}
    for i in range(BULK):
        data[f"bulk/item_{i:04d}"] = i
    return data


# ---------------------------------------------------------------------------------------------
# The harness: cluster, servers, browser, artifacts.


class Harness:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.ui_dir = os.path.abspath(args.ui_dir) if args.ui_dir else None
        self.tmp = tempfile.mkdtemp(prefix="syncconfig-ui-e2e-")
        self.cluster = Cluster(self.tmp)
        self.servers = []
        self.s1 = self.s2 = self.s_auth = None
        self.api1 = self.api2 = None
        self.driver = None
        self.profile = None
        self.artifacts = os.path.abspath(args.keep_logs) if args.keep_logs else None
        self.shots = os.path.abspath(args.screenshots) if args.screenshots else None
        self.tokens = {}
        self.console_log = []   # the browser's console, all of the run
        self.console_mark = 0   # where the current scenario's part starts

    # -- lifecycle --

    def set_up(self):
        t0 = time.monotonic()
        self.cluster.start()
        log(f"PostgreSQL on 127.0.0.1:{self.cluster.port} ({time.monotonic() - t0:.1f} s)")
        # One after the other: the first creates the tables.
        self.s1 = self.add_server("s1")
        self.s2 = self.add_server("s2")
        self.api1, self.api2 = Api(self.s1), Api(self.s2)
        log(f"serve s1 on :{self.s1.port}, s2 on :{self.s2.port}")
        t1 = time.monotonic()
        data = seed_data()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda kv: self.api1.put(kv[0], kv[1], "seed"), data.items()))
        for value, comment in E_VERSIONS:
            self.api1.put(KEY_E, value, comment)
        log(f"seeded {len(data) + 1} keys ({time.monotonic() - t1:.1f} s)")
        status, headers, body = self.api1.call("GET", "/ui/")
        if status != 200 or "html" not in (headers.get("Content-Type") or ""):
            raise RuntimeError(f"GET /ui/ on {self.bin}: {status} {str(body)[:200]!r}: this "
                               "syncconfig serves no console (or pass --ui-dir DIR)")

    def add_server(self, name, extra=()):
        s = Server(self, name, extra)
        self.servers.append(s)
        return s.start()

    def start_browser(self):
        for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
            if not os.access(path, os.X_OK):
                print(f"SKIP: {what} is not installed ({path}); install chromium chromium-driver")
                sys.exit(SKIP)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        self.profile = os.path.join(self.tmp, "chromium-profile")
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                  "--window-size=1280,860", "--disable-gpu", "--no-first-run",
                  "--disable-extensions", "--disable-background-networking",
                  f"--user-data-dir={self.profile}"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # A beforeunload prompt (page left with an unsaved edit) must not wedge the next scenario.
        opts.set_capability("unhandledPromptBehavior", "accept")
        service = Service(executable_path=CHROMEDRIVER,
                          log_path=os.path.join(self.tmp, "chromedriver.log"))
        t0 = time.monotonic()
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_window_size(1280, 860)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(15)
        log(f"chromium {self.driver.capabilities.get('browserVersion')} "
            f"({time.monotonic() - t0:.1f} s)")

    def tear_down(self, keep):
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception as e:  # noqa: BLE001 - teardown goes on whatever happened
                log(f"driver.quit: {e}")
        for s in self.servers:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stop {s.name}: {e}")
        try:
            self.cluster.stop()
        except Exception as e:  # noqa: BLE001
            log(f"cluster stop: {e}")
        if keep:
            d = self.artifact_dir()
            for s in self.servers:
                for p in s.logs:
                    if os.path.exists(p):
                        shutil.copy(p, d)
            for p in (self.cluster.logfile, os.path.join(self.tmp, "chromedriver.log")):
                if os.path.exists(p):
                    shutil.copy(p, d)
            with open(os.path.join(d, "browser-console.log"), "w") as f:
                for e in self.console_log:
                    f.write(f"{e.get('level')} {e.get('message')}\n")
            log(f"logs of the servers, PostgreSQL, chromedriver and the browser console: {d}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def artifact_dir(self):
        if self.artifacts is None:
            self.artifacts = tempfile.mkdtemp(prefix="syncconfig-ui-e2e-logs-")
        os.makedirs(self.artifacts, exist_ok=True)
        return self.artifacts

    # -- browser helpers --

    def screenshot(self, name):
        if not self.shots:
            return
        os.makedirs(self.shots, exist_ok=True)
        self.driver.save_screenshot(os.path.join(self.shots, name))

    def save_failure(self, scenario):
        d = self.artifact_dir()
        saved = []
        try:
            p = os.path.join(d, f"FAIL-{scenario}.png")
            self.driver.save_screenshot(p)
            saved.append(p)
            p = os.path.join(d, f"FAIL-{scenario}.html")
            with open(p, "w") as f:
                f.write(self.driver.page_source)
            saved.append(p)
        except WebDriverException as e:
            saved.append(f"(no screenshot: {e.msg})")
        self.drain_console()
        p = os.path.join(d, f"FAIL-{scenario}.console.log")
        with open(p, "w") as f:
            for e in self.console_log[self.console_mark:]:
                f.write(f"{e.get('level')} {e.get('message')}\n")
        saved.append(p)
        return saved

    def drain_console(self):
        try:
            entries = self.driver.get_log("browser")
        except WebDriverException:
            entries = []
        self.console_log.extend(entries)
        return entries

    def open_console(self, server=None, wait_live=True):
        server = server or self.s1
        self.driver.get(f"{server.url}/ui/")
        poll(f"{server.url}/ui/ has a #conn-state (the console's page)",
             lambda: self.qs("#conn-state") or self.driver.execute_script(
                 "return (document.title + ': ' + document.body.innerText).slice(0, 160)"),
             lambda v: not isinstance(v, str))
        if wait_live:
            self.wait_attr("#conn-state", "data-state", "live")

    # -- DOM helpers: every wait has a deadline and says what it saw --

    def q(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def qs(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible_rows(self, css, attrs=("data-folder", "data-key")):
        """For each element matching css that is rendered (has a box), the first of attrs it
        has: one script call instead of one WebDriver round trip per element."""
        return self.driver.execute_script(
            """const [css, attrs] = arguments;
            return [...document.querySelectorAll(css)]
              .filter(e => e.getClientRects().length > 0 &&
                           getComputedStyle(e).visibility !== 'hidden')
              .map(e => { for (const a of attrs) if (e.hasAttribute(a)) return e.getAttribute(a);
                          return e.textContent; });""", css, list(attrs))

    def present(self, css):
        return bool(self.qs(css))

    def visible(self, css, timeout=WAIT):
        def probe():
            els = [e for e in self.qs(css) if e.is_displayed()]
            return els[0] if els else f"{len(self.qs(css))} present, none visible"
        return poll(f"{css} visible", probe, lambda v: not isinstance(v, str), timeout)

    def hidden(self, css, timeout=WAIT):
        poll(f"{css} absent or hidden", lambda: [e for e in self.qs(css) if e.is_displayed()],
             lambda v: not v, timeout)

    def wait_attr(self, css, attr, expected, timeout=WAIT):
        return poll(f"{css}[{attr}] == {expected!r}", lambda: self.q(css).get_attribute(attr),
                    lambda v: v == expected, timeout)

    def wait_text(self, css, accept, desc, timeout=WAIT):
        return poll(f"{css} text {desc}", lambda: self.q(css).text, accept, timeout)

    def wait_revision(self, css, revision, timeout=WAIT):
        """The element's text names exactly this revision ("42", "rev 42", "revision 42")."""
        return self.wait_text(css, lambda t: numbers_in(t) == [str(revision)],
                              f"names revision {revision}", timeout)

    def editor_text(self):
        return self.q("#editor").get_property("value")

    def wait_editor(self, value, timeout=WAIT):
        want = pretty(value)
        return poll(f"#editor shows {want!r}", lambda: self.editor_text().rstrip(),
                    lambda v: v == want, timeout)

    def click(self, css, timeout=WAIT):
        """Clicks the visible, enabled element (retrying while it is covered or re-rendered)."""
        def probe():
            el = self.visible(css, timeout)
            if not el.is_enabled():
                return "disabled"
            el.click()
            return "clicked"
        poll(f"click {css}", probe, lambda v: v == "clicked", timeout)

    def click_el(self, el, desc, timeout=WAIT):
        def probe():
            el.click()
            return "clicked"
        poll(f"click {desc}", probe, lambda v: v == "clicked", timeout)

    def type_into(self, css, text, replace=True):
        el = self.visible(css)
        el.click()
        if replace:
            el.send_keys(Keys.CONTROL, "a")
            el.send_keys(Keys.BACKSPACE)
        if text:
            el.send_keys(text)
        return el

    def set_editor(self, value_or_text):
        text = value_or_text if isinstance(value_or_text, str) else pretty(value_or_text)
        self.type_into("#editor", text)
        poll("#editor holds the typed text", lambda: self.editor_text(), lambda v: v == text)

    def expand(self, prefix):
        css = f'#tree button.folder[data-folder="{prefix}"]'
        el = self.visible(css)
        if el.get_attribute("aria-expanded") != "true":
            self.click(css)
        self.wait_attr(css, "aria-expanded", "true")

    def open_in_tree(self, key):
        """Expands each folder on the way (separators ':' and '/') and opens the key."""
        for i, ch in enumerate(key):
            if ch in ":/" and i + 1 < len(key):
                self.expand(key[: i + 1])
        self.click(f'#tree button.key[data-key="{key}"]')
        self.wait_text("#key-name", lambda t: t.strip() == key, f"== {key!r}")

    def save_with_comment(self, comment):
        """#save with a comment → #diff-preview → #confirm-save. Returns the preview's rows."""
        self.type_into("#comment", comment)
        self.click("#save")
        self.visible("#diff-preview")
        poll("#diff-preview has .diff-add or .diff-del rows",
             lambda: len(self.qs("#diff-preview .diff-add, #diff-preview .diff-del")),
             lambda n: n > 0)
        return {cls: [e.text for e in self.qs(f"#diff-preview .{cls}")]
                for cls in ("diff-add", "diff-del", "diff-same")}

    def wait_toast_ok(self):
        """#toast says something (its last message), with data-kind ok."""
        t = lambda: self.q("#toast")  # noqa: E731
        poll("#toast with a message and data-kind ok",
             lambda: (t().get_attribute("data-kind"), t().get_attribute("textContent").strip()),
             lambda v: v[0] == "ok" and v[1] != "")

    def wait_stored(self, api, key, value, above_revision, timeout=WAIT):
        return poll(f"GET /entries/{key} holds {value!r} above revision {above_revision}",
                    lambda: api.entry(key),
                    lambda e: e[0] == value and e[1] > above_revision, timeout)


# ---------------------------------------------------------------------------------------------
# Scenarios


def the_console_finds_a_key_in_the_tree_and_by_search(h):
    h.open_console()
    settings = h.api1.settings()
    value, revision = h.api1.entry(KEY_A)
    # Folder counts: keys under the prefix.
    count_el = h.visible('#tree button.folder[data-folder="app:"] .count')
    n_app = sum(1 for k in settings if k.startswith("app:"))
    assert numbers_in(count_el.text) == [str(n_app)], \
        f'button.folder[data-folder="app:"] .count: expected {n_app}, got {count_el.text!r}'
    # Lazy: nothing under app: rendered while collapsed.
    folder = h.q('#tree button.folder[data-folder="app:"]')
    assert folder.get_attribute("aria-expanded") == "false", \
        f'app: folder aria-expanded at load: expected "false", got ' \
        f'{folder.get_attribute("aria-expanded")!r}'
    assert not h.present(f'#tree button.key[data-key="{KEY_A}"]'), \
        f"{KEY_A} rendered while its folders are collapsed (folders must expand lazily)"
    h.open_in_tree(KEY_A)
    h.wait_editor(value)
    h.wait_revision("#key-revision", revision)
    assert h.q("#key-view").is_displayed(), "#key-view hidden with a key open"
    assert h.q("#editor-error").text.strip() == "", \
        f"#editor-error for valid JSON: expected empty, got {h.q('#editor-error').text!r}"
    h.screenshot("console-tree.png")

    # ArrowDown moves focus to the next visible row.
    ids = h.visible_rows("#tree button.folder, #tree button.key")
    i = ids.index("app:")
    h.q('#tree button.folder[data-folder="app:"]').send_keys(Keys.ARROW_DOWN)
    focused = poll("focus after ArrowDown on the app: row",
                   lambda: h.driver.execute_script(
                       "const a = document.activeElement;"
                       "return a && (a.dataset.folder || a.dataset.key) || null;"),
                   lambda v: v == ids[i + 1])
    assert focused == ids[i + 1]

    # More than 500 children: 500 rows and "Show 20 more".
    h.expand("bulk/")
    more = h.visible("#tree button.more")
    poll("bulk/ rows before Show more", lambda: len(h.qs('#tree button.key[data-key^="bulk/"]')),
         lambda n: n == 500)
    assert str(BULK - 500) in numbers_in(more.text), \
        f'button.more text: expected "Show {BULK - 500} more", got {more.text!r}'
    h.click_el(more, "button.more")
    poll("bulk/ rows after Show more",
         lambda: len(h.qs('#tree button.key[data-key^="bulk/"]')), lambda n: n == BULK)

    # Search: flat list, substring, case-insensitive.
    query = "CHECKOUT:LI"
    matches = sorted(k for k in settings if query.lower() in k.lower())
    h.type_into("#search", query)
    h.visible(f'button.key[data-key="{KEY_A}"]')
    h.wait_text("#search-count", lambda t: str(len(matches)) in numbers_in(t),
                f"says {len(matches)} matches")
    poll("the flat list of matches (visible button.key)",
         lambda: sorted(h.visible_rows("button.key")), lambda v: v == matches)
    folders = h.visible_rows("button.folder")
    assert not folders, f"with text in #search the tree is replaced; visible folders: {folders}"
    # A broad search: at most 200 rows, the count says all.
    h.type_into("#search", "item_")
    h.wait_text("#search-count", lambda t: str(BULK) in numbers_in(t), f"says {BULK} matches")
    poll(f"visible button.key rows of a search with {BULK} matches",
         lambda: len(h.visible_rows("button.key")), lambda v: v == 200)
    h.type_into("#search", query.lower())
    h.click(f'button.key[data-key="{KEY_A}"]')
    h.wait_text("#key-name", lambda t: t.strip() == KEY_A, f"== {KEY_A!r}")


def an_edit_saved_with_a_comment_is_stored_and_recorded(h):
    h.open_console()
    old, revision = h.api1.entry(KEY_B)
    h.open_in_tree(KEY_B)
    h.wait_editor(old)
    h.wait_revision("#key-revision", revision)

    # Invalid JSON: a parse error and #save disabled.
    h.set_editor('{"attempts": 5,')
    h.wait_text("#editor-error", lambda t: t.strip() != "", "non-empty for invalid JSON")
    poll("#save disabled while the JSON is invalid", lambda: h.q("#save").is_enabled(),
         lambda v: v is False)

    new = dict(old)
    new["attempts"] = 5
    h.set_editor(new)
    h.wait_text("#editor-error", lambda t: t.strip() == "", "empty for valid JSON")

    # No comment: marked invalid, nothing sent.
    h.type_into("#comment", "")
    h.click("#save")
    h.wait_attr("#comment", "aria-invalid", "true")
    assert not [e for e in h.qs("#diff-preview") if e.is_displayed()], \
        "#diff-preview shown for a save without a comment"
    assert h.api1.entry(KEY_B) == (old, revision), \
        f"a save without a comment changed the key: {h.api1.entry(KEY_B)}"

    comment = "retry more often (e2e)"
    rows = h.save_with_comment(comment)
    assert any('"attempts": 3' in r for r in rows["diff-del"]), \
        f'#diff-preview .diff-del: expected a row with "attempts": 3, got {rows["diff-del"]}'
    assert any('"attempts": 5' in r for r in rows["diff-add"]), \
        f'#diff-preview .diff-add: expected a row with "attempts": 5, got {rows["diff-add"]}'
    assert not any('"attempts"' in r for r in rows["diff-same"]), \
        f"#diff-preview .diff-same holds the changed line: {rows['diff-same']}"
    h.screenshot("console-diff.png")
    h.click("#confirm-save")
    _, new_rev = h.wait_stored(h.api1, KEY_B, new, revision)
    top = h.api1.history(KEY_B, 1)[0]
    assert top["revision"] == new_rev and top["comment"] == comment, \
        f"GET /history/{KEY_B} newest: expected revision {new_rev} comment {comment!r}, " \
        f"got {top}"
    h.wait_toast_ok()
    h.wait_revision("#key-revision", new_rev)
    h.wait_editor(new)


def a_change_through_another_server_appears_live(h):
    h.open_console()
    h.expand("feature:")
    h.open_in_tree(KEY_C)
    value, _ = h.api1.entry(KEY_C)
    h.wait_editor(value)
    assert h.q("#tree button.folder[data-folder=\"db/\"]").get_attribute("aria-expanded") \
        == "false", "db/ must be collapsed for this check"

    rev = h.api2.put(KEY_C, {"enabled": True, "rollout": 50}, "turn dark mode on via server 2")
    theirs = h.api2.entry(KEY_C)[0]  # as stored (the server's key order)
    h.api2.put(KEY_C_OTHER, {"enabled": True}, "other key via server 2")
    h.api2.put(KEY_C_DEEP, "10.0.9.9", "deep key via server 2")

    notice = h.visible("#notice")
    h.wait_attr("#notice", "data-revision", str(rev))
    h.wait_editor(theirs)
    h.wait_revision("#key-revision", rev)
    del notice
    poll(f"class of the row of {KEY_C_OTHER} (changed by someone else)",
         lambda: h.q(f'#tree button.key[data-key="{KEY_C_OTHER}"]').get_attribute("class"),
         lambda c: "changed" in (c or "").split())
    poll("class of the collapsed folder db/ (a key under it changed)",
         lambda: h.q('#tree button.folder[data-folder="db/"]').get_attribute("class"),
         lambda c: "changed" in (c or "").split())

    # Modified editor: the edit is kept, the notice offers theirs.
    h.click(f'#tree button.key[data-key="{KEY_C_MOD}"]')
    h.wait_text("#key-name", lambda t: t.strip() == KEY_C_MOD, f"== {KEY_C_MOD!r}")
    base, _ = h.api1.entry(KEY_C_MOD)
    h.wait_editor(base)
    mine = {"text": "Welcome back", "enabled": True}
    h.set_editor(mine)
    rev2 = h.api2.put(KEY_C_MOD, {"text": "Hello from server 2", "enabled": False},
                      "banner via server 2")
    theirs2 = h.api2.entry(KEY_C_MOD)[0]
    h.wait_attr("#notice", "data-revision", str(rev2))
    assert h.editor_text() == pretty(mine), \
        f"#editor after a live change with an edit: expected the edit kept, got " \
        f"{h.editor_text()!r}"
    h.click("#notice-show-theirs")
    h.visible("#conflict")
    got = poll("#conflict-theirs holds their value", lambda: h.q("#conflict-theirs").text,
               lambda t: parses_to(t, theirs2))
    del got
    h.click("#conflict-take-theirs")
    h.wait_editor(theirs2)


def parses_to(text, value):
    try:
        return json.loads(text) == value
    except ValueError:
        return pretty(value) in text


def a_save_over_a_concurrent_change_shows_the_conflict(h):
    h.open_console()
    base, base_rev = h.api1.entry(KEY_D)
    h.open_in_tree(KEY_D)
    h.wait_editor(base)
    mine = {"size": 25, "timeout_s": 5}
    h.set_editor(mine)
    theirs = {"size": 12, "timeout_s": 8}
    their_rev = h.api2.put(KEY_D, theirs, "concurrent change via server 2")

    h.save_with_comment("bigger pool (e2e)")
    h.click("#confirm-save")
    h.visible("#conflict")
    poll("#conflict-theirs holds their value", lambda: h.q("#conflict-theirs").text,
         lambda t: parses_to(t, theirs))
    h.wait_revision("#conflict-revision", their_rev)
    poll("#conflict-mine holds my edit",
         lambda: h.q("#conflict-mine").text or h.q("#conflict-mine").get_property("value"),
         lambda t: parses_to(t, mine))
    assert h.api1.entry(KEY_D) == (theirs, their_rev), \
        f"after the refused save the database must hold theirs: {h.api1.entry(KEY_D)}"
    h.screenshot("console-conflict.png")

    h.click("#conflict-keep-mine")
    poll("#editor keeps my edit after keep-mine", lambda: h.editor_text(),
         lambda t: parses_to(t, mine))
    comment = "bigger pool, over their change (e2e)"
    rows = h.save_with_comment(comment)
    assert any('"size": 12' in r for r in rows["diff-del"]), \
        f"#diff-preview after keep-mine is against their value: .diff-del {rows['diff-del']}"
    h.click("#confirm-save")
    _, rev = h.wait_stored(h.api1, KEY_D, mine, their_rev)
    top = h.api1.history(KEY_D, 1)[0]
    assert top["comment"] == comment and top["revision"] == rev, \
        f"GET /history/{KEY_D} newest: expected comment {comment!r}, got {top}"
    del base_rev


def restoring_an_old_version_rolls_the_key_back_with_a_comment(h):
    h.open_console()
    hist = h.api1.history(KEY_E, 10)
    by_value = {json.dumps(e["value"], sort_keys=True): e["revision"] for e in hist}
    r1 = by_value[json.dumps(E_VERSIONS[0][0], sort_keys=True)]
    r3 = by_value[json.dumps(E_VERSIONS[2][0], sort_keys=True)]
    h.open_in_tree(KEY_E)
    h.click("#tab-history")
    h.visible(f'#history .history-row[data-revision="{r3}"]')
    shown = [e.get_attribute("data-revision") for e in h.qs("#history .history-row")]
    expected = [str(e["revision"]) for e in hist]
    assert shown[: len(expected)] == expected, \
        f"#history rows (newest first): expected revisions {expected}, got {shown}"
    row1 = h.q(f'#history .history-row[data-revision="{r1}"]')
    comment_el = row1.find_element(By.CSS_SELECTOR, ".comment")
    assert E_VERSIONS[0][1] in comment_el.text, \
        f".history-row[data-revision={r1}] .comment: expected {E_VERSIONS[0][1]!r}, " \
        f"got {comment_el.text!r}"
    for r in (r1, r3):
        box = h.q(f'#history .history-row[data-revision="{r}"] input.compare')
        h.click_el(box, f"input.compare of revision {r}")
    h.visible("#history-diff")
    dels = poll("#history-diff .diff-del rows",
                lambda: [e.text for e in h.qs("#history-diff .diff-del")],
                lambda v: any('"rate": 19' in t for t in v))
    adds = [e.text for e in h.qs("#history-diff .diff-add")]
    assert any('"rate": 21' in t for t in adds) and any('"note"' in t for t in adds), \
        f"#history-diff (older {r1} → newer {r3}) .diff-add: expected the rate 21 and note " \
        f"lines, got {adds} (dels {dels})"
    h.screenshot("console-history.png")

    restore = h.q(f'#history .history-row[data-revision="{r1}"] button.restore')
    h.click_el(restore, f"button.restore of revision {r1}")
    h.visible("#restore-dialog")
    comment = "back to the initial rates (e2e)"
    h.type_into("#restore-comment", comment)
    h.click("#restore-confirm")
    status = poll(f"GET /settings/{KEY_E} == the version of revision {r1}",
                  lambda: h.api1.call("GET", f"/settings/{enc(KEY_E)}")[::2],
                  lambda sb: sb == (200, E_VERSIONS[0][0]))
    del status
    top = h.api1.history(KEY_E, 1)[0]
    assert top["comment"] == comment and top["value"] == E_VERSIONS[0][0], \
        f"GET /history/{KEY_E} newest: expected comment {comment!r}, got {top}"
    h.wait_toast_ok()
    h.wait_revision("#key-revision", top["revision"])


def a_new_key_is_created_and_deleted_through_the_console(h):
    h.open_console()
    assert h.api1.entry(KEY_H) == (None, 0), f"{KEY_H} exists before the test"
    h.click("#new-key")
    h.type_into("#key-input", KEY_H)
    value = {"created": True, "by": "console e2e"}
    h.set_editor(value)
    rows = h.save_with_comment("create a key from the console (e2e)")
    assert rows["diff-add"] and not rows["diff-del"], \
        f"#diff-preview for a new key: expected only .diff-add rows, got {rows}"
    h.click("#confirm-save")
    _, rev = h.wait_stored(h.api1, KEY_H, value, 0)
    h.wait_text("#key-name", lambda t: t.strip() == KEY_H, f"== {KEY_H!r}")
    h.wait_revision("#key-revision", rev)

    comment = "remove the e2e key"
    h.type_into("#comment", comment)
    h.click("#delete")
    h.click("#confirm-delete")
    poll(f"GET /entries/{KEY_H} → 404", lambda: h.api1.call("GET", f"/entries/{enc(KEY_H)}")[0],
         lambda s: s == 404)
    top = h.api1.history(KEY_H, 1)[0]
    assert top["op"] == "delete" and top["comment"] == comment, \
        f"GET /history/{KEY_H} newest: expected op delete comment {comment!r}, got {top}"


def the_theme_toggle_flips_the_theme_and_remembers_it(h):
    h.open_console()
    html = lambda: h.q("html").get_attribute("data-theme")  # noqa: E731
    first = poll("html[data-theme] is light or dark", html, lambda v: v in ("light", "dark"))
    other = "dark" if first == "light" else "light"
    h.click("#theme-toggle")
    poll("html[data-theme] after #theme-toggle", html, lambda v: v == other)
    h.open_console()
    poll("html[data-theme] after a reload (kept in localStorage)", html, lambda v: v == other)
    if other != "dark":
        h.click("#theme-toggle")
        poll("html[data-theme]", html, lambda v: v == "dark")
    h.open_in_tree(KEY_A)
    bg = h.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    h.screenshot("console-dark.png")
    h.click("#theme-toggle")
    poll("html[data-theme] back to light", html, lambda v: v == "light")
    bg_light = h.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert bg != bg_light, f"the body background is {bg} in both themes"


def the_console_stacks_its_panes_on_a_phone(h):
    h.driver.set_window_size(390, 844)
    try:
        h.open_console()
        h.open_in_tree(KEY_A)
        tree = h.visible("#tree").rect
        view = h.visible("#key-view").rect
        assert view["y"] >= tree["y"] + tree["height"] - 1, \
            f"at 390 px the key view must be below the tree: #tree {tree}, #key-view {view}"
        h.driver.execute_script("window.scrollTo(0, 0)")
        h.screenshot("console-phone.png")
    finally:
        h.driver.set_window_size(1280, 860)


def the_console_loads_without_script_errors_under_its_csp(h):
    status, headers, _ = Api(h.s1).call("GET", "/ui/")
    assert status == 200, f"GET /ui/: {status}"
    csp = headers.get("Content-Security-Policy") or ""
    directives = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    for d in ("script-src", "style-src", "connect-src"):
        effective = directives.get(d, directives.get("default-src"))
        assert effective == ["'self'"], \
            f"GET /ui/ Content-Security-Policy {csp!r}: {d} in effect is {effective}, " \
            "expected only 'self'"
    h.drain_console()
    h.open_console()
    h.open_in_tree(KEY_A)
    h.click("#tab-history")
    h.visible("#history .history-row")
    bad = [e["message"] for e in h.drain_console()
           if e.get("level") == "SEVERE" and ("Content Security Policy" in e["message"]
                                              or "Uncaught" in e["message"])]
    assert not bad, f"browser console: {bad}"


def the_connection_state_shows_a_drop_and_the_stream_resumes(h):
    h.open_console()
    h.open_in_tree(KEY_F)
    value, _ = h.api1.entry(KEY_F)
    h.wait_editor(value)
    h.s1.kill()
    poll("#conn-state[data-state] after the page's server died",
         lambda: h.q("#conn-state").get_attribute("data-state"),
         lambda s: s in ("connecting", "offline"))
    text = h.q("#conn-state").text
    assert text.strip(), "#conn-state has no readable text while not live"
    rev = h.api2.put(KEY_F, {"message": "maintenance at 18:00", "level": "warn"},
                     "changed while the page's server was down")
    new = h.api2.entry(KEY_F)[0]
    h.s1.restart_on_same_port()
    h.wait_attr("#conn-state", "data-state", "live", timeout=30)
    h.wait_editor(new)
    poll("#status-revision reaches the change", lambda: h.q("#status-revision").text,
         lambda t: bool(numbers_in(t)) and int(numbers_in(t)[0]) >= rev)


def a_read_only_token_gets_a_read_only_console(h):
    if h.s_auth is None:
        for name, rule in (("ui-reader", "=read"), ("ui-app-reader", "app:=read")):
            r = subprocess.run([h.bin, "token", "create", name, "--allow", rule, "--dsn",
                                h.cluster.dsn], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=60)
            assert r.returncode == 0, f"token create {name}: {r.returncode} {r.stderr}"
            h.tokens[name] = r.stdout.strip().splitlines()[-1].strip()
        h.s_auth = h.add_server("auth", ["--auth"])
    api = Api(h.s_auth)
    status, _, _ = api.call("GET", "/whoami")
    assert status == 401, f"GET /whoami without a token: expected 401, got {status}"
    status, _, who = Api(h.s_auth, h.tokens["ui-reader"]).call("GET", "/whoami")
    assert status == 200 and who.get("name") == "ui-reader" and who.get("auth") is True, \
        f"GET /whoami with ui-reader: {status} {who}"

    h.open_console(h.s_auth, wait_live=False)
    h.visible("#token-dialog")
    assert h.present('label[for="token-input"]'), 'no <label for="token-input">'
    assert h.q("#token-input").get_attribute("type") == "password", "#token-input type"
    h.type_into("#token-input", h.tokens["ui-reader"])
    h.click("#token-submit")
    h.hidden("#token-dialog")
    h.wait_attr("#conn-state", "data-state", "live")
    h.visible("#readonly-badge")
    h.open_in_tree(KEY_A)
    value, _ = h.api1.entry(KEY_A)
    h.wait_editor(value)
    for css in ("#save", "#delete"):
        els = [e for e in h.qs(css) if e.is_displayed() and e.is_enabled()]
        assert not els, f"read-only token: {css} is visible and enabled"
    ed = h.q("#editor")
    assert ed.get_property("readOnly") or not ed.is_enabled(), \
        "read-only token: #editor is editable"
    h.click("#tab-history")
    h.visible("#history .history-row")
    restores = [e for e in h.qs("#history button.restore") if e.is_displayed()]
    assert not restores, f"read-only token: {len(restores)} visible button.restore in #history"

    # Forget the token; a token that reads app: only sees only app: keys.
    h.click("#logout")
    h.open_console(h.s_auth, wait_live=False)
    h.visible("#token-dialog")
    h.type_into("#token-input", h.tokens["ui-app-reader"])
    h.click("#token-submit")
    h.wait_attr("#conn-state", "data-state", "live")
    h.visible('#tree button.folder[data-folder="app:"]')
    h.visible("#readonly-badge")
    rows = h.visible_rows("#tree button.folder, #tree button.key")
    assert rows and all(r.startswith("app:") for r in rows), \
        f"token app:=read: tree rows outside app:: {[r for r in rows if not r.startswith('app:')]}"
    h.expand("app:")
    h.expand("app:checkout:")
    h.visible(f'#tree button.key[data-key="{KEY_A}"]')
    rows = h.visible_rows("#tree button.folder, #tree button.key")
    assert all(r.startswith("app:") for r in rows), f"tree rows: {rows}"


def the_console_stays_usable_with_a_hundred_thousand_keys(h):
    """The tree of issue 14's size: --scale keys (default 100,000) under scale/, written as
    transactions of 10,000 through server 2, then the page loads, counts, expands, searches and
    follows a live change. Timings are printed, not asserted (speed is for benchmarks)."""
    n = h.args.scale
    t0 = time.monotonic()
    for start in range(0, n, 10000):
        ops = [{"op": "set", "key": f"scale/g{i // 1000:03d}/k{i:06d}", "value": {"n": i}}
               for i in range(start, min(n, start + 10000))]
        status, _, body = h.api2.call("POST", "/txn", {"operations": ops, "comment": "bulk"},
                                      timeout=120)
        assert status == 200 and body.get("committed"), f"POST /txn of bulk keys: {status} {body}"
    seeded = time.monotonic() - t0
    total = len(h.api2.settings())
    poll(f"server 1 holds the {total} keys", lambda: h.api1.call("GET", "/health")[2]["count"],
         lambda c: c == total)
    t1 = time.monotonic()
    h.open_console()
    h.wait_text("#status-count", lambda t: numbers_in(t.replace(",", "")) == [str(total)],
                f"== {total}")
    loaded = time.monotonic() - t1
    count_el = h.visible('#tree button.folder[data-folder="scale/"] .count')
    assert numbers_in(count_el.text.replace(",", "")) == [str(n)], \
        f'scale/ .count: expected {n}, got {count_el.text!r}'
    t2 = time.monotonic()
    h.expand("scale/")
    last_group = f"scale/g{(n - 1) // 1000:03d}/"
    h.expand(last_group)
    expanded = time.monotonic() - t2
    # The group's first key (a level shows its first 500 rows).
    last = f"scale/g{(n - 1) // 1000:03d}/k{(n - 1) // 1000 * 1000:06d}"
    h.visible(f'#tree button.key[data-key="{last}"]')
    t3 = time.monotonic()
    h.type_into("#search", f"k{n - 1:06d}")
    h.wait_text("#search-count", lambda t: numbers_in(t) == ["1"], "says 1 match")
    searched = time.monotonic() - t3
    h.type_into("#search", "")
    # Still live: a change by another writer reaches the open tree.
    h.api2.put(last, {"n": -1}, "changed elsewhere")
    poll(f"{last} marked changed", lambda: "changed" in (h.q(
        f'#tree button.key[data-key="{last}"]').get_attribute("class") or ""), bool)
    page_ms = h.driver.execute_script("return document.documentElement.dataset.loadMs || null")
    print(f"     {n} keys seeded in {seeded:.1f} s; page live with {total} keys in {loaded:.1f} s"
          f" (the page's own load: {page_ms} ms); two folders expanded in {expanded:.2f} s;"
          f" search in {searched:.2f} s (Selenium clock, round trips included)", flush=True)


SCENARIOS = [
    the_console_finds_a_key_in_the_tree_and_by_search,
    an_edit_saved_with_a_comment_is_stored_and_recorded,
    a_change_through_another_server_appears_live,
    a_save_over_a_concurrent_change_shows_the_conflict,
    restoring_an_old_version_rolls_the_key_back_with_a_comment,
    a_new_key_is_created_and_deleted_through_the_console,
    the_theme_toggle_flips_the_theme_and_remembers_it,
    the_console_stacks_its_panes_on_a_phone,
    the_console_loads_without_script_errors_under_its_csp,
    the_connection_state_shows_a_drop_and_the_stream_resumes,
    a_read_only_token_gets_a_read_only_console,
    the_console_stays_usable_with_a_hundred_thousand_keys,
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the syncconfig program")
    p.add_argument("--screenshots", help="write the console's screenshots (PNG) here")
    p.add_argument("--keep-logs", help="write failure artifacts and the servers' logs here")
    p.add_argument("--ui-dir", help="pass --ui-dir to serve (console files from a directory)")
    p.add_argument("--only", help="run only the scenarios whose name matches this regex")
    p.add_argument("--scale", type=int, default=100000,
                   help="keys of the large-tree scenario (default 100,000)")
    args = p.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"FAIL: --bin {args.bin} is not an executable")
        return 1
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not os.access(path, os.X_OK):
            print(f"SKIP: {what} is not installed ({path}); install chromium chromium-driver")
            return SKIP

    scenarios = [s for s in SCENARIOS if not args.only or re.search(args.only, s.__name__)]
    started = time.monotonic()
    h = Harness(args)
    results = []
    stopping = []

    def on_signal(signum, _frame):
        stopping.append(signum)
        # The clean-up in the finally below must not be cut short by a second signal.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failed_setup = False
    try:
        try:
            h.set_up()
            h.start_browser()
        except Exception:  # noqa: BLE001
            failed_setup = True
            print("FAIL set-up:\n" + traceback.format_exc(), flush=True)
            return 1
        for s in scenarios:
            t0 = time.monotonic()
            h.drain_console()
            h.console_mark = len(h.console_log)
            try:
                s(h)
                h.drain_console()
                results.append((s.__name__, True))
                print(f"PASS {s.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - a scenario's failure, reported, not fatal
                results.append((s.__name__, False))
                detail = str(e) if isinstance(e, AssertionError) else \
                    f"{type(e).__name__}: {e}"
                where = traceback.extract_tb(e.__traceback__)
                line = next((f"line {f.lineno}" for f in reversed(where)
                             if f.name == s.__name__), "")
                print(f"FAIL {s.__name__} ({time.monotonic() - t0:.1f} s, {line}): {detail}",
                      flush=True)
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
                print("     saved: " + ", ".join(h.save_failure(s.__name__)), flush=True)
                if h.s1.proc.poll() is not None:  # a scenario left the page's server dead
                    try:
                        h.s1.restart_on_same_port()
                    except RuntimeError as again:
                        print(f"     serve s1 does not start again: {again}", flush=True)
    finally:
        failed = failed_setup or bool(stopping) or any(not ok for _, ok in results)
        h.tear_down(keep=failed or bool(args.keep_logs))
    passed = sum(1 for _, ok in results if ok)
    print(f"ui_e2e: {passed} passed, {len(results) - passed} failed "
          f"({time.monotonic() - started:.1f} s)")
    if h.shots and passed:
        print(f"screenshots: {h.shots}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupted:
        print(f"ABORTED ({interrupted}): every process stopped, the cluster removed")
        sys.exit(1)
