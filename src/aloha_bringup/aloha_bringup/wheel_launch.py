"""Run this workspace's ROS 2 launch files where only the ROS wheels exist (no `launch`, no `ros2`).

On a robot computer `ros2 launch aloha_bringup policy.launch.py` runs the launch files with the real
`launch` / `launch_ros`. Here those packages cannot be installed, so this module provides the small
subset of their API that our launch files use (``LaunchDescription``, ``DeclareLaunchArgument``,
``LaunchConfiguration``, ``PathJoinSubstitution``, ``PythonExpression``, ``IfCondition`` / ``UnlessCondition``,
``launch_ros.actions.Node`` with ``on_exit=Shutdown()``, ``FindPackageShare``), evaluates the very same
files, and supervises the node processes: output prefixed by node name, Ctrl-C forwarded to every node,
the whole graph stopped when a node marked ``on_exit=Shutdown()`` ends. Parameter dicts get the types launch_ros
gives them (a substitution's text read as YAML, e.g. ``{"use_sim_time": PythonExpression(...)}`` -> a bool).

Usage: ``python -m aloha_bringup.wheel_launch aloha_bringup sim_demo.launch.py episodes:=3``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import selectors
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# launch's ExecuteProcess defaults (sigterm_timeout, sigkill_timeout): how long a node may take to stop
SIGTERM_TIMEOUT_S = 5.0
SIGKILL_TIMEOUT_S = 5.0


class LaunchError(RuntimeError):
    """A launch file or argument this runner cannot honour."""


@dataclass
class Context:
    arguments: dict[str, str] = field(default_factory=dict)
    ros_namespace: str | None = None  # pushed by PushRosNamespace (launch_ros keeps it as 'ros_namespace')


def perform(value: Any, context: Context) -> str:
    """Resolve a substitution, a string, or a list of them to a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "".join(perform(v, context) for v in value)
    if hasattr(value, "perform"):
        return value.perform(context)
    return str(value)


class LaunchConfiguration:
    def __init__(self, variable_name: str, default: Any = None):
        self.variable_name = variable_name
        self.default = default

    def perform(self, context: Context) -> str:
        if self.variable_name in context.arguments:
            return context.arguments[self.variable_name]
        if self.default is not None:
            return perform(self.default, context)
        raise LaunchError(f"launch argument '{self.variable_name}' has no value: pass {self.variable_name}:=VALUE")


class PathJoinSubstitution:
    def __init__(self, substitutions: Iterable[Any]):
        self.substitutions = list(substitutions)

    def perform(self, context: Context) -> str:
        return os.path.join(*(perform(s, context) for s in self.substitutions))


class TextSubstitution:
    def __init__(self, text: str = ""):
        self.text = text

    def perform(self, context: Context) -> str:
        return self.text


class PythonExpression:
    """Evaluates the concatenated text as a Python expression (launch does the same, with `math` in scope)."""

    def __init__(self, expression: Any):
        self.expression = expression

    def perform(self, context: Context) -> str:
        import math
        text = perform(self.expression, context)
        try:
            return str(eval(text, {"__builtins__": {}, "math": math}, {}))  # launch files are trusted code
        except Exception as exc:
            raise LaunchError(f"PythonExpression {text!r}: {exc}") from None


class FindPackageShare:
    def __init__(self, package: Any):
        self.package = package

    def perform(self, context: Context) -> str:
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory(perform(self.package, context))


