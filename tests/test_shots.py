"""Scene cuts and shots (``unitok.media.shots``) and the ``split_shots`` preprocessing option: a cut
is found at its exact frame, pans, zooms, fast motion and noise are not cuts, short shots are not
made, and a suite that splits shots codes one video segment per shot (on by default since unitok 0.4;
a video without a cut keeps its ids, and a batch run resumes with the setting it started with)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unitok
from unitok import Audio, ConfigError, MediaError, UniTokenizer, Video
from unitok.cliargs import build_parser, preprocess_options
from unitok.media import Preprocess
from unitok.media.shots import detect_cuts, frame_changes, join_shots, split_shots
from unitok.quantize import FSQConfig, MultiScaleConfig
from unitok.video import SpatialConfig, VideoTokenizer, VideoTokenizerConfig

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64


def texture(seed: int, size: int = 3 * SIZE) -> torch.Tensor:
    """[3, size, size] float in [0, 1]: a colourful picture with coarse and fine detail (each seed
    its own colours and layout)."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(1, 3, 5, 5, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    fine = F.interpolate(torch.rand(1, 3, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear",
                         align_corners=False)
    return (0.75 * coarse + 0.25 * fine)[0].clamp(0, 1)


def to_uint8(x: torch.Tensor, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    if noise:
        x = x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def pan(seed: int, frames: int, step: float, *, start: int = 0, vertical: float = 0.0) -> torch.Tensor:
    """[frames, 3, SIZE, SIZE] uint8: a window moving ``step`` pixels a frame over a texture."""
    tex = texture(seed, max(3 * SIZE, SIZE + start + int((abs(step) + abs(vertical)) * frames)))
    out = []
    for t in range(frames):
        x, y = int(round(start + step * t)), int(round(start + vertical * t))
        out.append(tex[:, y:y + SIZE, x:x + SIZE])
    return to_uint8(torch.stack(out), 0.01, seed)


def zoom(seed: int, frames: int, factor: float = 0.6) -> torch.Tensor:
    """A window shrinking to ``factor`` of its side over the clip, scaled to SIZE (a zoom in)."""
    tex = texture(seed, 2 * SIZE)
    out = []
    for t in range(frames):
        side = int(round(2 * SIZE * (1 - (1 - factor) * t / max(1, frames - 1))))
        o = (2 * SIZE - side) // 2
        out.append(F.interpolate(tex[None, :, o:o + side, o:o + side], size=(SIZE, SIZE), mode="bilinear",
                                 align_corners=False, antialias=True)[0])
    return to_uint8(torch.stack(out), 0.01, seed)


# -- the detector -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [4, 5, 6, 8, 12])
def test_a_cut_is_found_at_its_exact_frame(cut):
    frames = torch.cat([pan(1, cut, 2.0), pan(2, 17 - cut, 2.0)])
    assert detect_cuts(frames) == [cut]
    change = frame_changes(frames)
    assert change.shape == (17,) and change[0] == 0 and int(change.argmax()) == cut


def test_several_cuts_and_cuts_between_alike_colours():
    shots = [pan(3, 6, 1.0), zoom(4, 7), pan(5, 5, -2.0, start=SIZE), pan(6, 8, 0.0)]
    frames = torch.cat(shots)
    assert detect_cuts(frames) == [6, 13, 18]
    # the same picture's two halves: one palette, other content (a cut the colours alone would miss)
    tex = texture(7)
    a = to_uint8(tex[:, :SIZE, :SIZE][None].expand(8, -1, -1, -1), 0.01, 1)
    b = to_uint8(tex[:, SIZE:2 * SIZE, 2 * SIZE:][None].expand(8, -1, -1, -1), 0.01, 2)
    assert detect_cuts(torch.cat([a, b])) == [8]


@pytest.mark.parametrize("make", [
    lambda: pan(8, 24, 1.0),                            # slow pan
    lambda: pan(9, 24, 5.0, vertical=2.0),              # fast diagonal pan (8% of the width a frame)
    lambda: pan(10, 24, 12.0, start=0),                 # whip pan: 19% of the width a frame
    lambda: zoom(11, 24, 0.5),                          # zoom in by two
    lambda: torch.cat([pan(12, 8, 0.0), pan(12, 16, 6.0)]),   # a still shot that starts panning fast
    lambda: to_uint8(texture(13)[:, :SIZE, :SIZE][None].expand(24, -1, -1, -1), 0.06, 3),   # sensor noise
], ids=["slow-pan", "fast-pan", "whip-pan", "zoom", "motion-onset", "noise"])
def test_motion_and_noise_are_not_cuts(make):
    assert detect_cuts(make()) == []


def test_gradual_brightness_change_is_not_a_cut():
    base = texture(14)[:, :SIZE, :SIZE]
    frames = to_uint8(torch.stack([base * (0.4 + 0.6 * t / 23) for t in range(24)]), 0.01)
    assert detect_cuts(frames) == []


def test_min_shot_frames_keeps_the_stronger_cut_and_guards_both_ends():
    # a black first frame, then a shot: a one-frame shot is not made
    frames = torch.cat([torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8), pan(15, 16, 1.0)])
    assert detect_cuts(frames) == []
    assert detect_cuts(frames, min_shot_frames=1) == [1]
    # shots of 6, 2 and 8 frames: with the default (4) only one of the two cuts stays
    frames = torch.cat([pan(16, 6, 1.0), pan(17, 2, 1.0), pan(18, 8, 1.0)])
    assert detect_cuts(frames, min_shot_frames=1) == [6, 8]
    kept = detect_cuts(frames)
    assert len(kept) == 1 and kept[0] in (6, 8)
    assert detect_cuts(frames, min_shot_frames=9) == []
    # the last shot counts too
    frames = torch.cat([pan(19, 14, 1.0), pan(20, 3, 1.0)])
    assert detect_cuts(frames) == [] and detect_cuts(frames, min_shot_frames=3) == [14]


