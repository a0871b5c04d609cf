#!/usr/bin/env python3
"""The page of `charrnn inspect` in a real browser, on a model that must
remember whether a double quote is open.

Writes a text whose words come from one set of letters (a-m) outside double
quotes and from another (n-z) inside them, the quotes opened and closed
after several words, so that the model can only predict the next word's
letters by remembering the quote. Trains a small LSTM on it with the real
binary, runs `charrnn inspect` on another text of the same kind, opens the
page from its file:// URL in Debian's chromium (headless, through
chromium-driver and selenium) and checks, as a user reads them, that the
ranked list starts with a unit for in_quotes with |r| >= 0.5, that picking
a unit colours the text one element per character with each value on
hover, and that its activation trace is drawn.

Usage: check_inspect.py CHARRNN_BINARY WORK_DIR [SEED]   (run by ctest; SEED
seeds the text and the training, 1 by default)
Exits 77 (skipped) when selenium, chromium or chromium-driver is missing or
the browser does not start; non-zero on any failed check.
"""
import os
import random
import re
import shutil
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, ".."))
from script_support import charrnn, check, chromium_or_skip, finish, wait_for  # noqa: E402

OUTSIDE = "lamb ham face bad fig jade milk cab deal kale glad hide".split()  # letters a-m only
INSIDE = "sun rust top row zoo tour vow nut opus stow pour yurt".split()     # letters n-z only
READ = 5000  # characters inspect reads

CONFIG = """{
  "data":   { "path": "%(data)s", "val_fraction": 0.1 },
  "model":  { "cell": "lstm", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0 },
  "train":  { "batch_size": 16, "seq_length": 100, "learning_rate": 0.01, "steps": %(steps)d,
              "batching": "sequential", "lr_schedule": "constant", "warmup_steps": 0, "weight_decay": 0,
              "eval_every": 100, "seed": %(seed)d, "device": "cpu", "threads": 1, "checkpoint": "%(checkpoint)s" },
  "sample": { "prime": "lamb ", "length": 80 }
}
"""


def make_text(path, chars, seed):
    """Runs of 3-10 words from OUTSIDE, then 3-10 words from INSIDE in double
    quotes, and so on; lines broken after about 60 characters."""
    rng = random.Random(seed)
    words, quoted = [], False
    while sum(len(w) + 1 for w in words) < chars:
        run = [rng.choice(INSIDE if quoted else OUTSIDE) for _ in range(rng.randint(3, 10))]
        if quoted:
            run[0], run[-1] = '"' + run[0], run[-1] + '"'
        words.extend(run)
        quoted = not quoted
    text, line = "", 0
    for w in words:
        if line + len(w) > 60:
            text, line = text + "\n", 0
        elif line:
            text, line = text + " ", line + 1
        text, line = text + w, line + len(w)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def main():
    binary, work = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    browser = chromium_or_skip(work)
    try:
        return run(browser, binary, work, seed)
    finally:
        browser.quit()


