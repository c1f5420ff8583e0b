#!/usr/bin/env bash
# Every GPU check and benchmark in one go, for a lent GPU machine that has Python, torch and
# CUDA but neither a Rust toolchain nor internet. Prepare on a machine with both:
#
#   maturin build --release -o dist/                    # the abi3 wheel
#   pip download hypothesis pytest -d dist/deps         # only if the GPU machine lacks them
#
# then carry dist/ and run `bash benchmarks/gpu_session.sh [OUT]` from the repository root
# there. Results go to benchmarks/results/ and, with OUT, are copied there; the log is OUT/gpu.log.
set -u
out=${1:-}
log=${out:+$out/}gpu.log
[ -n "$out" ] && mkdir -p "$out"
run() { echo "== $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; echo "rc=${PIPESTATUS[0]}" | tee -a "$log"; }

deps=()
[ -d dist/deps ] && deps=(--find-links dist/deps)
run python -m pip install -q --no-index "${deps[@]}" --no-deps dist/*.whl
python -c "import hypothesis, pytest" 2>/dev/null || run python -m pip install -q --no-index "${deps[@]}" hypothesis pytest
run nvidia-smi --query-gpu=name,memory.total --format=csv
# correctness first: every engine on CUDA against the CPU, and the device-parametrized properties
run python benchmarks/gpu_check.py
run python -m pytest -q -p no:cacheprovider tests/test_sim.py::test_manual_backward_equals_autograd \
    "tests/test_spsn.py::test_parallel_membrane_equals_the_sequential_recurrence"
# then speed: training throughput (all engines), SPSN against the LIF loops
run python benchmarks/train_throughput.py --device cuda
run python benchmarks/spsn_speed.py --device cuda
[ -n "$out" ] && cp benchmarks/results/*cuda* "$out"/ 2>/dev/null
exit 0
