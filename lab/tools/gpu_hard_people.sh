#!/usr/bin/env bash
# Issue 62 on a lent GPU: the two hard-people runs side by side from one pack (lab/tools/gpu_train.md section 8).
#
#   bash lab/tools/gpu_hard_people.sh data             # each data call: install (first call), move the carried
#                                                  # .gpu_data/* to $D outside the re-synced repo copy
#   bash lab/tools/gpu_hard_people.sh train MINUTES    # both runs at once, each stopped after MINUTES; then their
#                                                  # best networks (fp16), logs and compact states into $OUT
#
# Why two runs at once: Thunder's depthwise layers leave the GPU mostly idle at batch 128 (section 5), so two
# processes share it with little loss, and the 16 CPU cores feed 7 loader workers each.
set -u
D=/root/posecal_data
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
RUNS="movenet_thunder_gpu_hard movenet_thunder_gpu_hard_pseudo"

case "${1:-}" in
data)
    mkdir -p $D
    if ! python3 -c "import pycocotools" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl || exit 3
        python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
    fi
    for f in .gpu_data/*; do [ -d "$f" ] && rm -rf "$D/$(basename "$f")" && mv "$f" $D/; done
    du -sh $D/* ;;
train)
    MIN=${2:?minutes}
    python3 -c "from posecal.data.packed import load_packed_persons as l; print(len(l('$D')), 'persons packed')" || { echo "data missing (new machine?)"; exit 3; }
    for r in $RUNS; do
        python3 -m posecal.cli.main train configs/$r.yaml --packed $D --no-progress --max-minutes "$MIN" \
            > $OUT/$r.log 2>&1 &
    done
    wait
    for r in $RUNS; do
        tail -3 $OUT/$r.log
        [ -f runs/$r/best_model.pt ] && python3 -m posecal.cli.main pack runs/$r/best_model.pt $OUT/${r}_best_fp16.pt
        [ -f runs/$r/log.json ] && cp runs/$r/log.json $OUT/${r}_log.json
    done ;;
*)
    echo "usage: $0 data | train MINUTES"; exit 2 ;;
esac
