"""The training engine: exact resume, Ctrl-C, accumulation, clipping, autocast, logs.

The toy model and loader here follow the house protocols (`forward(batch) -> (loss, metrics)`,
`save_pretrained`, `config`; `next_batch` / `state_dict` / `load_state_dict`) and are shared
with test_checkpoint.py and test_train_engine_schedules.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from nanovla.train import TrainConfig, Trainer, build_param_groups, latest_checkpoint, read_metrics


@dataclass
class ToyConfig:
    in_dim: int = 6
    hidden: int = 16
    out_dim: int = 3
    dropout: float = 0.0
    loss_scale: float = 1.0


class ToyModel(nn.Module):
    """Linear -> LayerNorm -> tanh -> dropout -> Linear, MSE loss (scaled by loss_scale)."""

    def __init__(self, config: ToyConfig, init_seed: int = 0) -> None:
        super().__init__()
        self.config = config
        torch.manual_seed(init_seed)
        self.net = nn.Sequential(
            nn.Linear(config.in_dim, config.hidden),
            nn.LayerNorm(config.hidden),
            nn.Tanh(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.out_dim),
        )
        self.autocast_dtypes: list[torch.dtype | None] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        on = torch.is_autocast_enabled("cpu")
        self.autocast_dtypes.append(torch.get_autocast_dtype("cpu") if on else None)
        pred = self.net(batch["x"])  # (B, out_dim)
        loss = F.mse_loss(pred.float(), batch["y"]) * self.config.loss_scale
        return loss, {"mae": (pred.float() - batch["y"]).abs().mean().detach()}

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(dataclasses.asdict(self.config)))
        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items()},
            str(directory / "model.safetensors"),
        )


class ToyConvModel(ToyModel):
    """ToyModel with a 3x3 conv kept channels-last, as the policy's CNN is."""

    def __init__(self, config: ToyConfig, init_seed: int = 0) -> None:
        super().__init__(config, init_seed)
        self.lift = nn.Linear(config.in_dim, 2 * 4 * 4)
        self.conv = nn.Conv2d(2, 4, 3, padding=1).to(memory_format=torch.channels_last)
        self.head = nn.Linear(4 * 4 * 4, config.out_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        grid = self.lift(batch["x"]).view(-1, 2, 4, 4)  # (B, 2, 4, 4)
        grid = grid.contiguous(memory_format=torch.channels_last)
        pred = self.head(torch.tanh(self.conv(grid)).flatten(1))  # (B, out_dim)
        return F.mse_loss(pred, batch["y"]), {}


class ToyLoader:
    """Random minibatches of a fixed regression set; its own torch.Generator drives sampling.

    `interrupt_at=n` raises KeyboardInterrupt on the n-th call of next_batch (0-based);
    `sigint_at=n` sends this process SIGINT instead (a real Ctrl-C).
    """

    def __init__(
        self,
        batch_size: int = 16,
        seed: int = 0,
        shuffle: bool = True,
        interrupt_at: int | None = None,
        sigint_at: int | None = None,
    ) -> None:
        data = torch.Generator().manual_seed(1234)
        self.x = torch.randn(256, 6, generator=data)  # (N, in_dim)
        self.y = torch.tanh(self.x[:, :3] * 2.0) + 0.1 * torch.randn(256, 3, generator=data)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.calls = 0
        self.interrupt_at, self.sigint_at = interrupt_at, sigint_at

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if self.calls == self.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        if self.shuffle:
            index = torch.randint(len(self.x), (self.batch_size,), generator=self.generator)
        else:
            start = (self.calls * self.batch_size) % len(self.x)
            index = torch.arange(start, start + self.batch_size) % len(self.x)
        self.calls += 1
        return {"x": self.x[index], "y": self.y[index]}  # (B, 6), (B, 3)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.calls = state["calls"]


def tiny_config(**overrides: Any) -> TrainConfig:
    base = dict(
        steps=8,
        batch_size=16,
        lr=1e-2,
        warmup_steps=2,
        log_every=2,
        device="cpu",
        tensorboard=False,
        progress=False,
    )
    return TrainConfig(**{**base, **overrides})


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


# ------------------------------------------------------------------ resume and Ctrl-C


@pytest.mark.parametrize(
    ("grad_accum", "how", "call", "saved_step"),
    [(1, "raise", 4, 4), (2, "raise", 8, 4), (2, "sigint", 9, 5)],
    ids=["accum1-loader-raises", "accum2-loader-raises", "accum2-ctrl-c-mid-step"],
)
def test_interrupt_then_resume_is_bit_identical(
    tmp_path: Path, grad_accum: int, how: str, call: int, saved_step: int
) -> None:
    """8 steps straight == interrupted + resumed, with dropout and a shuffling loader.

    The loader raises KeyboardInterrupt as step 5 asks for its first batch (call 4 or 8), or a
    real Ctrl-C arrives during step 5's second micro-batch (call 9) and step 5 is finished first.
    """
    config = tiny_config(grad_accum=grad_accum, save_every=3)
    toy = ToyConfig(dropout=0.3)
    straight = ToyModel(toy)
    Trainer(straight, ToyLoader(), config, tmp_path / "straight").fit()

    loader = ToyLoader(**{"interrupt_at" if how == "raise" else "sigint_at": call})
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyModel(toy), loader, config, tmp_path / "split").fit()
    last = latest_checkpoint(tmp_path / "split")
    assert last is not None and last.name == f"{saved_step:06d}"
    step_file = last / "training_state" / "training_step.json"
    assert json.loads(step_file.read_text())["step"] == saved_step

    resumed = ToyModel(toy, init_seed=99)  # different init: the weights must come from disk
    trainer = Trainer(resumed, ToyLoader(seed=7), config, tmp_path / "split", resume=True)
    assert trainer.step == saved_step
    trainer.fit()
    assert_bit_identical(weights(straight), weights(resumed))


