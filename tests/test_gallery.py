"""The batch gallery with many items: only the turntables on screen play, the rest stay unloaded.

(The gallery of a real Ray batch, one card per item with its media: tests/test_batch_ray.py.)"""

from __future__ import annotations

import numpy as np
from browser import HeadlessChromium, browser_test
from PIL import Image

from splatgen.batch.gallery import write_gallery
from splatgen.batch.manifest import ManifestEntry
from splatgen.render.turntable import VIDEO_NAME, _write_mp4

ITEMS = 24
VIDEOS = "[...document.querySelectorAll('.card .media video')]"


def turntable_frames(count: int = 8, size: int = 64) -> list[np.ndarray]:
    """A red square circling on white: [size, size, 3] uint8 frames."""
    frames = []
    for index in range(count):
        frame = np.full((size, size, 3), 255, np.uint8)
        angle = 2 * np.pi * index / count
        x, y = (int(size / 2 + size / 4 * np.cos(angle)), int(size / 2 + size / 4 * np.sin(angle)))
        frame[y - 6 : y + 6, x - 6 : x + 6] = (200, 30, 30)
        frames.append(frame)
    return frames


def gallery_of_many_items(out):
    frames = turntable_frames()
    entries = []
    for index in range(ITEMS):
        item = f"item-{index:02d}"
        run = out / item
        run.mkdir(parents=True)
        _write_mp4(run / VIDEO_NAME, iter(frames), fps=8)
        Image.fromarray(np.concatenate(frames[:4], axis=1)).save(run / "views.png")
        entries.append(
            ManifestEntry(
                id=item, prompt=f"prompt {index}", objective="dsds", seed=0, where="", status="done", run=item
            )
        )
    return write_gallery(out, entries)


def test_the_gallery_html_asks_for_no_video_until_the_script_plays_it(tmp_path):
    page = gallery_of_many_items(tmp_path).read_text(encoding="utf-8")
    assert page.count('preload="none"') == ITEMS and "autoplay" not in page
    assert page.count('loading="lazy"') == ITEMS  # the views grids
    assert "IntersectionObserver" in page


@browser_test
def test_only_the_turntables_on_screen_play_and_scrolling_moves_them(tmp_path):
    gallery = gallery_of_many_items(tmp_path)
    with HeadlessChromium(gallery.as_uri(), window_size=(1280, 800)) as browser:
        playing = f"{VIDEOS}.map(v => !v.paused && v.readyState >= 2)"
        first_playing = browser.evaluate_until(f"{playing}[0]", timeout_s=60)
        assert first_playing, "the first card's turntable never played"
        state = browser.evaluate(f"{VIDEOS}.map(v => [v.paused, v.readyState])")
        assert [paused for paused, _ in state].count(False) < ITEMS // 2  # only a screenful or so plays
        assert state[-1] == [True, 0], f"the last card (off screen) was loaded: {state[-1]}"

        browser.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        assert browser.evaluate_until(f"{playing}[{ITEMS - 1}]", timeout_s=60), (
            "the last card did not play once scrolled to"
        )
        assert browser.evaluate_until(f"{VIDEOS}[0].paused", timeout_s=60), "the first card kept playing off screen"
