// charrnn.js: runs a model that `charrnn export --format web` wrote, in a
// page or under Node, with no dependency. It reproduces `charrnn generate`:
// the same prime handling (char_fold.cpp's replacements), the same sampler
// (sampler.cpp: xorshift128 uniforms, softmax(logits / T), descending order
// with ties by id, top-k, top-p on double cdfs, inverse CDF), the same stop
// rule (generate.cpp's StopFilter), so a seed gives charrnn's very text.
//
//   import { load } from "./charrnn.js";
//   const model = await load("model/");            // a URL in a page, a folder under Node
//   const text = await model.generate({ prime: "The ", length: 200, seed: 1, onText: (s) => show(s) });
//   const probs = await model.next("The ");         // next-character probabilities, by id
//   model.backend                                   // "wasm-simd" or "js": which products run
//
// What it leaves out: batches of samples, training, anything on a GPU.
// The folder's format is docs' web-format (format_version 1): manifest.json
// and raw float32 files as ml5.js reads them, vocab.json, charrnn.json.
//
// The matrix-vector products, nearly all of a step's time, run in
// charrnn.wasm (src/web/charrnn.wat: WebAssembly SIMD, float32 as charrnn
// computes) when the folder has it and the engine has SIMD; otherwise in
// plain JS, float64 over float64 weights. Either way charrnn's own float32
// kernels sum in another order, so probabilities agree to about 1e-6, not
// bit for bit. A seeded draw could in principle land on the other side of a
// cdf boundary from charrnn's; the margin is that small, so in practice the
// text is the same.
//
// Shape legend: V vocabulary, E embedding, H hidden, G gates (LSTM 4, GRU 3, RNN 1).

const FORMAT = "charrnn-web";
const FORMAT_VERSION = 1;
const CELLS = { lstm: 4, gru: 3, rnn: 1 };  // gate rows per hidden unit
const CHECK_TOLERANCE = 1e-4;               // float32 weights, float64 arithmetic: far inside this
const YIELD_EVERY_MS = 25;                  // a page stays responsive while generating

// ---------------------------------------------------------------- reading a folder

const isNode = typeof process !== "undefined" && !!(process.versions && process.versions.node);