def _truthy(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LaunchError(f"condition value '{text}' is not a boolean (use true/false)")


class IfCondition:
    def __init__(self, predicate: Any):
        self.predicate = predicate

    def evaluate(self, context: Context) -> bool:
        return _truthy(perform(self.predicate, context))


class UnlessCondition(IfCondition):
    def evaluate(self, context: Context) -> bool:
        return not super().evaluate(context)


class Action:
    def __init__(self, *, condition: Any = None, **_: Any):
        self.condition = condition

    def enabled(self, context: Context) -> bool:
        return self.condition is None or self.condition.evaluate(context)


class DeclareLaunchArgument(Action):
    def __init__(self, name: str, *, default_value: Any = None, description: str = "",
                 choices: list[str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = choices


class Shutdown(Action):
    def __init__(self, *, reason: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.reason = reason


class LogInfo(Action):
    def __init__(self, *, msg: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.msg = msg


class SetEnvironmentVariable(Action):
    def __init__(self, name: Any, value: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.name = name
        self.value = value


class Node(Action):
    def __init__(self, *, package: Any, executable: Any, name: Any = None, namespace: Any = None,
                 parameters: list[Any] | None = None, remappings: list[tuple[Any, Any]] | None = None,
                 arguments: list[Any] | None = None, output: str = "screen", on_exit: Any = None,
                 emulate_tty: bool = False, respawn: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.package = package
        self.executable = executable
        self.node_name = name
        self.namespace = namespace
        self.parameters = parameters or []
        self.remappings = remappings or []
        self.arguments = arguments or []
        self.on_exit = on_exit if isinstance(on_exit, list) or on_exit is None else [on_exit]
        if respawn:
            raise LaunchError("respawn is not supported by the wheel launcher")


class GroupAction(Action):
    """Actions evaluated together; ``scoped`` (the default) undoes their namespace and arguments afterwards."""

    def __init__(self, actions: Iterable[Any], *, scoped: bool = True, forwarding: bool = True,
                 launch_configurations: dict[Any, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.actions = list(actions)
        self.scoped = scoped
        if not forwarding:
            raise LaunchError("GroupAction(forwarding=False) is not supported by the wheel launcher")
        self.launch_configurations = dict(launch_configurations or {})


class PushRosNamespace(Action):
    def __init__(self, namespace: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.namespace = namespace


def prefix_namespace(base: str | None, namespace: str | None) -> str | None:
    """launch_ros's rule: a relative ``namespace`` goes under ``base``, an absolute one replaces it."""
    if namespace is None:
        combined = base
    elif not base or namespace.startswith("/"):
        combined = namespace
    else:
        combined = ("" if base == "/" else base) + "/" + namespace
    if combined is not None and combined != "/":
        combined = combined.rstrip("/")
    return combined


class PythonLaunchDescriptionSource:
    def __init__(self, launch_file_path: Any):
        self.launch_file_path = launch_file_path


class IncludeLaunchDescription(Action):
    def __init__(self, launch_description_source: PythonLaunchDescriptionSource, *,
                 launch_arguments: Iterable[tuple[Any, Any]] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source = launch_description_source
        self.launch_arguments = list(launch_arguments or [])


class LaunchDescription:
    def __init__(self, entities: Iterable[Any] | None = None):
        self.entities = list(entities or [])

    def add_action(self, action: Any) -> None:
        self.entities.append(action)


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def install_shim() -> None:
    """Make ``import launch`` / ``import launch_ros`` resolve to this subset (only if absent)."""
    try:
        import launch_ros  # noqa: F401

        import launch  # noqa: F401
        if hasattr(launch, "LaunchDescription"):
            return
    except ImportError:
        pass
    actions = _module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument, Shutdown=Shutdown,
                      LogInfo=LogInfo, SetEnvironmentVariable=SetEnvironmentVariable,
                      IncludeLaunchDescription=IncludeLaunchDescription, GroupAction=GroupAction)
    sources = _module("launch.launch_description_sources", PythonLaunchDescriptionSource=PythonLaunchDescriptionSource)
    substitutions = _module("launch.substitutions", LaunchConfiguration=LaunchConfiguration,
                            PathJoinSubstitution=PathJoinSubstitution, TextSubstitution=TextSubstitution,
                            PythonExpression=PythonExpression)
    conditions = _module("launch.conditions", IfCondition=IfCondition, UnlessCondition=UnlessCondition)
    launch_mod = _module("launch", LaunchDescription=LaunchDescription, actions=actions,
                         substitutions=substitutions, conditions=conditions, launch_description_sources=sources)
    ros_actions = _module("launch_ros.actions", Node=Node, PushRosNamespace=PushRosNamespace)
    ros_subs = _module("launch_ros.substitutions", FindPackageShare=FindPackageShare)
    launch_ros_mod = _module("launch_ros", actions=ros_actions, substitutions=ros_subs)
    sys.modules.update({"launch": launch_mod, "launch.actions": actions, "launch.substitutions": substitutions,
                        "launch.conditions": conditions, "launch.launch_description_sources": sources,
                        "launch_ros": launch_ros_mod,
                        "launch_ros.actions": ros_actions, "launch_ros.substitutions": ros_subs})


@dataclass
class NodeProcess:
    """One node of the evaluated graph: the command line and what to do when it exits."""

    label: str
    argv: list[str]
    shutdown_on_exit: bool


def find_launch_file(package: str, file_name: str) -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        share = Path(get_package_share_directory(package))
    except PackageNotFoundError:
        raise LaunchError(f"package '{package}' not found: run scripts/setup.sh and source env.sh") from None
    path = share / "launch" / file_name
    if not path.is_file():
        known = sorted(p.name for p in (share / "launch").glob("*.launch.py"))
        raise LaunchError(f"{package} has no launch file '{file_name}' (known: {known})")
    return path


def load_description(path: Path) -> LaunchDescription:
    install_shim()
    spec = importlib.util.spec_from_file_location(f"_launch_{path.stem.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _param_args(parameters: list[Any], context: Context) -> list[str]:
    """Parameter files and dicts as --ros-args, in their order (a later entry wins, as with launch_ros)."""
    args: list[str] = []
    for entry in parameters:
        if isinstance(entry, dict):
            for key, value in entry.items():
                args += ["-p", f"{perform(key, context)}:={_param_text(key, value, context)}"]
        else:
            args += ["--params-file", perform(entry, context)]
    return args


def _param_text(key: Any, value: Any, context: Context) -> str:
    """One dict parameter as ``-p`` text with the type launch_ros gives it.

    launch_ros performs a substitution and reads the text as YAML (``PythonExpression`` "True" becomes the bool
    true, "1000" an int, "" the empty string); plain Python values keep their type.
    """
    if isinstance(value, (bool, int, float, list, tuple)):
        return _yaml_scalar(list(value) if isinstance(value, tuple) else value)
    text = perform(value, context)
    if isinstance(value, str):
        return _string_text(text)
    try:
        typed = yaml.safe_load(text)
    except yaml.YAMLError:
        raise LaunchError(f"parameter {perform(key, context)}: {text!r} is not a YAML value") from None
    if isinstance(typed, (bool, int, float)):
        return _yaml_scalar(typed)
    if isinstance(typed, dict):
        raise LaunchError(f"parameter {perform(key, context)}: {text!r} is a mapping; launch_ros refuses it")
    # an empty value is an empty string parameter (rcl refuses a bare `-p key:=`); other text rcl reads as YAML
    return text or "''"


def _string_text(text: str) -> str:
    """A Python string stays a string: quoted where rcl would read it as a number, a bool or a list."""
    try:
        plain = bool(text) and yaml.safe_load(text) == text
    except yaml.YAMLError:
        plain = False
    return text if plain else _yaml_scalar(text)


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def evaluate(description: LaunchDescription, overrides: dict[str, str], inherited: dict[str, str] | None = None,
             ros_namespace: str | None = None) -> tuple[list[NodeProcess], dict[str, str]]:
    """Resolve arguments and conditions into the node command lines, as `ros2 launch` would.

    ``overrides`` are the user's (or an including file's) arguments and must be declared; an included
    file also sees the includer's values (``inherited``) for the arguments it declares, as in launch, and
    the namespace pushed around the include (``ros_namespace``).
    """
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise LaunchError(f"unknown launch arguments {unknown} (declared: {sorted(declared)})")
    overrides = {**{k: v for k, v in (inherited or {}).items() if k in declared}, **overrides}
    context = Context(ros_namespace=ros_namespace)
    for name, decl in declared.items():
        if name in overrides:
            value = overrides[name]
        elif decl.default_value is not None:
            value = perform(decl.default_value, context)
        else:
            raise LaunchError(f"launch argument '{name}' is required: pass {name}:=VALUE ({decl.description})")
        if decl.choices and value not in decl.choices:
            raise LaunchError(f"launch argument {name}:={value} not one of {decl.choices}")
        context.arguments[name] = value

    return _evaluate_entities(description.entities, context)


def _evaluate_entities(entities: Iterable[Any], context: Context) -> tuple[list[NodeProcess], dict[str, str]]:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    nodes: list[NodeProcess] = []
    env: dict[str, str] = {}
    for entity in entities:
        if isinstance(entity, (DeclareLaunchArgument, Shutdown)) or not entity.enabled(context):
            continue
        if isinstance(entity, PushRosNamespace):
            context.ros_namespace = prefix_namespace(context.ros_namespace, perform(entity.namespace, context))
        elif isinstance(entity, GroupAction):
            inner = Context(dict(context.arguments), context.ros_namespace) if entity.scoped else context
            inner.arguments.update({perform(k, context): perform(v, context)
                                    for k, v in entity.launch_configurations.items()})
            group_nodes, group_env = _evaluate_entities(entity.actions, inner)
            nodes += group_nodes
            env.update(group_env)
        elif isinstance(entity, IncludeLaunchDescription):
            path = Path(perform(entity.source.launch_file_path, context))
            child = load_description(path)
            child_args = {perform(k, context): perform(v, context) for k, v in entity.launch_arguments}
            child_nodes, child_env = evaluate(child, child_args, inherited=context.arguments,
                                              ros_namespace=context.ros_namespace)
            nodes += child_nodes
            env.update(child_env)
        elif isinstance(entity, LogInfo):
            print(f"[launch] {perform(entity.msg, context)}", flush=True)
        elif isinstance(entity, SetEnvironmentVariable):
            env[perform(entity.name, context)] = perform(entity.value, context)
        elif isinstance(entity, Node):
            package, executable = perform(entity.package, context), perform(entity.executable, context)
            try:
                exe = Path(get_package_prefix(package)) / "lib" / package / executable
            except PackageNotFoundError:
                raise LaunchError(f"package '{package}' not found: run scripts/setup.sh") from None
            if not exe.exists():
                raise LaunchError(f"{package} has no executable '{executable}' ({exe})")
            argv = [str(exe), *(perform(a, context) for a in entity.arguments), "--ros-args"]
            label = executable
            if entity.node_name is not None:
                label = perform(entity.node_name, context)
                argv += ["-r", f"__node:={label}"]
            own = perform(entity.namespace, context) if entity.namespace is not None else None
            namespace = prefix_namespace(context.ros_namespace, own)
            if namespace is not None:
                # as launch_ros: a relative namespace is made absolute ('' -> '/'); rcl takes only absolute ones
                argv += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
            for src, dst in entity.remappings:
                argv += ["-r", f"{perform(src, context)}:={perform(dst, context)}"]
            argv += _param_args(entity.parameters, context)
            shutdown = any(isinstance(a, Shutdown) for a in entity.on_exit or [])
            nodes.append(NodeProcess(label=label, argv=argv, shutdown_on_exit=shutdown))
        else:
            raise LaunchError(f"the wheel launcher does not support {type(entity).__name__}")
    return nodes, env


class _OutputPrefixer:
    """Whole lines of one node's output, prefixed with its name, read unbuffered: a node that prints several
    lines at once and then goes quiet still shows all of them."""

    def __init__(self, label: str, fd: int):
        self.label, self.fd, self.pending = label, fd, b""

    def read(self) -> bool:
        """Print the complete lines available now; False at end of file."""
        try:
            data = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            self.flush()
            return False
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            sys.stdout.write(f"[{self.label}] {line.decode(errors='replace')}\n")
        sys.stdout.flush()
        return True

    def flush(self) -> None:
        if self.pending:
            sys.stdout.write(f"[{self.label}] {self.pending.decode(errors='replace')}\n")
            sys.stdout.flush()
            self.pending = b""

    def drain(self) -> None:
        while self.read():
            pass


def supervise(nodes: list[NodeProcess], env: dict[str, str]) -> int:
    """Run the nodes, prefix their output, stop them all on Ctrl-C or when a shutdown node exits."""
    child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    procs: dict[int, tuple[NodeProcess, subprocess.Popen, _OutputPrefixer]] = {}
    selector = selectors.DefaultSelector()
    for node in nodes:
        proc = subprocess.Popen(node.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env,
                                start_new_session=True, bufsize=0)
        output = _OutputPrefixer(node.label, proc.stdout.fileno())
        procs[proc.pid] = (node, proc, output)
        selector.register(proc.stdout, selectors.EVENT_READ, output)
        print(f"[launch] started {node.label} [pid {proc.pid}]", flush=True)

    interrupted = False

    def on_signal(signum, _frame):
        nonlocal interrupted
        interrupted = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        running = set(procs)
        while running and not interrupted:
            for key, _ in selector.select(timeout=0.1):
                if not key.data.read():
                    selector.unregister(key.fileobj)
            for pid in list(running):
                node, proc, output = procs[pid]
                if proc.poll() is None:
                    continue
                running.discard(pid)
                output.drain()
                print(f"[launch] {node.label} exited with code {proc.returncode}", flush=True)
                if proc.returncode:
                    exit_code = exit_code or proc.returncode
                if node.shutdown_on_exit:
                    interrupted = True
                    exit_code = proc.returncode
    finally:
        # as launch's ExecuteProcess does: SIGINT, then SIGTERM after sigterm_timeout (5 s), then SIGKILL after
        # sigkill_timeout (5 s more); a node started with SIGINT ignored (from a background job) still stops
        for sig, wait_s in ((signal.SIGINT, SIGTERM_TIMEOUT_S), (signal.SIGTERM, SIGKILL_TIMEOUT_S),
                            (signal.SIGKILL, 5.0)):
            alive = [(node, proc) for node, proc, _ in procs.values() if proc.poll() is None]
            if not alive:
                break
            for node, proc in alive:
                if sig != signal.SIGINT:
                    print(f"[launch] {node.label} still running: sending {sig.name}", flush=True)
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait_s
            for _node, proc in alive:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for _node, _proc, output in procs.values():
            output.drain()  # what a node printed while shutting down, as ros2 launch shows it
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code


def parse_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        if ":=" not in item:
            raise LaunchError(f"launch argument '{item}' must look like name:=value")
        name, value = item.split(":=", 1)
        overrides[name] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a launch file of this workspace without `ros2 launch`.")
    parser.add_argument("package")
    parser.add_argument("launch_file")
    parser.add_argument("arguments", nargs="*", help="launch arguments as name:=value")
    parser.add_argument("--show-args", action="store_true", help="list the launch arguments and exit")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the node command lines and exit")
    args = parser.parse_intermixed_args(argv)
    try:
        description = load_description(find_launch_file(args.package, args.launch_file))
        if args.show_args:
            for e in description.entities:
                if isinstance(e, DeclareLaunchArgument):
                    default = perform(e.default_value, Context()) if e.default_value is not None else "(required)"
                    print(f"{e.name}:={default}\n    {e.description}")
            return 0
        nodes, env = evaluate(description, parse_overrides(args.arguments))
    except LaunchError as exc:
        print(f"[launch] error: {exc}", file=sys.stderr)
        return 2
    if args.print_only:
        for node in nodes:
            print(" ".join(node.argv))
        return 0
    return supervise(nodes, env)


if __name__ == "__main__":
    sys.exit(main())
