"""``run_policy``: run the policy node on tasks for a few episodes from the command line or a launch file.

    run_policy --task transfer_cube --episodes 5 [--seed-start N] [--mode direct|planning] [--max-steps N]
    run_policy --task transfer_cube,insertion --episodes 2
    run_policy --ros-args -p tasks:=insertion -p episodes:=3        # as a launch Node, like scripted_driver

With the simulator (its ``/aloha/reset_episode`` service answers) each episode resets a new seed and
the goal carries the reset's task text and episode length. On the real robot (no reset service) the
goal carries the task's text from tasks.yaml (or the given text) and a person resets the scene between
episodes. Each chunk shows one progress line (step, chunk, latency, value, stage score), each episode
its result, and each task a summary.

Exit status: 0 when every episode ran to its end (a policy that scores 0 is not a failure); 1 when
the graph failed: no action server, a goal rejected, a run that faulted (stale sensor, unsafe command,
inference error), was preempted or lost, or no episode ran; 2 bad arguments; 130 Ctrl-C (the running
goal is cancelled first).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .client import POLICY_MODES, RunStatus, format_progress
from .evaluation.drivers import format_record
from .evaluation.report import build_report, format_summary, write_report

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
CANCEL_GRACE_S = 10  # after Ctrl-C: time to cancel the running goal before the process exits anyway
RESET_CHOICES = ("auto", "true", "false")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_policy", description=__doc__.split("\n\n")[0],
                                epilog="Every option is also a ROS parameter (tasks, episodes, seed_start, "
                                       "policy_mode, max_steps, ...); a parameter given with --ros-args -p wins.")
    p.add_argument("--task", "--tasks", dest="tasks", default="transfer_cube",
                   help="comma-separated task names of config/tasks.yaml (or task text on the real robot)")
    p.add_argument("--episodes", type=int, default=1, help="episodes per task (default 1)")
    p.add_argument("--seed-start", type=int, default=0, help="seed of each task's first episode (sim reset and "
                                                              "sampling seed; episode i uses seed-start + i)")
    p.add_argument("--mode", choices=POLICY_MODES, default="direct", help="direct or planning (best-of-N)")
    p.add_argument("--max-steps", type=int, default=0, help="steps per episode (default: the task's length)")
    p.add_argument("--max-duration", type=float, default=0.0, help="wall-clock limit per episode in s (0: none)")
    p.add_argument("--num-candidates", type=int, default=0, help="planning proposals per chunk (0: node default)")
    p.add_argument("--action-steps", type=int, default=0, help="denoising steps (0: node default)")
    p.add_argument("--reset", choices=RESET_CHOICES, default="auto",
                   help="reset the simulator per episode: auto (when its service answers), true, false")
    p.add_argument("--server-timeout", type=float, default=60.0,
                   help="seconds to wait for the policy node's action server (default 60)")
    p.add_argument("--episode-timeout", type=float, default=0.0,
                   help="cancel a run without a result after this many s (default: 60 s + 50x its duration)")
    p.add_argument("--keep-going", action="store_true", help="continue with the next episode after a fault")
    p.add_argument("--report", default="", help="also write the aloha_eval JSON report of these episodes here")
    return p


# option name -> ROS parameter name (the parameters a launch file sets, as scripted_driver's)
PARAMETERS = {"tasks": "tasks", "episodes": "episodes", "seed_start": "seed_start", "mode": "policy_mode",
              "max_steps": "max_steps", "max_duration": "max_duration_s", "num_candidates": "num_candidates",
              "action_steps": "action_steps", "reset": "reset", "server_timeout": "server_timeout_s",
              "episode_timeout": "episode_timeout_s", "keep_going": "keep_going", "report": "report"}


def coerce(value, like):
    """A parameter value as the option's type (launch files pass "5" for 5.0, YAML reads "false" as a bool)."""
    if isinstance(like, str) and isinstance(value, bool):
        return "true" if value else "false"
    return type(like)(value)


def apply_parameters(node, args: argparse.Namespace) -> argparse.Namespace:
    """Declare every option as a parameter (default: the command line's value) and read them back."""
    from rcl_interfaces.msg import ParameterDescriptor

    for option, name in PARAMETERS.items():
        default = getattr(args, option)
        value = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        try:
            setattr(args, option, coerce(value, default))
        except ValueError:
            raise ValueError(f"parameter {name}:={value!r}: expected a {type(default).__name__}") from None
    return args


def check(args: argparse.Namespace) -> str | None:
    """The first problem with the options, as a sentence, or None."""
    args.task_list = [t.strip() for t in str(args.tasks).split(",") if t.strip()]
    if not args.task_list:
        return "--task: give at least one task (e.g. --task transfer_cube)"
    if args.episodes < 1:
        return f"--episodes {args.episodes}: expected at least 1"
    if args.mode not in POLICY_MODES:
        return f"policy_mode '{args.mode}' must be one of {POLICY_MODES}"
    if args.reset not in RESET_CHOICES:
        return f"reset '{args.reset}' must be one of {RESET_CHOICES}"
    for name in ("max_steps", "num_candidates", "action_steps", "max_duration"):
        if getattr(args, name) < 0:
            return f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 0 (0: the default)"
    return None