// Reads files of the folder: fetch in a page (and for http(s) URLs under
// Node), node:fs otherwise. node:fs is imported only when used, so the
// module loads in a browser.
async function folderReader(source) {
  const text = String(source);
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) && !/^file:/i.test(text);
  if (isNode && !url) {
    const fs = await import("node:fs/promises");
    const path = await import("node:path");
    const dir = text.startsWith("file:") ? (await import("node:url")).fileURLToPath(text) : text;
    const read = async (name, optional) => {
      const file = path.join(dir, name);
      try {
        return await fs.readFile(file);
      } catch (e) {
        if (optional && e.code === "ENOENT") return null;
        throw new Error(`charrnn.js: cannot read ${file}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
      }
    };
    const bytes = async (name, optional) => {
      const b = await read(name, optional);
      return b && b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    };
    return {
      where: dir,
      text: async (name) => (await read(name)).toString("utf8"),
      bytes: (name) => bytes(name, false),
      optionalBytes: (name) => bytes(name, true),  // null when the file is absent
    };
  }
  const base = text.endsWith("/") ? text : text + "/";
  const get = async (name, optional) => {
    let response;
    try {
      response = await fetch(base + name);
    } catch (e) {
      throw new Error(`charrnn.js: cannot fetch ${base + name}: ${e.message}`);
    }
    if (optional && response.status === 404) return null;
    if (!response.ok) throw new Error(`charrnn.js: cannot fetch ${base + name}: HTTP ${response.status}`);
    return response;
  };
  return {
    where: base,
    text: async (name) => (await get(name)).text(),
    bytes: async (name) => (await get(name)).arrayBuffer(),
    optionalBytes: async (name) => {  // null when the file is absent (HTTP 404)
      const response = await get(name, true);
      return response && response.arrayBuffer();
    },
  };
}

function parseJson(text, name) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`charrnn.js: ${name} is not valid JSON: ${e.message}`);
  }
}

// A manifest names files by plain name in the folder: anything that could
// reach outside it (a path, "..", an absolute path or a URL) is refused
// rather than fetched.
function checkFilename(name, key) {
  if (typeof name !== "string" || name === "" || name === "." || name === ".." || /[\/\\:]/.test(name) ||
      name.includes("..") || /[\u0000-\u001f]/.test(name)) {
    throw new Error(`charrnn.js: manifest.json: "${key}" has filename ${JSON.stringify(name)}, ` +
                    `which is not a plain file name inside the folder`);
  }
}

const sameShape = (a, b) => a.length === b.length && a.every((n, i) => n === b[i]);

// ---------------------------------------------------------------- the sampler (sampler.cpp)

/** Marsaglia's xorshift128 on 32-bit words, seeded as SampleRng(uint64 seed). */
export class SampleRng {
  constructor(seed) {
    const s = BigInt.asUintN(64, BigInt(seed));
    this.x = Number(s & 0xffffffffn) >>> 0;
    this.y = Number(s >> 32n) >>> 0;
    this.z = 0x243f6a88;
    this.w = 0xb7e15162;
    for (let i = 0; i < 32; i++) this.nextU32();  // spreads nearby seeds apart, as charrnn does
  }
  nextU32() {
    const t = (this.x ^ (this.x << 11)) >>> 0;
    this.x = this.y;
    this.y = this.z;
    this.z = this.w;
    this.w = (this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return this.w;
  }
  /** 24 random bits in [0, 1): exact in float32 and double alike. */
  nextUniform() {
    return (this.nextU32() >>> 8) / 16777216;
  }
}

/** Sorts, sums and picks for one row of probabilities; scratch kept between calls. */
class RowSampler {
  constructor(V) {
    this.order = new Int32Array(V);
    this.cdf = new Float64Array(V);
  }
  /** probs: V probabilities; u in [0, 1). Returns the id (RowSampler::pick). */
  pick(probs, V, topK, topP, u) {
    const order = this.order, cdf = this.cdf;
    for (let i = 0; i < V; i++) order[i] = i;
    // descending, ties by id: what charrnn's stable descending sort gives
    order.sort((a, b) => probs[b] - probs[a] || a - b);
    const k = topK > 0 && topK < V ? topK : V;
    let sum = 0;
    for (let i = 0; i < k; i++) cdf[i] = sum += probs[order[i]];
    let kept = k;
    if (topP < 1) {
      const limit = topP * cdf[k - 1];
      kept = 1;  // the most likely character always stays
      while (kept < k && cdf[kept - 1] < limit) kept++;
    }
    const target = u * cdf[kept - 1];
    let position = 0;
    while (position < kept && cdf[position] <= target) position++;
    return order[Math.min(position, kept - 1)];
  }
}

/** softmax(logits / temperature) into probs (float64). */
function softmax(logits, V, temperature, probs) {
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += probs[i] = Math.exp((logits[i] - max) / temperature);
  for (let i = 0; i < V; i++) probs[i] /= sum;
  if (!(sum > 0) || !Number.isFinite(sum)) throw new Error("charrnn.js: the model produced non-finite logits");
}

function argmax(values, V) {
  let best = 0;
  for (let i = 1; i < V; i++) if (values[i] > values[best]) best = i;  // the first of equal maxima, as torch
  return best;
}

// ---------------------------------------------------------------- prime folding (char_fold.cpp)

// The same fixed table as charrnn: a character, the replacements tried in
// order, and (ASCII quotes) those tried at the start or after an opener.
const FOLD = new Map([
  ["'", [["\u2019", "\u2018"], ["\u2018", "\u2019"]]],
  ['"', [["\u201D", "\u201C", "\u00BB"], ["\u201C", "\u201D", "\u00AB"]]],
  ["\u2018", [["'", "\u2019"]]], ["\u2019", [["'", "\u2018"]]], ["\u201A", [["'", ","]]],
  ["\u201B", [["'", "\u2018"]]], ["\u2032", [["'", "\u2019"]]], ["`", [["'", "\u2018"]]],
  ["\u00B4", [["'", "\u2019"]]], ["\u2039", [["'", "\u2018"]]], ["\u203A", [["'", "\u2019"]]],
  ["\u201C", [['"', "\u201D"]]], ["\u201D", [['"', "\u201C"]]], ["\u201E", [['"', "\u201C"]]],
  ["\u201F", [['"', "\u201C"]]], ["\u2033", [['"', "\u201D"]]], ["\u00AB", [['"', "\u201C"]]],
  ["\u00BB", [['"', "\u201D"]]],
  ["-", [["\u2010", "\u2013", "\u2014"]]], ["\u2010", [["-", "\u2011"]]], ["\u2011", [["-", "\u2010"]]],
  ["\u2012", [["-", "\u2013"]]], ["\u2013", [["-", "\u2014"]]], ["\u2014", [["\u2013", "--", "-"]]],
  ["\u2015", [["\u2014", "\u2013", "--", "-"]]], ["\u2212", [["-", "\u2013"]]],
  ["\u2026", [["..."]]],
  ..."\t\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u202F\u205F\u3000"
    .split("").map((c) => [c, [[" "]]]),
  ..."\r\u0085\u2028\u2029".split("").map((c) => [c, [["\n"]]]),
  ..."\u200B\u200C\u200D\u2060\uFEFF\u00AD".split("").map((c) => [c, [[""]]]),
]);
const OPENERS = " \t\n\r\u00A0\u2003([{<\u201C\u2018\u00AB\u2039\u2014\u2013-/";
const isMark = (c) => /^\p{Mn}$/u.test(c);

function describeChar(c) {
  const code = "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  return /^[\p{L}\p{N}\p{P}\p{S}]$/u.test(c) ? `'${c}' (${code})` : code;
}

class CharFolder {
  constructor(ids) {
    this.ids = ids;  // Map: character -> id
    const seq = new Map();
    if (ids.has("\n") && !ids.has("\r")) seq.set("\r\n", "\n");
    // a precomposed character the vocabulary has also matches its decomposed form
    for (const v of ids.keys()) {
      const d = v.normalize("NFD");
      if ([...d].length >= 2 && !this.known(d)) seq.set(d, v);
    }
    this.sequences = [...seq.keys()].sort((a, b) => [...b].length - [...a].length);  // longest first
    this.targets = seq;
  }
  known(text) {
    for (const c of text) if (!this.ids.has(c)) return false;
    return true;
  }
  replacement(c, opening) {
    const entry = FOLD.get(c);
    if (entry) {
      const candidates = opening && entry[1] ? entry[1] : entry[0];
      return candidates.find((t) => this.known(t));
    }
    // Unicode's equivalences, for characters that have a decomposition
    const nfkd = c.normalize("NFKD");
    if (nfkd === c && !isMark(c)) return undefined;
    const compatible = c.normalize("NFKC");
    if (compatible !== c && compatible !== "" && this.known(compatible)) return compatible;
    const base = [...nfkd].filter((d) => !isMark(d)).join("");  // "é" -> "e"; a stray mark -> nothing
    if (base !== c && this.known(base)) return base;
    return undefined;
  }
  /** {text, substitutions: [{from, to, count}]}: characters the vocabulary lacks replaced where possible. */
  fold(text) {
    const substitutions = [];
    if (this.known(text)) return { text, substitutions };
    const record = (from, to) => {
      const s = substitutions.find((t) => t.from === from && t.to === to);
      if (s) s.count++;
      else substitutions.push({ from, to, count: 1 });
    };
    let out = "", previous = "";
    for (let i = 0; i < text.length;) {
      const key = this.sequences.find((k) => text.startsWith(k, i));
      if (key) {
        out += this.targets.get(key);
        record(key, this.targets.get(key));
        previous = String.fromCodePoint(text.codePointAt(i + key.length - 1));
        i += key.length;
        continue;
      }
      const c = String.fromCodePoint(text.codePointAt(i));
      const opening = i === 0 || OPENERS.includes(previous);
      const to = this.ids.has(c) ? undefined : this.replacement(c, opening);
      if (to !== undefined) {
        out += to;
        record(c, to);
      } else {
        out += c;  // known, or with no equivalent: encode() names it
      }
      previous = c;
      i += c.length;
    }
    return { text: out, substitutions };
  }
}

// ---------------------------------------------------------------- the products

// Each layer's weights are rearranged at load time into matrices whose rows
// are the gate units, so one step is a few matrix-vector products.
// An LSTM or RNN layer above the first reads one fused [W_x W_h] row over the
// vector [x; h]; the first layer's input product is looked up instead,
// precomputed per character (embedding row times W_x plus the bias), which
// removes a third of an LSTM's work. A GRU keeps the input and hidden
// products apart, as its candidate needs them so.
//
// The matrices are stored in blocks of B rows interleaved by column
// (packed[(r / B) * B * cols + B * j + r % B] = W[r][j]): each x[j] is read
// once for B rows and the weights stream through memory in order. Row
// counts are padded to a multiple of B with zeros. Two backends hold them:
//
// WasmProducts: charrnn.wasm's gemv (src/web/charrnn.wat), B = 16, float32
// in the module's one memory, which also holds every vector a product reads
// or writes; the Model sees them as Float32Array views on it. For an LSTM
// 2x256 this runs the products at about 5 GMAC/s under Node 20.
//
// JsProducts: plain JS, B = 4, float64. Against one row at a time with 4
// accumulators this took the same products from 1.0 to 1.6 GMAC/s under
// Node 20 (Float32Array weights were slower, 1.2 GMAC/s; 8-row blocks too).

const padTo = (n, b) => Math.ceil(n / b) * b;

/** W (rows x cols, row-major) into `out` in blocks of B rows (out zeroed, padTo(rows, B) * cols long). */
function pack(W, rows, cols, B, out) {
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / B) * B * cols + (r % B);
    for (let j = 0; j < cols; j++) out[base + B * j] = W[r * cols + j];
  }
  return out;
}

