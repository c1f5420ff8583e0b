#!/usr/bin/env bash
# Every GPU check and benchmark, for a lent GPU machine that has Python, torch and CUDA but
# neither a Rust toolchain nor internet (its image has numpy, tqdm, matplotlib, h5py, pytest and
# hypothesis). Build the abi3 extension on a machine with both:
#
#   maturin develop --release --skip-install            # writes asyncsnn/_native.abi3.so
#
# then carry asyncsnn/_native.abi3.so (an ignored path: the device tool's `carry`) and run from
# the repository root there (the tree itself is the package: PYTHONPATH is set to it)
#
#   bash benchmarks/gpu_session.sh OUT [STAGE...]
#
# Stages (default: all, in this order; each is meant to fit one 10-minute call, so name one per
# call there, e.g. `bash benchmarks/gpu_session.sh $OUT check`):
#   check  every engine on CUDA against the CPU (gpu_check.py) and the device-parametrized
#          properties (engine equality with real CUDA graphs, compiled steps, SPSN membrane and
#          its chunked adjoint)
#   fast   training throughput of the GPU engines: manual with compiled steps and CUDA graphs,
#          manual with CUDA graphs (the rows for the 6 000 samples/s target)
#   spsn   SPSN against the LIF loops (T = 100, 1 000, 10 000)
#   rest   training throughput of the eager engines: autograd, manual, manual with compiled steps
#   profile  the kernels of one training step at F = 16 (compiled steps, with and without graphs)
# Results go to benchmarks/results/ and are copied to OUT; the log is OUT/gpu.log.
set -u
out=${1:-.}
shift || true
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(check fast spsn rest profile)
log=$out/gpu.log
mkdir -p "$out"
# a stage is stopped LIMIT seconds after it starts (default 540), so that what it measured is
# still copied to OUT within a 10-minute call (the benchmarks write results after every row)
run() {
  local left=$((deadline - SECONDS))
  if [ "$left" -le 5 ]; then echo "== skipped (stage time is up): $*" | tee -a "$log"; return; fi
  echo "== $*" | tee -a "$log"
  timeout "$left" "$@" 2>&1 | tee -a "$log"
  echo "rc=${PIPESTATUS[0]}" | tee -a "$log"
}
deadline=$((SECONDS + ${LIMIT:-540}))

export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! python -c "import asyncsnn" 2>>"$log"; then
  echo "asyncsnn does not import: carry asyncsnn/_native.abi3.so (see the top of this file)" | tee -a "$log"
  exit 2
fi
run nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for stage in "${stages[@]}"; do
  deadline=$((SECONDS + ${LIMIT:-540}))
  case $stage in
    check)
      run python benchmarks/gpu_check.py
      run python -m pytest -q -p no:cacheprovider tests/test_sim.py::test_manual_backward_equals_autograd \
          tests/test_sim.py::test_compiled_steps_equal_eager \
          tests/test_spsn.py::test_parallel_membrane_equals_the_sequential_recurrence \
          tests/test_spsn.py::test_chunked_membrane_and_its_adjoint_for_any_chunk_length ;;
    fast)
      run python benchmarks/train_throughput.py --device cuda --engines manual+compile+graphs,manual+graphs --tag _fast ;;
    rest)
      run python benchmarks/train_throughput.py --device cuda --engines autograd,manual,manual+compile --tag _rest ;;
    spsn)
      run python benchmarks/spsn_speed.py --device cuda ;;
    profile)
      run python benchmarks/profile_step.py --device cuda --engine manual+compile
      run python benchmarks/profile_step.py --device cuda --engine manual+compile+graphs ;;
    *) echo "unknown stage: $stage (allowed: check fast spsn rest profile)" | tee -a "$log"; exit 2 ;;
  esac
  cp benchmarks/results/*cuda* "$out"/ 2>/dev/null
done
exit 0