def test_resume_is_bit_identical_with_channels_last_weights(tmp_path: Path) -> None:
    """Adam's moments come back from disk contiguous; fused AdamW needs the weights' layout."""
    config = tiny_config()
    straight = ToyConvModel(ToyConfig())
    Trainer(straight, ToyLoader(), config, tmp_path / "straight").fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyConvModel(ToyConfig()), ToyLoader(interrupt_at=4), config, tmp_path).fit()
    resumed = ToyConvModel(ToyConfig(), init_seed=3)
    Trainer(resumed, ToyLoader(), config, tmp_path, resume=True).fit()
    assert_bit_identical(weights(straight), weights(resumed))


def test_interrupt_raised_mid_step_still_saves_and_says_so(tmp_path: Path, capsys) -> None:
    config = tiny_config(grad_accum=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyModel(ToyConfig()), ToyLoader(interrupt_at=9), config, tmp_path).fit()
    assert latest_checkpoint(tmp_path).name == "000004"
    assert "mid-step: a resumed run will not be bit-identical" in capsys.readouterr().err
    trainer = Trainer(ToyModel(ToyConfig()), ToyLoader(), config, tmp_path, resume=True)
    assert trainer.fit()["step"] == 8


def test_resume_from_periodic_checkpoint_continues_the_log(tmp_path: Path) -> None:
    config = tiny_config(save_every=4, keep_last=0)
    Trainer(ToyModel(ToyConfig()), ToyLoader(), config, tmp_path).fit()
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("0*"))] == ["000004", "000008"]
    # roll `last` back to step 4 and redo steps 5..8: the log must not hold steps twice
    (tmp_path / "checkpoints" / "last").unlink()
    (tmp_path / "checkpoints" / "last").symlink_to("000004")
    Trainer(ToyModel(ToyConfig()), ToyLoader(), config, tmp_path, resume=True).fit()
    steps = [r["step"] for r in read_metrics(tmp_path / "logs" / "metrics.jsonl")]
    assert steps == [2, 4, 6, 8]