/** y[r] = init[initOff + r] + W[r, :] . x[xOff ...] for r < rows (a multiple of 4), W in 4-row blocks. */
function gemv4(W, rows, cols, x, xOff, y, init, initOff) {
  let p = 0;
  for (let r = 0; r < rows; r += 4) {
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (let j = 0; j < cols; j++, p += 4) {
      const xj = x[xOff + j];
      a0 += W[p] * xj;
      a1 += W[p + 1] * xj;
      a2 += W[p + 2] * xj;
      a3 += W[p + 3] * xj;
    }
    y[r] = init[initOff + r] + a0;
    y[r + 1] = init[initOff + r + 1] + a1;
    y[r + 2] = init[initOff + r + 2] + a2;
    y[r + 3] = init[initOff + r + 3] + a3;
  }
}

/** The same for a row-major W (load time only). */
function gemvRows(W, rows, cols, x, xOff, y, init, initOff) {
  let p = 0;
  for (let r = 0; r < rows; r++, p += cols) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0, j = 0;
    for (; j + 3 < cols; j += 4) {
      s0 += W[p + j] * x[xOff + j];
      s1 += W[p + j + 1] * x[xOff + j + 1];
      s2 += W[p + j + 2] * x[xOff + j + 2];
      s3 += W[p + j + 3] * x[xOff + j + 3];
    }
    for (; j < cols; j++) s0 += W[p + j] * x[xOff + j];
    y[r] = init[initOff + r] + ((s0 + s1) + (s2 + s3));
  }
}

