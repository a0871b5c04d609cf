# Sourced by scripts/*.sh: installs the Debian 12 packages charrnn needs,
# asking apt only when something is missing (a second run is instant).

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to install: $*" >&2; exit 1
  fi
}

# apt_ensure PACKAGE... installs those not yet installed.
apt_ensure() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# What building and testing need. libopenblas0-pthread matters: without it
# Debian's libtorch falls back to the reference BLAS, about 25x slower.
# libgloo-dev holds the Gloo headers that c10d's process group includes
# (distributed training).
# libcpp-httplib-dev (found with pkg-config): the HTTP server of `charrnn serve`.
# libicu-dev: Unicode names and normalisation (prompt characters folded into
# the model's vocabulary).
# libonnx-dev and libprotobuf-dev: `charrnn export --format onnx` builds the
# model with ONNX's protobuf classes and checks it with ONNX's checker
# (optional in CMake; without them that export is an error).
# wabt: wat2wasm assembles charrnn.js's WebAssembly SIMD kernel
# (src/web/charrnn.wat), which web exports carry as charrnn.wasm; without it
# the build still works and charrnn.js runs its slower plain JS products.
BUILD_PACKAGES=(cmake g++ make libtorch-dev libopenblas0-pthread libcxxopts-dev nlohmann-json3-dev libgtest-dev libgloo-dev
                pkg-config libcpp-httplib-dev libicu-dev libonnx-dev libprotobuf-dev wabt)
# Python with the same torch, for the export interop test (tests/interop);
# tmux, for the test that drives `charrnn chat` on a real terminal;
# iproute2, for the test that trains across network namespaces;
# chromium, chromium-driver and python3-selenium, for the playground test in
# a real browser (tests/browser); nodejs, for the test with the official
# OpenAI client from npm (tests/openai_client); python3-onnx, for onnx's own
# checker (full_check) on the ONNX export in tests/onnx.
TEST_PACKAGES=(python3-torch tmux iproute2 chromium chromium-driver python3-selenium nodejs python3-onnx)

# npm: Debian packages it apart from nodejs; NodeSource's nodejs has it inside
# (and conflicts with Debian's npm).
ensure_npm() {
  command -v npm >/dev/null || apt_ensure npm
}
# Only for benchmarks/kernels.sh, which measures these libraries' products
# against charrnn's kernels; charrnn itself uses none of them. (libblis-dev
# registers BLIS as a libblas.so.3 alternative below OpenBLAS's priority, so
# LibTorch keeps OpenBLAS.)
KERNEL_BENCH_PACKAGES=(pkg-config libxsmm-dev libdnnl-dev libblis-dev)

# Configures and builds into build/ (Release) with every core.
build_charrnn() {
  local targets=("$@")
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  if [ ${#targets[@]} -eq 0 ]; then
    cmake --build build -j "$(nproc)"
  else
    cmake --build build -j "$(nproc)" --target "${targets[@]}"
  fi
}