def wait_for_operator(task: str, episode: int, episodes: int) -> bool:
    """Real robot: let a person reset the scene; False to stop."""
    if not sys.stdin.isatty():
        return True
    answer = input(f"{task} episode {episode}/{episodes}: reset the scene, then press Enter (q to stop) ")
    return answer.strip().lower() not in ("q", "quit")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    import rclpy
    from rclpy.utilities import remove_ros_args

    args = build_parser().parse_args(remove_ros_args(argv)[1:])
    from rclpy.signals import SignalHandlerOptions

    # our own Ctrl-C handling: the context must stay up to cancel the running goal
    # Ctrl-C must reach us even when the parent started us with SIGINT ignored (a background job, a test
    # runner): an ignored signal stays ignored across exec, and Python then installs no KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("run_policy")
    try:
        try:
            apply_parameters(node, args)
        except ValueError as exc:
            print(f"run_policy: {exc}", file=sys.stderr)
            return EXIT_USAGE
        problem = check(args)
        if problem:
            print(f"run_policy: {problem}", file=sys.stderr)
            return EXIT_USAGE
        return run(node, args)
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def run(node, args: argparse.Namespace) -> int:
    from rclpy.executors import ExternalShutdownException

    from aloha_contract import load_contract
    from aloha_sim.plan_streamer import SimEpisodes

    from .client import RunPolicyClient
    from .evaluation.drivers import PolicyDriver, ProgressLine, detect_clock_mode, task_levels

    contract = load_contract()
    line = ProgressLine()
    client = RunPolicyClient(node, contract)
    driver = None
    records, exit_code, clock = [], 0, "realtime"
    try:
        if not client.wait_for_server(args.server_timeout):
            node.get_logger().error(f"no RunPolicy action server at {client.action_name} after "
                                    f"{args.server_timeout:.0f} s: is the policy node running?")
            return EXIT_FAILED
        sim = SimEpisodes(node, contract)
        if args.reset == "false":
            use_sim = False
        else:
            use_sim = sim.wait_for_service(30.0 if args.reset == "true" else 3.0)
            if args.reset == "true" and not use_sim:
                node.get_logger().error(f"reset:=true but the simulator's {sim.service_name} does not answer")
                return EXIT_FAILED
        clock = detect_clock_mode(node, contract) if use_sim else "realtime"
        driver = PolicyDriver(node, contract, client, sim if use_sim else None, clock,
                              goal_options={"mode": args.mode, "max_steps": args.max_steps,
                                            "max_duration_s": args.max_duration,
                                            "num_candidates": args.num_candidates, "action_steps": args.action_steps},
                              episode_timeout_s=args.episode_timeout or None)
        if use_sim and not driver.wait_until_subscribed(timeout_s=10.0):
            node.get_logger().warning("the policy node does not subscribe to the joint state and cameras yet")
        where = f"simulator ({clock})" if use_sim else "robot (no reset service: a person resets the scene)"
        line.print(f"run_policy: {args.mode} policy on {where}, tasks {args.task_list}, {args.episodes} episodes each")

        def show(progress, max_steps):
            text = format_progress(progress, max_steps)
            if line.live:
                line.update(text)
            else:
                print(text, flush=True)

        for task in args.task_list:
            for i in range(args.episodes):
                if not use_sim and i > 0 and not wait_for_operator(task, i + 1, args.episodes):
                    break
                record = driver.run_episode(task, args.seed_start + i, show)
                records.append(record)
                line.print(f"episode {i + 1}/{args.episodes} {format_record(record)}")
                if record.failed:
                    exit_code = EXIT_FAILED
                    if not args.keep_going or record.status in (RunStatus.NO_SERVER.value, RunStatus.REJECTED.value,
                                                                 "reset_failed"):
                        break
                elif record.status not in (RunStatus.COMPLETED.value, RunStatus.REFUSED.value):
                    exit_code = EXIT_FAILED  # preempted or cancelled by someone else: the episode did not run
            if exit_code and not args.keep_going:
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        # the interrupt may land inside the middleware's wait; whatever state that leaves, Ctrl-C must end
        # the program: cancelling gets CANCEL_GRACE_S, then the process exits as interrupted
        signal.signal(signal.SIGALRM, lambda *_: os._exit(EXIT_INTERRUPTED))
        signal.alarm(CANCEL_GRACE_S)
        line.clear()
        if driver is not None:
            final = driver.cancel()
            if final is not None:
                print(f"cancelled: {final.steps_executed} steps executed", flush=True)
        print(f"run_policy: interrupted after {len(records)} episodes", flush=True)
        exit_code = EXIT_INTERRUPTED
    if records:
        report = build_report("policy", records, tasks=args.task_list,
                              levels_by_task={t: task_levels(t) for t in args.task_list},
                              clock=clock, label=f"{args.mode} policy",
                              nominal_period_ms=contract.control_period_s * 1e3)
        print(format_summary(report, title="run_policy"), flush=True)
        if args.report:
            print(f"report: {write_report(report, args.report)}", flush=True)
    elif exit_code == 0:
        print("run_policy: no episode ran", file=sys.stderr, flush=True)
        exit_code = EXIT_FAILED
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
