#!/usr/bin/env bash
# splatgen's GPU path, proved in one offline, time-boxed run (about 9 minutes on one H200), from a fresh clone:
#
#   bash scripts/gpu_check.sh        # python3 (or $PYTHON) with a CUDA torch; wheels from .whl/ when offline
#
# Stages, in order; each has its own timeout, all share one budget ($GPU_CHECK_BUDGET seconds, default 540),
# and a stage that fails or times out does not stop the next:
#   env        driver, GPU, nvcc, torch and its CUDA (`python -m splatgen.gpu report`)
#   install    splatgen's missing dependencies: from the wheelhouse ($SPLATGEN_WHEELHOUSE, default .whl/,
#              made by scripts/make_wheelhouse.sh) into .gpu-check-site/ when there is one, else pip from the index
#   build      gsplat's CUDA kernels into the persistent cache (timed; `python -m splatgen.gpu build`)
#   parity     the gsplat-vs-torch rasterizer test (images, alphas, gradients)
#   precision  scripts/precision_probe.py on the SD 2.1-base architecture: the LoRA gradient in bf16 and fp16 vs fp32
#   bench      scripts/bench.py --device cuda: D-SDS and VSD at batch 1 and 4 (ms/step, floor, syncs in all and
#              outside gsplat, peak memory)
#   train      `splatgen train`: 100 D-SDS steps at 4 x 512x512 on the random-weight SD 2.1-base prior
#              (`sd21-base-random`), with refinements and a checkpoint
#   gpu-tests  every other test marked gpu
# Without CUDA the GPU stages are skipped and say so. Prints a summary table; with $OUT set, writes
# summary.txt, gpu_check.log (every stage's output) and bench.jsonl there. Exit status 1 if a stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
site="$PWD/.gpu-check-site"
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
SKIP=77 # a stage's exit status for "skipped"; its last `NOTE:` line says why

note() { echo "NOTE: $*"; }
needs_cuda() { # the runner asks torch once and passes the answer down
  [[ ${GPU_CHECK_CUDA:-0} == 1 ]] || {
    note "skipped: no CUDA GPU visible to torch"
    exit $SKIP
  }
}

stage_env() {
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  command -v nvcc >/dev/null && nvcc --version | tail -2
  "$python" --version
  local report
  report=$("$python" -m splatgen.gpu report) || return 1
  echo "$report"
  note "$(echo "$report" | grep -E "^ +(torch|gpu|nvcc):" | sed -E 's/^ +//' | paste -sd ';' | cut -c1-200)"
}

missing_modules() {
  "$python" - <<'EOF'
import importlib.util
modules = ["diffusers", "transformers", "peft", "accelerate", "safetensors", "gsplat", "plyfile", "tyro", "viser",
           "rich", "imageio", "yaml", "numpy", "pytest", "pytest_timeout"]
print(" ".join(name for name in modules if importlib.util.find_spec(name) is None))
EOF
}

stage_install() {
  local missing wheelhouse="${SPLATGEN_WHEELHOUSE:-.whl}"
  missing=$(missing_modules)
  if [[ -z $missing ]]; then
    note "every dependency already importable"
    return 0
  fi
  echo "missing: $missing"
  if compgen -G "$wheelhouse/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "$wheelhouse"/*.whl || return 1
    how="from $(ls "$wheelhouse"/*.whl | wc -l) wheels in $wheelhouse"
  else
    "$python" -m pip install -q -e ".[dev]" || return 1
    how="with pip from the index"
  fi
  missing=$(missing_modules)
  [[ -z $missing ]] || { note "still missing after installing $how: $missing"; return 1; }
  note "installed $how"
}

stage_build() {
  needs_cuda
  local line
  line=$(MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$python" -m splatgen.gpu build 2>&1 | tee /dev/stderr | tail -1)
  note "${line#gpu: }"
  [[ $line == *"CUDA kernels built"* || $line == *"already built"* ]]
}

stage_parity() {
  needs_cuda
  "$python" -m pytest -q -s -p no:cacheprovider tests/test_render.py -k gsplat_and_torch_backends_agree | tee /dev/stderr \
    | grep -q "1 passed" || return 1
}

stage_precision() {
  local probe
  probe=$(ls scripts/precision_probe*.py 2>/dev/null | head -1)
  [[ -n $probe ]] || { note "skipped: no scripts/precision_probe.py in this checkout"; exit $SKIP; }
  needs_cuda
  "$python" "$probe" --device cuda --architecture sd21
}

stage_bench() {
  needs_cuda
  local jsonl="$1"
  "$python" scripts/bench.py --device cuda --objective dsds vsd --batch 1 4 --json > "$jsonl" || return 1
  cat "$jsonl"
  note "$("$python" - "$jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
print("; ".join(f"{r.get('objective')} b{r.get('batch')}: {r.get('ms_per_step', float('nan')):.1f} ms/step, floor "
                f"{r.get('floor_ratio', float('nan')):.2f}x, {r.get('syncs_per_step', '?')} syncs "
                f"({r.get('syncs_outside_gsplat', '?')} outside gsplat), "
                f"{r.get('peak_mem_mb', float('nan')) / 1024:.1f} GB" for r in rows))
EOF
)"
}

