"""What the Python test scripts share: running the charrnn binary; for the
end-to-end tests of `charrnn serve`, a small model trained on a text
written here, a server started on a loopback port and stopped, checks that
are counted, and `charrnn generate`'s text to compare with.

For the tests of clients nobody here wrote: npm packages pinned by a
package-lock.json, a static site on a loopback port, and Debian's chromium
driven by selenium.

Imported by tests/interop, tests/openai_client, tests/browser, tests/web,
tests/onnx and tests/serve_e2e (each puts this folder on sys.path).
"""
import functools
import http.server
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
passed = 0
failed = []
quiet = False  # True: print only the checks that fail (scripts with hundreds of them)


def check(condition, what):
    global passed
    if condition:
        passed += 1
    else:
        failed.append(what)
    if not (condition and quiet):
        print(("ok:   " if condition else "FAIL: ") + what, flush=True)
    return condition


def finish():
    """The exit status: 1 when any check failed."""
    print(f"{passed} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


def charrnn(binary, *args):
    result = subprocess.run([binary, *args], capture_output=True, text=True, encoding="utf-8")
    if result.returncode != 0:
        raise RuntimeError(f"charrnn {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def make_text(path):
    """About 20 kB of lines of a few words, all lower case: 'Z' is never seen."""
    rng = random.Random(11)
    words = "the night is fair and what light through yonder window breaks my love sings softly".split()
    lines = []
    while sum(len(line) + 1 for line in lines) < 20000:
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) + ".")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def train_small_model(binary, work, name="songs", steps=40, prime=""):
    """configs/tiny.json trained for `steps` on make_text's text, `prime` its
    sample.prime; returns the checkpoint."""
    corpus, checkpoint = os.path.join(work, "text.txt"), os.path.join(work, name + ".pt")
    make_text(corpus)
    charrnn(binary, "train", "--config", os.path.join(here, "..", "configs", "tiny.json"), "--set",
            f"data.path={corpus}", "--set", f"train.checkpoint={checkpoint}", "--set", f"train.steps={steps}",
            "--set", "train.device=cpu", "--set", f"sample.prime={prime}")
    return checkpoint


def continuation(binary, checkpoint, prompt, length, temperature, seed, top_k=0, top_p=1.0):
    """What `charrnn generate` prints after the prompt."""
    out = charrnn(binary, "generate", "--checkpoint", checkpoint, "--prime", prompt, "--length", str(length),
                  "--temperature", str(temperature), "--top-k", str(top_k), "--top-p", str(top_p),
                  "--seed", str(seed))
    return out[len(prompt):]


def wait_for(condition, seconds, what):
    """condition()'s first true value, asked every 20 ms; RuntimeError after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {seconds} s waiting for {what}")


def as_printed(text):
    # charrnn generate ends what it prints with a newline when the text has none
    return text if text.endswith("\n") else text + "\n"


class Server:
    """`charrnn serve --port 0 ARGS...`, as a context manager: .port is the
    port it printed; on exit it gets SIGTERM and must end with status 0."""

    def __init__(self, binary, checkpoint, *args):
        self.command = [binary, "serve", "--checkpoint", checkpoint, "--port", "0", *args]
        self.process, self.port, self.log = None, None, []

    def __enter__(self):
        self.process = subprocess.Popen(self.command, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while self.port is None and time.time() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError("charrnn serve ended before listening")
            self.log.append(line)
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            self.port = int(m.group(1)) if m else None
        if self.port is None:
            raise RuntimeError("charrnn serve did not say where it listens")
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.extend(self.process.stderr.readlines())
        check(self.process.returncode == 0, f"the server exits 0 after SIGTERM (got {self.process.returncode})")
        return False


class Unavailable(Exception):
    """A tool a test needs is missing (no npm registry, no browser): the
    test is skipped, or the part of it that needs the tool."""


def npm_ci(package_dir, work):
    """`npm ci --ignore-scripts` of package_dir's package.json and
    package-lock.json into work (kept while the lock is unchanged); returns
    work's node_modules. --ignore-scripts: no install script runs
    (onnxruntime-node's would download GPU libraries from a host we cannot
    reach; what the tests use is in the packages). Raises Unavailable
    without npm or the registry."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise Unavailable("node and npm are needed (scripts/lib/deps.sh installs them)")
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(package_dir, "package-lock.json"), encoding="utf-8") as f:
        lock = f.read()
    installed = os.path.join(work, "package-lock.json")
    modules = os.path.join(work, "node_modules")
    if os.path.isdir(modules) and os.path.exists(installed):
        with open(installed, encoding="utf-8") as f:
            if f.read() == lock:
                return modules
    for name in ["package.json", "package-lock.json"]:
        shutil.copy(os.path.join(package_dir, name), work)
    result = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                            cwd=work, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        os.remove(installed)
        raise Unavailable(f"npm ci failed (no registry?): {result.stderr[-500:]}")
    return modules


class StaticSite:
    """A folder served over HTTP on a loopback port from a thread, as any
    static host would serve it (ES modules and wasm with their types)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                          ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}

        def log_message(self, *args):
            pass

    def __init__(self, root):
        self.root = root
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(self.Handler, directory=root))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver


def start_chromium(work):
    """Debian's chromium, headless with a fresh profile in work, driven by
    chromium-driver through selenium. Raises Unavailable when one of them is
    missing or the browser does not start."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise Unavailable("no selenium for this python (scripts/lib/deps.sh installs python3-selenium)")
    if not os.path.exists(CHROMEDRIVER) or not shutil.which("chromium"):
        raise Unavailable("no chromium or chromedriver (scripts/lib/deps.sh installs chromium, chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # headless in a container that runs as root: no sandbox, no GPU, and a
    # profile of its own so that nothing of a user's browser comes in
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-extensions", f"--user-data-dir={os.path.join(work, 'profile')}"]:
        options.add_argument(flag)
    # the console's messages, for tests that read them with get_log("browser")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as e:  # selenium wraps every way a browser fails to start
        raise Unavailable(f"the browser did not start: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def chromium_or_skip(work):
    """start_chromium(work), or the test skipped (exit 77) naming what is missing."""
    try:
        return start_chromium(work)
    except Unavailable as e:
        print(f"skipped: {e}")
        sys.exit(77)


def shown_character(label):
    """The character a probability view's list shows as `label`
    (src/web/probabilities.js's visible(): "⏎ (newline)", "␣ (space)", "⇥ (tab)")."""
    return {"\u23ce (newline)": "\n", "\u2423 (space)": " ", "\u21e5 (tab)": "\t"}.get(label, label)