class JsProducts {
  constructor() {
    this.name = "js";
    this.block = 4;
  }
  reserve() {}
  vector(n) {
    return new Float64Array(n);
  }
  /** A product's matrix from W (rows x cols, row-major): {rows (padded), cols, data}. */
  matrix(W, rows, cols) {
    const padded = padTo(rows, 4);
    return { rows: padded, cols, data: pack(W, rows, cols, 4, new Float64Array(padded * cols)) };
  }
  /** y = init[initOff ...] + M x[xOff ...], M.rows of them. */
  gemv(M, x, xOff, y, init, initOff) {
    gemv4(M.data, M.rows, M.cols, x, xOff, y, init, initOff);
  }
}

class WasmProducts {
  /** module: charrnn.wasm, compiled. */
  constructor(module) {
    this.name = "wasm-simd";
    this.block = 16;
    this.module = module;
  }
  /** Sizes the memory for `floats` float32 values in all; called once, before any vector(). */
  reserve(floats) {
    this.memory = new WebAssembly.Memory({ initial: Math.ceil((4 * floats) / 65536) || 1 });
    this.kernel = new WebAssembly.Instance(this.module, { env: { memory: this.memory } }).exports.gemv;
    this.top = 0;
  }
  /** n float32, a view on the memory, 64-byte aligned (one 16-row block). */
  vector(n) {
    const bytes = 4 * padTo(n, 16);
    if (this.top + bytes > this.memory.buffer.byteLength) throw new Error("charrnn.js: internal: the wasm memory plan is short");
    const view = new Float32Array(this.memory.buffer, this.top, n);
    this.top += bytes;
    return view;
  }
  matrix(W, rows, cols) {
    const padded = padTo(rows, 16), data = pack(W, rows, cols, 16, this.vector(padded * cols));
    return { rows: padded, cols, ptr: data.byteOffset };
  }
  gemv(M, x, xOff, y, init, initOff) {
    this.kernel(M.ptr, M.rows, M.cols, x.byteOffset + 4 * xOff, y.byteOffset, init.byteOffset + 4 * initOff);
  }
}

// ---------------------------------------------------------------- the model

const sigmoid = (v) => 1 / (1 + Math.exp(-v));

