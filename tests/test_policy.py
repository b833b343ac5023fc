"""Policy behaviour: forward/loss/metrics, gradients, masking, acting, text caching, bad input."""

import numpy as np
import pytest
import torch

from nanovla.models.policy import Policy, PolicyConfig
from nanovla.models.policy.loss import masked_regression_loss
from nanovla.models.text.tokenizer import Tokenizer

STATE_DIM, ACTION_DIM, SIZE = 4, 3, 32
TASKS = [
    "put the red box in the blue bowl",
    "push the green ball to the left side",
    "go to the small yellow box",
    "빨간 상자를 파란 그릇에 넣어",
]


def make_stats(state_dim: int = STATE_DIM, action_dim: int = ACTION_DIM) -> dict:
    """Stats in the dataset's meta/stats.json format (nested lists, image stats (3, 1, 1))."""
    return {
        "observation.image": {"mean": [[[0.5]], [[0.4]], [[0.3]]], "std": [[[0.2]]] * 3},
        "observation.state": {"mean": [0.5] * state_dim, "std": [0.3] * state_dim},
        "action": {"min": [-1.0] * action_dim, "max": [1.0] * action_dim},
    }


def make_policy(seed: int = 0, **overrides) -> Policy:
    torch.manual_seed(seed)
    config = PolicyConfig(image_size=SIZE, state_dim=STATE_DIM, action_dim=ACTION_DIM, **overrides)
    tokenizer = Tokenizer.from_texts(TASKS, level=config.tokenizer_level)
    return Policy(config, dataset_stats=make_stats(), tokenizer=tokenizer)


