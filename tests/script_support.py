"""What the Python test scripts share: running the charrnn binary; for the
end-to-end tests of `charrnn serve`, a small model trained on a text
written here, a server started on a loopback port and stopped, checks that
are counted, and `charrnn generate`'s text to compare with.

Imported by tests/interop, tests/openai_client, tests/browser and
tests/serve_e2e (each puts this folder on sys.path).
"""
import os
import random
import re
import subprocess
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
