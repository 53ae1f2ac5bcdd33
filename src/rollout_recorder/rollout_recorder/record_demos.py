"""``record_demos``: record teleoperated demonstrations, one key press per episode, through the recorder's service.

  record_demos --task transfer_cube --episodes 50         # the task's length (tasks.yaml), 3 s countdown
  record_demos --task "fold the towel" --episode-s 30     # any task text: stored with every episode
  record_demos --task insertion --episode-s 0             # each episode runs until you press space

Keys, read raw from the terminal (they work over SSH; no window needed): space or enter starts (after the
countdown) and stops an episode, r re-records the episode in progress, d discards it, q quits (an episode in
progress is saved first). While recording, a progress bar shows the episode counter, the task, the steps and
each camera's rate over the last second; a camera falling below the contract's rate is warned about at once.
The recorder (``recorder_node``, started by teleop.launch.py or record.launch.py) writes the episodes; this
program only talks to its RecordEpisode service, so it runs on any machine of the ROS domain.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from .demo_session import (
    COUNTDOWN,
    DONE,
    IDLE,
    KEY_HELP,
    RECORDING,
    DemoSession,
    RecordAnswer,
    RecorderUnavailable,
    key_actions,
    rate_warning,
    rates_text,
    task_info,
)

STATUS_PERIOD_S = 0.2  # how often the progress bar asks the recorder for steps and camera rates
RATE_WARNING_REPEAT_S = 5.0  # a camera that stays slow is warned about again this often
KEY_POLL_S = 0.05


class TerminalKeys:
    """Key presses from a file descriptor without waiting for enter: a tty in cbreak mode (no echo), or a pipe.

    Ctrl-C still interrupts (cbreak keeps signals); the terminal is restored on exit, whatever happened.
    """

    def __init__(self, stream: TextIO):
        self.fd = stream.fileno()
        self.saved = None
        self.eof = False

    def __enter__(self) -> TerminalKeys:
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
            attrs = termios.tcgetattr(self.fd)
            attrs[3] &= ~termios.ECHO  # keys are commands, not text to show
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout_s: float) -> str:
        """What was typed within ``timeout_s`` ('' if nothing)."""
        if self.eof:
            time.sleep(timeout_s)
            return ""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return ""
        data = os.read(self.fd, 64)
        if not data:
            self.eof = True  # stdin closed (a pipe that ended): no more keys
        return data.decode(errors="replace")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="record_demos", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--task", required=True,
                   help="task name of config/tasks.yaml (its instruction text and length are used) or any task text")
    p.add_argument("--episodes", type=int, default=0, help="episodes to save, then quit (default 0: until q)")
    p.add_argument("--episode-s", type=float, default=None,
                   help="episode length in seconds; 0 = until you stop it (default: the task's episode_steps)")
    p.add_argument("--countdown-s", type=float, default=3.0, help="countdown before each episode (default 3)")
    p.add_argument("--namespace", default="", help="the robot namespace of the recorder ('' = none)")
    p.add_argument("--wait-s", type=float, default=10.0, help="how long to wait for the recorder at start")
    p.add_argument("--tasks", type=Path, default=None, help="tasks.yaml (default: the shipped config/tasks.yaml)")
    return p


class DemoRecorder:
    """The terminal side of a :class:`DemoSession`: calls the recorder, draws the countdown, bar and warnings."""

    def __init__(self, client, session: DemoSession, task: str, description: str, rate_hz: float, out: TextIO):
        self.client = client
        self.session = session
        self.task = task
        self.description = description
        self.rate_hz = rate_hz
        self.out = out
        self.bar: tqdm | None = None
        self.steps = 0
        self.shown_countdown: int | None = None
        self.last_status_s = 0.0
        self.warned: tuple[list[str], float] = ([], 0.0)
        self.prompted = False

    def say(self, text: str) -> None:
        tqdm.write(text, file=self.out)

    def prompt(self) -> None:
        if not self.prompted and self.session.state == IDLE:
            self.prompted = True
            self.say(f"{self.session.counter()} · {self.task}: press space to start  ({KEY_HELP})")

    def run(self, keys: TerminalKeys) -> None:
        s = self.session
        self.say(f"task {self.task}: \"{self.description}\"; "
                 + (f"{s.max_steps} steps ({s.max_steps / self.rate_hz:.1f} s) per episode"
                    if s.max_steps else "each episode runs until you stop it")
                 + (f", {s.episodes} episodes" if s.episodes else ""))
        while s.state != DONE:
            self.prompt()
            typed = keys.read(KEY_POLL_S)
            now = time.monotonic()
            for action in key_actions(typed):
                self.execute(s.on_key(action, now), now)
            if keys.eof and s.state == IDLE:
                self.execute(s.on_key("quit", now), now)  # a pipe that ended: nothing more will be typed
            if s.state == COUNTDOWN:
                self.show_countdown(now)
            if s.state == RECORDING and now - self.last_status_s >= STATUS_PERIOD_S:
                self.last_status_s = now
                self.poll(now)
            self.execute(s.on_time(now, self.steps), now)

    def show_countdown(self, now: float) -> None:
        left = int(self.session.countdown_left_s(now) + 0.999)
        if left != self.shown_countdown and left > 0:
            self.shown_countdown = left
            self.say(f"{self.session.counter()} · {self.task}: starting in {left}…")

    def execute(self, commands: list[str], now: float) -> None:
        for command in commands:
            getattr(self, f"do_{command}")(now)

    def do_start(self, now: float) -> None:
        answer = self.client.call("start", task=self.task, task_description=self.description, source="teleop")
        self.session.on_answer("start", answer, now)
        self.shown_countdown = None
        if not answer.success:
            self.say(f"not recording: {answer.message}")
            self.prompted = False
            return
        self.steps = 0
        self.say(f"● recording {Path(answer.episode_path).name}")
        self.bar = tqdm(total=self.session.max_steps, desc=f"{self.session.counter()} {self.task}", unit="step",
                        file=self.out, dynamic_ncols=True, leave=False)

    def poll(self, now: float) -> None:
        answer = self.client.call("status")
        ended = self.session.on_status(answer)
        if ended:
            self.close_bar()
            self.say(ended)
            self.prompted = False
            return
        self.steps = answer.steps
        if self.bar is not None:
            self.bar.update(max(0, answer.steps - self.bar.n))
            self.bar.set_postfix_str(rates_text(answer.camera_rates_hz), refresh=True)
        warning = rate_warning(answer)
        low, last_s = self.warned
        if warning and (answer.low_rate_cameras != low or now - last_s >= RATE_WARNING_REPEAT_S):
            self.say(f"WARNING {warning}")
            self.warned = (answer.low_rate_cameras, now)
        elif not warning and low:
            self.say("camera rates back above the threshold")
            self.warned = ([], now)

    def do_stop(self, now: float) -> None:
        self.close_bar()
        answer = self.client.call("stop")
        self.session.on_answer("stop", answer, now)
        self.prompted = False
        if not answer.success:
            self.say(f"stop: {answer.message}")
            return
        rates = rates_text(answer.camera_rates_hz)
        flag = f"  CAMERA RATE LOW: {', '.join(answer.low_rate_cameras)}" if answer.low_rate_cameras else ""
        self.say(f"saved {Path(answer.episode_path).name}: {answer.steps} steps, {answer.duration_s:.1f} s, "
                 f"cameras {rates} Hz{flag}")

    def do_discard(self, now: float) -> None:
        self.close_bar()
        answer = self.client.call("discard")
        self.session.on_answer("discard", answer, now)
        self.prompted = False
        self.say(f"{answer.message}" + (": re-recording" if self.session.state == COUNTDOWN else "")
                 if answer.success else f"discard: {answer.message}")

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self) -> str:
        s = self.session
        names = ", ".join(Path(p).name for p in s.saved) or "none"
        folder = f" in {Path(s.saved[0]).parent}" if s.saved else ""
        return f"saved {len(s.saved)} episode(s){folder}: {names}; discarded {s.discarded}"


@contextlib.contextmanager
def record_client(namespace: str) -> Iterator:
    from .record_client import RecordClient  # rclpy only here: --help and the parser work without ROS

    client = RecordClient(namespace=namespace, node_name=f"record_demos_{os.getpid()}")
    try:
        yield client
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aloha_contract import load_contract

    contract = load_contract()
    info = task_info(args.task, args.tasks)
    if args.episode_s is not None and args.episode_s < 0:
        print(f"error: --episode-s {args.episode_s}: expected >= 0 (0: until you stop it)", file=sys.stderr)
        return 2
    if args.episode_s is None:
        max_steps = info.episode_steps
    else:
        max_steps = int(round(args.episode_s * contract.control_rate_hz)) or None
    try:
        session = DemoSession(episodes=args.episodes, countdown_s=args.countdown_s, max_steps=max_steps)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    with record_client(args.namespace) as client:
        if not client.wait_for_service(args.wait_s):
            print(f"error: no recorder serves {client.service_name} after {args.wait_s:.0f} s: start one, e.g. "
                  f"./scripts/launch.sh aloha_bringup teleop.launch.py (same ROS_DOMAIN_ID "
                  f"{os.environ.get('ROS_DOMAIN_ID', '0')}, same namespace)", file=sys.stderr)
            return 1
        demo = DemoRecorder(client, session, info.name, info.description, contract.control_rate_hz, out)
        status = 0
        try:
            busy: RecordAnswer = client.call("status")
            if busy.recording:
                demo.say(f"note: the recorder is already recording {Path(busy.episode_path).name} (started by "
                         f"{busy.source}); stop it before starting here")
            with TerminalKeys(sys.stdin) as keys:
                try:
                    demo.run(keys)
                except KeyboardInterrupt:
                    status = 130
                    if session.state == RECORDING:  # Ctrl-C saves what was recorded, like q
                        demo.execute(session.on_key("quit", time.monotonic()), time.monotonic())
        except RecorderUnavailable as exc:
            demo.close_bar()
            print(f"error: {exc}", file=sys.stderr)
            status = 1
        demo.close_bar()
        print(demo.summary(), file=out, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
