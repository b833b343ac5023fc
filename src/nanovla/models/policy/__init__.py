"""The VLA policy: `PolicyConfig` (what to build) + `Policy` (the model), as LeRobot pairs them.

from nanovla.models.policy import Policy, PolicyConfig
policy = Policy.from_dataset(PolicyConfig(), dataset)     # stats + tokenizer from the data
loss, metrics = policy(batch)                              # training
action = policy.select_action(obs)                         # acting in the world
policy.save_pretrained("out/"); Policy.from_pretrained("out/")
"""

from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.policy.modeling_policy import Policy

__all__ = ["Policy", "PolicyConfig"]
