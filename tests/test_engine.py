"""The training engine: seeding, schedules, clipping, parameter groups, checkpoints, exact resume, interrupts."""
from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from common.config import ConfigError
from engine import (
    TRAIN_SCHEMA,
    TrainData,
    build_scheduler,
    check_train_config,
    fit,
    load_checkpoint,
    load_model_weights,
    resolve_amp,
    seed_everything,
    train_config,
)
from engine.seeding import get_rng_state, set_rng_state

BASE = {"epochs": 4, "batch_size": 8, "log_every_steps": 3, "progress": False,
        "optimizer": {"name": "adam", "lr": 0.01},
        "scheduler": {"name": "cosine_warm_restarts", "T_0": 7, "warmup_steps": 2, "gamma": 0.5}}


class NoisyData(Dataset):
    """Features with random noise drawn in __getitem__ (numpy and torch), like on-the-fly augmentation."""

    def __init__(self, n: int = 40):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 5, generator=g)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        noise = torch.from_numpy(np.random.normal(0, 0.1, 5).astype(np.float32)) + 0.1 * torch.randn(5)
        return self.x[i] + noise, self.y[i]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.front = nn.Linear(5, 8)
        self.drop = nn.Dropout(0.3)
        self.back = nn.Linear(8, 2)

    def forward(self, x):
        return self.back(self.drop(torch.relu(self.front(x))))


class ClassifyTask:
    """Cross-entropy on the noisy data; dev metric = scripted values when given, else the dev loss."""

    def __init__(self, dev_values=None, interrupt_at_step=None):
        self.dev_values = list(dev_values) if dev_values is not None else None
        self.interrupt_at_step, self.steps, self.epoch = interrupt_at_step, 0, 0
        self.params_after_epoch: list[dict] = []

    def training_step(self, model, batch):
        self.steps += 1
        if self.interrupt_at_step is not None and self.steps == self.interrupt_at_step:
            raise KeyboardInterrupt
        x, y = batch
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        return loss, {"acc": (logits.argmax(1) == y).float().mean()}

    def on_epoch_start(self, model, epoch):
        self.epoch = epoch

    def evaluate(self, model):
        self.params_after_epoch.append({k: v.clone() for k, v in model.state_dict().items()})
        if self.dev_values is not None:
            return {"dev_err": self.dev_values[self.epoch]}
        data = NoisyData()
        return {"dev_loss": float(nn.functional.cross_entropy(model(data.x), data.y))}


def _cfg(**over) -> dict:
    merged = {**BASE, **over}
    return train_config(merged)


def _train(out: Path, task=None, resume=False, seed_model=0, data=None, **over):
    seed_everything(seed_model)
    model = Net()
    result = fit(model, task or ClassifyTask(), data or TrainData(NoisyData()), _cfg(**over), out, resume=resume)
    return model, result


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _assert_same_params(a: nn.Module, b: nn.Module) -> None:
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    model, result = _train(out)
    return out, model, result


