#!/usr/bin/env python3
"""The official OpenAI client library against `charrnn serve`.

Installs the `openai` npm package pinned in package-lock.json (npm ci, from
the npm registry, into WORK_DIR), trains a small model on a text it writes
itself, starts `charrnn serve --api-key` on a loopback port and runs
client.mjs, which only sets the client's base URL. Checks that the client's
models.list, completions.create (plain, streamed, several prompts with n,
stop) give the shapes and the very text `charrnn generate` gives; that
logprobs (with echo, streamed or not) come back in OpenAI's legacy shape,
and a text scored with max_tokens 0 has eval's loss; and that a wrong key,
an out-of-range temperature or logprobs and an unseen character come back
as the client's own error classes.

Usage: check_openai_client.py CHARRNN_BINARY WORK_DIR   (run by ctest)
Exits 77 (skipped) when node or npm is missing or the package cannot be
installed; non-zero on any failed check.
"""
import json
import os
import shutil
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, ".."))
from script_support import (Server, Unavailable, as_printed, check, continuation, finish, npm_ci,  # noqa: E402
                            train_small_model)


def install_client(work):
    try:
        npm_ci(here, work)
    except Unavailable as e:
        print(f"skipped: the openai package could not be installed: {e}")
        sys.exit(77)
    shutil.copy(os.path.join(here, "client.mjs"), work)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    install_client(work)
    checkpoint = train_small_model(binary, work)
    with Server(binary, checkpoint, "--api-key", "sekret") as server:
        config = {"base_url": server.url + "/v1", "api_key": "sekret", "prompt": "the night is ",
                  "max_tokens": 80, "prompts": ["my love ", "what light "], "stop": " ", "unseen_prompt": "the Zebra",
                  "scored_text": "my love is like the night and the light of the "}
        result = subprocess.run(["node", os.path.join(work, "client.mjs"), json.dumps(config)], cwd=work,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"the client failed ({result.returncode}): {result.stderr}")
        got = json.loads(result.stdout)

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
    check_logprobs(binary, checkpoint, work, config, got)
    return finish()


def check_logprobs(binary, checkpoint, work, config, got):
    text, l = got["logprobs"]["text"], got["logprobs"]["logprobs"]
    check(text == config["prompt"] + got["completion"]["text"] and "".join(l["tokens"]) == text
          and l["text_offset"] == list(range(len(text))),
          f"logprobs: one token per character of the echoed prompt and the text: {l['tokens'][:12]}...")
    check(l["token_logprobs"][0] is None and l["top_logprobs"][0] is None,
          "logprobs: the prompt's first character, which nothing predicts, is null")
    tops_ok = all(5 <= len(top) <= 6 and top[token] == value and value <= 0 and max(top.values()) <= 0
                  for token, value, top in zip(l["tokens"][1:], l["token_logprobs"][1:], l["top_logprobs"][1:]))
    check(tops_ok, "logprobs 5: the 5 most likely characters, and the character itself when it is not among them")
    s = got["logprobs_stream"]
    check(s["text"] == text and s["logprobs"] == l and s["chunks_match"],
          "logprobs streamed: each chunk carries its own characters', together the same as not streamed")
    path = os.path.join(work, "scored.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(config["scored_text"])
    result = subprocess.run([binary, "eval", "--checkpoint", checkpoint, "--data", path, "--streams", "1", "--json"],
                            capture_output=True, text=True, timeout=60)
    loss = json.loads(result.stdout)["loss"]
    values = got["score"]["token_logprobs"]
    mean = -sum(values[1:]) / (len(values) - 1)
    check(got["score"]["text"] == config["scored_text"] and abs(mean - loss) < 1e-5,
          f"max_tokens 0, echo, logprobs 1 scores a text: mean {mean:.6f} nats, eval --streams 1 {loss:.6f}")
    bad = got["bad_logprobs"]
    check(bad and bad["type"] == "BadRequestError" and bad["param"] == "logprobs" and "[0, 5]" in bad["message"],
          f"logprobs 6 is a BadRequestError naming the range: {bad}")


if __name__ == "__main__":
    sys.exit(main())
