"""Data-parallel training: 2 gloo processes (torchrun) take the same steps as 1 process.

Global batch 4 split as 2 + 2 over two ranks must give the weights of one
process with batch 4 on the same windows in the same order (no dropout).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmaffect.data.cache import Cache, write_stream
from mmaffect.models import create_model
from mmaffect.preprocess.pipeline import default_prepare_config
from mmaffect.training.distributed import BlockDistributedSampler, pooled_ccc_loss
from mmaffect.training.metrics import ccc_loss
from mmaffect.training.trainer import load_train_config, train

torch.set_num_threads(1)

PLUGIN = "mmaffect_tiny_ddp_models"
TINY = "test-tiny-linear-ddp"
PLUGIN_SOURCE = textwrap.dedent(
    f'''
    import torch
    from torch import nn
    from mmaffect.models import ModelOutput, list_models, register_model

    torch.set_num_threads(1)


    class TinyLinear(nn.Module):
        def __init__(self, *, in_dim, hidden):
            super().__init__()
            self.a = nn.Linear(in_dim, hidden)
            self.b = nn.Linear(hidden, 2)

        def forward(self, batch):
            return ModelOutput(torch.tanh(self.b(torch.tanh(self.a(batch["audio"] * 4.0)))), {{}})


    if "{TINY}" not in list_models():
        register_model("{TINY}", modalities=("audio",), in_dim=16, hidden=6)(lambda **kw: TinyLinear(**kw))
    '''
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    plugin = tmp_path_factory.mktemp("ddp_plugin")
    (plugin / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    sys.path.insert(0, str(plugin))
    importlib.import_module(PLUGIN)
    root = tmp_path_factory.mktemp("ddp_cache")
    cfg = default_prepare_config()
    cfg["audio"]["frame_samples"] = 8
    rng = np.random.default_rng(3)
    sessions = {}
    for part, n in (("train", 4), ("devel", 1)):
        for i in range(n):
            name = f"{part}_{i}"
            level = np.tanh(np.cumsum(rng.normal(0, 0.3, 50)))
            times = np.arange(50) / 10.0
            write_stream(root / name / "a.h5", {
                "times": times, "audio": ((level[:, None] + rng.normal(0, 0.05, (50, 8))) * 16000).astype(np.int16),
                "audio_mask": np.ones(50, bool), "audio_target": rng.random(50) < 0.5})
            labels = np.stack([level, 0.3 - 0.5 * level], 1).astype(np.float32)
            write_stream(root / name / "l.h5", {"times": times, "labels": labels,
                                                "label_names": np.array(["arousal", "valence"], dtype=object)})
            sessions[name] = {"partition": part, "n_frames": 50, "report": {},
                              "streams": {"labels": f"{name}/l.h5", "audio": f"{name}/a.h5"}}
    Cache(root).write_manifest({"format_version": 1, "config": cfg, "sessions": sessions})
    return plugin, root


def test_block_sampler_shards_each_global_batch() -> None:
    data = list(range(13))
    single = list(BlockDistributedSampler(data, batch_size=4, seed=5))
    ranks = [list(BlockDistributedSampler(data, batch_size=4, num_replicas=2, rank=r, seed=5)) for r in (0, 1)]
    assert sorted(single) == data
    for b in range(3):  # full global batches: rank 0 + rank 1 slices == the single-process batch
        assert ranks[0][2 * b:2 * b + 2] + ranks[1][2 * b:2 * b + 2] == single[4 * b:4 * b + 4]
    assert ranks[0][6:] == single[12:] and len(ranks[1]) == len(ranks[0]) == 7  # last one padded
    s = BlockDistributedSampler(data, batch_size=4, seed=5)
    s.set_epoch(1)
    assert list(s) != single


def test_pooled_loss_equals_ccc_loss_in_one_process() -> None:
    g = torch.Generator().manual_seed(0)
    pred, gold = torch.randn(3, 7, 2, generator=g), torch.randn(3, 7, 2, generator=g)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 4:] = False
    assert torch.allclose(pooled_ccc_loss(pred, gold, mask), ccc_loss(pred, gold, mask), atol=1e-7)
    assert torch.allclose(pooled_ccc_loss(pred, gold, mask, mse_weight=0.7),
                          ccc_loss(pred, gold, mask, mse_weight=0.7), atol=1e-7)


def test_two_gloo_processes_match_one_process(setup: tuple[Path, Path], tmp_path: Path) -> None:
    plugin, cache = setup
    cfg = load_train_config({"imports": [PLUGIN], "model_name": TINY},
                            [f"data.cache={cache}", "data.window=20", "optim.batch_size=4", "optim.epochs=1",
                             "optim.lr=0.01", "log.plot=false", "log.progress=false", "device=cpu"])
    single = train(cfg, out=tmp_path / "single", progress=False)
    assert single.step == 3  # 4 recordings x 3 windows / 4
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), *sys.path]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mmaffect.cli", "train", str(tmp_path / "cfg.yaml"),
           "--out", str(tmp_path / "ddp"), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert b["step"] == 3 and set(a["model"]) == set(b["model"])
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6, rtol=0), (k, (a["model"][k] - b["model"][k]).abs().max())
    torch.manual_seed(cfg["seed"])
    untrained = create_model(TINY, **cfg["model_options"]).state_dict()
    assert not torch.allclose(untrained["a.weight"], b["model"]["a.weight"], atol=1e-3)  # it trained
    assert abs(a["history"][0]["train_loss"] - b["history"][0]["train_loss"]) < 1e-5
    # rank 0 alone writes the run folder (TensorBoard events too, when the package is installed)
    files = sorted(p.name for p in (tmp_path / "ddp").iterdir() if p.name != "tensorboard")
    assert files == [".lock", "best.pt", "config.yaml", "last.pt", "log.csv"]  # .lock: the run folder's lock
