"""How a checkpoint is meant to be run on its robot: control rate, steps executed per chunk, denoising steps.

Stored in the checkpoint's config.json under "deploy", so that a checkpoint carries the timing it was
trained for; a node may override each value by parameter. One place decides how many steps of a chunk run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import LayoutConfig


@dataclass(frozen=True)
class DeployConfig:
    """Args:
        control_hz: rate at which the chunk's steps are commanded.
        execute_steps: steps of each chunk executed before the next chunk takes over (<= the chunk length).
        action_steps: denoising steps for the action chunk.
        max_joint_jump_rad: largest |target - measured| the policy may command; None = the robot contract's.
    """

    control_hz: float
    execute_steps: int
    action_steps: int
    max_joint_jump_rad: float | None = None

    def __post_init__(self) -> None:
        if not self.control_hz > 0:
            raise ValueError(f"deploy control_hz={self.control_hz}: expected > 0")
        if self.execute_steps < 1:
            raise ValueError(f"deploy execute_steps={self.execute_steps}: expected >= 1")
        if self.action_steps < 1:
            raise ValueError(f"deploy action_steps={self.action_steps}: expected >= 1")
        if self.max_joint_jump_rad is not None and not self.max_joint_jump_rad > 0:
            raise ValueError(f"deploy max_joint_jump_rad={self.max_joint_jump_rad}: expected > 0 or None")

    def check_layout(self, layout: LayoutConfig) -> None:
        if self.execute_steps > layout.action_chunk:
            raise ValueError(f"deploy execute_steps={self.execute_steps} exceeds the {layout.name} chunk of "
                             f"{layout.action_chunk} steps")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeployConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"deploy config: unknown keys {unknown} (expected a subset of {sorted(known)})")
        return cls(**data)


# This product's defaults per layout. ALOHA runs 50-step chunks at the contract's 50 Hz with the release's
# deploy default of 10 action steps; LIBERO and RoboCasa as the release evaluates them (chunk 16 open loop,
# 5 action steps, 20 Hz control).
_LAYOUT_DEFAULTS = {
    "aloha": dict(control_hz=50.0, execute_steps=50, action_steps=10),
    "libero": dict(control_hz=20.0, execute_steps=16, action_steps=5),
    "robocasa": dict(control_hz=20.0, execute_steps=16, action_steps=5),
}

# The released ALOHA checkpoint's deploy values: 25 Hz, 10 action steps, the whole 50-step chunk open loop,
# and its safety pause when an action is more than 0.15 rad from qpos.
RELEASE_DEPLOY = {
    "aloha": DeployConfig(control_hz=25.0, execute_steps=50, action_steps=10, max_joint_jump_rad=0.15),
    "libero": DeployConfig(control_hz=20.0, execute_steps=16, action_steps=5),
    "robocasa": DeployConfig(control_hz=20.0, execute_steps=16, action_steps=5),
}


def default_deploy(layout: LayoutConfig) -> DeployConfig:
    """This product's deploy defaults for a layout (unknown layouts: 20 Hz, execute the layout's steps, 5 steps)."""
    defaults = _LAYOUT_DEFAULTS.get(layout.name)
    if defaults is None:
        defaults = dict(control_hz=20.0, execute_steps=layout.execute_steps or layout.action_chunk, action_steps=5)
    return DeployConfig(**defaults)


def deploy_from_checkpoint_config(config: dict[str, Any], layout: LayoutConfig) -> DeployConfig:
    """The checkpoint's "deploy" section, or the layout's defaults for checkpoints written before it existed."""
    section = config.get("deploy")
    deploy = DeployConfig.from_dict(section) if section else default_deploy(layout)
    deploy.check_layout(layout)
    return deploy
