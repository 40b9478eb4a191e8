#!/usr/bin/env bash
# Download the wheels benchmarks/gpu/run.sh installs on the GPU machine (which has no network):
# what saekit needs and the GPU image lacks (transformer-lens 3.9.0 and its pure-Python needs),
# and the peers for the comparison rows (eai-sparsify, sae-lens and what they import).
# For CPython 3.12, manylinux x86-64, into the git-ignored .whl/ folder; fails if over 64 MiB,
# the device tool's limit for everything that travels (the repository included).
#   usage: benchmarks/gpu/fetch_wheels.sh   (from anywhere; run on a machine with the registries)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
# Already on the image (KINDS.md): torch, triton, transformers, safetensors, einops, numpy, pandas,
# pyarrow, xxhash, fsspec, rich, jaxtyping, accelerate, protobuf, click, pyyaml, tabulate ...
WHEELS=(
  transformer-lens==3.9.0 beartype==0.23.1 better-abc==0.0.3 fancy-einsum==0.0.3 typeguard==4.6.1
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  eai-sparsify==1.3.3 natsort==8.4.0 schedulefree==1.4.1 simple-parsing==0.1.9 docstring-parser
  sae-lens==6.54.12 wandb==0.31.0 opentelemetry-api==1.45.2 pydantic==2.14.4 pydantic-core==2.50.5
  annotated-types==0.8.0 typing-inspection==0.4.5 platformdirs==4.14.9
)
# Only what `import transformer_lens`, `from sae_lens import TopKTrainingSAE` and `import sparsify`
# load (python -X importtime in a full install): sae-lens's plotly, nltk, babe and wandb's
# sentry/git are never imported on these paths, so they stay behind.
rm -rf .whl.new && mkdir -p .whl.new
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl.new "${WHEELS[@]}"
rm -rf .whl && mv .whl.new .whl
wheels_kib=$(du -sk .whl | cut -f1)
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
total=$((wheels_kib + tree_kib))
echo "wheels: $(ls .whl | wc -l) files, ${wheels_kib} KiB; tracked tree ${tree_kib} KiB; together ${total} KiB of 65536"
if [ "$total" -gt 65536 ]; then
  echo "ERROR: .whl/ plus the repository is over the device tool's 64 MiB limit; carry fewer wheels." >&2
  exit 1
fi
