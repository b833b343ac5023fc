"""The PPO loss of the MLP `ActorCritic` with its gradient written out by hand (no autograd).

PPO's minibatches are tiny (64-256 samples through two 64-64 MLPs), so a gradient step is
dominated by per-operation overhead, not arithmetic: autograd records a node per operation of
the loss and runs them back one by one, and `clip_grad_norm_` and `optimizer.step()` loop over
the parameters in Python. `PPOGrad` computes the same loss and gradients with fewer operations
(fused ones: `tanh_backward`, `addmm`; no graph), writes the gradients straight into one flat
buffer (the parameters' `.grad` are views of it), so the gradient norm and the clipping are one
operation each, and takes its minibatches as slices of one packed, once-per-epoch shuffled
matrix (`pack`); `AdamStep` calls the fused Adam kernel directly. The optimizer's state and the
checkpoints are those of the autograd path. `tests/test_rl_mlp_grad.py` checks loss and
gradients against autograd on `rl.ppo`'s loss (float32 within 1e-6, float64 within 1e-10);
`benchmarks/ppo_step.py` times the variants.

Measured, not kept: actor and critic hidden layers stacked into one (2, out, in) weight per
layer (one `baddbmm` for both trunks, forward and backward) cost the same CPU time per step as
the two MLPs at Pendulum's minibatch of 64 and more at CartPole's 256.

The derivatives (B samples, per-sample terms, L = L_clip - c_H mean(H) + c_V L_V):

- clipped surrogate, r = exp(logp - logp_old): dL_clip/dr = -A / B where -A r >= -A clip(r)
  (the unclipped term is the max; where the two tie, inside the clip range, torch's max splits
  the gradient evenly and both halves are -A / B), else 0; dL/dlogp = r dL/dr.
- categorical, z the logits, p = softmax(z): dlogp(a)/dz = onehot(a) - p;
  dH/dz = -p (log p + H).
- diagonal Gaussian, u the raw sample, s = exp(log s): dlogp/dmean = (u - mean) / s^2,
  dlogp/dlog s = ((u - mean) / s)^2 - 1, dH/dlog s = 1; the state-dependent log-std is clamped
  to `LOG_STD_RANGE` (gradient 0 outside); the tanh correction does not depend on the weights.
- value: d(mean (V - R)^2)/dV = 2 (V - R) / B; clipped (`clip_vloss`): the same where the
  unclipped error is the larger one, else 0 (the clipped term is constant there).
- layers: h = act(x W^T + b): dW = d^T x, db = sum d, dx = d W with d = dh act'(h)
  (`tanh_backward`, `threshold_backward`: one operation each).
"""

from __future__ import annotations

from typing import Any

import torch

from nanovla.rl.distributions import LOG_SQRT_2PI, tanh_log_det
from nanovla.rl.policy import LOG_STD_RANGE, ActorCritic

_tanh_backward = torch.ops.aten.tanh_backward
_threshold_backward = torch.ops.aten.threshold_backward


def supported(agent: Any) -> bool:
    """True when `agent` is an MLP `ActorCritic` (vector observations) that `PPOGrad` drives."""
    return isinstance(agent, ActorCritic) and agent.actor.cnn is None


