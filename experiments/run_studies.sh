#!/usr/bin/env bash
# Rerun the report's studies and collect their tables and plots in experiments/results/STUDY/.
#   bash experiments/run_studies.sh                    # every study
#   bash experiments/run_studies.sh study_lr study_dropout
# Extra Hydra overrides for every run can be passed in NETLAB_OVERRIDES.
set -euo pipefail
cd "$(dirname "$0")/.."
studies=("$@")
[ ${#studies[@]} -gt 0 ] || studies=(study_lr study_optimizers study_dropout study_augment study_normalize study_shuffle study_batchnorm)
for study in "${studies[@]}"; do
  dir=multirun/studies/$study
  rm -rf "$dir"
  # shellcheck disable=SC2086
  python -m netlab.train -m "experiment=$study" train.progress=false "hydra.sweep.dir=$dir" ${NETLAB_OVERRIDES:-}
  python -m netlab.summarize "$dir" --title "$study"
  mkdir -p "experiments/results/$study"
  cp "$dir/summary.csv" "$dir/summary.md" "$dir/comparison.png" "experiments/results/$study/"
done
