"""Model FLOPs of a Z-Image render, against a count by hand."""

import json

from zbench.bench.flops import PEAK_TFLOPS, zimage_forward_flops, zimage_image_flops
from zbench.bench.grid import ARCHITECTURE

CONFIG = json.loads((ARCHITECTURE / "transformer.json").read_text())


def test_a_z_image_turbo_forward_at_1024_is_56_6_tflop():
    """dim 3840, FFN 10240, 30 main blocks over 4096 image + 128 caption tokens, 2 + 2 refiner blocks."""
    per_token = 2 * (4 * 3840 * 3840 + 3 * 3840 * 10240)  # q, k, v, out and the SwiGLU's three matrices
    attention = {n: 4 * n * n * 3840 for n in (4224, 4096, 128)}  # QKᵀ and AV over n tokens
    blocks = 30 * (4224 * per_token + attention[4224]) + 2 * (4096 * per_token + attention[4096])
    blocks += 2 * (128 * per_token + attention[128])
    embedders = 2 * 4096 * 64 * 3840 + 2 * 128 * 2560 * 3840 + 2 * 4096 * 3840 * 64  # patches in, caption, out
    assert zimage_forward_flops(CONFIG, 4096, 128) == blocks + embedders
    assert round(zimage_forward_flops(CONFIG, 4096, 128) / 1e12, 1) == 56.6
    image = zimage_image_flops(CONFIG, 1024, 1024, 8, 128, cfg=False)
    assert round(image / 1e12) == 453  # 8 forwards: 0.46 s/image at an H100's 989 TFLOP/s
    assert zimage_image_flops(CONFIG, 1024, 1024, 8, 128, cfg=True) == 2 * image


def test_token_counts_are_padded_as_the_model_pads_them():
    assert zimage_forward_flops(CONFIG, 4096, 100) == zimage_forward_flops(CONFIG, 4096, 128)


def test_published_peaks_match_the_most_specific_name_first():
    names = [key for key, _ in PEAK_TFLOPS]
    assert names.index("H100 PCIe") < names.index("H100") and names.index("L40S") < names.index("L40")
    assert names.index("A10G") < names.index("A10")
