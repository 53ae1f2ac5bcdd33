"""``libero_eval``: the release's LIBERO evaluation protocol through ROS, with a JSON report and a PNG plot.

    libero_eval                                                   # 4 suites x 10 tasks x 50 trials x seeds 195-197
    libero_eval --suites libero_spatial --tasks 0 --trials 2 --seeds 195 --out eval/libero_smoke.json

The LIBERO sim node (``libero_sim_node``, lockstep, cameras every 16 steps) and the policy node (libero
contract, the checkpoint under test) must be running; ``launch/libero.launch.py`` brings up both and this
evaluator. For every seed, suite, task and init state 0..N-1: reset the simulator to that init state (it steps
the 10 settle no-ops), send one RunPolicy goal with the task's language, the suite's step budget and the seed,
and take success from the simulator's stage score (100 = the task's success condition held; the policy node
stops the goal there with stop_on_success). The policy side of the protocol (chunk 16 open loop, 5/1/1 denoising
steps, frames flipped and JPEG'd by the simulator) is configured by the launch file; docs/libero.md.

Exit status: 0 done; 1 the graph failed (no simulator or policy server, every trial faulted); 2 bad arguments;
130 interrupted (the trials so far are reported).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import protocol
from .eval_report import TrialRecord, build_report, format_summary, plot_report, write_report

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated integers") from None
    if not values:
        raise argparse.ArgumentTypeError(f"'{text}': expected at least one integer")
    return values


def name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated names")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="libero_eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="ROS arguments go after --ros-args (e.g. --ros-args -p use_sim_time:=true).")
    p.add_argument("--suites", type=name_list, default=list(protocol.SUITES),
                   help=f"comma-separated suites (default: the release's {','.join(protocol.SUITES)})")
    p.add_argument("--tasks", type=int_list, default=None, help="task ids per suite (default: all 10)")
    p.add_argument("--trials", type=int, default=protocol.TRIALS_PER_TASK,
                   help=f"trials per task, from init states 0..N-1 (default {protocol.TRIALS_PER_TASK})")
    p.add_argument("--seeds", type=int_list, default=list(protocol.SEEDS),
                   help="sampling seeds, one full pass each, averaged (default 195,196,197)")
    p.add_argument("--max-steps", type=int, default=0, help="steps per trial (default: the suite's budget)")
    p.add_argument("--action-steps", type=int, default=0, help="action denoising steps (0: the node's, i.e. the "
                   "checkpoint's deploy value: 5 for the libero layout)")
    p.add_argument("--checkpoint", default="", help="the checkpoint under test, for the report's label")
    p.add_argument("--out", default="", help="report path (default eval/libero_<label>.json); the plot goes next to it")
    p.add_argument("--label", default="", help="name of this run in the report (default: the checkpoint folder)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    p.add_argument("--contract", default="", help="contract YAML (default: the shipped libero contract)")
    p.add_argument("--reset-timeout", type=float, default=180.0,
                   help="seconds to wait for the reset service (a scene build takes 15-30 s on 2 cores)")
    p.add_argument("--server-timeout", type=float, default=300.0, help="seconds to wait for the policy server")
    p.add_argument("--episode-timeout", type=float, default=0.0,
                   help="cancel a trial without a result after this long (default 120 s + 5 s per step)")
    return p


def run(args: argparse.Namespace, ros_args: list[str]) -> int:
    import rclpy

    from aloha_contract import load_contract
    from aloha_sim.plan_streamer import ResetError, SimEpisodes
    from cosmos_policy_ros.client import GoalSpec, RunPolicyClient

    from .sim_node import shipped_contract

    contract = load_contract(args.contract or shipped_contract())
    rclpy.init(args=["libero_eval", *ros_args])
    node = rclpy.create_node("libero_eval")
    records: list[TrialRecord] = []
    status = 0
    label = args.label or Path(args.checkpoint.rstrip("/")).name or "policy"
    out = Path(args.out or f"eval/libero_{label}.json")
    try:
        sim = SimEpisodes(node, contract)
        client = RunPolicyClient(node, contract)
        if not sim.wait_for_service(args.reset_timeout):
            print(f"[libero_eval] error: no reset service {contract.service('reset_episode')} within "
                  f"{args.reset_timeout:.0f} s: is libero_sim_node running (launch/libero.launch.py)?", file=sys.stderr)
            return EXIT_FAILED
        if not client.wait_for_server(args.server_timeout):
            print(f"[libero_eval] error: no RunPolicy server {client.action_name} within {args.server_timeout:.0f} s: "
                  f"is the policy node running with contract_file:=<libero contract>?", file=sys.stderr)
            return EXIT_FAILED
        trials = protocol.plan_trials(args.suites, args.tasks, args.trials, args.seeds)
        start = time.monotonic()
        for i, trial in enumerate(trials, 1):
            try:
                response = sim.reset(trial.reset_task, trial.init_index, timeout_s=args.reset_timeout)
            except ResetError as exc:
                print(f"[libero_eval] error: {exc}", file=sys.stderr)
                status = EXIT_FAILED
                break
            steps = args.max_steps or int(response.episode_steps) or protocol.max_steps(trial.suite)
            timeout_s = args.episode_timeout or 120.0 + 5.0 * steps
            goal = GoalSpec(task=response.task_description, max_steps=steps, seed=trial.seed,
                            action_steps=args.action_steps)
            result = client.run(goal, timeout_s=timeout_s)
            score = result.final_stage_score
            record = TrialRecord(trial.suite, trial.task_id, trial.init_index, trial.seed,
                                 task=response.task_description, success=bool(score is not None and score >= 100.0),
                                 final_stage_score=score, steps=result.steps_executed, chunks=result.chunks_executed,
                                 end_reason=result.end_reason.label if result.end_reason is not None else "",
                                 end_detail=result.end_detail, failed=result.failed, wall_s=result.wall_s,
                                 chunk_latency_ms=list(result.chunk_latency_ms),
                                 tick_period_ms=list(result.tick_period_ms))
            records.append(record)
            elapsed = time.monotonic() - start
            eta = elapsed / i * (len(trials) - i)
            print(f"[libero_eval] {i}/{len(trials)} {trial.suite}/{trial.task_id} init {trial.init_index} seed "
                  f"{trial.seed}: {'success' if record.success else 'failure'} after {record.steps} steps, "
                  f"{record.chunks} chunks ({record.end_reason}{': ' + record.end_detail if record.failed else ''}); "
                  f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s", flush=True)
        if records and all(r.failed for r in records):
            status = EXIT_FAILED
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    finally:
        if records:
            _finish(records, args, label, out, status)
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return status


def _finish(records: list[TrialRecord], args: argparse.Namespace, label: str, out: Path, status: int) -> int:
    settings = {"suites": args.suites, "tasks": args.tasks, "trials_per_task": args.trials, "seeds": args.seeds,
                "max_steps": args.max_steps, "action_steps": args.action_steps or protocol.DENOISING_STEPS["action"]}
    report = build_report(records, checkpoint=args.checkpoint, label=label, settings=settings)
    path = write_report(report, out)
    print(format_summary(report))
    print(f"[libero_eval] report: {path}")
    if not args.no_plot:
        print(f"[libero_eval] plot: {plot_report(report, path.with_suffix('.png'))}")
    return status


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        at = argv.index("--ros-args")
        argv, ros_args = argv[:at], argv[at:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.trials < 1 or args.max_steps < 0 or args.action_steps < 0:
        parser.error("--trials must be >= 1, --max-steps and --action-steps >= 0")
    unknown = [s for s in args.suites if s not in protocol.MAX_STEPS]
    if unknown:
        parser.error(f"--suites {unknown}: unknown (known: {sorted(protocol.MAX_STEPS)})")
    return run(args, ros_args)


if __name__ == "__main__":
    sys.exit(main())
