#!/usr/bin/env bash
# One call on a lent GPU machine: training runs from the bundled weights on data packed here, each
# run's results in two files: $OUT/<run>-best.tar (best/: the weights as the recipe keeps them,
# float32, 12 to 14 MB) and $OUT/<run>-final.tar (final/, log.txt, train.log). What comes back from
# a device call is at most 8 files of at most 16 MiB each, so a run's results cannot travel as
# loose files, nor as one tar. Several runs named at once train side by side on the one GPU (these
# models are small: one run alone is unlikely to keep an H100 busy), so a lease of a few minutes
# serves them all. The recipes import torch, torchvision, numpy, PyYAML,
# einops and safetensors, which the machine's python3 has (PyAV is imported only to read media
# files, which these runs do not); the audio codec's RVQ also needs vector-quantize-pytorch, whose
# pure-Python wheels recipes/gpu/fetch_wheels.sh puts in .whl/ to be carried and installed here
# offline. See recipes/gpu/README.md.
#   MINUTES=7 bash recipes/gpu/run.sh audio audio_mpd video   # the first lease: two audio GANs and the video tokenizer at once
#   MINUTES=7 bash recipes/gpu/run.sh audio         # the audio GAN fine-tune (audio_gan_gpu.yaml)
#   MINUTES=7 bash recipes/gpu/run.sh image         # the image tokenizer (image_gpu.yaml)
#   MINUTES=7 IMAGE=DIR bash recipes/gpu/run.sh video   # video_gpu.yaml inflated from DIR (default: the bundled image)
set -euo pipefail
# OMP_WAIT_POLICY: idle OpenMP threads sleep instead of spinning, so runs side by side leave each
# other's main threads (the ones that launch the GPU's work) the cores
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
. "$(dirname "$0")/runs.sh"   # settings NAME: what each run trains, from what, on which packed data

[ $# -ge 1 ] || usage
for name in "$@"; do settings "$name"; done   # refuse an unknown run before anything starts
if [ "$(printf '%s\n' "$@" | sort | uniq -d)" ]; then
    echo "a run named twice would write over itself: $*" >&2; exit 2
fi
out=${OUT:-data/gpu/out}
if ls .whl/*.whl > /dev/null 2>&1; then   # recipes/gpu/fetch_wheels.sh, carried as .whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
unpacked=" "
for name in "$@"; do
    settings "$name"
    [ -f "$data" ] || { echo "no $data: run python $packer pack --config $config here and carry it" >&2; exit 1; }
    case "$unpacked" in *" $data "*) continue ;; esac   # two runs on the same packed data unpack it once
    python3 "$packer" unpack --config "$config"
    unpacked="$unpacked$data "
done

names=("$@") pids=()
stage=$(mktemp -d)
# a run that outlives its training time by more than 100 s (start-up, the last validation, the
# export) is stopped, so that what it has written still gets packed before the call's own limit
deadline=$(awk -v m="${MINUTES:-7}" 'BEGIN { print int(m * 60 + 100) }')
for name in "${names[@]}"; do
    settings "$name"
    mkdir -p "$stage/$name/best" "$stage/$name/final" "$out"
    timeout -k 10 "$deadline" python3 "$recipe" --config "$config" "$flag" "$init" --time-limit-min "${MINUTES:-7}" \
        > "$stage/$name/train.log" 2>&1 &
    pids+=($!)
    echo "started $name (pid $!): $recipe --config $config $flag $init"
done

status=0
for i in "${!pids[@]}"; do
    name=${names[$i]}
    settings "$name"
    code=0
    wait "${pids[$i]}" || code=$?
    echo "== $name: exit $code$( [ "$code" != 124 ] || echo " (stopped after $deadline s: what it had written is packed)")"
    tail -n 20 "$stage/$name/train.log"
    cp "$run/log.txt" "$stage/$name/log.txt" 2>/dev/null || true
    cp "$run"/best/* "$stage/$name/best/" 2>/dev/null || true
    cp "$run"/final/* "$stage/$name/final/" 2>/dev/null || true   # the end state too: best/ is chosen by mel
                                                                   # distance or PSNR, which a GAN run may not
                                                                   # improve while PESQ does
    tar -cf "$out/$name-best.tar" -C "$stage/$name" best
    tar -cf "$out/$name-final.tar" -C "$stage/$name" final log.txt train.log 2> /dev/null ||
        tar -cf "$out/$name-final.tar" -C "$stage/$name" final train.log
    for part in best final; do
        kb=$(du -k "$out/$name-$part.tar" | cut -f1)
        echo "$out/$name-$part.tar: $kb KB$( [ "$kb" -le 16384 ] || echo ' -- OVER the 16 MiB a returned file may have: it will not come back')"
    done
    [ "$code" = 0 ] || status=$code
done
rm -rf "$stage"
exit $status