def test_fresh_run_writes_final_checkpoint_layout(tmp_path: Path) -> None:
    def on_save(pretrained: Path) -> None:  # the pipeline writes its run record this way
        (pretrained / "run.json").write_text(json.dumps({"dataset": "data/suite"}))

    Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(), tmp_path, on_save=on_save).fit()
    last = tmp_path / "checkpoints" / "last"
    assert last.is_symlink() and os.readlink(last) == "000008"
    pretrained = last / "pretrained_model"
    for name in ("config.json", "model.safetensors", "train_config.json", "run.json"):
        assert (pretrained / name).is_file(), name
    assert json.loads((pretrained / "run.json").read_text()) == {"dataset": "data/suite"}
    train_config = json.loads((pretrained / "train_config.json").read_text())
    assert list(train_config) == ["train"]
    assert train_config["train"]["steps"] == 8 and train_config["train"]["betas"] == [0.9, 0.999]
    state = last / "training_state"
    for name in (
        "optimizer_state.safetensors",
        "optimizer_state.json",
        "scheduler_state.json",
        "rng_state.safetensors",
        "loader_state.safetensors",
        "training_step.json",
    ):
        assert (state / name).is_file(), name


# ------------------------------------------------------------------ the optimizer step


def _first_steps(tmp_path: Path, batch_size: int, grad_accum: int) -> tuple[list, nn.Module]:
    model = ToyModel(ToyConfig())
    config = tiny_config(
        steps=3,
        batch_size=batch_size,
        grad_accum=grad_accum,
        grad_clip=0.0,
        scheduler="constant",
        warmup_steps=0,
        log_every=1,
    )
    out = tmp_path / f"accum{grad_accum}"
    Trainer(model, ToyLoader(batch_size, shuffle=False), config, out).fit()
    return read_metrics(out / "logs" / "metrics.jsonl"), model


def test_grad_accum_2x32_equals_one_batch_of_64(tmp_path: Path) -> None:
    full_log, full = _first_steps(tmp_path, batch_size=64, grad_accum=1)
    accum_log, accum = _first_steps(tmp_path, batch_size=32, grad_accum=2)
    for full_row, accum_row in zip(full_log, accum_log, strict=True):
        # the pre-clip gradient norm is scale-sensitive (Adam's update is not)
        assert accum_row["train/grad_norm"] == pytest.approx(full_row["train/grad_norm"], rel=1e-6)
        assert accum_row["train/loss"] == pytest.approx(full_row["train/loss"], rel=1e-6)
    for key, value in weights(full).items():
        torch.testing.assert_close(weights(accum)[key], value, rtol=0, atol=1e-6)


@pytest.mark.parametrize("grad_clip", [0.0, 0.05])
def test_clipping_bounds_the_grad_norm_the_optimizer_sees(tmp_path: Path, grad_clip: float) -> None:
    model = ToyModel(ToyConfig(loss_scale=100.0))  # big gradients
    config = tiny_config(steps=4, grad_clip=grad_clip, log_every=1)
    trainer = Trainer(model, ToyLoader(), config, tmp_path)
    seen: list[float] = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append(
            float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
        )
    )
    trainer.fit()
    logged = [r["train/grad_norm"] for r in read_metrics(tmp_path / "logs" / "metrics.jsonl")]
    assert min(logged) > 0.05  # the pre-clip norms the log reports are large ...
    if grad_clip > 0:  # ... and the optimizer only ever sees clipped ones
        assert max(seen) <= grad_clip * (1 + 1e-5)
    else:
        assert seen == pytest.approx(logged, rel=1e-6)


