"""Drive Debian's headless chromium through the DevTools protocol over a pipe
(--remote-debugging-pipe: commands on fd 3, answers on fd 4, each a JSON text ended by NUL), since a
page that keeps a live stream open never lets --dump-dom return. Usage:

    page.py URL_WITH_TOKEN URL_WITHOUT_TOKEN SCREENSHOT.png SIGNAL_FILE

checks the page without the token (401), then with it: the tables show what the workload ran;
it then creates SIGNAL_FILE, and waits for the task the workload submits then (late_task) to
appear without a reload; the actor's worker's log opens; a screenshot goes to SCREENSHOT.png. Exit 0 when every check held."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            sys.exit("FAIL chromium is missing (Debian's chromium; scripts/deps.sh installs it)")
        self.profile = tempfile.mkdtemp(prefix="shoal-chromium-")
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()

        def fds():  # first out of the way, in case a pipe end is fd 3 or 4 itself
            a, b = os.dup(cmd_r) + 10, os.dup(res_w) + 10
            os.dup2(cmd_r, a)
            os.dup2(res_w, b)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                                      "--no-first-run", "--window-size=1400,1800", "--user-data-dir=" + self.profile,
                                      "about:blank"], preexec_fn=fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=open(os.environ.get("OBS_CHROMIUM_LOG", os.devnull), "w"))
        os.close(cmd_r)
        os.close(res_w)
        self.buf = b""
        self.seq = 0

    def call(self, method, params=None, session=None, timeout=30):
        self.seq += 1
        msg = {"id": self.seq, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                m = json.loads(raw)
                if m.get("id") == self.seq:
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error']}")
                    return m["result"]
            chunk = os.read(self.res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        raise TimeoutError(method)

    def open(self, url):
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        return self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def text(self, session):
        r = self.call("Runtime.evaluate", {"expression": "document.body ? document.body.innerText : ''",
                                           "returnByValue": True}, session)
        return r["result"].get("value", "")

    def wait_text(self, session, pred, timeout=20):
        deadline = time.monotonic() + timeout
        t = ""
        while time.monotonic() < deadline:
            t = self.text(session)
            if pred(t):
                return t
            time.sleep(0.2)
        return t

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    url, bare, shot, signal = sys.argv[1:5]
    b = Browser()
    failed = []

    def check(name, ok, detail=""):
        print(("ok   " if ok else "FAIL ") + name, flush=True)
        if not ok:
            failed.append(name)
            if detail:
                print(detail[:3000], flush=True)

    try:
        s = b.open(bare)
        t = b.wait_text(s, lambda t: "401" in t, 10)
        check("page: without the token the browser gets 401", "401 unauthorized" in t, t)
        s = b.open(url)
        want = ["square", "boom", "Counter.incr", "obs-counter", "ALIVE", "FAILED", "(head)", "Nodes", "Workers",
                "obs-group\tSPREAD\tCREATED"]
        t = b.wait_text(s, lambda t: all(w in t for w in want) and "live" in t)
        check("page: nodes, tasks by function and state, the failed task, the actor, the placement group, workers", all(w in t for w in want), t)
        lines = t.splitlines()
        sq = [l for l in lines if l.startswith("square\t")]
        check("page: square finished 5 times", bool(sq) and sq[0].split("\t")[4] == "5", "\n".join(sq))
        bm = [l for l in lines if l.startswith("boom\t")]
        check("page: boom failed once", bool(bm) and bm[0].split("\t")[5] == "1", "\n".join(bm))
        r = b.call("Runtime.evaluate", {"expression": "document.querySelectorAll('#timeline rect').length", "returnByValue": True}, s)
        check("page: the timeline draws the tasks", r["result"].get("value", 0) >= 10, str(r))
        open(signal, "w").close()
        t = b.wait_text(s, lambda t: "late_task" in t)
        check("page: a task submitted after the page loaded appears without a reload", "late_task" in t, t)
        b.call("Runtime.evaluate", {"expression": "[...document.querySelectorAll('#workers a')].find(a => "
                                    "a.closest('tr').children[4].textContent.trim() !== '').click()"}, s)
        t = b.wait_text(s, lambda t: "(Counter.incr pid=" in t and "counter at 3" in t)
        check("page: the actor's worker's log, by task", "counter at 3" in t, t)
        png = b.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, s)["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png))
        check("page: screenshot " + shot, os.path.getsize(shot) > 10000)
    finally:
        b.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
