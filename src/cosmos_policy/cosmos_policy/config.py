"""Configuration dataclasses: network (DiT + VAE + text), latent-sequence layout, sampler."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SLOT_KINDS = ("blank", "proprio", "image", "action", "future_proprio", "future_image", "value")
INJECTED_KINDS = ("proprio", "action", "future_proprio", "value")
# How camera frames become latent frames (NetworkConfig.vae_frames): "video", the release, runs the whole
# sequence through the causal VAE in one pass, each slot 4 repeated pixel frames; "per_frame" encodes each
# slot as its own one-frame video, the only input `pretrain-vae` trains a CPU preset's VAE on.
VAE_FRAME_MODES = ("video", "per_frame")
EXTRA_POS_EMBEDS = (None, "learnable")


@dataclass(frozen=True)
class NetworkConfig:
    """DiT (diffusers CosmosTransformer3DModel), Wan2.1 VAE and text-embedding sizes."""

    preset: str = "2b"
    num_layers: int = 28
    num_attention_heads: int = 16
    attention_head_dim: int = 128
    mlp_ratio: float = 4.0
    # 16 latent channels + 1 condition-mask channel; the padding-mask channel is added on top.
    in_channels: int = 17
    out_channels: int = 16
    text_embed_dim: int = 1024
    text_max_tokens: int = 512
    adaln_lora_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    rope_scale: tuple[float, float, float] = (1.0, 3.0, 3.0)
    max_size: tuple[int, int, int] = (128, 240, 240)
    # The native Predict2 q/k RMSNorm uses 1e-6; diffusers builds 1e-5 and does not expose it.
    qk_norm_eps: float = 1e-6
    vae_base_dim: int = 96
    vae_z_dim: int = 16
    vae_dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    vae_num_res_blocks: int = 2
    vae_temporal_downsample: tuple[bool, ...] = (False, True, True)
    image_size_px: int = 224
    # "video" (the release, Wan2.1's VAE was trained on videos) or "per_frame" (see VAE_FRAME_MODES). A VAE
    # pretrained on single frames has untrained temporal layers: measured through them ("video"), two start
    # frames that differ only in the cube's place gave latents 19x closer than encoded alone.
    vae_frames: str = "video"
    # None (Predict2, the release: RoPE only) or "learnable" (Predict1's absolute embedding per axis, added
    # at every block; diffusers' extra_pos_embed_type). RoPE rotates queries and keys, never values: a token
    # can find the cube's token but reads back what it holds, not where it is. The release's 2B recovers
    # positions through a pretrained video model and a large token grid. Measured on the small preset's 4 x 4
    # grid per frame (benchmarks/scene_probe.py, docs/results.md): with or without it, first chunks stay as
    # far from the scene's as the mean chunk for 1,500 steps; without it, 6,000-12,000 steps on first
    # observations alone read the layout better than a linear probe does. Training, not position, was missing.
    extra_pos_embed: str | None = None

    def __post_init__(self) -> None:
        if self.vae_frames not in VAE_FRAME_MODES:
            raise ValueError(f"network vae_frames={self.vae_frames!r}: expected one of {', '.join(VAE_FRAME_MODES)}")
        if self.extra_pos_embed not in EXTRA_POS_EMBEDS:
            raise ValueError(f"network extra_pos_embed={self.extra_pos_embed!r}: expected one of "
                             f"{', '.join(map(str, EXTRA_POS_EMBEDS))}")

    @property
    def latent_channels(self) -> int:
        return self.vae_z_dim

    @property
    def latent_size(self) -> int:
        """Latent height = width for a square image (8x spatial compression)."""
        return self.image_size_px // 8

    @property
    def latent_frame_numel(self) -> int:
        """Values in one latent frame (C' x H' x W'), the room an injected vector has."""
        return self.vae_z_dim * self.latent_size * self.latent_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"network config: unknown keys {unknown} (expected a subset of {sorted(known)})")
        values = dict(data)
        for name in ("patch_size", "rope_scale", "max_size", "vae_dim_mult", "vae_temporal_downsample"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def preset_config(cls, name: str) -> NetworkConfig:
        """`"2b"`: exact Cosmos-Predict2-2B + Wan2.1 VAE; `"medium"`: GPU-trained, CPU-run; `"small"`: CPU-trainable;
        `"tiny"`: seconds on a 2-core CPU."""
        if name == "2b":
            return cls()
        if name == "tiny":
            # z_dim stays 16 and the 64 px image gives 16 x 8 x 8 = 1024 values per latent frame,
            # so every layout's largest vector (ALOHA chunk 50 x 14 = 700) still fits once.
            # Hidden width 2 x 32 = 64 = one patch token (16 channels x 2 x 2): narrower cannot carry a
            # token's latent through, and the tiny model then does not learn actions (test_train_learns).
            return cls(
                preset="tiny",
                num_layers=2,
                num_attention_heads=2,
                attention_head_dim=32,
                text_embed_dim=32,
                text_max_tokens=8,
                adaln_lora_dim=16,
                vae_base_dim=4,
                vae_num_res_blocks=1,
                image_size_px=64,
            )
        if name == "small":
            # The CPU-trainable preset of the default ALOHA sim checkpoint (one run <= 75 min on 2 cores):
            # width 128 (2 heads x 64), 4 layers; the tiny VAE and 64 px image (8 x 8 latents, 16 x 8 x 8 =
            # 1024 values per latent frame >= the 700 of an ALOHA chunk). Measured on 2 shared cores, one
            # thread, batch 32: DiT train step ~32 ms/sample (width 256 x 4 layers: ~93; tiny: ~12); the VAE
            # ~110 ms/sample, hence cached latents (train.py). Text: 8 tokens x 32 (hash fallback, no T5).
            return cls(
                preset="small",
                num_layers=4,
                num_attention_heads=2,
                attention_head_dim=64,
                text_embed_dim=32,
                text_max_tokens=8,
                adaln_lora_dim=32,
                # VAE base width 4 (0.18 M parameters). Pretrained on the demos (vae_pretrain) it reconstructs
                # table and arms at 26.9 dB held-out PSNR but not the 2-px cube; width 16 (2.6 M, 0.9 s per
                # pretraining step of 16 frames vs 0.39) reached only 22.7 dB in 900 steps, cube absent too
                vae_base_dim=4,
                vae_num_res_blocks=1,
                image_size_px=64,
            )
        if name == "medium":
            # Trained on a GPU, run on a CPU: width 256 (4 heads x 64), 8 layers, 128 px (16 x 16 latents,
            # 64 tokens per latent frame), VAE width 16. The 96x128 cameras' cube covers ~4-5 px at 128 px
            # against ~2 at the small preset's 64 px, which its VAE never drew (docs/results.md); 9.4 M DiT
            # parameters (7.5x small's) over 4x its tokens: 2.9 s per 10-step chunk on 2 cores (small: ~0.25),
            # a 46 MB checkpoint. Its VAE must be pretrained on the demos first (`cosmos-policy pretrain-vae
            # --network medium`), as for small.
            return cls(
                preset="medium",
                num_layers=8,
                num_attention_heads=4,
                attention_head_dim=64,
                text_embed_dim=32,
                text_max_tokens=8,
                adaln_lora_dim=64,
                vae_base_dim=16,
                vae_num_res_blocks=1,
                image_size_px=128,
            )
        raise ValueError(f"network preset {name!r}: unknown, expected one of ['2b', 'medium', 'small', 'tiny']")


@dataclass(frozen=True)
class Slot:
    """One latent frame of the sequence: what it holds and, for images, which camera."""

    kind: str
    camera: str | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.camera}" if self.camera else self.kind