# ---- config ----
def test_schema_defaults_and_errors():
    cfg = train_config()
    assert set(cfg) == set(TRAIN_SCHEMA) and cfg["optimizer"]["name"] == "adam"
    with pytest.raises(ConfigError, match="optimizer.lrr"):
        train_config({"optimizer": {"lrr": 1.0}})
    with pytest.raises(ConfigError, match="'amp' must be one of"):
        train_config({"amp": "fp32"})
    with pytest.raises(ConfigError, match=r"^training config: 'epochs' must be an integer >= 1, got 0$"):
        train_config({"epochs": 0})
    with pytest.raises(ConfigError, match=r"^training config: 'seed' must be an integer in \[0, 4294967295\], "
                                          r"got null$"):
        train_config({"seed": None})
    with pytest.raises(ConfigError, match=r"'optimizer\.betas' must be a list of 2 items, each a finite number in "
                                          r"\[0, 1\), got \[0\.9, 1\.5\]"):
        train_config({"optimizer": {"betas": [0.9, 1.5]}})
    with pytest.raises(ConfigError, match="'optimizer.nesterov' needs 'optimizer.momentum' > 0"):
        train_config({"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.0}})
    with pytest.raises(ConfigError, match=r"scheduler\.T_0 \(2\) must exceed the warm-up \(2 steps\)"):
        train_config({"scheduler": {"name": "cosine_warm_restarts", "T_0": 2, "warmup_steps": 2}})
    hand_built = train_config()     # a section built in code, not loaded: the same rules
    hand_built["grad_clip"] = float("nan")
    with pytest.raises(ConfigError, match=r"^training config: 'grad_clip' must be a finite number >= 0, got nan$"):
        check_train_config(hand_built)
    with pytest.raises(ConfigError, match="missing key 'optimizer'"):
        fit(Net(), ClassifyTask(), TrainData(NoisyData()), {k: v for k, v in train_config().items()
                                                           if k != "optimizer"}, "/nonexistent")


def test_amp_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None and resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_amp("fp16", cpu)
    with pytest.raises(ValueError, match=r"^amp: must be one of auto, native_bf16, off, bf16, fp16, got 'fp32'$"):
        resolve_amp("fp32", cpu)


@pytest.mark.parametrize("amx", [True, False])
def test_native_bf16_is_bf16_only_where_the_cpu_multiplies_it(monkeypatch, amx):
    """`native_bf16` follows the hardware probe; `auto` never turns on bf16 on a CPU, whatever the CPU."""
    import engine.precision as precision
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cpu = torch.device("cpu")
    assert precision.cpu_computes_bf16() is amx
    assert resolve_amp("native_bf16", cpu) is (torch.bfloat16 if amx else None)
    assert resolve_amp("auto", cpu) is None
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")     # a PyTorch without the probe: float32
    assert resolve_amp("native_bf16", cpu) is None


# ---- seeding ----
def test_seeding_reproducible_with_workers(tmp_path):
    kw = dict(epochs=2, num_workers=2, scheduler={"name": "none"})
    a, ra = _train(tmp_path / "a", **kw)
    b, rb = _train(tmp_path / "b", **kw)
    _assert_same_params(a, b)
    assert _read(tmp_path / "a" / "train_log.csv") == _read(tmp_path / "b" / "train_log.csv")
    c, _ = _train(tmp_path / "c", seed=1, **kw)  # other data order, dropout masks and noise
    assert not torch.equal(a.back.weight, c.back.weight)


def test_rng_state_roundtrip():
    seed_everything(3)
    state = get_rng_state()
    first = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    set_rng_state(state)
    assert (np.random.rand(), torch.rand(1).item(), __import__("random").random()) == first


# ---- schedules ----
def _lrs(sched_cfg: dict, n: int, base: float = 1.0, steps_per_epoch=None, by="step") -> list[float]:
    cfg = train_config({"scheduler": sched_cfg})["scheduler"]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    out = []
    for t in range(n):
        sched.update(epoch=t if by == "epoch" else 0, step=t if by == "step" else 0)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_scheduler_hand_checked_points():
    assert _lrs({"name": "none"}, 3, by="epoch") == [1.0, 1.0, 1.0]
    assert _lrs({"name": "exponential", "gamma": 0.5}, 4, by="epoch") == [1.0, 0.5, 0.25, 0.125]
    assert _lrs({"name": "step", "step_size": 2}, 5, by="epoch") == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert _lrs({"name": "keras_decay", "decay": 0.5}, 4) == pytest.approx([1, 1 / 1.5, 0.5, 1 / 2.5])
    # warm-up for the other schedules: (t+1)/(W+1) ramp, then the schedule from its start
    assert _lrs({"name": "exponential", "gamma": 0.5, "warmup_epochs": 2}, 5, by="epoch") == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 0.5, 0.25])
    # cosine with per-cycle warm-up (W=1), T_0=5, eta_min=0.1, peak halves each cycle
    lrs = _lrs({"name": "cosine_warm_restarts", "T_0": 5, "warmup_steps": 1, "eta_min": 0.1, "gamma": 0.5}, 7)
    c = lambda peak, k: 0.1 + (peak - 0.1) * (1 + math.cos(math.pi * k / 4)) / 2  # noqa: E731
    assert lrs == pytest.approx([0.1 + 0.9 / 2, 1.0, c(1, 1), c(1, 2), c(1, 3), 0.1 + 0.4 / 2, 0.5])
    # T_mult=2 without warm-up: cycles of 2, 4, 8 steps
    lrs = _lrs({"name": "cosine_warm_restarts", "T_0": 2, "T_mult": 2}, 7)
    assert lrs == pytest.approx([1.0, 0.5, 1.0, c2 := (1 + math.cos(math.pi / 4)) / 2, 0.5, 1 - c2, 1.0])


