"""Weight EMA (`nanovla.train.ema`): the update rule by hand, what it leaves alone, exact reload."""

import pytest
import torch
from torch import nn

from nanovla.errors import InputError, MissingError
from nanovla.models.policy import Policy, PolicyConfig
from nanovla.train.ema import EMA_DIR, WeightEMA


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)  # float running stats + an integer counter
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _set(net: Net, value: float) -> None:
    with torch.no_grad():
        for p in net.layer.parameters():
            p.fill_(value)
        net.norm.running_mean.fill_(value)
        net.norm.num_batches_tracked.fill_(int(value))


def test_update_matches_the_hand_computed_average():
    torch.manual_seed(0)
    net, decay = Net(), 0.9
    ema = WeightEMA(net, decay)
    expected = None
    values = (1.0, 3.0, -2.0, 5.0) + (4.0,) * 100  # past n = 80 the decay is the given 0.9
    for n, value in enumerate(values):
        _set(net, value)
        ema.update_parameters(net)
        # W_ema = W at the first update, then W_ema <- d W_ema + (1 - d) W with the warmup
        # d = min(decay, (1 + n) / (10 + n)), n = updates before this one
        d = min(decay, (1 + n) / (10 + n))
        expected = value if expected is None else d * expected + (1 - d) * value
    assert int(ema.n_averaged) == len(values)
    for tensor in (ema.module.layer.weight, ema.module.layer.bias, ema.module.norm.running_mean):
        torch.testing.assert_close(tensor, torch.full_like(tensor, expected), rtol=0, atol=1e-6)
    assert int(ema.module.norm.num_batches_tracked) == 4  # integers are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_frozen_weights_are_left_alone_and_the_model_is_untouched():
    net = Net()
    ema = WeightEMA(net, 0.5)
    frozen = ema.module.frozen.weight.clone()
    ema.update_parameters(net)
    with torch.no_grad():
        net.frozen.weight.add_(1.0)  # (a frozen weight never changes; if it did, not averaged)
        net.layer.weight.add_(2.0)
    before = net.layer.weight.clone()
    ema.update_parameters(net)
    torch.testing.assert_close(ema.module.frozen.weight, frozen)
    torch.testing.assert_close(net.layer.weight, before)  # the live model is only read
    d = min(0.5, 2 / 11)  # the second update: n = 1
    torch.testing.assert_close(ema.module.layer.weight, before - 2.0 * d)  # from W - 2 to W


def test_decay_out_of_range_is_refused():
    with pytest.raises(InputError, match="decay"):
        WeightEMA(Net(), 1.0)


def test_save_and_load_restore_the_average_exactly(tmp_path):
    from nanovla.models.text.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_texts(["reach the red box"])
    config = PolicyConfig(image_size=16, vision_widths=(8,), hidden_dim=16, text_dim=8)
    torch.manual_seed(0)
    policy = Policy(config, tokenizer=tokenizer)
    ema = WeightEMA(policy, 0.99)
    for _ in range(3):
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(torch.randn_like(p))
        ema.update_parameters(policy)
    ema.save(tmp_path)
    assert (tmp_path / EMA_DIR / "config.json").is_file()  # a policy folder nanovla eval takes
    torch.manual_seed(1)
    other = WeightEMA(Policy(config, tokenizer=tokenizer), 0.99)
    other.load(tmp_path)
    assert int(other.n_averaged) == 3
    reloaded = Policy.from_pretrained(tmp_path / EMA_DIR)
    for name, tensor in ema.module.state_dict().items():  # (no dataset: the stats are NaN)
        for copy in (other.module, reloaded):
            torch.testing.assert_close(
                copy.state_dict()[name], tensor, rtol=0, atol=0, equal_nan=True
            )
    with pytest.raises(InputError, match="decay"):
        WeightEMA(policy, 0.5).load(tmp_path)
    with pytest.raises(MissingError, match="ema.json"):
        other.load(tmp_path / "nowhere")


def test_the_average_never_serves_stale_cached_text_features() -> None:
    # The EMA copy stays in eval mode, where the instruction encoder caches features per string;
    # its weights change in place, so each update must drop that cache (a stale cache froze
    # the in-run validation of whole runs at their first validation's language features).
    from nanovla.models.text.tokenizer import Tokenizer

    texts = ["reach the red box"]
    config = PolicyConfig(image_size=16, vision_widths=(8,), hidden_dim=16, text_dim=8)
    torch.manual_seed(0)
    policy = Policy(config, tokenizer=Tokenizer.from_texts(texts))
    ema = WeightEMA(policy, 0.5)
    ema.update_parameters(policy)
    language = ema.module.language
    before = language(texts).clone()  # eval mode: cached
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5)
    ema.update_parameters(policy)
    after = language(texts)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, language._encode(texts, None))  # = an uncached encoding
