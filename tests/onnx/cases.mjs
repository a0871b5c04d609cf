// Runs a charrnn ONNX model on the cases check_onnx.py writes, with whichever
// onnxruntime it is given: onnxruntime-node (check.mjs) or onnxruntime-web
// in a browser (page.html), so that both run the very same calls.
//
// A case: {ids: [[id, ...], ...] (B rows of T), h0: [...] and, for an LSTM,
// c0: [...] (flat, (L, B, H)), layers, hidden, stepwise}. Whole: one run of
// all T ids. Stepwise: T runs of one id each, hn (and cn) fed back as h0
// (and c0). The result holds the logits (flat (B, T, V); stepwise, one flat
// (B, 1, V) per step), their dims and the last hn (and cn).
export async function runCases(ort, session, cases) {
  const results = [];
  for (const c of cases) {
    const [B, T] = [c.ids.length, c.ids[0].length];
    const dims = [c.layers, B, c.hidden];
    let state = { h0: new ort.Tensor("float32", Float32Array.from(c.h0), dims) };
    if (c.c0) state.c0 = new ort.Tensor("float32", Float32Array.from(c.c0), dims);
    const ids = (rows) => new ort.Tensor("int64", BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length]);
    const runs = c.stepwise ? c.ids[0].map((_, t) => c.ids.map((row) => [row[t]])) : [c.ids];
    const result = { logits: [], dims: [] };
    for (const rows of runs) {
      const out = await session.run({ ids: ids(rows), ...state });
      result.logits.push(Array.from(out.logits.data));
      result.dims.push(out.logits.dims.map(Number));
      state = out.cn ? { h0: out.hn, c0: out.cn } : { h0: out.hn };
      result.hn = Array.from(out.hn.data);
      if (out.cn) result.cn = Array.from(out.cn.data);
    }
    results.push(result);
  }
  return results;
}