def test_bf16_autocast_runs_on_cpu(tmp_path: Path) -> None:
    model = ToyModel(ToyConfig())
    before = weights(model)
    result = Trainer(model, ToyLoader(), tiny_config(steps=3, amp="bf16"), tmp_path).fit()
    assert model.autocast_dtypes == [torch.bfloat16] * 3
    assert torch.isfinite(torch.tensor(result["train/loss"]))
    assert not torch.equal(before["net.0.weight"], model.state_dict()["net.0.weight"])


def test_fp16_on_cpu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16"):
        Trainer(ToyModel(ToyConfig()), ToyLoader(), tiny_config(amp="fp16"), tmp_path)


def test_param_groups_skip_frozen_and_decay_only_matrices() -> None:
    model = ToyModel(ToyConfig())
    model.net[4].requires_grad_(False)  # a frozen head
    decay, no_decay = build_param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decay["params"]] == [(16, 6)]
    assert [tuple(p.shape) for p in no_decay["params"]] == [(16,), (16,), (16,)]


# ------------------------------------------------------------------ logs and evaluation


def test_jsonl_keys_are_namespaced_and_eval_is_logged(tmp_path: Path) -> None:
    calls: list[tuple[int, bool]] = []

    def eval_fn(model: nn.Module, step: int) -> dict[str, float]:
        calls.append((step, model.training))
        torch.rand(5)  # eval may use the RNG without changing the training run
        return {"score": step / 10}

    config = tiny_config(steps=6, eval_every=4, tensorboard=True)
    result = Trainer(ToyModel(ToyConfig()), ToyLoader(), config, tmp_path, eval_fn).fit()
    assert calls == [(4, False), (6, False)]
    records = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    keys = {k for r in records for k in r} - {"step"}
    assert all(k.startswith(("train/", "eval/")) for k in keys)
    assert {
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/samples_per_s",
        "train/step_time_ms",
        "train/mae",
        "eval/score",
    } <= keys
    assert [r["step"] for r in records if "train/loss" in r] == [2, 4, 6]
    assert result["eval/score"] == 0.6 and result["step"] == 6
    assert (tmp_path / "plots" / "loss.png").stat().st_size > 0
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_eval_does_not_change_the_trained_weights(tmp_path: Path) -> None:
    toy = ToyConfig(dropout=0.5)
    plain = ToyModel(toy)
    Trainer(plain, ToyLoader(), tiny_config(), tmp_path / "a").fit()
    with_eval = ToyModel(toy)
    eval_fn = lambda model, step: {"noise": float(torch.rand(()))}  # noqa: E731
    Trainer(with_eval, ToyLoader(), tiny_config(eval_every=2), tmp_path / "b", eval_fn).fit()
    assert_bit_identical(weights(plain), weights(with_eval))


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"grad_accum": 0}, "grad_accum must be >= 1"),
        ({"keep_last": -1}, "keep_last must be >= 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"scheduler": "step"}, "scheduler must be one of cosine, onecycle, constant"),
        ({"amp": "fp8"}, "amp must be one of none, bf16, fp16"),
        ({"min_lr_ratio": 2.0}, r"min_lr_ratio must be in \[0, 1\]"),
        ({"betas": (0.9, 1.0)}, r"betas must be two numbers in \[0, 1\)"),
    ],
)
def test_train_config_rejects_bad_values_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_warmup_longer_than_the_run_is_capped() -> None:
    assert tiny_config(steps=10, warmup_steps=100).warmup_steps == 9


def test_model_not_following_the_protocol_is_named(tmp_path: Path) -> None:
    class NoTuple(ToyModel):
        def forward(self, batch: dict[str, torch.Tensor]) -> Any:
            return super().forward(batch)[0]

    trainer = Trainer(NoTuple(ToyConfig()), ToyLoader(), tiny_config(), tmp_path)
    with pytest.raises(ValueError, match=r"must return \(loss, metrics\)"):
        trainer.fit()
    with pytest.raises(ValueError, match="save_pretrained"):
        Trainer(nn.Linear(2, 2), ToyLoader(), tiny_config(), tmp_path)
