#!/usr/bin/env bash
# One call on a lent GPU machine: a training run from the bundled weights on data packed here, its
# best and final weights and the logs put in $OUT. The recipes import torch, torchvision, numpy,
# PyYAML, einops and safetensors, which the machine's python3 has (PyAV is imported only to read media files, which
# these runs do not); the audio codec's RVQ also needs vector-quantize-pytorch, whose pure-Python
# wheels recipes/gpu/fetch_wheels.sh puts in .whl/ to be carried and installed here offline.
# See recipes/gpu/README.md.
#   MINUTES=7 bash recipes/gpu/run.sh audio    # the audio GAN fine-tune (audio_gan_gpu.yaml), carry data/gpu/audio and .whl
#   MINUTES=7 bash recipes/gpu/run.sh image    # the image tokenizer (image_gpu.yaml), carry the packed crops
#   MINUTES=7 IMAGE=DIR bash recipes/gpu/run.sh video   # video_gpu.yaml inflated from DIR (default: the bundled image)
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
case "${1:-}" in
  audio) config=recipes/configs/audio_gan_gpu.yaml; recipe=recipes/train_audio.py; init=unitok/assets/audio
         run=data/train_audio_gan_gpu; data=data/gpu/audio/train_24k.npy; pack="recipes/gpu/pack_audio.py" ;;
  image) config=recipes/configs/image_gpu.yaml; recipe=recipes/train_image.py; init=unitok/assets/image
         run=data/train_image_gpu; data=data/gpu/images/train_256.jpeg.npz; pack="recipes/gpu/pack_images.py pack" ;;
  video) config=recipes/configs/video_gpu.yaml; recipe=recipes/train_video.py; init=${IMAGE:-unitok/assets/image}
         run=data/train_video_gpu; data=data/gpu/video/train_clips.jpeg.npz; pack="recipes/gpu/pack_video.py pack" ;;
  *) echo "usage: bash recipes/gpu/run.sh audio|image|video" >&2; exit 2 ;;
esac
flag=--init
if [ "$1" = video ]; then flag=--init-image; fi   # video: the image tokenizer it is inflated from
out=${OUT:-data/gpu/out}
mkdir -p "$out/best" "$out/final"
if ls .whl/*.whl > /dev/null 2>&1; then   # recipes/gpu/fetch_wheels.sh, carried as .whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
[ -f "$data" ] || { echo "no $data: run python $pack --config $config here and carry it" >&2; exit 1; }
case "$1" in
  image) python3 recipes/gpu/pack_images.py unpack --config "$config" ;;
  video) python3 recipes/gpu/pack_video.py unpack --config "$config" ;;
esac
status=0
python3 "$recipe" --config "$config" "$flag" "$init" --time-limit-min "${MINUTES:-7}" > "$out/train.log" 2>&1 || status=$?
tail -n 20 "$out/train.log"
cp "$run/log.txt" "$out/log.txt" 2>/dev/null || true
cp "$run"/best/* "$out/best/" 2>/dev/null || true
cp "$run"/final/* "$out/final/" 2>/dev/null || true   # the end state too: best/ is chosen by mel distance or PSNR,
                                                       # which a GAN run may not improve while PESQ does
exit $status
