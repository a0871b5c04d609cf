// probabilities.js: the "show probabilities" view of charrnn's two pages,
// the server's playground (served at /probabilities.js) and the web
// export's index.html (a file of the exported folder). Each character of a
// text becomes a focusable span coloured by the probability the model gave
// it, and hovering or focusing one shows the most likely characters there,
// with their probabilities, in a box beside it. The colour is never the
// only way to read a value: each span's title holds its probability, the
// box its alternatives in numbers.
//
//   import { ProbabilityView } from "./probabilities.js";
//   const view = new ProbabilityView(document.getElementById("text"));
//   view.append("e", -0.7, [["e", -0.7], ["a", -1.9]]);  // natural logs, as the API's logprobs
//
// Embedded in the binary at build time (CMakeLists.txt, kProbabilityViewSource).

/** The legend's bounds: below 5%, 5-20%, 20-50%, 50-80%, 80% and up. */
export const BOUNDS = [0.05, 0.2, 0.5, 0.8];

/** The colour class of a probability: "p0" (least likely) to "p4". */
export function bucketOf(probability) {
  let b = 0;
  while (b < BOUNDS.length && probability >= BOUNDS[b]) b++;
  return "p" + b;
}

/** A natural-log probability as a percentage with one decimal: "42.1%". */
export function percent(logprob) {
  return (100 * Math.exp(logprob)).toFixed(1) + "%";
}

/** A character as a reader can see it in a list. */
export function visible(ch) {
  return ch === "\n" ? "\u23ce (newline)" : ch === " " ? "\u2423 (space)" : ch === "\t" ? "\u21e5 (tab)" : ch;
}

// Light tints under dark text keep a contrast above 7:1; the box never sits
// under the pointer, so moving from one character to the next is not lost.
const STYLE = `
  .charrnn-probs .ch { border-radius: 2px; }
  .charrnn-probs .ch:focus { outline: 2px solid #1a4fa0; }
  .p0 { background: #f7b6b2; } .p1 { background: #fad2b4; } .p2 { background: #fcebb6; }
  .p3 { background: #e3f1c6; } .p4 { background: transparent; }
  .charrnn-legend { font-size: 0.8rem; color: #444; margin: 0.3rem 0; }
  .charrnn-legend span { padding: 0 0.4rem; border-radius: 2px; }
  .charrnn-alternatives { position: absolute; display: none; background: #fff; color: #222; border: 1px solid #888;
    box-shadow: 0 2px 6px rgba(0, 0, 0, 0.2); padding: 0.4rem 0.6rem; font-size: 0.85rem; z-index: 10;
    font-family: ui-monospace, monospace; pointer-events: none; }
  .charrnn-alternatives table { border-collapse: collapse; }
  .charrnn-alternatives td { padding: 0 0.5rem 0 0; }
  .charrnn-alternatives td.prob { text-align: right; }
  .charrnn-alternatives .chosen { font-weight: bold; }
`;

/** The legend, an element to place above the text. */
export function legend() {
  const div = document.createElement("div");
  div.className = "charrnn-legend";
  div.id = "legend";
  div.append("probability the model gave each character: ");
  const labels = ["under 5%", "5\u201320%", "20\u201350%", "50\u201380%", "80% and up"];
  labels.forEach((label, i) => {
    const span = document.createElement("span");
    span.className = "p" + i;
    span.textContent = label;
    div.append(span, " ");
  });
  div.append("; hover or focus a character for its alternatives");
  return div;
}

export class ProbabilityView {
  /** container: the element the characters go into (emptied by clear()). */
  constructor(container) {
    this.container = container;
    container.classList.add("charrnn-probs");
    if (!document.getElementById("charrnn-probs-style")) {
      const style = document.createElement("style");
      style.id = "charrnn-probs-style";
      style.textContent = STYLE;
      document.head.append(style);
    }
    this.box = document.createElement("div");
    this.box.className = "charrnn-alternatives";
    this.box.id = "alternatives";
    this.box.setAttribute("role", "tooltip");
    document.body.append(this.box);
    const show = (e) => { if (e.target.classList && e.target.classList.contains("ch")) this.show(e.target); };
    container.addEventListener("mouseover", show);
    container.addEventListener("focusin", show);
    container.addEventListener("mouseleave", () => this.hide());
    container.addEventListener("focusout", () => this.hide());
  }

  clear() {
    this.container.replaceChildren();
    this.hide();
  }

  /**
   * Adds characters: `tokens` (one character each), their natural-log
   * probabilities, and for each the alternatives as [character, logprob]
   * pairs (any order). One DOM insertion for all of them.
   */
  appendAll(tokens, logprobs, tops) {
    const fragment = document.createDocumentFragment();
    tokens.forEach((token, i) => {
      const span = document.createElement("span");
      span.textContent = token;
      span.className = "ch " + bucketOf(Math.exp(logprobs[i]));
      span.tabIndex = 0;
      span.dataset.logprob = logprobs[i];
      span.dataset.top = JSON.stringify(tops[i]);
      span.title = `${visible(token)}: ${percent(logprobs[i])}`;
      fragment.append(span);
    });
    this.container.append(fragment);
  }

  append(token, logprob, top) {
    this.appendAll([token], [logprob], [top]);
  }

  show(span) {
    const rows = JSON.parse(span.dataset.top).sort((a, b) => b[1] - a[1]);
    const table = document.createElement("table");
    for (const [ch, logprob] of rows) {
      const row = table.insertRow();
      if (ch === span.textContent) row.className = "chosen";
      row.insertCell().textContent = visible(ch);
      const cell = row.insertCell();
      cell.className = "prob";
      cell.textContent = percent(logprob);
    }
    const logprob = Number(span.dataset.logprob);
    const head = document.createElement("div");
    head.textContent = `${visible(span.textContent)}: ${percent(logprob)} (${(-logprob / Math.LN2).toFixed(2)} bits)`;
    this.box.replaceChildren(head, table);
    const r = span.getBoundingClientRect();
    this.box.style.left = `${window.scrollX + r.left}px`;
    this.box.style.top = `${window.scrollY + r.bottom + 4}px`;
    this.box.style.display = "block";
  }

  hide() {
    this.box.style.display = "none";
  }
}
