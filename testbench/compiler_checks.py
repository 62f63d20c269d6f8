"""Checks the compiler tests share: a compiled model through the reference interpreter against
golden, bit for bit."""

import numpy as np

from heatvit import compiler
from heatvit.compiler import interpret, models


def check_bit_exact(qm, acc, images, blob: bytes | None = None):
    """Compile ``qm`` for ``acc`` (or take the image ``blob``), run every image through the
    interpreter, compare logits and every stage with golden ``forward_int``: ``(image, logits)``."""
    img = compiler.read_image(blob if blob is not None else compiler.compile_model(qm, acc), acc)
    logits, dumps = models.dense_dumps(qm, images)
    patches = models.patches(qm, images)
    for b in range(len(images)):
        res = interpret.run(img, acc, interpret.pack_input(img, patches[b]), trace=True)
        assert np.array_equal(interpret.unpack_output(img, res.output), logits[b]), f"image {b}: logits differ"
        st = interpret.stages(img, res.steps)
        assert set(st) == set(dumps[b]), set(st) ^ set(dumps[b])
        for name, want in dumps[b].items():
            assert st[name].shape == want.shape and np.array_equal(st[name], want), f"image {b}: stage {name} differs"
    return img, logits
