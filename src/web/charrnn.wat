;; charrnn.wat: the matrix-vector product of charrnn.js, in WebAssembly SIMD.
;;
;; A step of a charrnn model is a few products y = init + W x (the gates of
;; each layer, the logits) and a little elementwise math. The products are
;; nearly all of the time, so they alone are here; the elementwise math
;; (sigmoid, tanh, softmax) and the sampler stay in charrnn.js, which reads
;; and writes this module's memory through Float32Array views. Arithmetic is
;; float32, as charrnn's own, so the probabilities agree with charrnn's to
;; about 1e-6.
;;
;; The memory is imported: charrnn.js knows every size at load, creates one
;; memory large enough, copies the weights in once and never grows it (a grown
;; memory would detach its views). Every address below is a byte address in
;; it, 16-byte aligned.
;;
;; Weight layout ("16-row blocks"): W's rows are padded with zeros to a
;; multiple of 16 and taken 16 at a time; a block stores, for each column j in
;; order, the 16 values W[r0 .. r0+15][j]. One x[j], broadcast to the four
;; lanes of a v128, then multiplies four contiguous v128 loads into four
;; accumulators: the weights stream through memory in order, x[j] is read
;; once per 16 rows, and the four accumulators are independent chains, so an
;; add's latency does not serialise the loop. (Blocks of 4 rows, one
;; accumulator, were slower: a load and a splat of x[j] for only 4 products.)
;; Plain SIMD has no fused multiply-add (relaxed SIMD's is not in every
;; engine yet), so it is a mul and an add.
;;
;; Built by wat2wasm (Debian's wabt) and embedded in the charrnn binary;
;; `charrnn export --format web` writes it beside charrnn.js as charrnn.wasm.
(module
  (import "env" "memory" (memory 1))

  ;; y[r] = init[r] + sum_j W[r][j] * x[j] for r < rows.
  ;;   w     W in 16-row blocks (above); rows a multiple of 16, cols >= 1
  ;;   x     cols float32
  ;;   y     rows float32 (written)
  ;;   init  rows float32 (a bias, or a row of the first layer's input table)
  ;; y may be init (accumulate in place); it must not overlap x or w.
  (func (export "gemv")
    (param $w i32) (param $rows i32) (param $cols i32) (param $x i32) (param $y i32) (param $init i32)
    (local $y_end i32) (local $x_end i32) (local $xp i32) (local $xj v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (if (i32.eqz (local.get $cols)) (then (return)))
    (local.set $y_end (i32.add (local.get $y) (i32.shl (local.get $rows) (i32.const 2))))
    (local.set $x_end (i32.add (local.get $x) (i32.shl (local.get $cols) (i32.const 2))))
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_u (local.get $y) (local.get $y_end)))
        ;; the 16 accumulators start at init, so no add is left for the end
        (local.set $a0 (v128.load offset=0 (local.get $init)))
        (local.set $a1 (v128.load offset=16 (local.get $init)))
        (local.set $a2 (v128.load offset=32 (local.get $init)))
        (local.set $a3 (v128.load offset=48 (local.get $init)))
        (local.set $xp (local.get $x))
        (loop $columns
          (local.set $xj (f32x4.splat (f32.load (local.get $xp))))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load offset=0 (local.get $w)) (local.get $xj))))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (v128.load offset=16 (local.get $w)) (local.get $xj))))
          (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (v128.load offset=32 (local.get $w)) (local.get $xj))))
          (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (v128.load offset=48 (local.get $w)) (local.get $xj))))
          (local.set $w (i32.add (local.get $w) (i32.const 64)))
          (local.set $xp (i32.add (local.get $xp) (i32.const 4)))
          (br_if $columns (i32.lt_u (local.get $xp) (local.get $x_end))))
        (v128.store offset=0 (local.get $y) (local.get $a0))
        (v128.store offset=16 (local.get $y) (local.get $a1))
        (v128.store offset=32 (local.get $y) (local.get $a2))
        (v128.store offset=48 (local.get $y) (local.get $a3))
        (local.set $y (i32.add (local.get $y) (i32.const 64)))
        (local.set $init (i32.add (local.get $init) (i32.const 64)))
        (br $blocks))))
)
