#!/usr/bin/env bash
# One call on a lent GPU machine: fine-tune the bundled audio codec with the GAN
# (recipes/configs/audio_gan_gpu.yaml) on the packed audio (recipes/gpu/pack_audio.py, carried as
# data/gpu) and put the best weights and the logs in $OUT. Nothing is installed: the recipe needs
# only torch, numpy, PyYAML, einops and safetensors, which the machine's python3 has (PyAV is
# imported only to read media files, which this does not). See recipes/gpu/README.md.
#   MINUTES=7 bash recipes/gpu/audio_gan.sh
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-data/gpu/out}
run=data/train_audio_gan_gpu
mkdir -p "$out/best"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
[ -f data/gpu/audio/train_24k.npy ] || { echo "no data/gpu/audio: run recipes/gpu/pack_audio.py here and carry data/gpu" >&2; exit 1; }
status=0
python3 recipes/train_audio.py --config recipes/configs/audio_gan_gpu.yaml --init unitok/assets/audio \
    --time-limit-min "${MINUTES:-7}" > "$out/train.log" 2>&1 || status=$?
tail -n 20 "$out/train.log"
cp "$run/log.txt" "$out/log.txt" 2>/dev/null || true
cp "$run"/best/* "$out/best/" 2>/dev/null || true
exit $status