def test_cosine_matches_torch_sgdr_without_warmup():
    ours = _lrs({"name": "cosine_warm_restarts", "T_0": 3, "T_mult": 2, "eta_min": 0.01}, 25, base=0.1)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2, eta_min=0.01)
    theirs = []
    for _ in range(25):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_scheduler_interval_and_warmup_epochs():
    # cosine steps per optimizer step; warmup_epochs counts steps_per_epoch steps each
    lrs = _lrs({"name": "cosine_warm_restarts", "T_0": 10, "warmup_epochs": 1}, 4, steps_per_epoch=3)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="warmup_steps needs interval: step"):
        _lrs({"name": "step", "warmup_steps": 2}, 1)
    with pytest.raises(ValueError, match="exponential scheduler needs gamma"):
        _lrs({"name": "exponential"}, 1)


def test_lr_is_logged_per_step(tmp_path):
    _train(tmp_path, epochs=1, log_every_steps=1,
           scheduler={"name": "keras_decay", "decay": 1.0}, optimizer={"name": "sgd", "lr": 0.1})
    rows = _read(tmp_path / "train_log.csv")
    assert rows[0][:4] == ["epoch", "step", "lr", "loss"] and len(rows) == 1 + 5  # 40 items / batch 8
    assert [float(r[2]) for r in rows[1:]] == pytest.approx([0.1 / (1 + t) for t in range(5)])


# ---- clipping, parameter groups ----
class _BigGradTask:
    def training_step(self, model, batch):
        x, _ = batch
        return 1000.0 * model(x).sum(), {}

    def evaluate(self, model):
        return {}


def test_grad_clipping(tmp_path):
    seed_everything(0)
    model = nn.Linear(5, 2)
    before = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    cfg = train_config({"epochs": 1, "batch_size": 40, "grad_clip": 0.5, "progress": False, "shuffle": False,
                        "optimizer": {"name": "sgd", "lr": 1.0, "momentum": 0.0}})
    fit(model, _BigGradTask(), TrainData(NoisyData()), cfg, tmp_path)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(0.5, rel=1e-5)
    header, row = _read(tmp_path / "train_log.csv")
    assert float(row[header.index("grad_norm")]) > 100  # the norm before clipping is logged


class _GroupTask(ClassifyTask):
    def param_groups(self, model):
        return [{"params": model.front.parameters(), "lr": 1e-4}, {"params": model.back.parameters()}]


def test_param_groups_separate_lrs(tmp_path):
    seed_everything(0)
    model = Net()
    front0, back0 = model.front.weight.detach().clone(), model.back.weight.detach().clone()
    cfg = _cfg(epochs=1, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.0},
               scheduler={"name": "step", "step_size": 1, "gamma": 0.5})
    fit(model, _GroupTask(), TrainData(NoisyData()), cfg, tmp_path)
    header, *rows = _read(tmp_path / "epoch_log.csv")
    assert header[:4] == ["epoch", "step", "lr", "lr_1"]
    assert float(rows[0][2]) == pytest.approx(1e-4) and float(rows[0][3]) == pytest.approx(0.1)
    moved_front = (model.front.weight - front0).abs().max().item()
    moved_back = (model.back.weight - back0).abs().max().item()
    assert 0 < moved_front < moved_back / 50
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["scheduler"]["base_lrs"] == pytest.approx([1e-4, 0.1])

    class Partial(ClassifyTask):
        def param_groups(self, model):
            return [{"params": model.back.parameters()}]
    with pytest.raises(ValueError, match="leaves 2 trainable parameters out .*front.weight"):
        fit(Net(), Partial(), TrainData(NoisyData()), cfg, tmp_path / "p")

    class Freezing(ClassifyTask):   # joint.freeze_asv / freeze_cm: the hook itself freezes a part
        def param_groups(self, model):
            model.front.requires_grad_(False)
            return [{"params": model.back.parameters()}]
    frozen = Net()
    front0 = frozen.front.weight.detach().clone()
    fit(frozen, Freezing(), TrainData(NoisyData()), cfg, tmp_path / "f")
    assert torch.equal(frozen.front.weight, front0)


