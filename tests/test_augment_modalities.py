"""Modality dropout (mmaffect.training.augment_modalities): whole modalities of a training
window masked, never all of them, reproducibly, in training only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmaffect.errors import ConfigError
from mmaffect.training.augment_modalities import MASK_KEYS, ModalityDropout


def _item(n: int = 10) -> dict[str, torch.Tensor]:
    return {"audio_mask": torch.ones(n, dtype=torch.bool), "face_mask": torch.rand(n) > 0.3,
            "word_mask": torch.ones(n, 4, dtype=torch.bool), "mask": torch.ones(n, dtype=torch.bool)}


def test_config_is_checked() -> None:
    assert ModalityDropout.from_mapping(None) is None
    assert ModalityDropout.from_mapping({"text": 0.0, "audio": 0, "visual": 0.0}) is None
    assert ModalityDropout.from_mapping({"visual": 0.3, "text": 0.0}).p == {"visual": 0.3}
    for bad, match in (({"faces": 0.3}, "unknown modality augment.modalities.faces"),
                       ({"visual": 1.0}, r"augment.modalities.visual must be a probability in \[0, 1\)"),
                       ({"audio": -0.1}, "probability"), ({"audio": True}, "probability"),
                       ([0.3], "mapping")):
        with pytest.raises(ConfigError, match=match):
            ModalityDropout.from_mapping(bad)


def test_drops_at_the_rate_asked_never_all_and_reproducibly() -> None:
    drop = ModalityDropout({"visual": 0.3, "text": 0.5})
    dropped = {m: 0 for m in MASK_KEYS}
    for k in range(2000):
        item = drop(_item(), np.random.default_rng([7, k]))
        for m, key in MASK_KEYS.items():
            dropped[m] += int(not item[key].any())
        assert item["audio_mask"].all() and item["mask"].all()  # not asked: untouched
    assert dropped["audio"] == 0
    assert abs(dropped["visual"] / 2000 - 0.3) < 0.04 and abs(dropped["text"] / 2000 - 0.5) < 0.04
    a, b = drop(_item(), np.random.default_rng(3)), drop(_item(), np.random.default_rng(3))
    assert all(torch.equal(a[k], b[k]) for k in MASK_KEYS.values())
    # every present modality drawn: the last drawn stays, so a window always has some input
    both = ModalityDropout({"audio": 0.99, "visual": 0.99})
    only = {"audio_mask": torch.ones(5, dtype=torch.bool), "face_mask": torch.ones(5, dtype=torch.bool)}
    for k in range(50):
        out = both({k2: v.clone() for k2, v in only.items()}, np.random.default_rng(k))
        assert out["audio_mask"].any() or out["face_mask"].any()
    # a modality with no frame present does not count as present
    lone = both({"audio_mask": torch.ones(5, dtype=torch.bool), "face_mask": torch.zeros(5, dtype=torch.bool)},
                np.random.default_rng(0))
    assert lone["audio_mask"].all()


def test_training_windows_only(predict_media: dict[str, Path], tmp_path: Path) -> None:
    """Through SessionWindows and the trainer: training windows lose whole modalities, devel
    recordings never do, and a unimodal model or an unread modality is refused in one line."""
    import yaml

    from mmaffect.data.cache import Cache
    from mmaffect.data.dataset import SessionWindows
    from mmaffect.data.readers import read_corpus
    from mmaffect.preprocess.pipeline import prepare
    from mmaffect.training.trainer import load_train_config, train

    cache = tmp_path / "cache"
    prepare(read_corpus(predict_media["corpus"]), cache, config={"faces": {"size": 32}}, progress=False)
    sessions = Cache(cache).sessions()
    plain = SessionWindows(sessions, window=20, face_size=32, seed=1)
    dropped = SessionWindows(sessions, window=20, face_size=32, seed=1,
                             modality_dropout=ModalityDropout({"visual": 0.5, "audio": 0.5}))
    lost = 0
    for epoch in range(4):
        plain.set_epoch(epoch)
        dropped.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], dropped[i]
            assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["labels"], b["labels"])
            for key in ("audio_mask", "face_mask"):
                assert torch.equal(b[key], a[key]) or not b[key].any()
                lost += int(a[key].any() and not b[key].any())
            assert b["audio_mask"].any() or b["face_mask"].any() or b["word_mask"].any()
    assert lost > 0

    # its draw has its own random stream: not the one that picks the speaker reference's frames
    from mmaffect.data import dataset as ds

    assert len({ds.STREAM_CHANNEL, ds.STREAM_REFERENCE, ds.STREAM_MODALITIES}) == 3
    seen: list[float] = []
    both = SessionWindows(sessions, window=20, face_size=32, seed=1, audio_reference=4,
                          modality_dropout=lambda item, rng: seen.append(rng.random()) or item)
    both[0]
    assert seen == [np.random.default_rng([1, 0, 0, ds.STREAM_MODALITIES]).random()]
    assert seen[0] != np.random.default_rng([1, 0, 0, ds.STREAM_REFERENCE]).random()

    base = {"model_name": "fusion-concat", "data": {"cache": str(cache), "window": 20, "train_partitions": ["train"],
                                                    "devel_partitions": ["train"]},
            "model_options": {"embed_dim": 384, "image_size": 32, "head_hidden": 8},
            "optim": {"epochs": 1, "batch_size": 2}, "log": {"plot": False, "progress": False}}
    from mmaffect.models.zoo import tiny_overrides

    base["model_options"] = {**tiny_overrides("fusion-concat"), **base["model_options"]}
    path = tmp_path / "fusion.yaml"
    path.write_text(yaml.safe_dump({**base, "augment": {"modalities": {"visual": 0.5, "text": 0.3}}}))
    train(load_train_config(str(path), []), out=tmp_path / "run", progress=False)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["augment"]["modalities"]["visual"] == 0.5
    audio_only = {**base, "model_name": "audio-tzirakis2018", "model_options": tiny_overrides("audio-tzirakis2018"),
                  "data": {**base["data"], "modalities": ["audio"]}, "augment": {"modalities": {"audio": 0.3}}}
    path.write_text(yaml.safe_dump(audio_only))
    with pytest.raises(ConfigError, match="multimodal models"):
        train(load_train_config(str(path), []), out=tmp_path / "run2", progress=False)
    from mmaffect.training.trainer import _modality_dropout

    with pytest.raises(ConfigError, match="augment.modalities.text > 0, but the model reads audio, visual"):
        _modality_dropout({"augment": {"modalities": {"text": 0.3}}, "data": {"modalities": ["audio", "visual"]}})
