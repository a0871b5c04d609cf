#!/usr/bin/env python3
"""`charrnn export --format web` and its runtime, charrnn.js, against charrnn itself.

Trains tiny models (RNN, GRU, LSTM with 1 and 2 layers, a few seconds
each) on a text it writes, exports each as a web folder, and runs the
charrnn.js that the folder carries (the copy embedded in the binary)
through run_ops.mjs:

  node     under Node, on both of charrnn.js's backends (charrnn.wasm's
           WebAssembly SIMD products, which load() picks when the folder
           has charrnn.wasm, and the plain JS ones, forced with
           {backend: "js"}): greedy text and seeded samples (seeds,
           temperatures, top-k, top-p, a stop string, an empty prime, a
           prime with a character to fold) equal `charrnn generate
           --json`'s text; next() equals charrnn's own probabilities (the
           TorchScript export's forward, python3-torch) at 1e-5; every bad
           folder (missing file, wrong size, wrong shape, a filename outside
           the folder, another format, a disagreeing vocab.json, weights
           that fail the load check, a corrupt charrnn.wasm) is refused with
           a clear error, and a folder without charrnn.wasm runs in JS.
  browser  the same generations in headless Chromium (selenium) on the
           backend load() picks there (WebAssembly SIMD when the folder has
           charrnn.wasm), the folders served from a loopback HTTP server
           thread; ml5.js 0.12.2
           (npm, pinned in package-lock.json) loads the 2-layer LSTM folder
           unmodified and holds charrnn's probabilities at 1e-4; the
           exported playground page loads in under a second, generates
           charrnn generate's text for its form's settings, stops on Stop
           and shows chars/s. (Its speed is benchmarks/web_speed.py's.)

A build without wat2wasm exports no charrnn.wasm; then only the JS backend
is checked, and the output says so.

charrnn computes in float32 with its own kernels, charrnn.js in float32
(WebAssembly) or float64 (JS) summing in other orders, so their
probabilities differ by about 1e-7 and a seeded draw could in
principle fall on the other side of a cdf boundary. Greedy text must be
exact; for the fixed seeds here the sampled texts are the same too, and if
one ever differs the failure names the step and how close the draw was to
the boundary (the margin), so a real bug is told from a rounding accident.

Usage: check_web.py {node|browser} CHARRNN_BINARY WORK_DIR   (run by ctest)
Exits 77 (skipped) when node, python3-torch, or (browser) selenium,
chromium, chromedriver or the npm registry is missing.
"""
import functools
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, ".."))
import script_support  # noqa: E402
from script_support import (StaticSite, shown_character, Unavailable, charrnn, check, finish, make_text, npm_ci,  # noqa: E402
                            start_chromium, wait_for)

ROOT = os.path.join(here, "..", "..")
PRIME = "the night "
MODELS = [(cell, layers) for cell in ["rnn", "gru", "lstm"] for layers in [1, 2]]
# (prime, length, temperature, top_k, top_p, seed, stop): what `charrnn generate` is asked, and charrnn.js
CASES = [
    (PRIME, 120, 0.0, 0, 1.0, 0, ""),            # greedy: must be exact
    (PRIME, 200, 0.8, 0, 1.0, 1, ""),
    (PRIME, 200, 0.8, 0, 1.0, 2, ""),
    ("my love ", 200, 1.2, 5, 0.9, 9, ""),       # top-k and top-p
    ("what light ", 150, 0.6, 0, 0.5, 3, ""),
    (PRIME, 300, 0.8, 0, 1.0, 4, "."),          # ends with the stop text
    ("", 100, 0.8, 0, 1.0, 5, ""),               # no prime: the first character by the counts
    ("my\u00a0lov\u00e9\u2003", 80, 0.8, 0, 1.0, 6, ""),  # folded: no-break space, é, em space
]
NEXT_TEXTS = [PRIME, "what light through yonder window breaks. my love sings softly", "e"]


def skip(why):
    print(f"skipped: {why} (scripts/lib/deps.sh installs node, npm, chromium, chromium-driver, python3-selenium "
          "and python3-torch)")
    sys.exit(77)