# ---- checkpoints, resume, interrupts ----
def test_checkpoints_load_weights_only(straight):
    out, model, result = straight
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(out / name, weights_only=True)
        assert ckpt["format"] == "sasv-engine-checkpoint/1"
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 4 and last["global_step"] == 20 and last["kind"] == "last"
    assert set(last) >= {"model", "optimizer", "scheduler", "scaler", "rng", "best", "history", "csv_rows"}
    assert all(isinstance(v, torch.Tensor) for v in last["rng"].values())
    assert last["csv_rows"]["train_log.csv"] == len(_read(out / "train_log.csv")) - 1
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    fresh = Net()
    load_model_weights(fresh, out / "last.pt")
    _assert_same_params(fresh, model)
    with pytest.raises(ValueError, match="last.pt: checkpoint of a different architecture"):
        load_model_weights(nn.Linear(5, 2), out / "last.pt")


def test_exact_resume(straight, tmp_path):
    out, model, _ = straight
    _train(tmp_path, epochs=2)
    resumed, result = _train(tmp_path, epochs=4, resume=True, seed_model=99)  # init is overwritten
    _assert_same_params(model, resumed)
    for log in ("train_log.csv", "epoch_log.csv"):
        assert _read(tmp_path / log) == _read(out / log), log
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "last.pt")
    for k, v in a["optimizer"]["state"].items():
        assert all(torch.equal(v[s], b["optimizer"]["state"][k][s]) for s in v)
    assert result.epochs_completed == 4 and result.global_step == 20


def test_resume_without_checkpoint_starts_fresh(straight, tmp_path):
    out, model, _ = straight
    resumed, _ = _train(tmp_path, resume=True)
    _assert_same_params(model, resumed)


def test_best_checkpoint_selection(tmp_path):
    task = ClassifyTask(dev_values=[3.0, 1.0, 2.0, 1.0])
    _, result = _train(tmp_path, task=task, select_metric="dev_err")
    assert (result.best_epoch, result.best_value) == (2, 1.0)  # ties keep the earlier epoch
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 2 and best["metrics"]["dev_err"] == 1.0 and best["kind"] == "best"
    for k, v in task.params_after_epoch[1].items():
        assert torch.equal(best["model"][k], v)
    task = ClassifyTask(dev_values=[3.0, 1.0, 2.0, 4.0])
    _, result = _train(tmp_path / "max", task=task, select_metric="dev_err", select_mode="max")
    assert result.best_epoch == 4
    with pytest.raises(ValueError, match="select_metric 'eer' is not in the epoch record"):
        _train(tmp_path / "bad", select_metric="eer")


def test_keyboard_interrupt_then_resume(straight, tmp_path):
    out, model, _ = straight
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, task=ClassifyTask(interrupt_at_step=13))  # in epoch 3 (5 steps per epoch)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 2
    assert len(_read(tmp_path / "train_log.csv")) - 1 == ckpt["csv_rows"]["train_log.csv"]
    assert [r[0] for r in _read(tmp_path / "epoch_log.csv")] == ["epoch", "1", "2"]
    assert not list(tmp_path.glob(".*.tmp"))
    resumed, _ = _train(tmp_path, resume=True)
    _assert_same_params(model, resumed)
    assert _read(tmp_path / "train_log.csv") == _read(out / "train_log.csv")


def test_resume_drops_rows_written_after_the_checkpoint(straight, tmp_path):
    out, model, _ = straight
    _train(tmp_path, epochs=2)
    with open(tmp_path / "train_log.csv", "a") as f:  # rows of an epoch cut short by a hard kill
        f.write("3,11,0.001,0.5,0.5\n3,12,0.0")
    resumed, _ = _train(tmp_path, resume=True)
    _assert_same_params(model, resumed)
    assert _read(tmp_path / "train_log.csv") == _read(out / "train_log.csv")


