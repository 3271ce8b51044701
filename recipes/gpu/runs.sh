# The GPU runs, as run.sh and trip.sh both read them (sourced, not run): `settings NAME` sets the
# run's config, recipe, starting weights (`flag init`), the recipe's output folder, the packer that
# unpacks its data there, and `carries`, the packed files a device call must carry for it (the
# first one is what `packer unpack` reads).
RUNS="audio, audio_mpd, image or video"

usage() { echo "usage: bash $0 RUN [RUN ...], RUN: $RUNS" >&2; exit 2; }

settings() {
  flag=--init
  case "$1" in
    audio|audio_mpd)   # audio_mpd: period discriminators beside the STFT ones, on the same packed audio
      recipe=recipes/train_audio.py; init=unitok/assets/audio; packer=recipes/gpu/pack_audio.py
      carries=(data/gpu/audio/train_24k.i16.xz data/gpu/audio/train_index.json
               data/gpu/audio/val_24k.i16.xz data/gpu/audio/val_index.json .whl)
      if [ "$1" = audio ]; then
        config=recipes/configs/audio_gan_gpu.yaml; run=data/train_audio_gan_gpu
      else
        config=recipes/configs/audio_gan_mpd_gpu.yaml; run=data/train_audio_gan_mpd_gpu
      fi ;;
    image)
      config=recipes/configs/image_gpu.yaml; recipe=recipes/train_image.py; init=unitok/assets/image
      run=data/train_image_gpu; packer=recipes/gpu/pack_images.py
      carries=(data/gpu/images/train_256.jpeg.npz data/gpu/images/val_256.npy) ;;
    video)
      config=recipes/configs/video_gpu.yaml; recipe=recipes/train_video.py; init=${IMAGE:-unitok/assets/image}
      run=data/train_video_gpu; packer=recipes/gpu/pack_video.py
      flag=--init-image   # video: the image tokenizer it is inflated from
      carries=(data/gpu/video/train_clips.jpeg.npz data/gpu/video/val_clips.jpeg.npz)
      [ -z "${IMAGE:-}" ] || carries+=("$IMAGE") ;;
    *) echo "unknown run $1" >&2; usage ;;
  esac
  data=${carries[0]}
}