def _linears(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


class PPOGrad:
    """PPO loss + hand-written backward for one MLP `ActorCritic` (see the module docs)."""

    def __init__(self, agent: ActorCritic) -> None:
        self.agent, config = agent, agent.config
        self.discrete, self.tanh = config.discrete, config.squash == "tanh"
        self.state_std = not config.discrete and config.log_std == "state"
        self.relu = config.activation == "relu"
        self.actor = [(m.weight, m.bias) for m in _linears(agent.actor.mlp)]
        self.actor.append((agent.policy_head.weight, agent.policy_head.bias))
        self.critic = [(m.weight, m.bias) for m in _linears(agent.critic.mlp)]
        self.critic.append((agent.value_head.weight, agent.value_head.bias))
        params = [p for layer in self.actor + self.critic for p in layer]
        if agent.log_std is not None:
            params.append(agent.log_std)
        self.params = params
        self.dtype = params[0].dtype
        self.flat_grad = torch.zeros(sum(p.numel() for p in params), dtype=self.dtype)
        self.grads: dict[torch.Tensor, torch.Tensor] = {}
        offset = 0
        for p in params:
            self.grads[p] = self.flat_grad[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self.obs_dim, self.action_dim = config.obs_dim, config.action_dim

    # ------------------------------------------------------------------ batches
    def pack(self, batch: dict[str, Any]) -> torch.Tensor:
        """The flattened rollout as one (N, F) float matrix: obs, the action (one-hot for
        categorical policies), old log-prob (Gaussian part only for tanh), old value, return,
        advantage."""
        raw = batch["raw"]
        old_logp = batch["logp"]
        if self.discrete:
            action = torch.nn.functional.one_hot(raw.long(), self.action_dim).to(self.dtype)
        else:
            action = raw.reshape(raw.shape[0], -1).to(self.dtype)
            if self.tanh:  # the correction cancels in the ratio: keep the Gaussian part
                old_logp = old_logp + tanh_log_det(action).sum(-1)
        columns = [batch["obs"], action, old_logp[:, None], batch["values"][:, None],
                   batch["returns"][:, None], batch["adv"][:, None]]  # fmt: skip
        return torch.cat([c.to(self.dtype) for c in columns], dim=1)

    def split(self, mb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(obs, action, old_logp, old_value, return, advantage) views of packed rows."""
        d, a = self.obs_dim, self.action_dim
        return (mb[:, :d], mb[:, d : d + a], mb[:, d + a], mb[:, d + a + 1], mb[:, d + a + 2],
                mb[:, d + a + 3])  # fmt: skip

    # ------------------------------------------------------------------ forward / backward
    def _forward(self, layers: list, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        hidden = [x]
        act = torch.relu if self.relu else torch.tanh
        for weight, bias in layers[:-1]:
            hidden.append(act(torch.addmm(bias, hidden[-1], weight.t())))
        weight, bias = layers[-1]
        return hidden, torch.addmm(bias, hidden[-1], weight.t())

    def _backward(self, layers: list, hidden: list[torch.Tensor], d_out: torch.Tensor) -> None:
        grads, d = self.grads, d_out
        for i in range(len(layers) - 1, -1, -1):
            weight, bias = layers[i]
            torch.mm(d.t(), hidden[i], out=grads[weight])
            torch.sum(d, 0, out=grads[bias])
            if i == 0:
                break
            d = torch.mm(d, weight)
            if self.relu:
                d = _threshold_backward(d, hidden[i], 0)
            else:
                d = _tanh_backward(d, hidden[i])

    @torch.no_grad()
    def step(
        self, mb: torch.Tensor, clip: float, cmd: Any, stats: bool
    ) -> dict[str, torch.Tensor] | None:
        """Loss and gradients of one packed minibatch `mb` (`pack` rows): the gradients,
        clipped to `cmd.max_grad_norm`, are in the parameters' `.grad`; returns the losses,
        approx KL and clip fraction when `stats` (else None)."""
        x, action, old_logp, old_v, returns, adv = self.split(mb)
        n = mb.shape[0]
        if cmd.norm_adv and n > 1:
            std, mean = torch.std_mean(adv)
            adv = (adv - mean) / (std + 1e-8)
        a_hidden, out = self._forward(self.actor, x)
        c_hidden, value = self._forward(self.critic, x)
        value = value.squeeze(-1)
        ent_coef = cmd.ent_coef
        if self.discrete:
            log_p = torch.log_softmax(out, dim=-1)
            p = log_p.exp()
            new_logp = (log_p * action).sum(-1)
        else:
            if self.state_std:
                mean, raw_ls = out.chunk(2, dim=-1)
                log_std = raw_ls.clamp(*LOG_STD_RANGE)
            else:
                mean, log_std = out, self.agent.log_std
            inv_std = torch.exp(-log_std)
            z = (action - mean) * inv_std
            new_logp = (-0.5 * z * z - log_std - LOG_SQRT_2PI).sum(-1)
        log_ratio = new_logp - old_logp
        ratio = log_ratio.exp()
        surr = -adv * ratio
        surr_clipped = -adv * ratio.clamp(1 - clip, 1 + clip)
        # dL/dlogp = r dL/dr, dL/dr = -A / B where the unclipped term is the max
        g_logp = torch.where(surr >= surr_clipped, surr, 0.0) * (1.0 / n)
        if self.discrete:
            g = g_logp[:, None]
            if ent_coef:
                entropy = -(p * log_p).sum(-1)
                d_out = g * action - p * (g - (ent_coef / n) * (log_p + entropy[:, None]))
            else:
                d_out = g * action - p * g
        else:
            g = g_logp[:, None]
            d_mean = g * z * inv_std
            d_ls = g * (z * z - 1.0)
            if ent_coef:
                d_ls = d_ls - ent_coef / n
            if self.state_std:
                inside = (raw_ls >= LOG_STD_RANGE[0]) & (raw_ls <= LOG_STD_RANGE[1])
                d_out = torch.cat([d_mean, d_ls * inside], dim=-1)
            else:
                d_out = d_mean
                torch.sum(d_ls, 0, out=self.grads[self.agent.log_std])
        err = value - returns
        if cmd.clip_vloss:
            clipped_v = old_v + (value - old_v).clamp(-clip, clip)
            unclipped_sq, clipped_sq = err * err, (clipped_v - returns) ** 2
            d_value = torch.where(unclipped_sq >= clipped_sq, err, 0.0) * (2.0 * cmd.vf_coef / n)
        else:
            d_value = err * (2.0 * cmd.vf_coef / n)
        self._backward(self.actor, a_hidden, d_out)
        self._backward(self.critic, c_hidden, d_value[:, None])
        norm = torch.linalg.vector_norm(self.flat_grad)
        self.flat_grad.mul_((cmd.max_grad_norm / (norm + 1e-6)).clamp_(max=1.0))
        for param in self.params:  # (re)attach the views: zero_grad(set_to_none) drops them
            if param.grad is not self.grads[param]:
                param.grad = self.grads[param]
        if not stats:
            return None
        pg_loss = torch.maximum(surr, surr_clipped).mean()
        if cmd.clip_vloss:
            v_loss = torch.maximum(unclipped_sq, clipped_sq).mean()
        else:
            v_loss = (err * err).mean()
        if self.discrete:
            entropy = -(p * log_p).sum(-1).mean()
        else:
            entropy = (0.5 + LOG_SQRT_2PI + log_std).sum(-1).mean()
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > clip).float().mean()
        return {"pg_loss": pg_loss, "v_loss": v_loss, "entropy": entropy,
                "approx_kl": approx_kl, "clipfrac": clipfrac, "grad_norm": norm}  # fmt: skip


class AdamStep:
    """`optimizer.step()` of a fused `torch.optim.Adam` (one parameter group) as the two kernel
    calls that step makes (`_foreach_add_` of the step counts, `_fused_adam_`), without its
    per-call Python (grouping, hooks, state look-ups; `benchmarks/ppo_step.py` times both).
    The first call goes through `optimizer.step()` (it creates the state, and the LR scheduler
    sees the step); optimizers this does not cover always do. Bit-identical to
    `optimizer.step()` (tested)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.lists: tuple[list[torch.Tensor], ...] | None = None
        group = optimizer.param_groups[0]
        self.direct = (
            type(optimizer) is torch.optim.Adam
            and len(optimizer.param_groups) == 1
            and bool(group.get("fused"))
            and not group["amsgrad"] and not group["maximize"] and not group["capturable"]
            and not group["differentiable"] and not group["decoupled_weight_decay"]
            and getattr(optimizer, "grad_scale", None) is None
            and getattr(optimizer, "found_inf", None) is None
        )  # fmt: skip

    def __call__(self) -> None:
        if self.lists is None:
            self.optimizer.step()
            if self.direct:
                params = self.optimizer.param_groups[0]["params"]
                states = [self.optimizer.state[p] for p in params]
                self.lists = (list(params), [p.grad for p in params],
                              [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                              [s["step"] for s in states])  # fmt: skip
            return
        if not self.direct:
            self.optimizer.step()
            return
        group = self.optimizer.param_groups[0]
        params, grads, exp_avgs, exp_avg_sqs, steps = self.lists
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
            beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
            maximize=False, grad_scale=None, found_inf=None,
        )  # fmt: skip