def test_short_and_odd_inputs():
    assert detect_cuts(pan(21, 1, 0.0)) == [] and frame_changes(pan(21, 1, 0.0)).tolist() == [0.0]
    two = torch.cat([pan(22, 1, 0.0), pan(23, 1, 0.0)])
    assert detect_cuts(two, min_shot_frames=1) == [1] and detect_cuts(two) == []
    tall = torch.cat([pan(24, 6, 1.0), pan(25, 6, 1.0)])[..., :20]       # 64x20 frames
    assert detect_cuts(tall) == [6]
    with pytest.raises(MediaError, match=r"uint8 frames \[T, 3, H, W\]"):
        detect_cuts(torch.zeros(4, 3, 8, 8))
    with pytest.raises(ConfigError, match="min_shot_frames"):
        detect_cuts(two, min_shot_frames=0)


def test_changes_are_computed_a_chunk_at_a_time(monkeypatch):
    """Shot detection runs on every video by default, so a long clip of tiny frames must not hold
    every frame's features at once (100,000 16x16 frames took 5.7 GB that way): chunks of at most
    _CHUNK frames, the changes across chunk boundaries the same as computed whole."""
    from unitok.media import shots

    frames = torch.cat([to_uint8(texture(s, 40)).expand(7, -1, -1, -1) for s in range(5)])
    frames = (frames.int() + torch.randint(-3, 4, frames.shape, generator=torch.Generator().manual_seed(0))
              ).clamp(0, 255).to(torch.uint8)
    x = shots._features(frames)
    h = shots._histograms(x)
    whole = torch.cat([torch.zeros(1), shots._pixel_change(x[:-1], x[1:]) + 0.5 * (h[1:] - h[:-1]).abs().sum((1, 2)) / 6])
    seen = []
    features = shots._features
    monkeypatch.setattr(shots, "_features", lambda f: seen.append(len(f)) or features(f))
    monkeypatch.setattr(shots, "_CHUNK", 4)
    assert torch.allclose(shots.frame_changes(frames), whole, atol=1e-6)
    assert max(seen) == 4 and sum(seen) == len(frames)
    assert shots.detect_cuts(frames) == [7, 14, 21, 28]


