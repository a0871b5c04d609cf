// Runs a list of operations on exported web folders with the charrnn.js each
// folder carries (the copy the build embedded), the same way under Node and
// in a page: check_web.py hands the list over and compares the results with
// charrnn's own. An operation is
//   {op: "load", dir}                        -> {value: {cell, numLayers, ..., backend}}
//   {op: "generate", dir, options}           -> {value: text, streamed: the streamed pieces joined}
//   {op: "next", dir, text}                  -> {value: probabilities by id}
// each with an optional `backend` ("js", "wasm-simd"; load()'s choice when
// left out), and each result is {value} or {error: message}.
//
// Usage under Node: node run_ops.mjs OPS.json   (prints the results as JSON)

export async function runOps(ops, importRuntime) {
  const models = new Map();
  const modelOf = async ({ dir, backend }) => {
    const key = `${backend}:${dir}`;
    if (!models.has(key)) {
      const { load } = await importRuntime(dir);
      models.set(key, await load(dir, { backend }));
    }
    return models.get(key);
  };
  const results = [];
  for (const o of ops) {
    try {
      if (o.op === "load") {
        models.delete(`${o.backend}:${o.dir}`);
        const m = await modelOf(o);
        results.push({ value: { cell: m.cell, numLayers: m.numLayers, hiddenSize: m.hiddenSize, vocabSize: m.vocabSize,
                                sample: m.sample, backend: m.backend } });
      } else if (o.op === "generate") {
        let streamed = "";
        const value = await (await modelOf(o)).generate({ ...o.options, onText: (piece) => { streamed += piece; } });
        results.push({ value, streamed });
      } else if (o.op === "next") {
        results.push({ value: await (await modelOf(o)).next(o.text) });
      } else {
        throw new Error(`unknown op ${o.op}`);
      }
    } catch (e) {
      results.push({ error: String(e && e.message ? e.message : e) });
    }
  }
  return results;
}

const isMain = typeof process !== "undefined" && process.argv && process.argv[1] &&
  import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href;
if (isMain) {
  const fs = await import("node:fs/promises");
  const path = await import("node:path");
  const { pathToFileURL } = await import("node:url");
  const ops = JSON.parse(await fs.readFile(process.argv[2], "utf8"));
  const results = await runOps(ops, (dir) => import(pathToFileURL(path.resolve(dir, "charrnn.js")).href));
  process.stdout.write(JSON.stringify(results));
}
