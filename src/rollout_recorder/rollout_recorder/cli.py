"""``rollout_recorder``: episode folder tools (no ROS).

  rollout_recorder list data/rollouts          # finished episodes, then interrupted ones
  rollout_recorder recover data/rollouts       # finish every interrupted episode (.partial) of a folder
  rollout_recorder recover data/rollouts/episode_4.hdf5.partial
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .episode_file import (EpisodeFileError, attr_value, list_episode_files, list_partial_episodes, open_episode_file,
                           recover_episode)


def cmd_list(folder: Path) -> int:
    files = list_episode_files(folder)
    for path in files:
        try:
            with open_episode_file(path) as f:
                a = {k: attr_value(v) for k, v in f.attrs.items()}
                steps = f["action"].shape[0]
        except (EpisodeFileError, KeyError) as exc:
            print(f"{path.name}: unreadable ({exc})")
            continue
        score = a.get("stage_score")
        flags = [flag for flag, on in (("recovered", a.get("recovered")), ("CAMERA RATE LOW", a.get("camera_rate_low")))
                 if on]
        dropped = a.get("dropped_frames")
        print(f"{path.name}: {steps} steps, task '{a.get('task', '')}', score "
              f"{'unscored' if score is None else f'{score:.0f}/100'}"
              + (f", dropped frames {dropped}" if dropped is not None else "")
              + (f" [{', '.join(flags)}]" if flags else ""))
    partial = list_partial_episodes(folder)
    for path in partial:
        print(f"{path.name}: INTERRUPTED (not read by training); run `rollout_recorder recover {path}`")
    print(f"{len(files)} episodes, {len(partial)} interrupted in {folder}")
    return 0


def cmd_recover(target: Path, keep: bool) -> int:
    partials = list_partial_episodes(target) if target.is_dir() else [target]
    if not partials:
        print(f"{target}: no interrupted episodes")
        return 0
    failed = 0
    for path in partials:
        try:
            out = recover_episode(path, keep_partial=keep)
        except EpisodeFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        with open_episode_file(out) as f:
            print(f"{path.name} -> {out.name}: {int(f.attrs['recovered_steps'])} steps recovered")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rollout_recorder", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="episodes of a folder with their scores and flags")
    ls.add_argument("folder", type=Path)
    rec = sub.add_parser("recover", help="finish interrupted episodes (episode_<i>.hdf5.partial)")
    rec.add_argument("target", type=Path, help="a .partial file or a folder")
    rec.add_argument("--keep-partial", action="store_true", help="keep the .partial file after recovering it")
    args = p.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args.folder)
        return cmd_recover(args.target, args.keep_partial)
    except EpisodeFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
