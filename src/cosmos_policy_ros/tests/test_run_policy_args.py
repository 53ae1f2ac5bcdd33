"""run_policy's options: command line, ROS parameters (as a launch Node passes them), validation."""

from __future__ import annotations

import pytest

from cosmos_policy_ros.run_policy import build_parser, check, coerce


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_defaults_and_task_list():
    args = parse("--task", "transfer_cube, insertion", "--episodes", "5", "--seed-start", "1000", "--mode", "planning")
    assert check(args) is None
    assert args.task_list == ["transfer_cube", "insertion"] and args.episodes == 5 and args.mode == "planning"
    assert parse().tasks == "transfer_cube" and parse().reset == "auto"


@pytest.mark.parametrize("argv, problem", [
    (("--task", " , "), "--task: give at least one task"),
    (("--episodes", "0"), "--episodes 0: expected at least 1"),
    (("--max-steps", "-1"), "--max-steps -1: must be >= 0"),
    (("--max-duration", "-2"), "--max-duration -2.0: must be >= 0"),
])
def test_check_names_the_bad_option(argv, problem):
    assert problem in check(parse(*argv))


def test_parameter_values_take_the_option_types():
    # launch files pass text that the node's YAML parsing turns into ints or bools
    assert coerce(5, 0.0) == 5.0 and isinstance(coerce(5, 0.0), float)
    assert coerce(False, "auto") == "false" and coerce(True, "auto") == "true"
    assert coerce("insertion", "transfer_cube") == "insertion"
    assert coerce(3, 1) == 3 and coerce(True, False) is True
    with pytest.raises(ValueError):
        coerce("many", 1)


def test_policy_mode_from_a_parameter_is_checked():
    args = parse()
    args.mode = "greedy"
    assert "policy_mode 'greedy' must be one of" in check(args)