class Model {
  constructor(config, tensors, vocabChars, products) {
    const { cell, num_layers: L, embedding_dim: E, hidden_size: H, vocab_size: V } = config;
    Object.assign(this, { cell, numLayers: L, embeddingDim: E, hiddenSize: H, vocabSize: V });
    this.config = config;
    this.charrnnVersion = config.charrnn_version;
    this.training = config.training;
    this.mlCompatible = !!config.ml5_compatible;
    const s = config.sample || {};
    /** The model's stored sampling defaults, under the names generate() takes. */
    this.sample = { prime: s.prime ?? "", length: s.length ?? 500, temperature: s.temperature ?? 0.8,
                    topK: s.top_k ?? 0, topP: s.top_p ?? 1, seed: s.seed ?? 0 };
    /** vocab[id]: the character of id. */
    this.vocab = vocabChars;
    this.ids = new Map(vocabChars.map((c, i) => [c, i]));
    this.folder = new CharFolder(this.ids);
    // an empty prime draws its first character by these (uniformly when they sum to 0, as charrnn)
    this.counts = config.counts.some((n) => n > 0) ? config.counts : config.counts.map(() => 1);
    /** "wasm-simd" or "js": where the matrix-vector products run. */
    this.backend = products.name;
    this.products = products;

    const G = CELLS[cell];
    const R = G * H, Rp = padTo(R, products.block), Vp = padTo(V, products.block);  // gate rows, padded
    // every float the products' memory holds (each vector is padded to 16 by WasmProducts)
    const v16 = (n) => padTo(n, 16);
    let floats = v16(Vp * H) + 2 * v16(Vp);
    for (let l = 0; l < L; l++) {
      const n = l === 0 ? E : H;
      floats += 4 * v16(Rp) + v16(n + H);                                  // bx, bh, gates, gx; xh
      floats += l === 0 ? v16(V * Rp) + v16(Rp * H) : cell === "gru" ? v16(Rp * n) + v16(Rp * H) : v16(Rp * (n + H));
    }
    products.reserve(floats);
    const vector = (n) => products.vector(n);

    const w = config.weights;
    const emb = tensors[w.embedding];                       // [V, E]
    const outW = tensors[w.output_weight];                  // [H, V], TF layout
    const rowsOut = new Float64Array(V * H);                // [V, H]: a row per character
    for (let h = 0; h < H; h++) for (let v = 0; v < V; v++) rowsOut[v * H + h] = outW[h * V + v];
    this.outW = products.matrix(rowsOut, V, H);
    this.outB = vector(Vp);
    this.outB.set(tensors[w.output_bias]);
    this.layers = [];
    for (let l = 0; l < L; l++) {
      const n = l === 0 ? E : H;  // this layer's input size
      const names = w.layers[l];
      // Wx [G*H, n], Wh [G*H, H], bx, bh [G*H] in PyTorch's gate order
      // (LSTM i, f, g, o; GRU r, z, n; RNN one block)
      const Wx = new Float64Array(G * H * n), Wh = new Float64Array(G * H * H);
      const bx = vector(Rp), bh = vector(Rp);
      if (cell === "lstm") {
        const K = tensors[names.kernel], B = tensors[names.bias];  // [n + H, 4H] in TF order i, j, f, o
        const tfBlock = [0, 2, 1, 3];                              // PyTorch's i, f, g, o in TF's columns
        for (let g = 0; g < 4; g++) {
          for (let u = 0; u < H; u++) {
            const row = g * H + u, col = tfBlock[g] * H + u;
            for (let i = 0; i < n; i++) Wx[row * n + i] = K[i * 4 * H + col];
            for (let i = 0; i < H; i++) Wh[row * H + i] = K[(n + i) * 4 * H + col];
            bx[row] = B[col] + (g === 1 ? 1.0 : 0);  // TF's forget_bias, which the export took out
          }
        }
      } else {
        Wx.set(tensors[names.weight_ih]);
        Wh.set(tensors[names.weight_hh]);
        bx.set(tensors[names.bias_ih]);
        bh.set(tensors[names.bias_hh]);
      }
      const fused = cell !== "gru";
      const layer = { n, G };
      if (fused) for (let r = 0; r < G * H; r++) bx[r] += bh[r];
      if (l === 0) {
        // the input product of every character: table[id] = emb[id] . Wx^T + bx
        layer.table = vector(V * Rp);
        const row = new Float64Array(Rp);  // summed in float64 whatever the backend
        for (let v = 0; v < V; v++) {
          gemvRows(Wx, R, n, emb, v * E, row, bx, 0);
          layer.table.set(row, v * Rp);
        }
        layer.W = products.matrix(Wh, R, H);  // then only the hidden product is left
        layer.xh = vector(H);
        layer.hOff = 0;
      } else if (fused) {
        const W = new Float64Array(R * (n + H));
        for (let r = 0; r < R; r++) {
          W.set(Wx.subarray(r * n, (r + 1) * n), r * (n + H));
          W.set(Wh.subarray(r * H, (r + 1) * H), r * (n + H) + n);
        }
        layer.W = products.matrix(W, R, n + H);
        layer.b = bx;
        layer.xh = vector(n + H);  // [x; h]
        layer.hOff = n;
      } else {
        layer.Wx = products.matrix(Wx, R, n);
        layer.bx = bx;
        layer.W = products.matrix(Wh, R, H);
        layer.xh = vector(n + H);  // [x; h]; Wx reads x, W reads h
        layer.hOff = n;
      }
      layer.bh = bh;
      layer.c = new Float64Array(H);           // LSTM's cell state
      layer.gates = vector(Rp);                // hidden (or fused) product
      layer.gx = vector(Rp);                   // GRU: input product
      layer.rows = Rp;
      this.layers.push(layer);
    }
    this.logits = vector(Vp);
    this.probs = new Float64Array(V);
    this.sampler = new RowSampler(V);
  }

  resetState() {
    for (const layer of this.layers) {
      layer.xh.fill(0);
      layer.c.fill(0);
    }
  }

  /** Reads character `id`; this.logits then holds the next character's logits. */
  step(id) {
    const H = this.hiddenSize, cell = this.cell, layers = this.layers, L = layers.length, P = this.products;
    for (let l = 0; l < L; l++) {
      const layer = layers[l], xh = layer.xh, hOff = layer.hOff, gates = layer.gates, rows = layer.rows;
      if (l === 0) {
        if (cell === "gru") {
          P.gemv(layer.W, xh, 0, gates, layer.bh, 0);
        } else {
          P.gemv(layer.W, xh, 0, gates, layer.table, id * rows);
        }
      } else if (cell === "gru") {
        P.gemv(layer.Wx, xh, 0, layer.gx, layer.bx, 0);  // Wx reads the first n of [x; h]
        P.gemv(layer.W, xh, hOff, gates, layer.bh, 0);
      } else {
        P.gemv(layer.W, xh, 0, gates, layer.b, 0);
      }
      const above = l + 1 < L ? layers[l + 1].xh : null;  // the next layer's input is this new h
      if (cell === "lstm") {
        const c = layer.c;
        for (let u = 0; u < H; u++) {
          const i = sigmoid(gates[u]), f = sigmoid(gates[H + u]);
          const g = Math.tanh(gates[2 * H + u]), o = sigmoid(gates[3 * H + u]);
          const cu = f * c[u] + i * g;
          c[u] = cu;
          xh[hOff + u] = o * Math.tanh(cu);
        }
      } else if (cell === "gru") {
        // the input product: the first layer's from its table, the others' computed above
        const gx = l === 0 ? layer.table : layer.gx, g0 = l === 0 ? id * rows : 0;
        for (let u = 0; u < H; u++) {
          const r = sigmoid(gx[g0 + u] + gates[u]), z = sigmoid(gx[g0 + H + u] + gates[H + u]);
          const nn = Math.tanh(gx[g0 + 2 * H + u] + r * gates[2 * H + u]);
          xh[hOff + u] = (1 - z) * nn + z * xh[hOff + u];
        }
      } else {
        for (let u = 0; u < H; u++) xh[hOff + u] = Math.tanh(gates[u]);
      }
      if (above) for (let u = 0; u < H; u++) above[u] = xh[hOff + u];
    }
    const top = layers[L - 1];
    P.gemv(this.outW, top.xh, top.hOff, this.logits, this.outB, 0);
  }