def make_batch(batch_size: int = 6, chunk: int = 4, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    is_pad = torch.zeros(batch_size, chunk, dtype=torch.bool)
    is_pad[0, 2:] = True  # an episode end inside the chunk
    return {
        "observation.image": torch.randint(
            0, 256, (batch_size, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8
        ),  # fmt: skip
        "observation.state": torch.rand(batch_size, STATE_DIM, generator=generator),
        "action": torch.rand(batch_size, chunk, ACTION_DIM, generator=generator) * 2 - 1,
        "action_is_pad": is_pad,
        "task": [TASKS[i % len(TASKS)] for i in range(batch_size)],
    }


def make_obs(num_envs: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (num_envs, SIZE, SIZE, 3), dtype=np.uint8),
        "state": rng.random((num_envs, STATE_DIM), dtype=np.float32),
        "instruction": [TASKS[i % len(TASKS)] for i in range(num_envs)],
    }


@pytest.mark.parametrize("fusion, readout", [("film", "keypoints"), ("concat", "flatten")])
def test_forward_gives_finite_loss_and_metrics(fusion, readout):
    policy = make_policy(fusion=fusion, readout=readout)
    loss, metrics = policy(make_batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(metrics) == {"loss", "l1", "l1_dx", "l1_dy", "l1_grip"}
    assert all(torch.isfinite(value) for value in metrics.values())
    assert metrics["loss"] == loss.detach()


@pytest.mark.parametrize(
    "fusion, text, level, readout",
    [
        ("film", "lstm", "word", "keypoints"),
        ("concat", "lstm", "word", "keypoints"),
        ("film", "transformer", "char", "flatten"),
        ("concat", "lstm", "char", "attention"),
    ],
)
@pytest.mark.parametrize("film_state", [False, True])
def test_backward_reaches_every_trainable_parameter(fusion, text, level, readout, film_state):
    policy = make_policy(
        fusion=fusion, text=text, tokenizer_level=level, readout=readout, film_state=film_state
    )
    loss, _ = policy(make_batch())
    loss.backward()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("film_state", [False, True])
def test_film_state_lets_the_state_modulate_the_grid(film_state):
    from nanovla.models.policy.fusion import build_fusion

    torch.manual_seed(0)
    config = PolicyConfig(film_state=film_state, film_blocks=1)
    fusion = build_fusion(config, (8, 4, 4), text_dim=6, state_dim=STATE_DIM).eval()
    torch.nn.init.normal_(fusion.film.weight)  # far from the near-identity start, so states differ
    grid, text = torch.randn(2, 8, 4, 4), torch.randn(1, 6).expand(2, 6)
    state = torch.tensor([[0.1, 0.2, 0.0, 0.0], [0.1, 0.2, 1.0, 1.0]])  # not holding / holding
    with torch.no_grad():
        readout = fusion(grid[:1].expand(2, -1, -1, -1), text, state)[:, :-STATE_DIM]
    assert fusion.film.in_features == 6 + (STATE_DIM if film_state else 0)
    assert torch.allclose(readout[0], readout[1]) != film_state
    # without a state (use_state=False) there is nothing to condition on
    assert build_fusion(config, (8, 4, 4), text_dim=6, state_dim=0).film.in_features == 6


def test_masked_loss_ignores_padded_steps():
    policy = make_policy(dropout=0.0).eval()
    batch = make_batch()
    loss, _ = policy(batch)
    batch["action"][0, 2:] = 0.987  # padded steps of sample 0
    assert torch.equal(policy(batch)[0], loss)
    batch["action"][0, 1] = 0.987  # a valid step
    assert not torch.equal(policy(batch)[0], loss)


def test_masked_regression_loss_is_the_weighted_mean_over_valid_entries():
    pred, target = torch.zeros(2, 3, 2), torch.ones(2, 3, 2)
    target[1, 2] = 100.0  # padded below
    is_pad = torch.tensor([[False, False, False], [False, False, True]])
    weights = torch.tensor([1.0, 3.0])
    loss = masked_regression_loss(pred, target, is_pad, weights, kind="mse")
    assert loss.item() == pytest.approx((1.0 + 3.0) / 2)
    huber = masked_regression_loss(pred, target, is_pad, None, kind="smooth_l1", beta=0.5)
    assert huber.item() == pytest.approx(1.0 - 0.25)
    all_pad = masked_regression_loss(pred, target, torch.ones(2, 3, dtype=torch.bool), weights)
    assert all_pad.item() == 0.0


def test_loss_weights_change_the_loss():
    batch = make_batch()
    plain = make_policy(dropout=0.0).eval()(batch)[0]
    weighted = make_policy(dropout=0.0, loss_weights=(1.0, 1.0, 0.0)).eval()(batch)[0]
    assert weighted < plain


def test_select_action_on_a_batch_and_a_single_observation():
    policy = make_policy()
    obs = make_obs(num_envs=3)
    actions = policy.select_action(obs)
    assert not policy.training  # acting switches to eval mode
    assert actions.shape == (3, ACTION_DIM) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    single = {"image": obs["image"][1], "state": obs["state"][1], "instruction": obs["instruction"][1]}  # fmt: skip
    one = policy.select_action(single)
    assert one.shape == (ACTION_DIM,)
    np.testing.assert_allclose(one, actions[1], atol=1e-5)


def _chunk(policy: Policy, obs: dict) -> np.ndarray:
    """The raw-unit chunk (N, k, A) the policy predicts for `obs`."""
    image = torch.from_numpy(obs["image"]).permute(0, 3, 1, 2)
    with torch.inference_mode():
        chunk = policy.predict_chunk(image, torch.from_numpy(obs["state"]), obs["instruction"])
    return policy.normalizer.unnormalize_action(chunk).numpy()


def test_action_queue_replans_every_n_steps_and_on_reset():
    policy = make_policy(chunk=4, n_action_steps=3).eval()
    obs, moved = make_obs(num_envs=2), make_obs(num_envs=2, seed=1)
    expected, expected_moved = _chunk(policy, obs), _chunk(policy, moved)  # (2, 4, 3) each
    steps = [policy.select_action(obs) for _ in range(3)]
    np.testing.assert_allclose(np.stack(steps, 1), expected[:, :3], atol=1e-5)
    np.testing.assert_allclose(policy.select_action(moved), expected_moved[:, 0], atol=1e-5)
    policy.reset(env_ids=[1])  # env 1 starts a new episode: it replans, env 0 keeps its queue
    action = policy.select_action(obs)
    np.testing.assert_allclose(action[0], expected_moved[0, 1], atol=1e-5)
    np.testing.assert_allclose(action[1], expected[1, 0], atol=1e-5)
    policy.reset()
    np.testing.assert_allclose(policy.select_action(obs), expected[:, 0], atol=1e-5)


def test_training_and_validation_still_work_after_acting():
    """select_action runs under inference_mode; nothing it caches may poison autograd."""
    policy = make_policy()
    policy.select_action(make_obs(num_envs=2))
    loss, _ = policy(make_batch())  # eval mode, autograd on: reuses the text cache
    loss.backward()
    policy.train()
    loss, _ = policy(make_batch())
    loss.backward()
    assert torch.isfinite(loss)


def test_text_cache_matches_uncached_features_and_clears_in_train_mode():
    policy = make_policy().eval()
    language = policy.language
    texts = [TASKS[0], TASKS[1], TASKS[0]]
    cached = language(texts)
    assert set(language._feature_cache) == {TASKS[0], TASKS[1]}
    uncached = language._encode([TASKS[0], TASKS[1]], None)
    torch.testing.assert_close(cached, uncached[[0, 1, 0]])
    torch.testing.assert_close(language(texts), cached)  # from the cache
    policy.train()
    assert language._feature_cache == {}
    trained = language(texts)
    assert trained.requires_grad and language._feature_cache == {}


def test_missing_or_bad_stats_raise_value_errors_naming_the_feature():
    config = PolicyConfig(image_size=SIZE)
    tokenizer = Tokenizer.from_texts(TASKS)
    stats = make_stats()
    del stats["observation.state"]
    with pytest.raises(ValueError, match="observation.state"):
        Policy(config, dataset_stats=stats, tokenizer=tokenizer)
    stats = make_stats(action_dim=2)
    with pytest.raises(ValueError, match="'action'"):
        Policy(config, dataset_stats=stats, tokenizer=tokenizer)
    no_stats = Policy(config, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="normalization stats"):
        no_stats(make_batch())


def test_bad_batches_and_configs_raise_clear_errors():
    policy = make_policy()
    batch = make_batch()
    del batch["task"]
    with pytest.raises(ValueError, match="task"):
        policy(batch)
    with pytest.raises(ValueError, match="chunk"):
        policy(make_batch(chunk=2))
    with pytest.raises(ValueError, match="PolicyConfig.fusion"):
        PolicyConfig(fusion="cross_attention")
    with pytest.raises(ValueError, match="n_action_steps"):
        PolicyConfig(chunk=2, n_action_steps=3)
    with pytest.raises(ValueError, match="tokenizer"):
        Policy(PolicyConfig(), dataset_stats=make_stats())
    with pytest.raises(ValueError, match="image"):
        policy.select_action({**make_obs(), "image": np.zeros((3, 8, 8, 3), np.uint8)})


def test_from_dataset_takes_sizes_stats_and_tasks():
    class TinyDataset:
        stats = make_stats(state_dim=5, action_dim=2)
        tasks = TASKS

    policy = Policy.from_dataset(PolicyConfig(image_size=SIZE), TinyDataset())
    assert (policy.config.state_dim, policy.config.action_dim) == (5, 2)
    assert policy.config.action_labels == ("dim0", "dim1")
    assert policy.tokenizer.encode(TASKS[:1])[0].min() > 1  # every word known


def test_config_json_round_trip():
    config = PolicyConfig(fusion="concat", vision_widths=(16, 32), loss_weights=(1.0, 1.0, 2.0))
    assert PolicyConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown PolicyConfig key"):
        PolicyConfig.from_dict({**config.to_dict(), "colour": 1})


def record_encoder_inputs(language) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Patch `language.encoder.forward` to record every (ids, lengths) it is called with."""
    calls = []
    original = language.encoder.forward
    language.encoder.forward = lambda ids, lengths: (
        calls.append((ids, lengths)) or original(ids, lengths)
    )
    return calls


def test_word_dropout_hides_tokens_only_in_training():
    policy = make_policy(word_dropout=0.5)
    language, texts = policy.language, TASKS * 4
    ids, _ = language._tokenize(list(dict.fromkeys(texts)))
    inputs = record_encoder_inputs(language)
    torch.manual_seed(0)
    first, second = language(texts), language(texts)
    assert not torch.equal(first, second)
    calls = [call_ids for call_ids, _ in inputs]
    hidden = torch.stack([(call == 1) & (ids != 1) for call in calls]).float()
    assert 0.35 < hidden[:, ids != 0].mean() < 0.65  # about half of the real tokens
    assert torch.equal(
        torch.stack(calls)[:, ids == 0], torch.zeros_like(hidden[:, ids == 0]).long()
    )
    policy.eval()
    clean = language(texts)
    assert torch.equal(inputs[-1][0], ids) and torch.equal(clean, language(texts))


def test_insert_words_puts_one_vocabulary_word_in_each_chosen_row_and_keeps_the_rest():
    from nanovla.models.policy.language import insert_words

    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11], [3, 0, 0, 0], [4, 4, 0, 0]])
    lengths = torch.tensor([3, 4, 1, 2])
    torch.manual_seed(0)
    for _ in range(50):
        out, new = insert_words(ids, lengths, 1.0, 20, max_length=4)
        # row 1 is at max_length: never grown; the others grow by exactly one word
        assert new.tolist() == [4, 4, 2, 3] and torch.equal(out[1, :4], ids[1])
        for row in (0, 2, 3):
            tokens, original = out[row, : new[row]].tolist(), ids[row, : lengths[row]].tolist()
            spots = [i for i in range(len(tokens)) if tokens[:i] + tokens[i + 1 :] == original]
            assert spots and all(2 <= tokens[i] < 20 for i in spots[:1])  # no <pad>, no <unk>
            assert out[row, new[row] :].eq(0).all()  # padding after the new length
    positions = set()  # every position of a 1-word row is drawn: before and after the word
    for _ in range(50):
        out, _ = insert_words(ids[2:3], lengths[2:3], 1.0, 20, max_length=8)
        positions.add(out[0].tolist().index(3))
    assert positions == {0, 1}
    same, length = insert_words(ids, lengths, 0.0, 20, max_length=8)
    assert torch.equal(same, ids) and torch.equal(length, lengths)


def test_word_insertion_reaches_the_encoder_only_in_training():
    policy = make_policy(word_insertion=1.0)
    language, texts = policy.language, TASKS * 2
    _, lengths = language._tokenize(list(dict.fromkeys(texts)))
    calls = record_encoder_inputs(language)
    torch.manual_seed(0)
    language(texts)
    assert torch.equal(calls[-1][1], lengths + 1)  # every distinct string got one more word
    policy.eval()
    language.clear_cache()
    language(texts)
    assert torch.equal(calls[-1][1], lengths)
    with pytest.raises(ValueError, match="word_insertion"):
        PolicyConfig(word_insertion=1.5)