@dataclass(frozen=True)
class LayoutConfig:
    """Latent-sequence layout of one embodiment (loaded from configs/layouts/<name>.yaml)."""

    name: str
    cameras: tuple[str, ...]
    action_chunk: int
    action_dim: int
    proprio_dim: int
    slots: tuple[Slot, ...]
    execute_steps: int | None = None
    camera_hw: tuple[int, int] | None = None
    value_gamma: float = 0.99
    notes: str = ""
    # Region of interest per camera, (camera, (top, left, height, width)) in fractions of the frame: the
    # model sees only that part, resized to its input. Not in the release (which feeds whole frames at
    # 224 px); for the CPU presets' 64 px input, where a 4-px cube in a 96x128 frame shrinks to 2 px.
    camera_crops: tuple[tuple[str, tuple[float, float, float, float]], ...] = ()

    def __post_init__(self) -> None:
        for cam, box in self.camera_crops:
            check_crop_box(f"layout {self.name}: camera crop {cam}", box)
            if cam not in self.cameras:
                raise ValueError(f"layout {self.name}: camera crop names {cam!r}, not one of {self.cameras}")
        if not self.slots or self.slots[0].kind != "blank":
            raise ValueError(f"layout {self.name}: the first slot must be 'blank' (the VAE's lone first frame)")
        for slot in self.slots:
            if slot.kind not in SLOT_KINDS:
                raise ValueError(f"layout {self.name}: slot kind {slot.kind!r} unknown, expected one of {SLOT_KINDS}")
            if slot.kind in ("image", "future_image") and slot.camera not in self.cameras:
                raise ValueError(f"layout {self.name}: slot {slot.name} names a camera not in {self.cameras}")
        names = [s.name for s in self.slots]
        if len(set(names)) != len(names):
            raise ValueError(f"layout {self.name}: duplicate slots in {names}")
        for kind in ("proprio", "action", "future_proprio", "value"):
            if kind not in names:
                raise ValueError(f"layout {self.name}: missing the {kind!r} slot")
        for cam in self.cameras:
            for kind in ("image", "future_image"):
                if f"{kind}/{cam}" not in names:
                    raise ValueError(f"layout {self.name}: missing slot {kind}/{cam}")

    @property
    def num_latent_frames(self) -> int:
        return len(self.slots)

    def crop_box(self, camera: str) -> tuple[float, float, float, float] | None:
        """This camera's region of interest (top, left, height, width as fractions), None for the whole frame."""
        return dict(self.camera_crops).get(camera)

    @property
    def num_pixel_frames(self) -> int:
        return 1 + 4 * (len(self.slots) - 1)

    def index(self, kind: str, camera: str | None = None) -> int:
        """Latent frame index of a slot, e.g. `index("future_image", "cam_high")`."""
        for i, slot in enumerate(self.slots):
            if slot.kind == kind and slot.camera == camera:
                return i
        raise KeyError(f"layout {self.name}: no slot {kind}{'/' + camera if camera else ''}")

    def vector_length(self, kind: str) -> int:
        """Length of the flattened vector injected into a slot of this kind."""
        if kind == "action":
            return self.action_chunk * self.action_dim
        if kind in ("proprio", "future_proprio"):
            return self.proprio_dim
        if kind == "value":
            return 1
        raise ValueError(f"slot kind {kind!r} is not injected")

    def check_fits(self, latent_frame_numel: int) -> None:
        """Raise if an injected vector is longer than one latent frame."""
        for kind in INJECTED_KINDS:
            n = self.vector_length(kind)
            if n > latent_frame_numel:
                raise ValueError(
                    f"layout {self.name}: {kind} vector of {n} values does not fit one latent frame of "
                    f"{latent_frame_numel} values (use a larger image size or a smaller chunk)"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cameras": list(self.cameras),
            "action_chunk": self.action_chunk,
            "action_dim": self.action_dim,
            "proprio_dim": self.proprio_dim,
            "slots": [s.name for s in self.slots],
            "execute_steps": self.execute_steps,
            "camera_hw": list(self.camera_hw) if self.camera_hw else None,
            "value_gamma": self.value_gamma,
            "notes": self.notes,
            "camera_crops": {cam: list(box) for cam, box in self.camera_crops},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayoutConfig:
        required = ("name", "cameras", "action_chunk", "action_dim", "proprio_dim", "slots")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"layout config: missing keys {missing}")
        slots = []
        for entry in data["slots"]:
            kind, _, camera = str(entry).partition("/")
            slots.append(Slot(kind=kind, camera=camera or None))
        hw = data.get("camera_hw")
        return cls(
            name=str(data["name"]),
            cameras=tuple(data["cameras"]),
            action_chunk=int(data["action_chunk"]),
            action_dim=int(data["action_dim"]),
            proprio_dim=int(data["proprio_dim"]),
            slots=tuple(slots),
            execute_steps=data.get("execute_steps"),
            camera_hw=tuple(hw) if hw else None,
            value_gamma=float(data.get("value_gamma", 0.99)),
            notes=str(data.get("notes", "")),
            camera_crops=parse_camera_crops(data.get("camera_crops") or {}),
        )


