"""``rollout_recorder``: episode folders and rosbag2 (MCAP) bags of the robot contract's topics.

  rollout_recorder list data/rollouts          # finished episodes, then interrupted ones
  rollout_recorder recover data/rollouts       # finish every interrupted episode (.partial) of a folder
  rollout_recorder recover data/rollouts/episode_4.hdf5.partial
  rollout_recorder record --out bags/demo_1 [--compress-images]      # contract topics -> MCAP bag (Ctrl-C ends it)
  rollout_recorder replay bags/demo_1 [--rate 0.5] [--loop]          # bag -> live topics with /clock
  rollout_recorder bag-to-episode bags/demo_1 --out data/demos --task "transfer the cube"
  rollout_recorder episode-to-topics data/demos/episode_0.hdf5 [--rate 0.25] [--report chunks.json]

list, recover and bag-to-episode need no ROS; record, replay and episode-to-topics are ROS programs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .episode_file import (
    EpisodeFileError,
    attr_value,
    list_episode_files,
    list_partial_episodes,
    open_episode_file,
    recover_episode,
)


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


def _camera_topics(items: list[str]) -> dict[str, str] | None:
    from .bags import BagError

    if not items:
        return None
    mapping = {}
    for item in items:
        cam, sep, topic = item.partition("=")
        if not sep or not cam or not topic:
            raise BagError(f"--camera {item!r}: expected CAMERA=TOPIC, e.g. cam_high=/cam_high/image_raw")
        mapping[cam] = topic
    return mapping


def cmd_bag_to_episode(args: argparse.Namespace) -> int:
    from aloha_contract import load_contract

    from .bags import BagEpisodeOptions, bag_to_episodes, describe_conversion

    contract = load_contract(args.contract)
    opts = BagEpisodeOptions(
        task=args.task, joint_states_topic=args.joint_states, joint_commands_topic=args.joint_commands,
        camera_topics=_camera_topics(args.camera),
        joint_names=[n for n in args.joint_names.split(",") if n] if args.joint_names else None,
        control_hz=args.control_hz, split_gap_s=args.split_gap_s, min_steps=args.min_steps, compress=args.compress,
        use_receive_time=args.use_receive_time, sim=args.sim, reserve_bytes=int(args.reserve_mb) << 20,
        namespace=args.namespace)
    started = time.monotonic()

    def progress(fraction: float, rows: int, episodes: int) -> None:
        elapsed = time.monotonic() - started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        print(f"\r{args.bag.name}: {100 * fraction:5.1f}%, {episodes} episodes written, {rows} steps in the current "
              f"one, {elapsed:.0f} s, ETA {eta:.0f} s   ", end="", file=sys.stderr, flush=True)

    result = bag_to_episodes(args.bag, args.out, contract, opts, progress=None if args.quiet else progress)
    if not args.quiet:
        print(file=sys.stderr)
    print(describe_conversion(result))
    return 0 if result.episodes else 1


def cmd_ros(args: argparse.Namespace) -> int:
    from aloha_contract import load_contract

    from .bags import BagError

    contract = load_contract(args.contract)
    if args.command == "record" and args.out.exists():
        raise BagError(f"{args.out}: exists already; bags are never overwritten (choose another --out)")
    from . import bag_ros  # rclpy from here on

    if args.command == "record":
        return bag_ros.run_record(args.out, contract, compress_images=args.compress_images,
                                  jpeg_quality=args.jpeg_quality, storage=args.storage, cameras=args.cameras,
                                  distro=args.distro, namespace=args.namespace)
    if args.command == "replay":
        return bag_ros.run_replay(args.bag, contract, rate=args.rate, loop=args.loop, clock_hz=args.clock_hz,
                                  topics=args.topics, delay_s=args.delay, namespace=args.namespace,
                                  decompress=args.decompress)
    return bag_ros.run_episode_to_topics(args.episode, contract, rate=args.rate, report=args.report,
                                         lookback_steps=args.lookback_steps, wait_s=args.wait_s,
                                         report_wait_s=args.report_wait_s, namespace=args.namespace)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rollout_recorder", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="episodes of a folder with their scores and flags")
    ls.add_argument("folder", type=Path)
    rec = sub.add_parser("recover", help="finish interrupted episodes (episode_<i>.hdf5.partial)")
    rec.add_argument("target", type=Path, help="a .partial file or a folder")
    rec.add_argument("--keep-partial", action="store_true", help="keep the .partial file after recovering it")

    contract = argparse.ArgumentParser(add_help=False)
    contract.add_argument("--contract", default=None, help="robot contract YAML (default: $ALOHA_CONTRACT or the "
                                                           "installed one)")
    contract.add_argument("--namespace", default="/", help="robot namespace the contract's topics live under (the "
                                                           "launch files' namespace:=; default: none)")
    bag = sub.add_parser("record", parents=[contract], help="contract topics -> rosbag2 MCAP bag (Ctrl-C ends it)")
    bag.add_argument("--out", type=Path, required=True, help="bag folder to create (metadata.yaml + .mcap)")
    bag.add_argument("--compress-images", action="store_true",
                     help="store camera images as JPEG sensor_msgs/CompressedImage on <camera topic>/compressed")
    bag.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality with --compress-images (default 90)")
    bag.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="storage plugin (default mcap)")
    bag.add_argument("--cameras", nargs="+", default=None, help="contract cameras to record (default: all)")
    bag.add_argument("--distro", default=None, help="message definitions of this ROS distribution "
                                                    "(default: $ROS_DISTRO, else kilted)")
    play = sub.add_parser("replay", parents=[contract], help="bag -> live topics with the recorded timing and /clock")
    play.add_argument("bag", type=Path, help="rosbag2 folder (or a .mcap / .db3 file)")
    play.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0: recorded speed)")
    play.add_argument("--loop", action="store_true", help="start again at the end (bag time jumps back)")
    play.add_argument("--clock-hz", type=float, default=100.0, help="/clock ticks per second of bag time "
                                                                    "(default 100)")
    play.add_argument("--topics", nargs="+", default=None, help="replay only these topics")
    play.add_argument("--decompress", action="store_true", help="publish each <topic>/compressed image stream as "
                                                                "raw rgb8 Image on <topic> (for the policy node)")
    play.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the first message "
                                                               "(lets subscribers discover the player)")
    conv = sub.add_parser("bag-to-episode", parents=[contract],
                          help="bag -> ACT HDF5 episodes, synchronised at the control rate like the recorder")
    conv.add_argument("bag", type=Path, help="rosbag2 folder (or a .mcap / .db3 file)")
    conv.add_argument("--out", type=Path, required=True, help="episode folder (episode_<i>.hdf5, numbered on)")
    conv.add_argument("--task", default="", help="task text stored with each episode")
    conv.add_argument("--joint-states", default=None, help="JointState topic of the robot state "
                                                           "(default: the contract's)")
    conv.add_argument("--joint-commands", default=None, help="JointState topic of the commands, the action "
                                                             "(default: the contract's)")
    conv.add_argument("--camera", action="append", default=[], metavar="CAMERA=TOPIC",
                      help="an Image or CompressedImage topic for a camera; repeat per camera "
                           "(default: the contract's camera topics)")
    conv.add_argument("--joint-names", default="", help="comma-separated joints of the state/action vector, in "
                                                        "order (default: the contract's 14)")
    conv.add_argument("--control-hz", type=float, default=None, help="control rate (default: the contract's)")
    conv.add_argument("--split-gap-s", type=float, default=2.0, help="a jump in joint-state stamps longer than "
                                                                     "this starts a new episode (0: never)")
    conv.add_argument("--min-steps", type=int, default=10, help="skip segments shorter than this (default 10)")
    conv.add_argument("--compress", action="store_true", help="JPEG frames in the episode (ALOHA compressed layout)")
    conv.add_argument("--use-receive-time", action="store_true", help="sync on bag receive times, not header stamps")
    conv.add_argument("--sim", action="store_true", help="mark the episodes as simulated (attr sim)")
    conv.add_argument("--reserve-mb", type=int, default=1024, help="free disk space to leave (default 1024 MB)")
    conv.add_argument("--quiet", action="store_true", help="no progress line")
    ep = sub.add_parser("episode-to-topics", parents=[contract],
                        help="HDF5 episode -> joint states + cameras (stamps rebased to now) and /clock")
    ep.add_argument("episode", type=Path)
    ep.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0); below 1 gives a slow "
                                                            "policy time to answer each observation")
    ep.add_argument("--report", type=Path, default=None, help="score the policy's chunks "
                                                              "(/aloha/policy/chunk) against the recorded actions "
                                                              "into this JSON file")
    ep.add_argument("--lookback-steps", type=int, default=None,
                    help="report: how many steps before the newest published one a chunk may be aligned to "
                         "(default: the contract's chunk_steps, one chunk of prefetch lead)")
    ep.add_argument("--wait-s", type=float, default=10.0, help="wait this long for a joint-state subscriber "
                                                               "before publishing (default 10)")
    ep.add_argument("--report-wait-s", type=float, default=2.0, help="report: wait this long after the last step "
                                                                     "for chunks still on their way")
    return p


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C must reach the bag programs even when the parent started us with SIGINT ignored (a background
    # job): an ignored signal stays ignored across exec, and Python then installs no KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args.folder)
        if args.command == "recover":
            return cmd_recover(args.target, args.keep_partial)
    except EpisodeFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # bag commands import rosbags (and rclpy for the ROS ones) only when used
    from aloha_contract import ContractError

    from .bags import BagError
    from .playback import PlaybackError
    from .typestore import TypestoreError
    try:
        if args.command == "bag-to-episode":
            return cmd_bag_to_episode(args)
        try:
            return cmd_ros(args)
        except KeyboardInterrupt:
            # a Ctrl-C that lands while the program starts or cleans up (measured in CI: rclpy's handler shut
            # the context mid-publish, and the KeyboardInterrupt surfaced in the clean-up, exit by SIGINT)
            return 0
    except (EpisodeFileError, BagError, PlaybackError, TypestoreError, ContractError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