  /** Probabilities after reading ids from a zero state (temperature 1). */
  probabilitiesAfter(ids) {
    this.resetState();
    for (const id of ids) this.step(id);
    const probs = new Float64Array(this.vocabSize);
    softmax(this.logits, this.vocabSize, 1, probs);
    return probs;
  }

  /** {text, substitutions, ids}: `text` folded to the vocabulary; throws naming what stays unknown. */
  encode(text, what = "prime") {
    if (typeof text !== "string") throw new TypeError(`charrnn.js: ${what} must be a string`);
    if (/\p{Cs}/u.test(text)) throw new Error(`charrnn.js: ${what} is not valid Unicode (a lone surrogate)`);
    const folded = this.folder.fold(text);
    const unknown = [...new Set([...folded.text].filter((c) => !this.ids.has(c)))];
    if (unknown.length) {
      const names = unknown.slice(0, 10).map(describeChar).join(", ") +
                    (unknown.length > 10 ? ` and ${unknown.length - 10} more` : "");
      throw new Error(`charrnn.js: ${what} contains ${unknown.length} character(s) the model never saw in training: ${names}`);
    }
    return { ...folded, ids: Array.from(folded.text, (c) => this.ids.get(c)) };
  }

  /**
   * Next-character probabilities after reading `text` from a zero state,
   * at temperature 1, as an array indexed by vocabulary id.
   */
  async next(text) {
    const { ids } = this.encode(text, "text");
    if (ids.length === 0) throw new Error("charrnn.js: next() needs at least one character to read");
    return Array.from(this.probabilitiesAfter(ids));
  }

  /**
   * Generates as `charrnn generate` does and resolves to what it prints: the
   * (folded) prime followed by the continuation, which ends with the stop
   * text when there is one and it came. Options left out take the model's
   * sample defaults: prime, length, temperature (<= 0 picks the most likely
   * character), topK (0: all), topP (1: all), seed (< 0: a random one), and
   * stop ("" never). onText(piece, scores) gets the text as it comes;
   * with logprobs N (0..5) each generated character comes alone, with
   * scores = {logprob, top}: its natural-log probability under the model's
   * own distribution (temperature 1, before top-k and top-p, as the
   * server's logprobs) and the N most likely characters as [char, logprob]
   * pairs, most likely first. onStart({seed, prime, substitutions}) is told
   * once, before any text; `signal` (an AbortSignal) stops it, rejecting
   * with an AbortError.
   */
  async generate(options = {}) {
    const o = { ...this.sample, stop: "" };
    for (const [k, v] of Object.entries(options)) if (v !== undefined && v !== null) o[k] = v;
    const { length, temperature, topK, topP, stop, onText, onStart, signal } = o;
    const logprobs = o.logprobs ?? -1;
    if (!Number.isInteger(logprobs) || logprobs > 5) throw new RangeError(`charrnn.js: logprobs must be an integer in [0, 5], got ${logprobs}`);
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`charrnn.js: length must be an integer >= 0, got ${length}`);
    if (!(temperature >= 0 && temperature <= 2)) throw new RangeError(`charrnn.js: temperature must be in [0, 2], got ${temperature}`);
    if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`charrnn.js: topK must be an integer >= 0, got ${topK}`);
    if (!(topP > 0 && topP <= 1)) throw new RangeError(`charrnn.js: topP must be in (0, 1], got ${topP}`);
    if (typeof stop !== "string") throw new TypeError("charrnn.js: stop must be a string");
    let seed = o.seed;
    if (typeof seed !== "bigint" && !Number.isInteger(seed)) throw new RangeError(`charrnn.js: seed must be an integer, got ${seed}`);
    if (seed < 0) seed = Math.floor(Math.random() * 2 ** 31);  // as charrnn: a negative seed picks one
    const prime = this.encode(o.prime, "prime");
    if (onStart) onStart({ seed, prime: prime.text, substitutions: prime.substitutions });

    const V = this.vocabSize, logits = this.logits, probs = this.probs, chars = this.vocab;
    const greedy = temperature <= 0 || topK === 1;  // picks the argmax and draws no uniform
    const rng = new SampleRng(seed);
    const pick = () => {
      if (greedy) return argmax(logits, V);
      softmax(logits, V, temperature, probs);
      return this.sampler.pick(probs, V, topK, topP, rng.nextUniform());
    };
    let text = "";
    const emit = (piece, scores) => {
      text += piece;
      if (onText) onText(piece, scores);
    };
    // logprobs: the drawn character against the logits it was drawn from
    const score = (id) => {
      if (logprobs < 0) return undefined;
      let largest = -Infinity;
      for (let i = 0; i < V; i++) largest = Math.max(largest, logits[i]);
      let sum = 0;
      for (let i = 0; i < V; i++) sum += Math.exp(logits[i] - largest);
      const normaliser = largest + Math.log(sum);
      const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
      return { logprob: logits[id] - normaliser,
               top: order.slice(0, logprobs).map((i) => [chars[i], logits[i] - normaliser]) };
    };
    // StopFilter: a sample ends once its continuation contains the stop text
    let tail = "";
    const stopped = (piece) => {
      if (!stop) return false;
      tail = (tail + piece).slice(-stop.length);
      return tail === stop;
    };
    let lastYield = now();
    const pause = async () => {
      if (signal && signal.aborted) throw abortError(signal);
      if (now() - lastYield >= YIELD_EVERY_MS) {
        await yieldToEventLoop();
        if (signal && signal.aborted) throw abortError(signal);
        lastYield = now();
      }
    };

    this.resetState();
    let done = false;
    if (prime.ids.length === 0) {
      // no prime: the first character is drawn by corpus frequency at
      // temperature 1 (one uniform, whatever the settings), then read from a zero state
      for (let i = 0; i < V; i++) logits[i] = Math.log(this.counts[i]);
      softmax(logits, V, 1, probs);
      const first = this.sampler.pick(probs, V, 0, 1, rng.nextUniform());
      emit(chars[first]);
      done = stopped(chars[first]);
      this.step(first);
    } else {
      emit(prime.text);
      for (let i = 0; i < prime.ids.length; i++) {
        this.step(prime.ids[i]);
        if ((i & 63) === 63) await pause();
      }
    }
    for (let i = 0, id = -1; i < length && !done; i++) {
      if (i > 0) this.step(id);  // reads the character drawn last
      id = pick();
      emit(chars[id], score(id));
      done = stopped(chars[id]);
      if ((i & 15) === 15) await pause();
    }
    return text;
  }
}