def check_crop_box(what: str, box: tuple[float, ...]) -> None:
    """Raise ValueError unless box = (top, left, height, width) is a non-empty region inside the frame."""
    if len(box) != 4:
        raise ValueError(f"{what}: got {len(box)} numbers, expected 4 (top, left, height, width as fractions)")
    top, left, height, width = box
    if not (0.0 <= top < 1.0 and 0.0 <= left < 1.0 and height > 0.0 and width > 0.0
            and top + height <= 1.0 + 1e-9 and left + width <= 1.0 + 1e-9):
        raise ValueError(f"{what}: {tuple(box)} is not a region inside the frame (top, left, height, width as "
                         f"fractions of the frame, top + height <= 1, left + width <= 1)")


def parse_camera_crops(crops: dict[str, Any] | list[str] | tuple[str, ...]) -> tuple[
        tuple[str, tuple[float, float, float, float]], ...]:
    """{camera: [top, left, height, width]} or ["camera=top,left,height,width", ...] -> sorted pairs, checked."""
    if isinstance(crops, dict):
        items = list(crops.items())
    else:
        items = []
        for text in crops:
            cam, sep, numbers = str(text).partition("=")
            try:
                box = [float(v) for v in numbers.split(",")] if sep else []
            except ValueError:
                box = []
            if not sep or len(box) != 4:
                raise ValueError(f"camera crop {text!r}: expected CAMERA=TOP,LEFT,HEIGHT,WIDTH in fractions of the "
                                 f"frame, e.g. cam_high=0.3,0.15,0.5,0.7")
            items.append((cam, box))
    out = []
    for cam, box in items:
        box = tuple(float(v) for v in box)
        check_crop_box(f"camera crop {cam}", box)
        out.append((str(cam), box))
    if len({cam for cam, _ in out}) != len(out):
        raise ValueError(f"camera crops: a camera appears twice in {[cam for cam, _ in out]}")
    return tuple(sorted(out))