class _EpochSampler:
    """A user batch sampler: fixed batches, reversed on odd epochs."""

    def __init__(self):
        self.epochs: list[int] = []
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epochs.append(epoch)
        self.epoch = epoch

    def __iter__(self):
        batches = [list(range(i, i + 10)) for i in range(0, 40, 10)]
        return iter(batches[::-1] if self.epoch % 2 else batches)

    def __len__(self):
        return 4


def test_user_batch_sampler_gets_set_epoch(tmp_path):
    sampler = _EpochSampler()
    _, result = _train(tmp_path, data=TrainData(NoisyData(), batch_sampler=sampler), epochs=3)
    assert result.global_step == 12 and sampler.epochs[-3:] == [0, 1, 2]
    made = []

    def factory(rank, world_size, seed, batch_size):
        made.append((rank, world_size, seed, batch_size))
        return _EpochSampler()
    _train(tmp_path / "f", data=TrainData(NoisyData(), batch_sampler=factory), epochs=1)
    assert made == [(0, 1, 0, 8)]


class _PlainData(Dataset):
    def __init__(self):
        self.x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return 40

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.front, self.bn, self.back = nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)

    def forward(self, x):
        return self.back(torch.relu(self.bn(self.front(x))))


@pytest.mark.parametrize("precise", [0, 100])
def test_precise_bn_recomputes_statistics_with_final_weights(tmp_path, precise):
    seed_everything(0)
    model, data = _BNNet(), _PlainData()

    class Task(ClassifyTask):
        def evaluate(self, model):
            return {}

    fit(model, Task(), TrainData(data), _cfg(epochs=2, optimizer={"name": "adam", "lr": 0.05},
                                             scheduler={"name": "none"}, precise_bn_batches=precise), tmp_path)
    with torch.no_grad():
        expected = model.front(data.x).mean(0)
    close = torch.allclose(model.bn.running_mean, expected, atol=1e-5)
    assert close == bool(precise)  # without it, the running mean lags the weights


def test_precise_bn_keeps_exact_resume(tmp_path):
    a, _ = _train(tmp_path / "a", precise_bn_batches=2, epochs=3)
    _train(tmp_path / "b", precise_bn_batches=2, epochs=2)
    b, _ = _train(tmp_path / "b", resume=True, precise_bn_batches=2, epochs=3)
    _assert_same_params(a, b)


class _RandomEvalTask(ClassifyTask):
    """Evaluation that draws random numbers from every global generator (as a DataLoader does)."""

    def evaluate(self, model):
        random.random(), np.random.rand(), torch.rand(1)
        return super().evaluate(model)


def test_eval_every_changes_what_is_evaluated_not_what_is_trained(tmp_path):
    every, _ = _train(tmp_path / "every", task=_RandomEvalTask(), epochs=5, precise_bn_batches=2)
    task = _RandomEvalTask()
    sparse, result = _train(tmp_path / "sparse", task=task, epochs=5, eval_every=2, precise_bn_batches=2)
    _assert_same_params(every, sparse)                   # the dropout masks did not see the evaluations
    assert len(task.params_after_epoch) == 3             # epochs 2, 4 and 5 (the last is always evaluated)
    rows = _read(tmp_path / "sparse" / "epoch_log.csv")
    dev = rows[0].index("dev_loss")
    assert [r[dev] != "" for r in rows[1:]] == [False, True, False, True, True]
    assert result.best_epoch in (2, 4, 5)
    with pytest.raises(ConfigError, match="'eval_every' must be an integer >= 1, got 0"):
        _cfg(eval_every=0)


class _ScriptedDevTask(ClassifyTask):
    """Dev values in the order evaluate() is called, whatever the epoch."""

    def evaluate(self, model):
        self.params_after_epoch.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"dev_err": self.dev_values.pop(0)}


