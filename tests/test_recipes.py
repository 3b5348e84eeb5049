"""Every recipe's training YAML resolves, and the EmoBank paper-widths recipe is what its README
measured (the reduced recipe at the paper's widths, the paper's learning rate, the schedule)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmaffect.training.trainer import load_train_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TRAINING_YAMLS = sorted(p for p in RECIPES.rglob("*.yaml") if "model_name" in (yaml.safe_load(p.read_text()) or {}))


def test_the_recipes_hold_training_yamls() -> None:
    assert len(TRAINING_YAMLS) >= 30 and RECIPES / "emobank" / "text-paper-widths.yaml" in TRAINING_YAMLS


@pytest.mark.parametrize("path", TRAINING_YAMLS, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_resolves(path: Path) -> None:
    cfg = load_train_config(path, ["data.cache=/nonexistent/cache"])
    assert cfg["model_name"] == yaml.safe_load(path.read_text())["model_name"]


def test_emobank_paper_widths_recipe_is_the_reduced_one_at_the_papers_widths() -> None:
    from mmaffect.models import create_model, get_spec

    reduced = load_train_config(RECIPES / "emobank" / "text.yaml", [
        "model_options.proj_dim=512", "model_options.lstm_hidden=256", "model_options.ngram_filters=100",
        "model_options.head_hidden=256", "optim.lr=5e-4", "optim.scheduler=warmup-cosine"])
    paper = load_train_config(RECIPES / "emobank" / "text-paper-widths.yaml")
    space = {k: v for k, v in paper.pop("tune")["space"].items() if v is not None}
    reduced.pop("tune")
    assert paper == reduced
    assert set(space) == {"learning_rate", "dropout"}
    # Section 4.1.1's widths are the network's defaults
    defaults = get_spec("text-paper").defaults
    assert all(paper["model_options"][k] == defaults[k] for k in ("proj_dim", "lstm_hidden", "ngram_filters", "head_hidden"))
    n = sum(p.numel() for p in create_model("text-paper", **paper["model_options"]).parameters())
    assert round(n / 1e6, 1) == 12.9