def available_layouts() -> list[str]:
    """Names of the layouts shipped in configs/layouts/."""
    folder = resources.files("cosmos_policy").joinpath("configs", "layouts")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_layout(name_or_path: str | Path) -> LayoutConfig:
    """Load a layout by name (`"aloha"`) or from a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"layout file {path}: not found")
        text = path.read_text()
    else:
        resource = resources.files("cosmos_policy").joinpath("configs", "layouts", f"{name_or_path}.yaml")
        if not resource.is_file():
            raise ValueError(f"layout {name_or_path!r}: unknown, expected one of {available_layouts()} or a .yaml path")
        text = resource.read_text()
    return LayoutConfig.from_dict(yaml.safe_load(text))


@dataclass(frozen=True)
class SamplerConfig:
    """Karras schedule + 2nd-order multistep exponential integrator settings."""

    sigma_max: float = 80.0
    sigma_min: float = 4.0
    rho: float = 7.0
    action_steps: int = 5
    future_state_steps: int = 1
    value_steps: int = 1
    # "parallel": one joint pass; "autoregressive": actions, then world model on them, then value.
    mode: str = "parallel"
    variance_scale: bool = False
    sigma_max_scale_range: tuple[float, float] = (1.0, 3.0)
    sigma_min_scale_range: tuple[float, float] = (0.1, 1.0)

    def __post_init__(self) -> None:
        if self.mode not in ("parallel", "autoregressive"):
            raise ValueError(f"sampler mode {self.mode!r}: expected 'parallel' or 'autoregressive'")
        for name in ("action_steps", "future_state_steps", "value_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampler {name}={getattr(self, name)}: expected >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"sampler config: unknown keys {unknown}")
        values = dict(data)
        for name in ("sigma_max_scale_range", "sigma_min_scale_range"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)