def js_options(case):
    prime, length, temperature, top_k, top_p, seed, stop = case
    return {"prime": prime, "length": length, "temperature": temperature, "topK": top_k, "topP": top_p,
            "seed": seed, "stop": stop}


@functools.lru_cache(maxsize=None)  # each backend's texts are checked against the same run
def generate_text(binary, checkpoint, case):
    """The exact text `charrnn generate` produces (its --json line, so no newline is added)."""
    prime, length, temperature, top_k, top_p, seed, stop = case
    args = ["generate", "--checkpoint", checkpoint, "--prime", prime, "--length", str(length), "--temperature",
            str(temperature), "--top-k", str(top_k), "--top-p", str(top_p), "--seed", str(seed), "--json"]
    if stop:
        args += ["--stop", stop]
    return json.loads(charrnn(binary, *args).splitlines()[0])["text"]


class Reference:
    """charrnn's own logits, from the TorchScript export (exact charrnn arithmetic)."""

    def __init__(self, binary, checkpoint, path):
        import torch
        charrnn(binary, "export", "--checkpoint", checkpoint, "--out", path)
        self.torch, self.module = torch, torch.jit.load(path)
        self.ids = {chr(c): i for i, c in enumerate(self.module.vocab_code_points)}

    def probabilities(self, ids, temperature=1.0):
        with self.torch.no_grad():
            logits = self.module.forward(self.torch.tensor([ids]))[0][0, -1].float()
            return self.torch.softmax(logits / temperature, -1).tolist()


def uniforms(seed, n):
    """sampler.cpp's SampleRng: xorshift128, 32 discarded draws, 24-bit uniforms."""
    seed &= (1 << 64) - 1
    x, y, z, w = seed & 0xFFFFFFFF, seed >> 32, 0x243F6A88, 0xB7E15162
    out = []
    for i in range(32 + n):
        t = (x ^ (x << 11)) & 0xFFFFFFFF
        x, y, z = y, z, w
        w = (w ^ (w >> 19) ^ (t ^ (t >> 8))) & 0xFFFFFFFF
        if i >= 32:
            out.append((w >> 8) / 16777216.0)
    return out


def explain_difference(reference, case, expected, got):
    """Where two sampled texts part, and how far charrnn's draw was from a cdf boundary there."""
    prime, _, temperature, top_k, top_p, seed, _ = case
    at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
    step = at - len(prime)
    if not prime or step < 0 or temperature <= 0:
        return f"texts part at character {at}"
    probs = reference.probabilities([reference.ids[c] for c in expected[:at]], temperature)
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    k = top_k if 0 < top_k < len(probs) else len(probs)
    cdf, total = [], 0.0
    for i in order[:k]:
        total += probs[i]
        cdf.append(total)
    kept = k
    if top_p < 1:
        kept = 1
        while kept < k and cdf[kept - 1] < top_p * cdf[k - 1]:
            kept += 1
    target = uniforms(seed, step + 1)[step] * cdf[kept - 1]
    margin = min(abs(target - c) for c in cdf[:kept])
    return f"texts part at step {step} (character {at}): draw {target:.9f}, nearest cdf boundary {margin:.2e} away"


def train_models(binary, work):
    corpus = os.path.join(work, "text.txt")
    make_text(corpus)
    models = {}
    for cell, layers in MODELS:
        name = f"{cell}{layers}"
        checkpoint = os.path.join(work, name + ".pt")
        charrnn(binary, "train", "--config", os.path.join(ROOT, "configs", "tiny.json"), "--set",
                f"data.path={corpus}", "--set", f"train.checkpoint={checkpoint}", "--set", "train.steps=30",
                "--set", "train.eval_every=30", "--set", "train.device=cpu", "--set", f"model.cell={cell}",
                "--set", f"model.num_layers={layers}", "--set", f"sample.prime={PRIME}")
        folder = os.path.join(work, "site", name)
        shutil.rmtree(folder, ignore_errors=True)
        charrnn(binary, "export", "--checkpoint", checkpoint, "--format", "web", "--out", folder)
        models[name] = (checkpoint, folder)
    shutil.copy(os.path.join(here, "run_ops.mjs"), os.path.join(work, "site"))
    return models


