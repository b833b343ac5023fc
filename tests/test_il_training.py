"""il/training.py: each imitation round trains with a weight EMA and judges (and keeps) it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from nanovla.data import EpisodeDataset
from nanovla.eval.evaluate import EvalConfig, evaluate
from nanovla.il.dagger import DaggerCommand, aggregate_round
from nanovla.il.training import TrainSpec, judged_checkpoint, train_and_evaluate
from nanovla.models.policy import Policy, PolicyConfig

EVAL = EvalConfig(episodes=2, splits=("seen",), gifs=0)


def _dataset(tmp_path: Path) -> EpisodeDataset:
    command = DaggerCommand(
        out=tmp_path / "demos",
        tasks=("reach",),
        demos=4,
        num_envs=2,
        image_size=32,
        progress=False,
    )
    aggregate_round(command, 0, None, None)
    return EpisodeDataset(tmp_path / "demos" / "data", cache="memory", progress=False)


def _policy(dataset: EpisodeDataset) -> Policy:
    torch.manual_seed(0)
    config = PolicyConfig(image_size=32, vision_widths=(8,), text_dim=16)
    return Policy.from_dataset(config, dataset)


def _spec(**changes) -> TrainSpec:
    spec = TrainSpec(
        tasks=("reach",), image_size=32, instructions="train", eval=EVAL, batch_size=16,
        progress=False, **changes,
    )  # fmt: skip
    return spec


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_the_round_checkpoint_holds_the_ema_and_the_evaluation_judges_it(tmp_path) -> None:
    dataset = _dataset(tmp_path)
    run = tmp_path / "run"
    policy, result, _ = train_and_evaluate(_spec(), run, _policy(dataset), dataset, 0, 30)
    last = run / "checkpoints" / "last" / "pretrained_model"
    ema_dir = last / "ema"
    assert judged_checkpoint(run) == ema_dir and result["checkpoint"] == str(ema_dir)
    record = (last / "run.json").read_text()
    assert (ema_dir / "run.json").read_text() == record  # `nanovla eval` of it: the same families
    raw, ema = _weights(last), _weights(ema_dir)
    assert raw.keys() == ema.keys()
    differing = [k for k in raw if raw[k].is_floating_point() and not torch.equal(raw[k], ema[k])]
    assert differing  # 30 steps: the average trails the raw weights
    judged = policy.state_dict()
    for name, tensor in ema.items():  # the returned (judged) policy is the EMA, not the raw one
        torch.testing.assert_close(judged[name], tensor, rtol=0, atol=0)
    again = evaluate(Policy.from_pretrained(ema_dir), ("reach",), EVAL, 32, progress=False)
    assert again["splits"] == result["splits"]  # `nanovla eval` of the EMA folder: the same figures


def test_ema_decay_0_trains_and_judges_the_raw_weights(tmp_path) -> None:
    dataset = _dataset(tmp_path)
    run = tmp_path / "run"
    policy, result, _ = train_and_evaluate(
        _spec(ema_decay=0.0), run, _policy(dataset), dataset, 0, 10
    )
    last = run / "checkpoints" / "last"
    assert not (last / "pretrained_model" / "ema").exists()
    assert judged_checkpoint(run) == last and result["checkpoint"] == str(last)
    raw = _weights(last / "pretrained_model")
    judged = policy.state_dict()
    for name, tensor in raw.items():
        torch.testing.assert_close(judged[name], tensor, rtol=0, atol=0)


def test_a_finished_run_trained_again_restores_its_ema_instead_of_restarting_it(tmp_path) -> None:
    dataset = _dataset(tmp_path)
    run = tmp_path / "run"
    train_and_evaluate(_spec(), run, _policy(dataset), dataset, 0, 20)
    ema_dir = run / "checkpoints" / "last" / "pretrained_model" / "ema"
    before = _weights(ema_dir)
    # a process killed after the last save resumes at step 20: nothing to train, the same EMA
    policy, result, _ = train_and_evaluate(_spec(), run, _policy(dataset), dataset, 0, 20)
    judged = policy.state_dict()
    for name, tensor in before.items():
        torch.testing.assert_close(judged[name], tensor, rtol=0, atol=0)
    assert result["checkpoint"] == str(ema_dir)


def test_selection_validates_the_ema_weights_and_judges_the_best_of_them(tmp_path) -> None:
    dataset = _dataset(tmp_path)
    run = tmp_path / "run"
    spec = _spec(select_every=10, select_episodes=2)
    policy, result, _ = train_and_evaluate(spec, run, _policy(dataset), dataset, 0, 20)
    chosen = Path(result["checkpoint"])
    assert chosen.parent.parent == run / "selection" and judged_checkpoint(run) == chosen
    assert result["selected_step"] in (10, 20)
    logged = [
        json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()
    ]
    validated = {row["step"]: row["eval/success"] for row in logged if "eval/success" in row}
    assert sorted(validated) == [10, 20]  # every 10 steps and at the last
    best = max(validated.values())
    assert validated[result["selected_step"]] == best  # the best score, ties to the later step
    assert result["selected_step"] == max(s for s, v in validated.items() if v == best)
    selected = _weights(chosen)
    judged = policy.state_dict()
    for name, tensor in selected.items():
        torch.testing.assert_close(judged[name], tensor, rtol=0, atol=0)
    if result["selected_step"] == 20:  # the selected weights are the EMA's, not the raw ones
        ema = _weights(run / "checkpoints" / "last" / "pretrained_model" / "ema")
        assert all(torch.equal(ema[k], selected[k]) for k in ema)