def test_split_and_join_shots():
    frames = torch.cat([pan(26, 7, 1.0), pan(27, 10, 1.0)])
    sound = Audio.from_array(torch.zeros(1, 800), 8000)
    video = Video(frames, 25, audio=sound)
    shots = split_shots(video)
    assert [s.num_frames for s in shots] == [7, 10] and all(s.audio is None and s.fps == 25 for s in shots)
    joined = join_shots(shots)
    assert torch.equal(joined.frames, frames) and joined.fps == 25
    assert [s.num_frames for s in split_shots(video, [3, 9])] == [3, 6, 8]
    with pytest.raises(ConfigError, match="ascending"):
        split_shots(video, [9, 3])
    with pytest.raises(MediaError, match="video 1 is 32x64"):
        join_shots([shots[0], Video(shots[1].frames[..., :32], 25)])


# -- the preprocessing option -----------------------------------------------------------------------


FSQ = MultiScaleConfig(FSQConfig((5, 5, 5)), scales=(2, 1))


@pytest.fixture(scope="module")
def suite():
    torch.manual_seed(0)
    spatial = SpatialConfig(channels=8, channel_mult=(1, 2), patch=2, enc_blocks=1, dec_blocks=1, mid_blocks=1,
                            quantizer=FSQ)
    return UniTokenizer(unitok.text.load_default(), {"video": VideoTokenizer(VideoTokenizerConfig(spatial)).eval()})


def test_split_shots_codes_one_segment_per_shot(suite):
    frames = torch.cat([pan(28, 5, 1.0), pan(29, 12, 1.0)])[..., :32, :32].contiguous()
    video = Video(frames, 25)
    whole = suite.with_limits(preprocess=Preprocess(split_shots=False))
    plain = whole.encode(["a clip", video])
    assert [s.modality for s in plain.spans] == ["text", "video"]
    tok = suite.with_limits(preprocess=Preprocess(split_shots=True))
    seq = tok.encode(["a clip", video])
    assert [s.modality for s in seq.spans] == ["text", "video", "video"]
    assert suite.encode(["a clip", video]) == seq      # the default since unitok 0.4
    # each shot is coded exactly as the shot alone would be: its own key frame, nothing from the other
    alone = [whole.encode(Video(frames[a:b], 25)) for a, b in ((0, 5), (5, 17))]
    assert np.array_equal(seq.ids[seq.spans[1].start:], np.concatenate([s.ids for s in alone]))
    # the price: one latent frame more (5 + 12 frames are 2 + 4 latent frames, 17 frames 5) and one
    # more segment's begin, header and end
    def tokens(frames: int) -> int:
        return suite.segment_tokens("video", {"frames": frames, "height": 32, "width": 32, "fps_num": 25, "fps_den": 1})
    latent = tokens(2) - tokens(1)
    assert len(seq.ids) - len(plain.ids) == latent + (tokens(1) - latent)
    text, *parts = tok.decode(seq)
    assert text == "a clip" and [p.num_frames for p in parts] == [5, 12]
    assert join_shots(parts).num_frames == 17
    # one shot: the same ids as without the option
    still = Video(pan(30, 9, 1.0)[..., :32, :32].contiguous(), 25)
    assert tok.encode(still) == whole.encode(still)


