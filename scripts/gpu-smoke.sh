#!/usr/bin/env bash
# What the harness can check on a GPU node that has torch and transformers but neither vLLM nor
# a container engine (a fresh MI300 or H100/H200 box, before any image is pulled):
#   1. `harness doctor`, as `harness run` would (engine checks fail there: no engine) and
#      `--in-place` (no engine needed): the GPU tools, their memory reading, the node's state;
#   2. the GPU summary a result records (gpuinfo), and the raw tool output it parsed;
#   3. the `hf` reference on CPU and on the GPU (fp32, greedy) for every case that has one;
#   4. `harness compare` of the GPU reference against the CPU one (vLLM's logprob-closeness
#      semantics), and, when given, of both against a vLLM-CPU run's results on the same weights.
#
#   scripts/gpu-smoke.sh WORK_DIR [VLLM_CPU_RESULTS_DIR]
#
# Every step has a timeout and its exit code printed; the script goes on after a failure and
# exits with the worst code. Nothing is downloaded: the tiny models are built offline.
set -u
work=${1:?usage: scripts/gpu-smoke.sh WORK_DIR [VLLM_CPU_RESULTS_DIR]}
cpu_results=${2:-}
py=${PYTHON:-python3}
run_id=gpu-smoke-$(date -u +%Y%m%d-%H%M%S)
results="$work/results"
export HARNESS_MODEL_CACHE="$work/models"
mkdir -p "$work" "$results"
worst=0

step() {  # step NAME TIMEOUT_S COMMAND...: run with a deadline, print and keep the exit code
    local name=$1 limit=$2 began code
    shift 2
    echo "=== $name: $*"
    began=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    code=$?
    echo "=== $name: exit $code in $(( $(date +%s) - began )) s"
    [ "$code" -gt "$worst" ] && worst=$code
    return 0
}

if command -v amd-smi >/dev/null || command -v rocm-smi >/dev/null; then
    platform=rocm
else
    platform=cuda
fi
echo "platform: $platform; python: $($py -c 'import sys; print(sys.version.split()[0])')"

step doctor 120 "$py" -m harness doctor --platform "$platform" --results "$results"
step doctor-in-place 120 "$py" -m harness doctor --platform "$platform" --in-place \
    --results "$results"
step gpu-summary 60 "$py" -c "
import json, sys
from harness import gpuinfo
json.dump(gpuinfo.gpu_summary(sys.argv[1]), sys.stdout, indent=1); print()
try:
    tool, memory = gpuinfo.memory_usage(sys.argv[1]); print(tool, memory)
except gpuinfo.ParseError as exc:
    sys.exit(f'GPU memory: {exc}')" "$platform"
if [ "$platform" = cuda ]; then
    step raw-smi 60 sh -c "nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap \
        --format=csv,noheader > '$work/nvidia-smi-query.csv' && nvidia-smi \
        --query-gpu=index,memory.total,memory.used --format=csv,noheader,nounits \
        > '$work/nvidia-smi-query-memory.csv' && cat '$work'/nvidia-smi-*.csv"
else
    step raw-smi 60 sh -c "amd-smi static --json > '$work/amd-smi-static.json'; \
        amd-smi metric --mem-usage --json > '$work/amd-smi-metric-mem-usage.json'; \
        head -c 2000 '$work/amd-smi-static.json'"
fi
step reference-cpu 900 "$py" -m harness reference --case cases --results "$results" \
    --run-id "$run_id"
step reference-gpu 900 "$py" -m harness reference --case cases --results "$results" \
    --run-id "$run_id" --device cuda
step compare-gpu-vs-cpu 120 "$py" -m harness compare "$results/$run_id" --baseline hf \
    --candidate hf-cuda --reference none --markdown "$work/gpu-vs-cpu.md" \
    --json "$work/gpu-vs-cpu.json"
if [ -n "$cpu_results" ]; then
    cp -r "$cpu_results" "$results/$run_id/cpu"
    step compare-vllm-cpu-vs-gpu-reference 120 "$py" -m harness compare "$results/$run_id" \
        --baseline hf-cuda --candidate cpu --reference none \
        --markdown "$work/vllm-cpu-vs-gpu-reference.md"
fi
echo "worst exit: $worst; results: $results/$run_id"
exit "$worst"
