#!/usr/bin/env python3
"""The official OpenAI client library against `charrnn serve`.

Installs the `openai` npm package pinned in package-lock.json (npm ci, from
the npm registry, into WORK_DIR), trains a small model on a text it writes
itself, starts `charrnn serve --api-key` on a loopback port and runs
client.mjs, which only sets the client's base URL. Checks that the client's
models.list, completions.create (plain, streamed, several prompts with n,
stop) give the shapes and the very text `charrnn generate` gives, and that
a wrong key, an out-of-range temperature and an unseen character come back
as the client's own error classes.

Usage: check_openai_client.py CHARRNN_BINARY WORK_DIR   (run by ctest)
Exits 77 (skipped) when node or npm is missing or the package cannot be
installed; non-zero on any failed check.
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
failed = []


def check(condition, what):
    print(("ok:   " if condition else "FAIL: ") + what, flush=True)
    if not condition:
        failed.append(what)


def charrnn(binary, *args):
    result = subprocess.run([binary, *args], capture_output=True, text=True, encoding="utf-8")
    if result.returncode != 0:
        raise RuntimeError(f"charrnn {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def make_text(path):
    rng = random.Random(11)
    words = "the night is fair and what light through yonder window breaks my love sings softly".split()
    lines = []
    while sum(len(line) + 1 for line in lines) < 20000:
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) + ".")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def continuation(binary, checkpoint, prompt, length, temperature, seed):
    """What `charrnn generate` prints after the prompt."""
    out = charrnn(binary, "generate", "--checkpoint", checkpoint, "--prime", prompt, "--length", str(length),
                  "--temperature", str(temperature), "--seed", str(seed))
    return out[len(prompt):]


def as_printed(text):
    # charrnn generate ends what it prints with a newline when the text has none
    return text if text.endswith("\n") else text + "\n"


def install_client(work):
    if not shutil.which("node") or not shutil.which("npm"):
        print("skipped: node and npm are needed (scripts/lib/deps.sh installs them)")
        sys.exit(77)
    for name in ["package.json", "package-lock.json", "client.mjs"]:
        shutil.copy(os.path.join(here, name), work)
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=work,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        print(f"skipped: npm ci could not install the openai package (no registry?): {result.stderr[-500:]}")
        sys.exit(77)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    install_client(work)
    corpus, checkpoint = os.path.join(work, "text.txt"), os.path.join(work, "songs.pt")
    make_text(corpus)
    charrnn(binary, "train", "--config", os.path.join(here, "..", "..", "configs", "tiny.json"), "--set",
            f"data.path={corpus}", "--set", f"train.checkpoint={checkpoint}", "--set", "train.steps=40",
            "--set", "train.device=cpu")

    server = subprocess.Popen([binary, "serve", "--checkpoint", checkpoint, "--port", "0", "--api-key", "sekret"],
                              stderr=subprocess.PIPE, text=True)
    try:
        port, deadline = None, time.time() + 60
        while port is None and time.time() < deadline:
            line = server.stderr.readline()
            if not line:
                raise RuntimeError("charrnn serve ended before listening")
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        config = {"base_url": f"http://127.0.0.1:{port}/v1", "api_key": "sekret", "prompt": "the night is ",
                  "max_tokens": 80, "prompts": ["my love ", "what light "], "stop": " ", "unseen_prompt": "the Zebra"}
        result = subprocess.run(["node", os.path.join(work, "client.mjs"), json.dumps(config)], cwd=work,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"the client failed ({result.returncode}): {result.stderr}")
        got = json.loads(result.stdout)
    finally:
        server.terminate()
        server.wait(30)

    check(got["models"] and got["models"][0]["id"] == "songs" and got["models"][0]["object"] == "model"
          and got["models"][0]["cell"] == "lstm", f"models.list names the served model: {got['models']}")
    expected = continuation(binary, checkpoint, config["prompt"], 80, 0.8, 7)
    c = got["completion"]
    check(c["object"] == "text_completion" and as_printed(c["text"]) == expected,
          f"completions.create gives charrnn generate's text\n  client:   {c['text']!r}\n  generate: {expected!r}")
    check(c["finish_reason"] == "length" and c["usage"] == {"prompt_tokens": len(config["prompt"]),
                                                           "completion_tokens": 80,
                                                           "total_tokens": len(config["prompt"]) + 80},
          f"finish_reason and usage count characters: {c['finish_reason']}, {c['usage']}")
    s = got["stream"]
    check(s["text"] == c["text"] and s["finish_reason"] == "length" and s["chunks"] > 1,
          f"stream: true through the client's iterator gives the same text ({s['chunks']} chunks)")
    several = sorted(got["several"], key=lambda choice: choice["index"])
    wanted = [continuation(binary, checkpoint, p, 30, 0.8, 3 + j) for p in config["prompts"] for j in range(2)]
    check([choice["index"] for choice in several] == [0, 1, 2, 3] and [as_printed(choice["text"]) for choice in several] == wanted,
          f"two prompts, n=2: choice prompt*n+j is prompt's text with seed+j\n  {several}\n  {wanted}")
    greedy = continuation(binary, checkpoint, config["prompt"], 80, 0, 0)
    st = got["stopped"]
    check(st["finish_reason"] == "stop" and st["text"] == greedy[:greedy.find(" ")] and " " in greedy,
          f"stop: the text up to the stop string, left out: {st}")
    check(got["wrong_key"] and got["wrong_key"]["type"] == "AuthenticationError" and got["wrong_key"]["status"] == 401,
          f"a wrong key is the client's AuthenticationError: {got['wrong_key']}")
    bad = got["bad_temperature"]
    check(bad and bad["type"] == "BadRequestError" and bad["status"] == 400 and bad["param"] == "temperature",
          f"temperature 5 is a BadRequestError naming the parameter: {bad}")
    unseen = got["unseen"]
    check(unseen and unseen["type"] == "BadRequestError" and "Z" in unseen["message"],
          f"an unseen character is a BadRequestError naming it: {unseen}")
    print(f"{len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
