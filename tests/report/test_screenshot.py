"""The card's page, rendered by headless Chromium (Debian's ``chromium``): a screenshot that is not blank."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from rlport.report import card

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_page_renders_to_a_screenshot_that_is_not_blank(card_bundles, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    card(card_bundles["cartpole"], tmp_path / "card", episodes=3)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,1400", f"--screenshot={shot}", (tmp_path / "card" / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    pixels = np.asarray(imageio.imread(shot))[..., :3].astype(np.int32)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    drawn = np.abs(pixels - background).sum(axis=-1) > 60  # text, bars, borders
    assert pixels.shape[:2] == (1400, 1000)
    assert drawn.mean() > 0.03, f"only {drawn.mean():.1%} of the screenshot differs from its background"
    blue = (pixels[..., 2] > 180) & (pixels[..., 0] < 120)  # the returns plot's bars
    assert blue.mean() > 0.005