def test_select_initial_keeps_the_start_when_training_only_makes_dev_worse(tmp_path):
    def run(folder, dev_values, **over):
        seed_everything(0)
        model = _BNNet()
        start = {k: v.clone() for k, v in model.state_dict().items()}
        result = fit(model, _ScriptedDevTask(dev_values=dev_values), TrainData(_PlainData()),
                     _cfg(select_metric="dev_err", precise_bn_batches=2, **over), tmp_path / folder)
        return model, start, result

    model, start, result = run("a", [1.0, 2.0, 1.5, 3.0, 1.0], select_initial=True)
    assert (result.best_epoch, result.best_value) == (0, 1.0)           # epoch 4's tie does not replace it
    assert [r["epoch"] for r in result.history] == [0, 1, 2, 3, 4]
    best = load_checkpoint(tmp_path / "a" / "best.pt")
    assert best["epoch"] == 0 and best["metrics"]["dev_err"] == 1.0
    for k, v in start.items():       # the starting weights and BatchNorm statistics: no precise BN at epoch 0
        assert torch.equal(best["model"][k], v), k
    assert [r[0] for r in _read(tmp_path / "a" / "epoch_log.csv")[1:]] == ["0", "1", "2", "3", "4"]
    plain, _, result = run("b", [2.0, 1.5, 3.0, 1.0])
    _assert_same_params(model, plain)                                   # what is trained does not change
    assert result.best_epoch == 4
    _, _, result = run("c", [5.0, 2.0, 1.5, 3.0, 4.0], select_initial=True)
    assert result.best_epoch == 2                                       # a better epoch wins as usual


def test_select_initial_survives_an_interrupt_and_needs_a_dev_metric(tmp_path):
    task = _ScriptedDevTask(dev_values=[1.0, 2.0, 1.5], interrupt_at_step=13)   # in epoch 3
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, task=task, select_metric="dev_err", select_initial=True)
    again = _ScriptedDevTask(dev_values=[3.0, 4.0])              # epochs 3 and 4 only: epoch 0 is not re-evaluated
    _, result = _train(tmp_path, task=again, resume=True, select_metric="dev_err", select_initial=True)
    assert (result.best_epoch, result.best_value) == (0, 1.0) and again.dev_values == []
    assert [r["epoch"] for r in result.history] == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="'select_initial' needs a dev select_metric"):
        _cfg(select_initial=True)
    with pytest.raises(ConfigError, match="'select_initial' must be true or false, got 'yes'"):
        _cfg(select_initial="yes")


# ---- TensorBoard (train.tensorboard) ----
def _events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars as TensorBoard shows them (purged events dropped), per tag: (step, value)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(folder), size_guidance={accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_mirrors_the_csv_logs(straight, tmp_path):
    pytest.importorskip("tensorboard")
    _train(tmp_path, tensorboard=True)
    events = _events(tmp_path / "tensorboard")
    rows = _read(tmp_path / "train_log.csv")
    header, rows = rows[0], rows[1:]
    steps = [int(r[header.index("step")]) for r in rows]
    assert [s for s, _ in events["train/loss"]] == steps
    assert [v for _, v in events["train/loss"]] == pytest.approx([float(r[header.index("loss")]) for r in rows],
                                                                rel=1e-6)
    epochs = _read(tmp_path / "epoch_log.csv")
    assert [v for _, v in events["epoch/dev_loss"]] == pytest.approx(
        [float(r[epochs[0].index("dev_loss")]) for r in epochs[1:]], rel=1e-6)
    assert _read(tmp_path / "train_log.csv") == _read(straight[0] / "train_log.csv")   # the CSV record unchanged


def test_tensorboard_after_an_interrupt_and_resume_shows_each_step_once(straight, tmp_path):
    pytest.importorskip("tensorboard")
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, task=ClassifyTask(interrupt_at_step=14), tensorboard=True)   # epoch 3 logged step 13
    _train(tmp_path, resume=True, tensorboard=True)
    loss = _events(tmp_path / "tensorboard")["train/loss"]
    rows = _read(tmp_path / "train_log.csv")
    assert [s for s, _ in loss] == [int(r[rows[0].index("step")]) for r in rows[1:]]   # no step twice


def test_tensorboard_missing_is_one_line_before_training(monkeypatch, tmp_path):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError, match="train.tensorboard is true but the tensorboard package is not installed"):
        _cfg(tensorboard=True)
    assert not (tmp_path / "tensorboard").exists()
