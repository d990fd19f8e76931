"""backend.io_video: videos, frame folders and image lists in; clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.io_video import VideoError, as_frames, read_frames

av = pytest.importorskip("av")


def _colour(i: int) -> tuple[int, int, int]:
    return (20 * i % 256, 255 - 15 * i % 256, 128)


def _write_video(path, n: int, w: int = 64, h: int = 48, fps: int = 10) -> None:
    """n frames, frame i filled with _colour(i): flat colours survive lossy coding to a few levels."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[:] = _colour(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_images(folder, names, w=40, h=30, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for name in names:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / name)
        images[name] = img
    return images


def test_video_decodes_every_frame_with_its_colour(tmp_path):
    _write_video(tmp_path / "clip.mp4", 12)
    clip = read_frames(tmp_path / "clip.mp4")
    assert len(clip.frames) == 12 and clip.indices == list(range(12))
    assert clip.fps == pytest.approx(10.0)
    assert (clip.width, clip.height) == (64, 48)
    for i, frame in enumerate(clip.frames):
        assert frame.dtype == np.uint8 and frame.shape == (48, 64, 3)
        # lossy YUV 4:2:0 coding of a flat colour: within 6 levels per channel
        assert np.abs(frame.reshape(-1, 3).mean(0) - _colour(i)).max() < 6, i


def test_video_start_stride_and_max_frames(tmp_path):
    _write_video(tmp_path / "clip.mp4", 12)
    clip = read_frames(tmp_path / "clip.mp4", start=1, stride=3, max_frames=3)
    assert clip.indices == [1, 4, 7]
    assert np.abs(clip.frames[2].reshape(-1, 3).mean(0) - _colour(7)).max() < 6


def test_one_frame_video_is_too_few(tmp_path):
    _write_video(tmp_path / "one.mp4", 1)
    assert len(read_frames(tmp_path / "one.mp4").frames) == 1
    with pytest.raises(VideoError, match="too few frames: got 1 frame, need at least 2"):
        read_frames(tmp_path / "one.mp4", min_frames=2)


def test_wrong_type_corrupt_and_missing_inputs(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n")
    with pytest.raises(VideoError, match="not a video"):
        read_frames(tmp_path / "notes.mp4")
    _write_video(tmp_path / "clip.mp4", 6)
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])  # mp4 with its index cut off
    with pytest.raises(VideoError, match="cut.mp4"):
        read_frames(tmp_path / "cut.mp4")
    with pytest.raises(VideoError, match="no such file or folder"):
        read_frames(tmp_path / "missing.mp4")


def test_huge_inputs_are_refused_before_decoding(tmp_path):
    _write_video(tmp_path / "clip.mp4", 12)
    with pytest.raises(VideoError, match="larger than the limit of 32 pixels"):
        read_frames(tmp_path / "clip.mp4", max_side=32)
    with pytest.raises(VideoError, match="exceed the limit of 5"):
        read_frames(tmp_path / "clip.mp4", max_total_frames=5)
    # an explicit max_frames takes the first frames instead of refusing
    assert len(read_frames(tmp_path / "clip.mp4", max_frames=5).frames) == 5
    with pytest.raises(VideoError, match="GiB"):
        read_frames(tmp_path / "clip.mp4", max_bytes=64 * 48 * 3 * 4)


def test_folder_is_read_in_natural_order_and_exactly(tmp_path):
    names = ["f10.png", "f2.png", "f1.png", "f33.png"]
    images = _write_images(tmp_path / "frames", names)
    (tmp_path / "frames" / "readme.txt").write_text("ignored")
    clip = read_frames(tmp_path / "frames")
    order = ["f1.png", "f2.png", "f10.png", "f33.png"]
    assert len(clip.frames) == 4
    for frame, name in zip(clip.frames, order):
        np.testing.assert_array_equal(frame, images[name])  # PNG is lossless
    clip = read_frames(tmp_path / "frames", start=1, stride=2)
    assert clip.indices == [1, 3]
    np.testing.assert_array_equal(clip.frames[1], images["f33.png"])


def test_image_list_keeps_the_given_order(tmp_path):
    images = _write_images(tmp_path, ["a.png", "b.png", "c.png"])
    clip = read_frames([tmp_path / "c.png", tmp_path / "a.png"])
    np.testing.assert_array_equal(clip.frames[0], images["c.png"])
    np.testing.assert_array_equal(clip.frames[1], images["a.png"])


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no images"):
        read_frames(tmp_path / "empty")
    _write_images(tmp_path / "mixed", ["0.png"], w=40, h=30)
    _write_images(tmp_path / "mixed", ["1.png"], w=41, h=30)
    with pytest.raises(VideoError, match="all frames must have one size"):
        read_frames(tmp_path / "mixed")
    _write_images(tmp_path / "broken", ["0.png"])
    (tmp_path / "broken" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(VideoError, match="1.png: not a readable image"):
        read_frames(tmp_path / "broken")


def test_as_frames_checks_type_and_size():
    ok = [np.zeros((4, 5, 3), np.uint8)] * 2
    assert len(as_frames(ok)) == 2
    with pytest.raises(VideoError, match="uint8"):
        as_frames([np.zeros((4, 5, 3), np.float32)])
    with pytest.raises(VideoError, match="frame 1 is 6x4"):
        as_frames([np.zeros((4, 5, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)])
    with pytest.raises(VideoError, match="no frames"):
        as_frames([])
