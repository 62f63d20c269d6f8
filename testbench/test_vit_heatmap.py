"""The pruning heat-map picture (matplotlib): labelled panels, legend, the PNG, the command."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from heatvit import heatmap  # noqa: E402
from heatvit.golden.vit import data as vit_data, model as model_io  # noqa: E402
from heatvit.golden.vit.config import PruningPlan  # noqa: E402
from test_vit_int import random_model  # noqa: E402


def texts(fig) -> list[str]:
    """Every text the figure draws: suptitle, axes titles, legend entries."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out.append(ax.get_title())
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    return out


def test_heatmap_figure_is_labelled():
    model = random_model()
    sp = vit_data.load_splits()
    images, labels = vit_data.upscale(sp["test_x"][:2]), sp["test_y"][:2]
    fig = heatmap.render(model, images, labels, first=5)
    n_sel = len(model.plan.blocks)
    assert len(fig.axes) == 2 * (1 + n_sel)
    t = texts(fig)
    logits, masks = heatmap.decisions(model, images, use_float=False)
    for r in range(2):
        assert f"#{5 + r}: true {labels[r]}, pred {logits[r].argmax()}" in " ".join(t)
        for s in range(n_sel):
            assert (f"stage {s + 1} (block {model.plan.blocks[s]}): kept {int(masks[r][s].sum())}/"
                    f"{model.cfg.num_patches}") in t
    assert {"kept patch (ink)", "pruned patch (ink)"} <= set(t)
    assert any("integer model" in x for x in t)
    # the panels after a stage differ from the input panel (patches are tinted kept/pruned)
    assert not np.array_equal(fig.axes[0].images[0].get_array(), fig.axes[1].images[0].get_array())


def test_heatmap_command(tmp_path, capsys):
    from matplotlib.image import imread
    model = random_model()
    model_io.save_npz(model, tmp_path / "m.npz")
    out = tmp_path / "h.png"
    assert heatmap.main(["--model", str(tmp_path / "m.npz"), "--out", str(out), "--images", "2", "--dpi", "40"]) == 0
    pic = imread(out)
    assert pic.ndim == 3 and pic.shape[0] > 50 and pic.shape[1] > 100
    assert "wrote" in capsys.readouterr().out


def test_heatmap_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        heatmap.main(["--images", "0", "--out", str(tmp_path / "h.png")])
    with pytest.raises(ValueError, match="does not exist"):
        heatmap.main(["--model", str(tmp_path / "none.npz"), "--out", str(tmp_path / "h.png")])
    with pytest.raises(ValueError, match="no token selectors"):
        heatmap.render(random_model(plan=PruningPlan()), np.zeros((1, 1, 32, 32), np.float32), [0])


def test_heatmap_rtl_masks_drawn_and_differences_flagged():
    """``render(rtl=...)`` (``heatvit heatmap --rtl``) draws the masks it is given (the RTL's), says
    on how many images they equal golden's, and outlines and titles a differing panel in red.
    The RTL run itself: testbench/test_accel_prune_digits.py."""
    model = random_model()
    sp = vit_data.load_splits()
    images, labels = vit_data.upscale(sp["test_x"][:2]), sp["test_y"][:2]
    logits, masks = heatmap.decisions(model, images, use_float=False)
    rtl = {"logits": logits, "masks": [list(m) for m in masks], "golden_masks": masks, "equal": [True, True]}
    t = texts(heatmap.render(model, images, labels, rtl=rtl))
    assert any("TRACE region" in x and "equal to golden on 2/2 images" in x for x in t), t
    assert not any("DIFFERS" in x for x in t)
    bad = [m.copy() for m in masks[1]]
    bad[0] = ~bad[0]
    rtl = {**rtl, "masks": [masks[0], bad], "equal": [True, False]}
    fig = heatmap.render(model, images, labels, rtl=rtl)
    t = texts(fig)
    assert any("equal to golden on 1/2 images" in x for x in t)
    n_sel = len(model.plan.blocks)
    flagged = [ax for ax in fig.axes if "DIFFERS" in ax.get_title()]
    assert flagged == [fig.axes[(1 + n_sel) + 1]] and flagged[0].title.get_color() == "red"
    assert f"kept {int(bad[0].sum())}/" in flagged[0].get_title()
    with pytest.raises(ValueError, match="exclude"):
        heatmap.render(model, images, labels, rtl=rtl, use_float=True)