def run(browser, binary, work, seed):
    corpus, held_out = os.path.join(work, "quotes.txt"), os.path.join(work, "held_out.txt")
    config, checkpoint = os.path.join(work, "config.json"), os.path.join(work, "quotes.pt")
    make_text(corpus, 40000, seed)
    make_text(held_out, READ + 1000, seed + 1000)
    with open(config, "w", encoding="utf-8") as f:
        f.write(CONFIG % {"data": corpus, "steps": 400, "seed": seed, "checkpoint": checkpoint})
    charrnn(binary, "train", "--config", config)

    page = os.path.join(work, "page", "inspect.html")
    printed = charrnn(binary, "inspect", "--checkpoint", checkpoint, "--data", held_out, "--out", page,
                      "--max-chars", str(READ), "--top", "10")
    print(printed, end="")
    listed = re.findall(r"^\s+(\d+)\s+([hc])\s+(\d+)\s+(\w+)\s+(-?\d\.\d+)$", printed, re.M)
    check(len(listed) == 10, f"inspect prints the 10 units of the list (got {len(listed)})")
    check(f"wrote {page}" in printed, "inspect says where the page is")

    browser.get("file://" + page)
    wait_for(lambda: browser.execute_script("return document.querySelectorAll('#ranking tbody tr').length"), 30,
             "the ranked list")
    rows = browser.execute_script("""
        return Array.from(document.querySelectorAll('#ranking tbody tr')).map((tr) => ({
          layer: tr.querySelector('td.layer').textContent, state: tr.querySelector('td.state').textContent,
          unit: tr.querySelector('td.unit').textContent, feature: tr.querySelector('td.feature').textContent,
          r: tr.querySelector('td.r').textContent}));""")
    check(len(rows) == 10, f"the page lists 10 units (got {len(rows)})")
    first = rows[0]
    r = float(first["r"])
    # the margin: the strongest correlation of any unit with any other feature
    other = browser.execute_script("""
        const data = JSON.parse(document.getElementById('inspect-data').textContent);
        const k = data.features.findIndex((f) => f.name === 'in_quotes');
        let best = [0, ''];
        for (const u of data.units) u.r.forEach((r, j) => {
          if (j !== k && r !== null && Math.abs(r) > best[0]) best = [Math.abs(r), data.features[j].name]; });
        return best;""")
    print(f"first: layer {first['layer']} {first['state']} unit {first['unit']}, {first['feature']} r = {r:+.3f}; "
          f"strongest other feature: {other[1]} |r| = {other[0]:.3f}")
    check(first["feature"] == "in_quotes", f"the first unit follows in_quotes (got {first['feature']})")
    check(abs(r) >= 0.5, f"with |r| >= 0.5 (got {r:+.3f})")
    check(listed and listed[0][3] == "in_quotes" and abs(float(listed[0][4]) - r) < 0.0015,
          "the page's first entry is the one inspect printed first")

    # pick another unit with the form, then the first entry again with its button
    browser.find_element("css selector", "#unit").clear()
    browser.find_element("css selector", "#unit").send_keys("5\n")
    wait_for(lambda: "unit 5" in browser.find_element("id", "unit-name").text, 10, "the form to pick unit 5")
    browser.find_element("css selector", "#ranking tbody tr:first-child button.show").click()
    name = f"layer {first['layer']}, {first['state']}, unit {first['unit']}"
    wait_for(lambda: browser.find_element("id", "unit-name").text == name, 10, "the show button to pick the unit")
    check(True, f"the show button picks {name}")

    spans = browser.execute_script("""
        const spans = document.querySelectorAll('#text > span');
        return {count: spans.length, titles: Array.from(spans).map((s) => s.title),
                coloured: Array.from(spans).filter((s) => s.style.backgroundColor !== '').length};""")
    check(spans["count"] == READ, f"the text has one element per character read (got {spans['count']} for {READ})")
    check(spans["coloured"] == READ, "each of them is coloured")
    values = [re.search(r": (-?\d\.\d{3})$", t) for t in spans["titles"]]
    check(all(values), "each one's title gives its activation to 3 decimals")
    inside = [float(v.group(1)) for v, q in zip(values, in_quotes(browser)) if v and q]
    outside = [float(v.group(1)) for v, q in zip(values, in_quotes(browser)) if v and not q]
    mean_in, mean_out = sum(inside) / len(inside), sum(outside) / len(outside)
    print(f"mean activation inside quotes {mean_in:+.3f}, outside {mean_out:+.3f}")
    check((mean_in - mean_out) * r > 0, "the values shown differ inside and outside quotes as r's sign says")

    from selenium.webdriver.common.action_chains import ActionChains
    target = browser.find_elements("css selector", "#text > span")[123]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", target)
    ActionChains(browser).move_to_element(target).perform()
    readout = wait_for(lambda: "character 123 " in browser.find_element("id", "readout").text and
                       browser.find_element("id", "readout").text, 10, "the readout of the hovered character")
    check(readout.endswith(values[123].group(1)), f"hovering a character shows its value ({readout!r})")

    points = browser.execute_script("return document.querySelector('#trace polyline').getAttribute('points')")
    check(points is not None and len(points.split()) == READ, "the trace has a point per character")
    box = browser.execute_script("""const b = document.querySelector('#trace polyline').getBBox();
                                    return [b.width, b.height];""")
    check(box[0] > 900 and box[1] > 10, f"the trace spans the plot ({box})")
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    check(not errors, f"no errors in the browser's console ({errors[:2]})")
    return finish()


def in_quotes(browser, cache={}):
    """in_quotes for each character of the page's text, as text_features() defines it."""
    if "v" not in cache:
        text = browser.execute_script("return JSON.parse(document.getElementById('inspect-data').textContent).text")
        quoted, values = False, []
        for c in text:
            if c == '"':
                quoted = not quoted
            values.append(quoted)
        cache["v"] = values
    return cache["v"]


if __name__ == "__main__":
    sys.exit(main())
