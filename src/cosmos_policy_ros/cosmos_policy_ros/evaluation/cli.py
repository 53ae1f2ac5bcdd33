"""``aloha_eval``: N seeded episodes per task through ROS, a JSON report, a summary and a PNG plot.

    aloha_eval --driver scripted --task transfer_cube,insertion --episodes 10          # upper bound
    aloha_eval --driver replay --replay-episode data/demos/episode_0.hdf5 --task transfer_cube
    aloha_eval --driver policy --episodes 50 --min-success 0.8 --out eval/policy.json
    aloha_eval --merge eval/policy.json eval/scripted.json eval/replay.json --out docs/results.md
    aloha_eval --calibration eval/planning.json eval/policy.json --out eval/calibration.md  # value vs outcome

The simulator (``aloha_sim sim_node``) must be running, and for ``--driver policy`` the policy node;
``launch/eval.launch.py`` brings up both and this evaluator in one command. Seeds start at 1000 by
default: demonstrations for training use seeds from 0, so evaluation episodes are unseen layouts.
Exit status: 0 done; 1 the graph failed (no simulator or policy server, a goal rejected, a run
faulted, no episode ran); 2 bad arguments; 3 a task's success rate below ``--min-success``;
130 interrupted by Ctrl-C or SIGTERM (the running goal is cancelled, the episodes so far are reported).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .report import (
    RESUME_KEYS,
    ReportError,
    below_min_success,
    build_report,
    format_summary,
    load_report,
    merge_table,
    on_common_seeds,
    resumable_records,
    write_report,
)

DEFAULT_SEED_START = 1000
EXIT_FAILED, EXIT_USAGE, EXIT_BELOW_MIN_SUCCESS, EXIT_INTERRUPTED = 1, 2, 3, 130


def comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"'{text}': expected one or more comma-separated names")
    return items


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: expected a success rate between 0 and 1")
    return value


def flag(text: str) -> bool:
    """A boolean option that launch can pass as text (``--resume false``) and a user as a bare flag."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"'{text}': expected true or false")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aloha_eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="ROS arguments go after --ros-args (e.g. --ros-args -r __ns:=/robot1).")
    p.add_argument("--driver", choices=("policy", "scripted", "replay"), default="policy",
                   help="policy: goals to the running policy node; scripted: the scripted demonstration "
                        "(upper bound); replay: a demonstration's actions open loop (lower bound)")
    p.add_argument("--task", "--tasks", dest="tasks", type=comma_list, default=["transfer_cube"],
                   help="comma-separated tasks of config/tasks.yaml (default: transfer_cube)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    p.add_argument("--seed-start", type=int, default=DEFAULT_SEED_START,
                   help=f"seed of each task's first episode; episode i uses seed-start + i (default "
                        f"{DEFAULT_SEED_START}: never used for training demonstrations)")
    p.add_argument("--clock", choices=("auto", "realtime", "lockstep"), default="auto",
                   help="the simulator's clock mode; auto: lockstep when /clock is published (default)")
    p.add_argument("--out", default="", help="report path (default eval/<label>.json); the plot is written "
                                             "next to it as .png. With --merge: the markdown path")
    p.add_argument("--label", default="", help="column name of this report in merged tables (default: the driver)")
    p.add_argument("--resume", nargs="?", const=True, default=False, type=flag,
                   help="keep the finished episodes of --out's report (same driver, label, clock and goal options) "
                        "and run only the missing seeds")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    p.add_argument("--min-success", type=fraction, default=None,
                   help="exit 3 when any task's success rate is below this (0-1)")
    p.add_argument("--reset-timeout", type=float, default=60.0,
                   help="seconds to wait for the simulator's reset service (default 60)")
    p.add_argument("--episode-timeout", type=float, default=0.0,
                   help="cancel an episode without a result after this many seconds (default: 60 s + 50x "
                        "the episode's duration)")
    g = p.add_argument_group("policy driver")
    g.add_argument("--mode", choices=("direct", "planning"), default="direct", help="RunPolicy mode (default direct)")
    g.add_argument("--max-steps", type=int, default=0, help="steps per episode (default: the task's length)")
    g.add_argument("--num-candidates", type=int, default=0, help="planning proposals per chunk (0: node default)")
    g.add_argument("--action-steps", type=int, default=0, help="denoising steps (0: node default)")
    g.add_argument("--server-timeout", type=float, default=300.0,
                   help="seconds to wait for the policy node's action server (model loading; default 300)")
    g = p.add_argument_group("replay driver")
    g.add_argument("--replay-episode", action="append", default=[], metavar="PATH.hdf5",
                   help="a demonstration whose /action is replayed open loop (one per task; repeatable)")
    g = p.add_argument_group("merging reports")
    g.add_argument("--merge", nargs="+", metavar="REPORT.json", default=None,
                   help="merge reports (policy, scripted, replay) into one markdown table and a PNG; "
                        "nothing runs over ROS")
    g.add_argument("--common-seeds", action="store_true",
                   help="with --merge: compare every report on the seeds all of them have for a task (e.g. "
                        "beside an evaluation that was stopped early)")
    g = p.add_argument_group("value calibration")
    g.add_argument("--calibration", nargs="+", metavar="REPORT.json", default=None,
                   help="the policy's predicted value against each episode's outcome (ROC AUC, Brier score, "
                        "reliability bins): a markdown table at --out (default eval/calibration.md) and a PNG "
                        "next to it; nothing runs over ROS")
    g.add_argument("--calibration-value", choices=("mean", "last"), default="mean",
                   help="an episode's value: the mean or the last of its chunks' values (default mean)")
    return p


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    # launch passes every argument, empty when unused
    args.replay_episode = [p for p in args.replay_episode if p]
    if args.merge is not None and args.calibration is not None:
        parser.error("--merge and --calibration are separate jobs: run one at a time")
    if args.common_seeds and args.merge is None:
        parser.error("--common-seeds cuts the reports of --merge: give --merge REPORT.json ...")
    if args.merge is not None or args.calibration is not None:
        return
    if args.episodes < 1:
        parser.error(f"--episodes {args.episodes}: expected at least 1")
    if args.max_steps < 0 or args.num_candidates < 0 or args.action_steps < 0:
        parser.error("--max-steps, --num-candidates and --action-steps must be >= 0 (0: the default)")
    from aloha_sim.tasks import TaskError, load_tasks
    try:
        known = load_tasks()
    except TaskError as exc:
        parser.error(str(exc))
    unknown = [t for t in args.tasks if t not in known]
    if unknown:
        parser.error(f"--task: unknown {unknown} (known: {sorted(known)}; see config/tasks.yaml)")
    if args.driver == "replay" and not args.replay_episode:
        parser.error("--driver replay needs --replay-episode PATH.hdf5 (one per task)")
    if args.driver != "replay" and args.replay_episode:
        parser.error(f"--replay-episode is only for --driver replay (got --driver {args.driver})")