const now = () => (typeof performance !== "undefined" ? performance.now() : Date.now());

function abortError(signal) {
  if (signal.reason instanceof Error) return signal.reason;
  const e = new Error("charrnn.js: generation stopped");
  e.name = "AbortError";
  return e;
}

// A macrotask boundary without setTimeout's 4 ms clamp: pages get input and
// paint in between, Node its I/O.
let channel = null;
function yieldToEventLoop() {
  if (typeof setImmediate === "function") return new Promise((resolve) => setImmediate(resolve));
  if (typeof MessageChannel === "function") {
    if (!channel) {
      channel = new MessageChannel();
      channel.queue = [];
      channel.port1.onmessage = () => channel.queue.shift()();
    }
    return new Promise((resolve) => {
      channel.queue.push(resolve);
      channel.port2.postMessage(0);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

// ---------------------------------------------------------------- load

// A module whose one function returns a v128: it validates only where the
// engine has WebAssembly SIMD (wasm-feature-detect's probe).
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
                                   65, 0, 253, 15, 253, 98, 11]);
const BACKENDS = ["auto", "wasm-simd", "js"];

/**
 * The products' backend: charrnn.wasm's when the folder has it and the
 * engine runs SIMD (or backend is "wasm-simd", which then requires both),
 * plain JS when backend is "js" or either is missing. A charrnn.wasm that is
 * there but not the kernel is an error, never a silent fallback.
 */
async function productsFor(folder, backend) {
  if (!BACKENDS.includes(backend)) {
    throw new RangeError(`charrnn.js: backend must be one of ${BACKENDS.join(", ")}, got ${JSON.stringify(backend)}`);
  }
  if (backend === "js") return new JsProducts();
  const simd = typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  const bytes = simd || backend === "wasm-simd" ? await folder.optionalBytes("charrnn.wasm") : null;
  if (backend === "wasm-simd" && !(simd && bytes)) {
    throw new Error(`charrnn.js: backend "wasm-simd" needs ${simd ? "charrnn.wasm in the folder" : "an engine with WebAssembly SIMD"}`);
  }
  if (!bytes) return new JsProducts();
  let module;
  try {
    module = await WebAssembly.compile(bytes);
  } catch (e) {
    throw new Error(`charrnn.js: charrnn.wasm is not a valid WebAssembly module (${e.message}); ` +
                    `export the folder again, or load it with {backend: "js"}`);
  }
  const gemv = WebAssembly.Module.exports(module).find((e) => e.name === "gemv" && e.kind === "function");
  const memory = WebAssembly.Module.imports(module).find((i) => i.module === "env" && i.name === "memory");
  if (!gemv || !memory) {
    throw new Error("charrnn.js: charrnn.wasm is not charrnn's kernel (no gemv export or env.memory import); export the folder again");
  }
  return new WasmProducts(module);
}

/**
 * Loads an exported folder: a URL (in a page) or a folder path (under
 * Node). Rejects with an Error naming the problem for a missing file, a bad
 * manifest, a weight file of the wrong size or shape, a vocabulary that
 * disagrees, a corrupt charrnn.wasm, or weights that do not reproduce the
 * exporter's check. options.backend: "auto" (the default: charrnn.wasm's
 * SIMD products where the folder has it and the engine runs them, plain JS
 * otherwise), "wasm-simd" (required) or "js"; model.backend says which runs.
 */
export async function load(source, options = {}) {
  const folder = await folderReader(source);
  const products = await productsFor(folder, options.backend ?? "auto");
  const config = parseJson(await folder.text("charrnn.json"), "charrnn.json");
  if (config.format !== FORMAT || config.format_version !== FORMAT_VERSION) {
    throw new Error(`charrnn.js: charrnn.json is format ${JSON.stringify(config.format)} version ` +
                    `${JSON.stringify(config.format_version)}; this runtime reads "${FORMAT}" version ${FORMAT_VERSION}`);
  }
  const { cell, num_layers: L, embedding_dim: E, hidden_size: H, vocab_size: V } = config;
  if (!(cell in CELLS)) throw new Error(`charrnn.js: charrnn.json: cell must be lstm, gru or rnn, got ${JSON.stringify(cell)}`);
  for (const [k, v] of Object.entries({ num_layers: L, embedding_dim: E, hidden_size: H, vocab_size: V })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`charrnn.js: charrnn.json: ${k} must be a positive integer, got ${v}`);
  }
  const vocab = config.vocab;
  if (!Array.isArray(vocab) || vocab.length !== V || !vocab.every((c) => Number.isInteger(c) && c >= 0 && c <= 0x10ffff)) {
    throw new Error(`charrnn.js: charrnn.json: vocab must list vocab_size (${V}) code points`);
  }
  const chars = vocab.map((c) => String.fromCodePoint(c));
  if (!Array.isArray(config.counts) || config.counts.length !== V || !config.counts.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new Error(`charrnn.js: charrnn.json: counts must list vocab_size (${V}) counts`);
  }

  // vocab.json (ml5's) must say the same as charrnn.json
  const vocabJson = parseJson(await folder.text("vocab.json"), "vocab.json");
  const entries = Object.entries(vocabJson || {});
  if (entries.length !== V || !entries.every(([c, id]) => chars[id] === c)) {
    throw new Error(`charrnn.js: vocab.json disagrees with charrnn.json's vocab (${entries.length} entries, ` +
                    `charrnn.json has ${V})`);
  }

  // the shape each role must have
  const G = CELLS[cell], w = config.weights || {};
  const expected = new Map([[w.embedding, [V, E]], [w.output_weight, [H, V]], [w.output_bias, [V]]]);
  if (!Array.isArray(w.layers) || w.layers.length !== L) {
    throw new Error(`charrnn.js: charrnn.json: weights.layers must name the weights of ${L} layer(s)`);
  }
  w.layers.forEach((names, l) => {
    const n = l === 0 ? E : H;
    const shapes = cell === "lstm" ? { kernel: [n + H, 4 * H], bias: [4 * H] }
      : { weight_ih: [G * H, n], weight_hh: [G * H, H], bias_ih: [G * H], bias_hh: [G * H] };
    for (const [role, shape] of Object.entries(shapes)) expected.set(names && names[role], shape);
  });

  const manifest = parseJson(await folder.text("manifest.json"), "manifest.json");
  for (const [key, entry] of Object.entries(manifest || {})) checkFilename(entry && entry.filename, key);
  const tensors = {};
  await Promise.all([...expected].map(async ([key, shape]) => {
    const entry = manifest[key];
    if (typeof key !== "string" || !entry) {
      throw new Error(`charrnn.js: manifest.json has no entry ${JSON.stringify(key)}, which charrnn.json's weights name`);
    }
    if (!Array.isArray(entry.shape) || !sameShape(entry.shape, shape)) {
      throw new Error(`charrnn.js: manifest.json: "${key}" has shape ${JSON.stringify(entry.shape)}, but charrnn.json's ` +
                      `sizes (${cell}, ${L} layer(s), E ${E}, H ${H}, V ${V}) need [${shape}]`);
    }
    const bytes = await folder.bytes(entry.filename);
    const count = shape.reduce((a, b) => a * b, 1);
    if (bytes.byteLength !== 4 * count) {
      throw new Error(`charrnn.js: ${entry.filename} holds ${bytes.byteLength} bytes, but "${key}" of shape ` +
                      `[${shape}] needs ${4 * count} (float32)`);
    }
    // raw little-endian float32, whatever this machine's byte order
    const view = new DataView(bytes), values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(4 * i, true);
    tensors[key] = values;
  }));

  const model = new Model(config, tensors, chars, products);
  // the exporter's own probabilities for a fixed input: wrong weights, a
  // wrong layout or a wrong reading of the format all show up here
  const check = config.check;
  if (!check || !Array.isArray(check.ids) || !Array.isArray(check.probabilities) || check.probabilities.length !== V ||
      !check.ids.every((id) => Number.isInteger(id) && id >= 0 && id < V) || check.ids.length === 0) {
    throw new Error("charrnn.js: charrnn.json has no usable check (ids and vocab_size probabilities)");
  }
  const got = model.probabilitiesAfter(check.ids);
  let worst = 0, at = 0;
  for (let i = 0; i < V; i++) {
    const d = Math.abs(got[i] - check.probabilities[i]);
    if (!(d <= worst)) [worst, at] = [d, i];
  }
  if (!(worst <= CHECK_TOLERANCE)) {
    throw new Error(`charrnn.js: the weights do not reproduce the exporter's check: probability of id ${at} is ` +
                    `${got[at]}, charrnn.json says ${check.probabilities[at]} (tolerance ${CHECK_TOLERANCE})`);
  }
  model.resetState();
  return model;
}