def node_ops(work, ops):
    path = os.path.join(work, "ops.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(ops, f)
    result = subprocess.run(["node", os.path.join(work, "site", "run_ops.mjs"), path], capture_output=True,
                            text=True, encoding="utf-8", timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"run_ops.mjs failed ({result.returncode}): {result.stderr}")
    return json.loads(result.stdout)


def generation_ops(models, base, backend=None):
    """Every case on every model; backend None is load()'s own choice."""
    ops = []
    for name in models:
        ops += [{"op": "generate", "dir": f"{base}{name}", "options": js_options(case), "backend": backend}
                for case in CASES]
    return ops


def has_kernel(models):
    """Whether this build's exports carry charrnn.wasm (a build with wat2wasm)."""
    return all(os.path.exists(os.path.join(folder, "charrnn.wasm")) for _, folder in models.values())


def check_generations(binary, models, references, results, where):
    for m, name in enumerate(models):
        checkpoint = models[name][0]
        for c, case in enumerate(CASES):
            result = results[m * len(CASES) + c]
            expected = generate_text(binary, checkpoint, case)
            got = result.get("value")
            what = f"{where} {name} {js_options(case)}"
            if "error" in result:
                check(False, f"{what}: {result['error']}")
            elif got == expected:
                check(got == result["streamed"], f"{what}: charrnn generate's text, streamed the same")
            else:
                check(False, f"{what}: {explain_difference(references[name], case, expected, got)}\n"
                             f"  charrnn.js: {got[:120]!r}\n  generate:   {expected[:120]!r}")


def max_difference(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")


def write_floats(path, values):
    with open(path, "wb") as f:
        f.write(struct.pack(f"<{len(values)}f", *values))


def bad_folders(work, source):
    """(folder, what is wrong, words the error must hold): one fault each, in copies of `source`."""
    cases = []

    def variant(name, what, expect, change):
        folder = os.path.join(work, "bad", name)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(source, folder)
        change(folder)
        cases.append((folder, what, expect))

    def edit_json(folder, file, change):
        path = os.path.join(folder, file)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        change(data)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)

    with open(os.path.join(source, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    bias = manifest["rnnlm/softmax_b"]["filename"]
    variant("missing", "a weight file is missing", ["cannot", bias],
            lambda d: os.remove(os.path.join(d, bias)))
    variant("short", "a weight file is 4 bytes short", ["bytes", bias],
            lambda d: open(os.path.join(d, bias), "r+b").truncate(os.path.getsize(os.path.join(d, bias)) - 4))
    variant("shape", "the manifest's shape disagrees with charrnn.json's sizes", ["shape", "embedding"],
            lambda d: edit_json(d, "manifest.json", lambda m: m["embedding"]["shape"].__setitem__(1, 17)))
    for label, filename in [("dotdot", "../charrnn.json"), ("slash", "sub/embedding"), ("backslash", "a\\b"),
                            ("absolute", "/etc/passwd"), ("url", "http://example.com/w")]:
        variant(f"filename_{label}", f"a manifest filename {filename!r}", ["not a plain file name"],
                lambda d, fn=filename: edit_json(d, "manifest.json", lambda m: m["embedding"].__setitem__("filename", fn)))
    variant("format", "format is not charrnn-web", ["format", "charrnn-web"],
            lambda d: edit_json(d, "charrnn.json", lambda j: j.__setitem__("format", "ml5")))
    variant("version", "format_version 2", ["version", "charrnn-web"],
            lambda d: edit_json(d, "charrnn.json", lambda j: j.__setitem__("format_version", 2)))

    def swap_ids(v):
        a, b = list(v)[:2]
        v[a], v[b] = v[b], v[a]
    variant("vocab", "vocab.json swaps two ids", ["vocab.json disagrees"],
            lambda d: edit_json(d, "vocab.json", swap_ids))

    def perturb(d):
        path = os.path.join(d, bias)
        with open(path, "rb") as f:
            values = list(struct.unpack(f"<{os.path.getsize(path) // 4}f", f.read()))
        values[0] += 0.5
        write_floats(path, values)
    variant("check", "a weight changed after export", ["weights do not reproduce the exporter's check"], perturb)
    if os.path.exists(os.path.join(source, "charrnn.wasm")):
        def corrupt(d):
            with open(os.path.join(d, "charrnn.wasm"), "r+b") as f:
                f.seek(8)
                f.write(b"\xff\xff\xff")  # a section id that does not exist, after a valid header
        variant("wasm", "charrnn.wasm is corrupt", ["charrnn.wasm is not a valid WebAssembly module"], corrupt)
    return cases


def run_node(binary, work, models, references):
    kernel = has_kernel(models)
    backends = ["wasm-simd", "js"] if kernel else ["js"]
    if not kernel:
        print("note: the exports have no charrnn.wasm (a build without wat2wasm): only the JS backend is checked")
    site = os.path.join(work, "site")
    loaded = node_ops(work, [{"op": "load", "dir": os.path.join(site, name)} for name in models])
    check(all(r.get("value", {}).get("backend") == backends[0] for r in loaded),
          f"under Node load() picks the {backends[0]} backend: {[r.get('value', r).get('backend') for r in loaded]}")
    for backend in backends:
        results = node_ops(work, generation_ops(models, site + "/", backend))
        check_generations(binary, models, references, results, f"node ({backend})")

        ops = [{"op": "next", "dir": os.path.join(site, name), "text": t, "backend": backend}
               for name in models for t in NEXT_TEXTS]
        results = node_ops(work, ops)
        for m, name in enumerate(models):
            for t, text in enumerate(NEXT_TEXTS):
                got = results[m * len(NEXT_TEXTS) + t].get("value") or []
                want = references[name].probabilities([references[name].ids[c] for c in text])
                d = max_difference(got, want)
                check(d <= 1e-5, f"node ({backend}) {name}: next({text[:20]!r}) is charrnn's probabilities "
                                 f"(max difference {d:.1e})")

    bad = bad_folders(work, models["lstm1"][1])
    results = node_ops(work, [{"op": "load", "dir": folder} for folder, _, _ in bad])
    for (folder, what, expect), result in zip(bad, results):
        error = result.get("error", "")
        check(error and all(word in error for word in expect), f"{what}: refused ({error!r})")
    if kernel:
        folder = os.path.join(work, "bad", "no_wasm")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(models["lstm1"][1], folder)
        os.remove(os.path.join(folder, "charrnn.wasm"))
        result = node_ops(work, [{"op": "load", "dir": folder}, {"op": "load", "dir": folder, "backend": "wasm-simd"}])
        check(result[0].get("value", {}).get("backend") == "js", f"a folder without charrnn.wasm runs in JS: {result[0]}")
        check("charrnn.wasm" in result[1].get("error", ""), f"backend wasm-simd without charrnn.wasm is refused: {result[1]}")
    name = "lstm1"
    result = node_ops(work, [{"op": "generate", "dir": models[name][1], "options": {"prime": "the Zebra", "length": 5}}])[0]
    check("'Z' (U+005A)" in result.get("error", ""), f"a prime character the vocabulary lacks is named: {result}")


def start_browser(work):
    try:
        browser = start_chromium(work)
    except Unavailable as e:
        skip(str(e))
    browser.set_script_timeout(240)
    return browser


def install_ml5(work):
    """ml5.min.js of the ml5 package pinned in package-lock.json (npm ci into WORK_DIR/npm)."""
    try:
        modules = npm_ci(here, os.path.join(work, "npm"))
    except Unavailable as e:
        skip(f"ml5 could not be installed: {e}")
    return os.path.join(modules, "ml5", "dist", "ml5.min.js")


def browser_ops(browser, site, ops):
    return browser.execute_async_script("""
        const [base, ops, done] = arguments;
        import(base + "run_ops.mjs")
          .then(({ runOps }) => runOps(ops, (dir) => import(dir + "/charrnn.js")))
          .then(done, (e) => done([{ error: String(e) }]));""", site.url, ops)


def run_playground(binary, browser, site, models):
    checkpoint, _ = models["lstm2"]
    started = time.time()
    browser.get(site.url + "lstm2/index.html")
    state = wait_for(lambda: browser.execute_script("return document.body.dataset.state") != "loading" and
                     browser.execute_script("return document.body.dataset.state"), 10, "the page to load the model")
    ready_ms = browser.execute_script("return window.charrnnReadyMs")
    print(f"figure: the playground loads its model from loopback in {ready_ms:.0f} ms after navigation "
          f"({(time.time() - started) * 1000:.0f} ms seen by selenium)")
    check(state == "ready" and ready_ms < 1000, f"the playground is ready in under 1 s ({ready_ms:.0f} ms): {state}")
    value = lambda i: browser.find_element("id", i).get_attribute("value")  # noqa: E731
    check(value("prompt") == PRIME and value("length") == "100" and value("temperature") == "0.8",
          "the form starts with charrnn.json's sample defaults")

    def fill(**fields):
        for element_id, v in fields.items():
            field = browser.find_element("id", element_id)
            field.clear()
            field.send_keys(str(v))

    def run():
        browser.find_element("id", "generate").click()
        wait_for(lambda: browser.execute_script("return document.body.dataset.state") == "ready", 60, "the text")
        return browser.execute_script("return [document.getElementById('output').textContent, "
                                      "document.getElementById('status').textContent]")

    fill(prompt="my love ", length=400, temperature=1.1, top_k=6, top_p=0.95, seed=12)
    text, status = run()
    expected = generate_text(binary, checkpoint, ("my love ", 400, 1.1, 6, 0.95, 12, ""))
    check(text == expected, f"Generate shows charrnn generate's text for the form's settings ({text[:40]!r}...)")
    check("chars/s" in status and "(done: length)" in status, f"the status shows chars/s: {status!r}")
    fill(stop_text="\\n", seed=13, length=500)
    text, status = run()
    expected = generate_text(binary, checkpoint, ("my love ", 500, 1.1, 6, 0.95, 13, "\n"))
    check(text == expected and (not expected.endswith("\n") or "(done: stop)" in status),
          f"a stop string ends it as charrnn generate --stop does: {status!r}")
    check_probabilities(binary, browser, checkpoint, fill, run)
    fill(stop_text="", length=1000000, seed="")
    browser.find_element("id", "generate").click()
    wait_for(lambda: len(browser.execute_script("return document.getElementById('text').textContent")) > 0, 30,
             "the first text")
    browser.find_element("id", "stop").click()
    wait_for(lambda: browser.execute_script("return document.body.dataset.state") == "ready", 30, "Stop")
    status = browser.execute_script("return document.getElementById('status').textContent")
    shown = len(browser.execute_script("return document.getElementById('text').textContent"))
    check("(stopped)" in status and shown < 1000000 and browser.find_element("id", "generate").is_enabled(),
          f"Stop ends a generation: {shown} of 1000000 characters, {status!r}")


def check_probabilities(binary, browser, checkpoint, fill, run):
    """Show probabilities: each generated character's colour and hover against
    `charrnn eval --per-char` on the page's own prime and text."""
    from selenium.webdriver.common.action_chains import ActionChains
    browser.find_element("id", "show-probs").click()
    fill(stop_text="", seed=21, length=150)
    text, _ = run()
    expected = generate_text(binary, checkpoint, ("my love ", 150, 1.1, 6, 0.95, 21, ""))
    check(text == expected, "with probabilities shown, the same text")
    work = os.path.dirname(checkpoint)
    text_path, per_char = os.path.join(work, "page-text.txt"), os.path.join(work, "page-text.jsonl")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(text)
    charrnn(binary, "eval", "--checkpoint", checkpoint, "--data", text_path, "--per-char", per_char, "--top-k", "5")
    with open(per_char, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f][len("my love ") - 1:]  # the generated characters'
    spans = browser.find_elements("css selector", "#text .ch")
    got = browser.execute_script("""
        return [...document.querySelectorAll('#text .ch')].map(
            (s) => [s.textContent, Number(s.dataset.logprob), JSON.parse(s.dataset.top), s.className]);""")
    check(len(spans) == 150 == len(lines) and "".join(g[0] for g in got) == text[len("my love "):],
          f"one coloured span per generated character: {len(spans)}")
    worst = max(abs(g[1] - want["logprob"]) for g, want in zip(got, lines))
    check(worst < 1e-4, f"each character's probability is eval's (largest difference {worst:.1e} nats)")
    tops_agree = all([c for c, _ in g[2]] == [c for c, _ in want["top"]] or
                     min(abs(a[1] - b[1]) for a, b in zip(want["top"], want["top"][1:])) < 1e-4
                     for g, want in zip(got, lines))
    check(tops_agree, "each character's top 5 are eval's")
    bucket = lambda p: "p" + str(sum(p >= b for b in (0.05, 0.2, 0.5, 0.8)))  # noqa: E731
    check([g[3].split()[1] for g in got] == [bucket(math.exp(w["logprob"])) for w in lines],
          f"the colours follow the probabilities: {sorted(set(g[3].split()[1] for g in got))}")
    i = next(i for i, g in enumerate(got) if g[0] not in "\n ")
    ActionChains(browser).move_to_element(spans[i]).perform()
    rows = browser.execute_script("""
        return [...document.querySelectorAll('#alternatives tr')].map((tr) => [...tr.cells].map((td) => td.textContent));""")
    shown = [(c, f"{100 * math.exp(v):.1f}%") for c, v in lines[i]["top"]]
    check([(shown_character(r[0]), r[1]) for r in rows][:5] == shown,
          f"hovering a character shows its top 5 with probabilities: {rows}")
    browser.find_element("id", "show-probs").click()


def run_ml5(browser, site, models, references, ml5_script):
    shutil.copy(ml5_script, os.path.join(site.root, "ml5.min.js"))
    with open(os.path.join(site.root, "ml5.html"), "w", encoding="utf-8") as f:
        f.write('<!doctype html><meta charset="utf-8"><title>ml5</title><script src="ml5.min.js"></script>\n')
    browser.get(site.url + "ml5.html")
    seed = "what light through yonder "
    result = browser.execute_async_script("""
        const [url, seed, done] = arguments;
        (async () => {
          const rnn = ml5.charRNN(url);
          await rnn.ready;
          await rnn.generate({ seed, length: 1, temperature: 1 });
          const { load } = await import(url + "/charrnn.js");
          const model = await load(url);
          return { ml5: Array.from(rnn.probabilities), js: await model.next(seed) };
        })().then(done, (e) => done({ error: String(e && e.stack || e) }));""", site.url + "lstm2", seed)
    if "error" in result:
        check(False, f"ml5.js loads the 2-layer LSTM folder: {result['error']}")
        return
    want = references["lstm2"].probabilities([references["lstm2"].ids[c] for c in seed])
    check(max_difference(result["ml5"], want) <= 1e-4 and max_difference(result["ml5"], result["js"]) <= 1e-4,
          f"ml5.js 0.12.2 loads the 2-layer LSTM folder unmodified and holds charrnn's probabilities "
          f"(max difference {max_difference(result['ml5'], want):.1e} to charrnn, "
          f"{max_difference(result['ml5'], result['js']):.1e} to charrnn.js)")


def main():
    mode, binary, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    if not shutil.which("node"):
        skip("no node")
    try:
        import torch  # noqa: F401
    except ImportError:
        skip("no torch for this python")
    script_support.quiet = True
    started = time.time()
    models = train_models(binary, work)
    references = {name: Reference(binary, checkpoint, os.path.join(work, name + ".ts.pt"))
                  for name, (checkpoint, _) in models.items()}
    print(f"trained and exported {len(models)} models in {time.time() - started:.1f} s", flush=True)
    if mode == "node":
        run_node(binary, work, models, references)
    else:
        browser = start_browser(work)
        ml5_script = install_ml5(work)
        site = StaticSite(os.path.join(work, "site"))
        try:
            browser.get(site.url + "lstm1/index.html")  # a page of the site, so that import() is same-origin
            results = browser_ops(browser, site, generation_ops(models, site.url))
            check_generations(binary, models, references, results, "chromium")
            want = "wasm-simd" if has_kernel(models) else "js"
            loaded = browser_ops(browser, site, [{"op": "load", "dir": site.url + "lstm2"}])[0]
            check(loaded.get("value", {}).get("backend") == want, f"in Chromium load() picks the {want} backend: {loaded}")
            run_playground(binary, browser, site, models)
            run_ml5(browser, site, models, references, ml5_script)
        finally:
            browser.quit()
            site.close()
    print(f"took {time.time() - started:.1f} s")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
