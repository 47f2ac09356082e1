#!/usr/bin/env bash
# The EGNN kernel comparison of the README, repeatable: PyTorch's EGNN (benches/egnn_torch.py,
# the adjoint_samplers reference architecture) against this project's fused CPU kernels, at
# batch 256 with 2 threads, LJ-13, 3×64 and 5×128, forward+backward. The two sides take turns
# ROUNDS times (default 3) so that both see the same machine, and the best time of each is kept.
#
#   benches/egnn-pytorch.sh [ROUNDS]
#
# PyTorch goes into a virtual environment ($TORCH_VENV, default target/torch-venv) from PyPI
# (torch 2.15.0, about 5 GB with its CUDA wheels; only the CPU is used). Run it on a quiet
# machine: anything else on the two cores moves both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
venv="${TORCH_VENV:-target/torch-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "torch==2.15.0" numpy
fi
cargo bench --bench train --no-run 2>&1 | tail -n 1
bench=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/train-* | grep -v '\.d$' | head -n 1)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs) MHz"
log=$(mktemp)
for r in $(seq 1 "$rounds"); do
  OMP_NUM_THREADS=2 "$venv/bin/python" benches/egnn_torch.py --threads 2 --batch 256 --reps 5 | tee -a "$log"
  BENCH_EGNN_ONLY=1 "$bench" --bench | tee -a "$log"
done
# Best of the rounds, side by side.
python3 - "$log" <<'PY'
import re, sys
best = {}
for line in open(sys.argv[1]):
    m = re.match(r"torch (\d+)x(\d+) batch \d+: forward [\d.]+ ms, forward\+backward ([\d.]+) ms", line)
    if m:
        k = (int(m[1]), int(m[2])); best.setdefault(("torch", k), float(m[3]))
        best[("torch", k)] = min(best[("torch", k)], float(m[3]))
    m = re.match(r"fused LJ-13 (\d+)x(\d+) batch \d+, \d+ threads: forward\+backward ([\d.]+) ms, ([\d.]+) GFLOP/s", line)
    if m:
        k = (int(m[1]), int(m[2]))
        if ("rust", k) not in best or float(m[3]) < best[("rust", k)][0]:
            best[("rust", k)] = (float(m[3]), float(m[4]))
for k in [(3, 64), (5, 128)]:
    t, (r, g) = best[("torch", k)], best[("rust", k)]
    print(f"{k[0]}x{k[1]}: PyTorch {t:.1f} ms, fused {r:.1f} ms, {t / r:.2f}x; fused {g:.1f} GFLOP/s")
PY