def run_merge(args: argparse.Namespace) -> int:
    from .plots import plot_merged
    try:
        reports = [load_report(p) for p in args.merge]
        if args.common_seeds:
            reports = on_common_seeds(reports)
        table = merge_table(reports)
    except ReportError as exc:
        print(f"aloha_eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sources = "\n".join(f"- {r['label']}: `{p}` ({r['created']})" for r, p in zip(reports, args.merge))
    return write_table(args, "eval/results.md", table, table + "\nReports:\n" + sources + "\n",
                       lambda png: plot_merged(reports, png))


def write_table(args: argparse.Namespace, default_out: str, table: str, text: str, plot) -> int:
    """Print ``table``, write ``text`` to --out (or ``default_out``) and, unless --no-plot, ``plot(png)`` next to it."""
    out = Path(args.out or default_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(table, end="")
    written = [str(out)]
    if not args.no_plot:
        written.append(str(plot(out.with_suffix(".png"))))
    print(f"written: {', '.join(written)}")
    return 0


def run_calibration(args: argparse.Namespace) -> int:
    from .calibration import calibrate, calibration_table, plot_calibration
    try:
        calibrations = [c for p in args.calibration for c in calibrate(load_report(p), args.calibration_value)]
    except ReportError as exc:
        print(f"aloha_eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    table = calibration_table(calibrations)
    bins = "\n".join(
        f"- {c.label} / {c.task}: " + ", ".join(
            f"[{b['lo']:.1f}, {b['hi']:.1f}] {b['episodes']} ep. outcome {b['mean_outcome']:.2f}"
            for b in c.bins() if b["episodes"]) for c in calibrations if c.episodes)
    text = (f"Episode value: the {args.calibration_value} of its chunks' predicted values (reports older than "
            f"per-chunk values: the episode's final value).\n\n{table}\n"
            f"Reliability (episodes per bin of predicted value, their mean outcome):\n{bins}\n\nReports: "
            + ", ".join(f"`{p}`" for p in args.calibration) + "\n")
    return write_table(args, "eval/calibration.md", table, text, lambda png: plot_calibration(calibrations, png))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    from rclpy.utilities import remove_ros_args

    parser = build_parser()
    args = parser.parse_args(remove_ros_args(argv)[1:])
    validate(args, parser)
    if args.merge is not None:
        return run_merge(args)
    if args.calibration is not None:
        return run_calibration(args)
    return run_eval(args, argv)


def run_eval(args: argparse.Namespace, argv: list[str]) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    from aloha_contract import load_contract
    from aloha_sim.plan_streamer import PlanStreamer, SimEpisodes

    from ..client import RunPolicyClient, format_progress
    from .drivers import (
        PlanDriver,
        PolicyDriver,
        ProgressLine,
        ReplayError,
        detect_clock_mode,
        format_batch_progress,
        format_record,
        load_replay_actions,
        replay_plan,
        scripted_plan,
        task_levels,
    )
    from .node_settings import policy_node_settings, settings_summary

    # our own Ctrl-C handling: the context must stay up to cancel the running goal. Ctrl-C must reach us even
    # when the parent started us with SIGINT ignored (a background job: `launch ... &` under a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    # launch escalates an ignored Ctrl-C to SIGTERM after 5 s (cancelling a planning chunk can take that long):
    # SIGTERM ends the run as Ctrl-C does, with the summary and the report's in_progress cleared
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    node = rclpy.create_node("aloha_eval")
    contract = load_contract()
    label = args.label or args.driver
    out = Path(args.out or f"eval/{label}.json")
    line = ProgressLine()
    records, exit_code, driver, clock = [], 0, None, args.clock
    resumed = 0  # episodes kept from an earlier run (--resume)
    node_settings = None  # the policy node's parameters, read over ROS (driver policy)
    t_start = time.monotonic()

    def report_so_far(in_progress: bool) -> dict:
        config = {key: getattr(args, key) for key in ("tasks", "episodes", "seed_start", *RESUME_KEYS)}
        config["interrupted"] = exit_code == EXIT_INTERRUPTED
        config["in_progress"] = in_progress  # written after every episode: a killed run keeps what it did
        config["resumed_episodes"] = resumed
        if args.driver == "policy":
            config["policy_node"] = node_settings
        return build_report(args.driver, sorted(records, key=lambda r: r.seed), tasks=args.tasks,
                            levels_by_task={t: task_levels(t) for t in args.tasks}, clock=clock, label=label,
                            config=config, nominal_period_ms=contract.control_period_s * 1e3)
    try:
        actions = None
        if args.driver == "replay":
            actions = load_replay_actions(args.replay_episode, args.tasks, len(contract.joint_names))
        sim = SimEpisodes(node, contract)
        if not sim.wait_for_service(args.reset_timeout):
            node.get_logger().error(f"simulator reset service {sim.service_name} not available after "
                                    f"{args.reset_timeout:.0f} s: start the sim (./scripts/launch.sh aloha_bringup "
                                    f"sim.launch.py mode:=lockstep) or use launch/eval.launch.py")
            exit_code = EXIT_FAILED
            return exit_code
        if clock == "auto":
            clock = detect_clock_mode(node, contract)
        if args.driver == "policy":
            client = RunPolicyClient(node, contract)
            line.print(f"waiting for the policy node's action server {client.action_name} ...")
            if not client.wait_for_server(args.server_timeout):
                node.get_logger().error(f"no RunPolicy action server at {client.action_name} after "
                                        f"{args.server_timeout:.0f} s: is the policy node running (and its "
                                        f"checkpoint loaded)?")
                exit_code = EXIT_FAILED
                return exit_code
            driver = PolicyDriver(node, contract, client, sim, clock,
                                  goal_options={"mode": args.mode, "max_steps": args.max_steps,
                                                "num_candidates": args.num_candidates,
                                                "action_steps": args.action_steps},
                                  episode_timeout_s=args.episode_timeout or None)
            node_settings, where = policy_node_settings(node, client.action_name)
            if node_settings is None:
                node.get_logger().warning(f"cannot read the policy node's parameters ({where}): the report will "
                                          f"not record its checkpoint and chunk execution settings")
            else:
                line.print(f"policy node {where}: checkpoint {node_settings.get('checkpoint', '?')!r}"
                           + (f", {settings_summary(node_settings)}" if settings_summary(node_settings) else ""))
            if not driver.wait_until_subscribed():
                node.get_logger().warning("the policy node does not subscribe to the joint state and cameras yet: "
                                          "the first episodes may fault")
        else:
            make_plan = scripted_plan(contract) if args.driver == "scripted" else replay_plan(actions)
            driver = PlanDriver(args.driver, node, contract, sim, PlanStreamer(node, contract, clock), make_plan,
                                episode_timeout_s=args.episode_timeout or None)
        if args.resume and out.exists():
            kept = resumable_records(load_report(out), driver=args.driver, label=label, clock=clock,
                                     tasks=args.tasks, seeds=range(args.seed_start, args.seed_start + args.episodes),
                                     config={key: getattr(args, key) for key in RESUME_KEYS}, path=out,
                                     policy_node=node_settings)
            records, resumed = kept, len(kept)
            line.print(f"resuming {out}: {resumed} finished episodes kept")
        done = {(r.task, r.seed) for r in records}
        todo = [(task, seed) for task in args.tasks for seed in range(args.seed_start, args.seed_start + args.episodes)
                if (task, seed) not in done]
        line.print(f"aloha_eval: driver {args.driver}, clock {clock}, tasks {args.tasks}, {args.episodes} episodes "
                   f"each, seeds {args.seed_start}-{args.seed_start + args.episodes - 1}"
                   + (f"; {len(todo)} to run" if resumed else ""))

        t_start = time.monotonic()
        for n, (task, seed) in enumerate(todo, start=1):
            head = f"{task} seed {seed}"
            if args.driver == "policy":
                def show(progress, max_steps, head=head):
                    line.update(f"{head}: {format_progress(progress, max_steps)}")
            else:
                def show(step, steps, head=head):
                    if step % 25 == 0 or step == steps:
                        line.update(f"{head}: step {step}/{steps}")
            record = driver.run_episode(task, seed, show)
            records.append(record)
            write_report(report_so_far(in_progress=True), out)
            line.print(f"{format_batch_progress(n, len(todo), time.monotonic() - t_start)} {format_record(record)}")
            if record.status in ("no_server", "rejected", "reset_failed"):  # the next ones would fail alike
                exit_code = EXIT_FAILED
                break
    except (ReplayError, ReportError) as exc:
        print(f"aloha_eval: {exc}", file=sys.stderr)
        exit_code = EXIT_USAGE
        return exit_code
    except (KeyboardInterrupt, ExternalShutdownException):
        # a Ctrl-C and launch's SIGTERM can arrive together: the second must not cut this clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        exit_code = EXIT_INTERRUPTED
        line.clear()
        if driver is not None:
            try:
                driver.cancel()
            except Exception as exc:  # noqa: BLE001  (the graph may be going down with us)
                print(f"aloha_eval: could not cancel the running episode: {exc}", file=sys.stderr)
        print(f"aloha_eval: interrupted after {len(records) - resumed} episodes", flush=True)
    finally:
        if records:
            report = report_so_far(in_progress=False)
            write_report(report, out)
            written = [str(out)]
            if not args.no_plot:
                from .plots import plot_report
                written.append(str(plot_report(report, out.with_suffix(".png"))))
            print(format_summary(report), flush=True)
            print(f"report: {', '.join(written)}", flush=True)
            if exit_code == 0:
                if any(r.failed for r in records):
                    exit_code = EXIT_FAILED
                elif args.min_success is not None:
                    below = below_min_success(report, args.min_success)
                    for sentence in below:
                        print(f"aloha_eval: {sentence}", flush=True)
                    exit_code = EXIT_BELOW_MIN_SUCCESS if below else 0
        elif exit_code == 0:
            print("aloha_eval: no episode ran", file=sys.stderr, flush=True)
            exit_code = EXIT_FAILED
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