def test_tokenize_runs_record_shot_splitting_and_resume_as_they_started(tmp_path, suite):
    """`unitok tokenize` records split_shots in run.json (on by default). A run whose run.json has no
    such record (unitok 0.3, which coded videos whole) resumes whole without being told, its missing
    shards coded as its kept ones; asking for shots on it is refused, as any changed option is."""
    from unitok.pipeline import Options, TokenizeConfig, tokenize, verify

    frames = torch.cat([pan(40, 6, 1.0), pan(41, 11, 1.0)])[..., :32, :32].contiguous()
    Video(frames, 25).save(tmp_path / "cut.mp4", crf=0)
    (tmp_path / "still").mkdir()
    Video(pan(42, 9, 1.0)[..., :32, :32].contiguous(), 25).save(tmp_path / "still" / "still.mp4", crf=0)
    folder = tmp_path / "suite"
    suite.save_pretrained(folder)
    inputs = [str(tmp_path / "cut.mp4"), str(tmp_path / "still")]

    def run(out, **options):
        cfg = TokenizeConfig(inputs, out, suite=str(folder), shard_size=1, workers=0, progress=False,
                             resume=(out / "run.json").exists(), options=Options(preprocess=options))
        tokenize(cfg)
        return json.loads((out / "run.json").read_text()), unitok.data.TokenDataset(out)

    recorded, ds = run(tmp_path / "new")
    assert recorded["options"]["preprocess"] == {"split_shots": True}
    assert [s.modality for s in ds.sequence(0).spans] == ["video", "video"]      # the cut clip, one per shot
    recorded, whole = run(tmp_path / "whole", split_shots=False)
    assert recorded["options"]["preprocess"] == {"split_shots": False}
    assert [s.modality for s in whole.sequence(0).spans] == ["video"]
    run(tmp_path / "whole")                       # resumed without the flag: stays whole

    old = tmp_path / "old"                        # what unitok 0.3 left: a killed run, no record
    shutil.copytree(tmp_path / "whole", old)
    del recorded["options"]["preprocess"]
    (old / "run.json").write_text(json.dumps(recorded))
    for shard in old.glob("shard-00000.*"):  # the cut clip's shard was never written
        shard.unlink()
    with pytest.raises(ConfigError, match='options .*"split_shots":false.*vs.*"split_shots":true'):
        run(old, split_shots=True)
    _, resumed = run(old)
    assert [s.modality for s in resumed.sequence(0).spans] == ["video"]
    assert np.array_equal(resumed.sequence(0).ids, whole.sequence(0).ids)
    # verify encodes the sources again as each run did, and finds each one's shots
    for out in ("new", "whole", "old"):
        report = verify(tmp_path / out, unitok.load(folder), sample=-1)
        assert report.ok and report.sampled == 2, report.problems


def test_cli_encodes_shots_and_decodes_one_video(tmp_path, suite):
    """`unitok encode` of a video file with a cut writes one video segment per shot; `unitok decode`
    gives one video file back, all its frames; `--no-split-shots` codes the clip whole."""
    from unitok.cli import main
    from unitok.sequence import TokenSequence

    frames = torch.cat([pan(43, 7, 1.0), pan(44, 10, 1.0)])[..., :32, :32].contiguous()
    Video(frames, 25).save(tmp_path / "clip.mp4", crf=0)
    folder = tmp_path / "suite"
    suite.save_pretrained(folder)
    for flags, segments in (((), 2), (("--no-split-shots",), 1)):
        tokens, out = tmp_path / f"tok{segments}", tmp_path / f"dec{segments}"
        assert main(["encode", str(tmp_path / "clip.mp4"), "-o", str(tokens), "--suite", str(folder), *flags]) == 0
        seq, _ = TokenSequence.read(tokens / "clip.mp4.tokens.json")
        assert sum(s.modality == "video" for s in seq.spans) == segments
        assert main(["decode", str(tokens), "-o", str(out), "--suite", str(folder)]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]
        assert Video.open(out / "clip.mp4").num_frames == 17


def test_preprocess_fields_and_cli_flags():
    assert Preprocess(split_shots=True) == Preprocess() and not Preprocess().active
    assert Preprocess().to_json() == {"split_shots": True}
    off = Preprocess(split_shots=False)
    assert off.active and off.to_json() == {"split_shots": False}
    p = Preprocess(split_shots=True, min_shot_frames=2)
    assert p.active and p.to_json() == {"split_shots": True, "min_shot_frames": 2}
    for bad in (1, None, "yes"):
        with pytest.raises(ConfigError, match="split_shots must be true or false"):
            Preprocess(split_shots=bad)
    with pytest.raises(ConfigError, match="set split_shots=True too"):
        Preprocess(split_shots=False, min_shot_frames=3)
    with pytest.raises(ConfigError, match="min_shot_frames must be"):
        Preprocess(split_shots=True, min_shot_frames=2.5)
    parse = build_parser().parse_args
    assert preprocess_options(parse(["encode", "x", "-o", "y", "--split-shots", "--min-shot-frames", "6"])) == {
        "split_shots": True, "min_shot_frames": 6}
    assert preprocess_options(parse(["encode", "x", "-o", "y", "--no-split-shots"])) == {"split_shots": False}
    assert preprocess_options(parse(["encode", "x", "-o", "y"])) == {}   # the default: Preprocess's
    assert preprocess_options(parse(["tokenize", "x", "-o", "y", "--split-shots"])) == {"split_shots": True}


