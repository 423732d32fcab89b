"""The chapters' opening and closing (``ntk_notes.chapter``)."""

from types import SimpleNamespace

import myst_nb
import numpy as np
import pytest

from ntk_notes import chapter, data
from ntk_notes.profiles import SIZES


@pytest.fixture
def glued(monkeypatch):
    """Every glue call, as {key: value}, instead of a notebook's display."""
    calls = {}
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: calls.__setitem__(key, value))
    return calls


def test_begin_takes_the_profile_and_the_parameters_cell(glued):
    namespace = {"profile": "smoke", "data_dir": "/data", "n_train": 10, "n_test": None, "unrelated": 3}
    cfg = chapter.begin("transfer_lazy", namespace, "transfer", lambda c: f"{c.n_train} / {c.n_test}")
    smoke = SIZES["transfer_lazy"]["smoke"]
    assert cfg.profile == "smoke" and cfg.n_train == 10 and cfg.n_test == smoke["n_test"]
    assert cfg.width == smoke["width"] and cfg.data_dir == "/data" and not hasattr(cfg, "unrelated")
    assert glued["transfer_setting"] == f"smoke profile: 10 / {smoke['n_test']}"


def test_end_glues_the_running_time(glued, capsys):
    cfg = chapter.begin("transfer_lazy", {"profile": "smoke"}, "transfer", lambda c: "x")
    assert cfg.data_dir is None
    assert chapter.end(cfg, "transfer") is None
    assert glued["transfer_chapter_seconds"] >= 0
    assert "under the 'smoke' profile" in capsys.readouterr().out


def test_begin_names_what_is_wrong(glued):
    with pytest.raises(ValueError, match="sets no 'profile'"):
        chapter.begin("transfer_lazy", {}, "transfer", str)
    with pytest.raises(ValueError, match="unknown profile 'fast'; allowed: smoke, default, paper"):
        chapter.begin("transfer_lazy", {"profile": "fast"}, "transfer", str)
    with pytest.raises(ValueError, match="no profiles for notebook 'nope'"):
        chapter.begin("nope", {"profile": "smoke"}, "nope", str)


def test_task_draws_the_task_of_the_settings():
    cfg = SimpleNamespace(
        dataset="mnist-5k", classes=(3, 5), n_train=20, n_test=10, seed=1, image_size=8, data_dir=None
    )
    task = chapter.task(cfg)
    direct = data.make_task("mnist-5k", classes=(3, 5), n_train=20, n_test=10, seed=1, image_size=8)
    assert task.x_train.shape == (20, 8, 8, 1) and task.classes == (3, 5)
    np.testing.assert_array_equal(task.x_test, direct.x_test)
    np.testing.assert_array_equal(task.labels_train, direct.labels_train)
    redrawn = chapter.task(cfg, seed=2)
    assert not np.array_equal(redrawn.x_test, task.x_test)


def test_figure_glues_the_figure_of_a_plot_or_a_seaborn_grid_without_showing_it(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: calls.append((key, value, display)))
    fig = plt.figure()
    grid = sns.relplot(data=pd.DataFrame({"epoch": [0, 1], "mass": [1.0, 0.5]}), x="epoch", y="mass")
    chapter.figure("a_figure", fig)
    chapter.figure("a_grid", grid)
    assert calls == [("a_figure", fig, False), ("a_grid", grid.figure, False)]
    plt.close("all")


def test_figure_refuses_text_too_small_for_a_phone(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntk_notes import plotting

    monkeypatch.setattr(myst_nb, "glue", lambda *args, **kwargs: None)
    plotting.use_style()
    fig, ax = plt.subplots()
    ax.set_title("a title")
    ax.legend(handles=ax.plot([0, 1], label="a line"), fontsize="small")  # 9.996 pt: allowed
    chapter.figure("readable", fig)
    ax.set_xlabel("a tiny label", fontsize=7)
    with pytest.raises(ValueError, match=r"figure 'tiny' has text below 10 pt.*'a tiny label' \(7.0 pt\)"):
        chapter.figure("tiny", fig)
    plt.close("all")
