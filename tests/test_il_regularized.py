"""Behavior-regularized fine-tuning (`nanovla.il.regularized`, `nanovla finetune`)."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import nanovla

from nanovla.data import BatchLoader, EpisodeDataset
from nanovla.data.collect import CollectConfig, collect
from nanovla.il.regularized import (
    RegularizedBC,
    bins_kl,
    chunk_mse,
    extend_reference,
    head_divergence,
    head_output,
    weight_l2,
)
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.train.run_record import RunRecord

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Tiny 32x32 demonstrations: the old tasks (reach, push) and the new one (pick_place)."""
    root = tmp_path_factory.mktemp("regularized")
    made = {}
    for name, task in (("old", "reach,push"), ("new", "pick_place")):
        config = CollectConfig(task=task, episodes=4, num_envs=4, image_size=SIZE,
                               out=root / name, progress=False)  # fmt: skip
        made[name] = collect(config)
    made["root"] = root
    return made


def _policy(data_dir: Path, head: str = "tanh", seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    config = PolicyConfig(image_size=SIZE, action_head=head, dropout=0.0)
    return Policy.from_dataset(config, EpisodeDataset(data_dir, progress=False))


def _batch(data_dir: Path, size: int = 8, seed: int = 0) -> dict:
    return BatchLoader(EpisodeDataset(data_dir, progress=False), size, chunk=4, split="all",
                       seed=seed).next_batch()  # fmt: skip


# ---------------------------------------------------------------------- divergence terms


def test_chunk_mse_is_the_mean_squared_difference_by_hand():
    pred = torch.tensor([[[0.5, -0.5], [1.0, 0.0]]])  # (1, 2, 2)
    ref = torch.tensor([[[0.0, 0.5], [0.0, 0.0]]])
    assert float(chunk_mse(pred, ref)) == pytest.approx((0.25 + 1.0 + 1.0 + 0.0) / 4)
    assert float(chunk_mse(ref, ref)) == 0.0


def test_bins_kl_against_hand_computation():
    logits = torch.tensor([[[[0.0, 1.0, 2.0]]], [[[1.0, 1.0, 1.0]]]])  # (2, 1, 1, 3)
    ref_logits = torch.tensor([[[[2.0, 0.0, 0.0]]], [[[0.0, 0.0, 3.0]]]])
    expected = []
    for p_row, q_row in zip(logits.reshape(2, 3).tolist(), ref_logits.reshape(2, 3).tolist()):
        p = np.exp(p_row) / np.exp(p_row).sum()
        q = np.exp(q_row) / np.exp(q_row).sum()  # the reference's distribution
        expected.append(float((q * np.log(q / p)).sum()))
    assert float(bins_kl(logits, ref_logits)) == pytest.approx(np.mean(expected), rel=1e-5)
    assert float(bins_kl(ref_logits, ref_logits)) == pytest.approx(0.0, abs=1e-7)
    assert min(expected) > 0


@pytest.mark.parametrize("head", ["tanh", "bins"])
def test_divergence_is_zero_for_the_same_policy_and_positive_for_another(data, head):
    policy, other = _policy(data["old"], head, seed=0), _policy(data["old"], head, seed=1)
    batch = _batch(data["new"])
    with torch.no_grad():
        out, same, different = (
            head_output(p, batch) for p in (policy, copy.deepcopy(policy), other)
        )
    assert out.shape[-1] == (21 if head == "bins" else 3)
    assert float(head_divergence(policy, out, same)) == pytest.approx(0.0, abs=1e-7)
    value = float(head_divergence(policy, out, different))
    expected = bins_kl(out, different) if head == "bins" else (out - different).pow(2).mean()
    assert value > 0 and value == pytest.approx(float(expected))


def test_weight_l2_against_hand_computation(data):
    policy = _policy(data["old"])
    start = {name: p.detach().clone() for name, p in policy.named_parameters()}
    assert float(weight_l2(policy, start).detach()) == 0.0
    weight = policy.head.mlp[0].weight
    with torch.no_grad():
        weight.add_(0.5)
        policy.head.mlp[0].bias[:3] -= 2.0
    assert float(weight_l2(policy, start).detach()) == pytest.approx(
        0.25 * weight.numel() + 3 * 4.0
    )
    weight.requires_grad_(False)  # frozen parameters do not count
    assert float(weight_l2(policy, start).detach()) == pytest.approx(3 * 4.0)


# --------------------------------------------------------------------- the trained model


@pytest.mark.parametrize("regularizer", ["lwf", "new", "l2", "replay", "none"])
def test_beta_zero_is_plain_bc_loss_and_gradients(data, regularizer):
    policy = _policy(data["old"])
    plain = copy.deepcopy(policy)
    old = BatchLoader(EpisodeDataset(data["old"], progress=False), 8, chunk=4, split="all")
    model = RegularizedBC(policy, copy.deepcopy(policy), regularizer, 0.0, old).train()
    batch = _batch(data["new"])
    loss, metrics = model(batch)
    reference_loss, _ = plain.train()(batch)
    assert float(loss.detach()) == float(reference_loss.detach()) and "reg" not in metrics
    loss.backward()
    reference_loss.backward()
    for (name, a), b in zip(policy.named_parameters(), plain.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        assert a.grad is None or torch.equal(a.grad, b.grad), name


@pytest.mark.parametrize("regularizer", ["lwf", "new", "l2", "replay"])
def test_regularized_loss_is_bc_plus_beta_times_the_term(data, regularizer):
    policy, reference = _policy(data["old"], seed=0), _policy(data["old"], seed=1)
    old = BatchLoader(EpisodeDataset(data["old"], progress=False), 8, chunk=4, split="all")
    model = RegularizedBC(policy, reference, regularizer, 0.5, old).eval()
    if regularizer == "l2":
        with torch.no_grad():
            policy.head.mlp[0].bias.add_(1.0)
    batch = _batch(data["new"])
    probe = BatchLoader(EpisodeDataset(data["old"], progress=False), 8, chunk=4, split="all")
    probe.load_state_dict(old.state_dict())
    old_batch = probe.next_batch()  # the batch the term will draw
    loss, metrics = model(batch)
    bc = float(policy(batch)[0].detach())
    with torch.no_grad():
        term = {
            "lwf": lambda: chunk_mse(
                head_output(policy, old_batch), head_output(reference, old_batch)
            ),
            "new": lambda: chunk_mse(head_output(policy, batch), head_output(reference, batch)),
            "l2": lambda: torch.tensor(float(policy.head.mlp[0].bias.numel())),
            "replay": lambda: policy(old_batch)[0],
        }[regularizer]()
    assert float(metrics["reg"]) == pytest.approx(float(term), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(bc + 0.5 * float(term), rel=1e-5)


@pytest.mark.parametrize("regularizer", ["lwf", "new"])
def test_divergence_does_not_count_dropout_noise(data, regularizer):
    values = []
    for dropout in (0.0, 0.5):  # same weights (dropout has none), train-mode noise or not
        torch.manual_seed(0)
        config = PolicyConfig(image_size=SIZE, dropout=dropout)
        policy = Policy.from_dataset(config, EpisodeDataset(data["old"], progress=False))
        old = BatchLoader(EpisodeDataset(data["old"], progress=False), 8, chunk=4, split="all")
        model = RegularizedBC(policy, copy.deepcopy(policy).eval(), regularizer, 1.0, old)
        batch = _batch(data["new"])
        values.append(float(model.train()(batch)[1]["reg"]))
        assert policy.training and all(m.training for m in policy.modules())  # switched back
    assert values[1] == pytest.approx(values[0], rel=1e-5, abs=1e-9)
    with torch.no_grad():  # what a pass with dropout on would have counted
        noisy = chunk_mse(head_output(policy, batch), head_output(model.reference, batch))
    assert float(noisy) > 10 * values[0]


def test_divergence_pass_leaves_batchnorm_running_statistics_to_bc(data):
    policy = _policy(data["old"])
    plain = copy.deepcopy(policy).train()
    old = BatchLoader(EpisodeDataset(data["old"], progress=False), 8, chunk=4, split="all")
    model = RegularizedBC(policy, copy.deepcopy(policy), "lwf", 1.0, old).train()
    batch = _batch(data["new"])
    model(batch)
    plain(batch)  # the BC pass alone
    stats = [k for k in plain.state_dict() if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(policy.state_dict()[k], plain.state_dict()[k]) for k in stats)
    momenta = {m.momentum for m in policy.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}  # restored


def test_reference_stays_frozen_while_the_policy_learns(data):
    policy = _policy(data["old"])
    reference = copy.deepcopy(policy)
    reference.head.mlp.append(torch.nn.Dropout(0.9))  # would change outputs in train mode
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    start = {k: v.clone() for k, v in policy.state_dict().items()}
    model = RegularizedBC(policy, reference, "new", 1.0).train()
    assert not reference.training and all(not p.requires_grad for p in reference.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in policy.parameters()}
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    for step in range(3):
        loss, _ = model(_batch(data["new"], seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert any(not torch.equal(start[k], v) for k, v in policy.state_dict().items())
    with pytest.raises(ValueError, match="regularizer"):
        RegularizedBC(policy, reference, "ewc", 1.0)
    with pytest.raises(ValueError, match="beta"):
        RegularizedBC(policy, reference, "new", -1.0)


def test_extended_reference_acts_as_the_original_and_reads_new_words(data):
    original = _policy(data["old"]).eval()  # as Policy.from_pretrained returns it
    new = EpisodeDataset(data["new"], progress=False)
    extended = extend_reference(original, new.tasks, new.stats)
    added = set(extended.tokenizer.vocab) - set(original.tokenizer.vocab)
    assert (
        added
        and extended.tokenizer.vocab[: original.tokenizer.vocab_size] == original.tokenizer.vocab
    )
    # grip is constant (-1) in reach/push: its range widens to the new data's, its min stays
    assert float(original.normalizer.action_max[2]) == -1.0
    assert float(extended.normalizer.action_max[2]) == 1.0
    assert float(extended.normalizer.action_min[2]) == -1.0
    old_batch = _batch(data["old"])  # old inputs: the same chunks
    with torch.no_grad():
        a, b = head_output(original, old_batch), head_output(extended, old_batch)
        assert torch.allclose(a, b, atol=1e-6)
        # new words start as <unk>: every instruction is read as the original read it
        texts = list(new.tasks)
        assert torch.equal(original.language(texts), extended.language(texts))
    assert not torch.equal(*(p.language.tokenizer.encode(texts)[0] for p in (original, extended)))


# ---------------------------------------------------------------------------- the command


def _checkpoint(data: dict, name: str = "ckpt", head: str = "tanh") -> Path:
    path = data["root"] / name
    if not path.exists():
        _policy(data["old"], head).save_pretrained(path)
        RunRecord(families=("reach", "push"), image_size=SIZE, instructions="train+ko",
                  dataset=str(data["old"]), episodes=4, seed=0).save(path)  # fmt: skip
    return path


TINY = ("--demos", "4", "--steps", "4", "--batch-size", "8", "--old-batch-size", "4", "--reference-episodes", "4",
        "--eval.episodes", "2", "--eval.splits", "seen", "--num-threads", "1", "--no-progress")  # fmt: skip


@pytest.mark.parametrize("regularizer", ["lwf", "replay"])
def test_finetune_smoke_run_writes_eval_json_for_old_and_new(data, tmp_path, regularizer):
    checkpoint = _checkpoint(
        data, head="bins" if regularizer == "lwf" else "tanh", name=f"c-{regularizer}"
    )
    done = nanovla("finetune", "--checkpoint", str(checkpoint), "--tasks", "pick_place",
                   "--regularizer", regularizer, "--beta", "0.5", "--out", "out", *TINY,
                   cwd=tmp_path, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert result["families"] == ["reach", "push", "pick_place"]
    assert result["before"]["families"] == result["families"]
    assert result["splits"]["seen"]["episodes"] == 6
    rows = {row["family"]: row for row in result["finetune"]["forgetting"]}
    assert rows["reach"]["role"] == "old" and rows["pick_place"]["role"] == "new"
    assert result["finetune"]["beta"] == 0.5
    assert "pick_place new" in done.stdout and "wrote out/eval.json" in done.stdout
    saved = tmp_path / "out" / "checkpoints" / "last" / "pretrained_model"
    loaded = Policy.from_pretrained(saved)
    assert loaded.config.action_head == ("bins" if regularizer == "lwf" else "tanh")
    assert RunRecord.load(saved).families == ("reach", "push", "pick_place")
    assert (tmp_path / "out" / "reference-rollouts").is_dir() == (regularizer == "lwf")


def test_finetune_bad_input_is_one_line_and_writes_nothing(data, tmp_path, capsys, monkeypatch):
    from nanovla.cli import main

    monkeypatch.chdir(tmp_path)
    checkpoint = _checkpoint(data)
    cases = [
        (("--checkpoint", str(tmp_path / "nope")), "--checkpoint"),
        (("--checkpoint", str(checkpoint), "--image-size", "64"), "--image-size"),
        (("--checkpoint", str(checkpoint), "--beta", "-1"), "--beta"),
        (("--checkpoint", str(checkpoint), "--tasks", "fly"), "--tasks"),
        (("--checkpoint", str(checkpoint), "--dataset", str(data["old"] / "nope")), "--dataset"),
    ]
    for args, named in cases:
        assert main(["finetune", *args, "--out", "out", *TINY]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], lines
        assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "eval.json").write_text("{}")
    assert main(["finetune", "--checkpoint", str(checkpoint), "--out", "out", *TINY]) == 2
    assert "--out" in capsys.readouterr().err
    assert (tmp_path / "out" / "eval.json").read_text() == "{}"