# -- the held-out clips (skipped where recipes/data/fetch_video.py has not run) ----------------------

#: shot changes inside the source footage itself (not made by fetch_video.py), found by looking at
#: the frames: source name -> source frame indices that start a new shot
SOURCE_CUTS = {"bikes": (187, 242)}


def expected_cuts(meta: dict, frames: int, min_shot: int = 4) -> list[int]:
    if meta.get("cut_frame"):
        return [meta["cut_frame"]]
    first = meta.get("first_frame")
    cuts = [c - first for c in SOURCE_CUTS.get(meta.get("source"), ()) if first is not None]
    return [c for c in cuts if min_shot <= c <= frames - min_shot]


@pytest.mark.parametrize("split", ["bench", "val"])
def test_held_out_clips(split):
    path = ROOT / "data" / "video" / f"{split}_256.npy"
    if not path.exists() or not (path.parent / "split.json").exists():
        pytest.skip(f"no {path} (python recipes/data/fetch_video.py)")
    meta = json.loads((path.parent / "split.json").read_text())[split]
    clips = np.load(path, mmap_mode="r")
    wrong = []
    for i, m in enumerate(meta):
        frames = torch.from_numpy(np.array(clips[i])).permute(0, 3, 1, 2)
        want, got = expected_cuts(m, len(frames)), detect_cuts(frames)
        if got != want:
            wrong.append(f"clip {i} ({m.get('kind')}, {m.get('source')}): cuts {got}, expected {want}")
    assert not wrong, "\n".join(wrong)


# -- the benchmark's shot-by-shot row (benchmarks/video.py) -----------------------------------------


def test_video_benchmark_codes_shot_by_shot(suite):
    import video as video_bench
    from candidates import Candidate

    cut = torch.cat([pan(31, 6, 1.0), pan(32, 11, 1.0)])[..., :32, :32].contiguous()
    still = pan(33, 17, 1.0)[..., :32, :32].contiguous()
    clips = [video_bench.VideoClip("cut", "scene cut", cut, video_bench.VIDEO_DEFAULT_FPS, 6),
             video_bench.VideoClip("pan", "pan-and-zoom", still, video_bench.VIDEO_DEFAULT_FPS)]
    cand = Candidate("tiny", suite, "video")
    plain = video_bench.run_video_tokenizer(cand, clips, progress=False)
    split = video_bench.run_video_tokenizer(cand, clips, progress=False, split_shots=True)
    assert split.codec == "tiny, shots split" and split.shots.tolist() == [2, 1] and plain.shots is None
    # bits: the codes of both shots, each coded alone; the clip without a cut is coded as before
    alone = [suite.encode(Video(cut[a:b], 25)) for a, b in ((0, 6), (6, 17))]
    levels = [suite.space.media_codes("video", s.ids)[0] for s in alone]
    assert split.bits[0] == pytest.approx(sum(suite.space.bits_of(s.ids[lv >= 0]) for s, lv in zip(alone, levels)))
    assert split.bits[1] == plain.bits[1] and np.array_equal(split.psnr[1], plain.psnr[1])
    report = video_bench.VideoReport([cand], clips, [plain, split], [], np.zeros(2), [], [])
    rows = {r["group"]: r for r in video_bench.shots_rows(report)}
    assert rows["scene cut"]["clips split"] == "1/1" and rows["pan-and-zoom"]["clips split"] == "0/1"
    assert rows["pan-and-zoom"]["bpp change"] == "+0.0%" and rows["scene cut"]["bpp change"].startswith("+")
    assert [r["tokenizer"] for r in video_bench.video_versus_rows(report)] == ["tiny"] * 3   # plain rows only
    assert video_bench.cut_detection_note(clips).endswith("no other in 1 of 1 scene-cut clips; cuts found in the "
                                                          "1 other clips: none.")