# the train stage's run (tests/test_gpu_setup.py checks on CPU that these flags parse and validate)
TRAIN_ARGS=(--prompt "a ceramic mug shaped like an owl" --prior.model sd21-base-random --prompts.lm tiny-random
  --steps 100 --batch-size 4 --render-size 512 --checkpoint-every 50 --log-every 25 --densify.refine-every 25
  --densify.start-fraction 0.2 --densify.stop-fraction 0.9 --video-frames 8 --no-viewer)

stage_train() {
  needs_cuda
  local run
  run=$(mktemp -d)/run
  "$python" -m splatgen train "${TRAIN_ARGS[@]}" --out "$run" | tee "$run.log" || return 1
  local done refines
  done=$(grep -o "done[^>]*" "$run.log" | tail -1)
  refines=$(grep -c "refine @ step" "$run.log")
  [[ -f $run/checkpoints/last.pt ]] || { note "no checkpoint written"; return 1; }
  note "${done:-no summary line}; $refines refinements; checkpoint ok"
  [[ $refines -ge 1 ]]
}

stage_gpu_tests() {
  needs_cuda
  "$python" -m pytest -q -p no:cacheprovider -m gpu --deselect \
    tests/test_render.py::test_gsplat_and_torch_backends_agree | tee /dev/stderr | tail -1 | sed 's/^/NOTE: /'
}

# ---------------------------------------------------------------- the runner

if [[ "${1:-}" == --stage ]]; then # one stage, run under `timeout` by the loop below
  name="$2"
  shift 2
  "stage_${name//-/_}" "$@"
  exit $?
fi

budget="${GPU_CHECK_BUDGET:-540}"
out="${OUT:-}"
logs="${out:-$(mktemp -d)}"
mkdir -p "$logs"
log="$logs/gpu_check.log"
: >"$log"
started=$SECONDS
summary=()
failed=0
GPU_CHECK_CUDA=0 # no nvidia-smi: no GPU, and no torch import spent finding that out
command -v nvidia-smi >/dev/null &&
  GPU_CHECK_CUDA=$("$python" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
export GPU_CHECK_CUDA

run_stage() { # NAME LIMIT_S [ARGS...]
  local name="$1" limit="$2" left status note t0 rc
  shift 2
  left=$((budget - (SECONDS - started)))
  if ((left < 15)); then
    summary+=("$(printf '%-10s %-8s %5s  %s' "$name" skipped 0 "the ${budget} s budget is spent")")
    return
  fi
  ((limit > left)) && limit=$left
  echo "===== $name (timeout ${limit} s)" >>"$log"
  t0=$SECONDS
  timeout -k 10 "$limit" bash "$0" --stage "$name" "$@" >"$logs/.stage.log" 2>&1
  rc=$?
  cat "$logs/.stage.log" >>"$log"
  note=$(grep "^NOTE: " "$logs/.stage.log" | tail -1 | cut -c7-)
  case $rc in
    0) status=ok ;;
    "$SKIP") status=skipped ;;
    124 | 137) status=timeout note="stopped after ${limit} s${note:+; $note}" ;;
    *) status="FAIL" note="${note:-exit $rc; last line: $(grep -v '^\s*$' "$logs/.stage.log" | tail -1 | cut -c1-150)}" ;;
  esac
  [[ $status == FAIL || $status == timeout ]] && failed=1
  summary+=("$(printf '%-10s %-8s %5s  %s' "$name" "$status" "$((SECONDS - t0))" "$note")")
  echo "----- $name: $status in $((SECONDS - t0)) s" >>"$log"
}

run_stage env 90
run_stage install 120
run_stage build 300
run_stage parity 90
run_stage precision 90
run_stage bench 180 "$logs/bench.jsonl"
run_stage train 180
run_stage gpu-tests 150
rm -f "$logs/.stage.log"
[[ -s "$logs/bench.jsonl" ]] || rm -f "$logs/bench.jsonl"

{
  echo "splatgen gpu_check: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $((SECONDS - started)) s of ${budget} s"
  printf '%-10s %-8s %5s  %s\n' stage status s note
  printf '%s\n' "${summary[@]}"
} | tee "$logs/summary.txt"
[[ -n $out ]] || echo "logs: $log"
exit $failed
