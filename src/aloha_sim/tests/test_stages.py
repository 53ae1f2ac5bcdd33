"""Stage scores from constructed contact states: a touch is not a grasp, order matters, the end counts."""

import numpy as np
import pytest

from aloha_sim.stages import (
    CUBE,
    PEG,
    PIN,
    TABLE,
    ContactState,
    StageTracker,
    finger_geoms,
    peg_depth_in_socket,
    predicates_for,
)
from aloha_sim.tasks import load_task

RIGHT = finger_geoms("right")
LEFT = finger_geoms("left")
ON_TABLE = {"box": (0.1, 0.5, 0.02)}
IN_AIR = {"box": (0.0, 0.5, 0.2)}


def tracker(task_name):
    task = load_task(task_name)
    return StageTracker(task.stages, predicates_for(task))


def cube_state(pairs, positions):
    return ContactState.build(pairs, positions)


def test_single_finger_touch_on_table_scores_nothing():
    t = tracker("transfer_cube")
    score = t.update(cube_state([(CUBE, RIGHT[0]), (CUBE, TABLE)], ON_TABLE))
    assert score.score == 0 and score.reached == ()


def test_grasp_on_table_is_25_not_50():
    t = tracker("transfer_cube")
    score = t.update(cube_state([(CUBE, RIGHT[0]), (CUBE, RIGHT[1]), (CUBE, TABLE)], ON_TABLE))
    assert score.score == 25


def test_grasped_but_barely_raised_is_not_lifted():
    t = tracker("transfer_cube")
    score = t.update(cube_state([(CUBE, RIGHT[0]), (CUBE, RIGHT[1])], {"box": (0.1, 0.5, 0.03)}))
    assert score.score == 25


def test_full_transfer_sequence_reaches_100_only_while_final_holds():
    t = tracker("transfer_cube")
    assert t.update(cube_state([(CUBE, RIGHT[0]), (CUBE, RIGHT[1]), (CUBE, TABLE)], ON_TABLE)).score == 25
    assert t.update(cube_state([(CUBE, RIGHT[0]), (CUBE, RIGHT[1])], IN_AIR)).score == 50
    both = [(CUBE, RIGHT[0]), (CUBE, RIGHT[1]), (CUBE, LEFT[0]), (CUBE, LEFT[1])]
    assert t.update(cube_state(both, IN_AIR)).score == 75
    final = t.update(cube_state([(CUBE, LEFT[0]), (CUBE, LEFT[1])], IN_AIR))
    assert final.score == 100 and final.success
    dropped = t.update(cube_state([(CUBE, TABLE)], ON_TABLE))
    assert dropped.score == 75 and not dropped.success
    assert "held_by_left_at_end" in dropped.reached


def test_left_pick_from_table_without_handover_is_not_success():
    t = tracker("transfer_cube")
    score = t.update(cube_state([(CUBE, LEFT[0]), (CUBE, LEFT[1])], IN_AIR))
    assert score.score == 0 and not score.success


def test_insertion_depth_geometry():
    socket = (-0.05, 0.5, 0.15)
    inside = ContactState.build([], {"peg": (0.05, 0.5, 0.15), "socket": socket})
    assert peg_depth_in_socket(inside) == pytest.approx(0.02)
    outside = ContactState.build([], {"peg": (0.08, 0.5, 0.15), "socket": socket})
    assert peg_depth_in_socket(outside) < 0
    beside = ContactState.build([], {"peg": (0.05, 0.53, 0.15), "socket": socket})
    assert peg_depth_in_socket(beside) < 0
    tilt = np.array([np.cos(np.pi / 8), 0, np.sin(np.pi / 8), 0])  # 45 deg about y
    tilted = ContactState.build([], {"peg": (0.05, 0.5, 0.15), "socket": socket}, {"peg": tilt})
    assert peg_depth_in_socket(tilted) < 0


def test_insertion_touching_socket_is_75_and_inside_is_100():
    t = tracker("insertion")
    grasp = [(PEG, RIGHT[0]), (PEG, RIGHT[1]), ("socket-3", LEFT[0]), ("socket-4", LEFT[1])]
    lifted = {"peg": (0.1, 0.5, 0.15), "socket": (-0.05, 0.5, 0.15)}
    assert t.update(ContactState.build(grasp + [(PEG, TABLE)], {"peg": (0.1, 0.5, 0.01),
                                                                 "socket": (-0.05, 0.5, 0.022)})).score == 25
    assert t.update(ContactState.build(grasp, lifted)).score == 50
    at_mouth = {"peg": (0.065, 0.5, 0.15), "socket": (-0.05, 0.5, 0.15)}
    assert t.update(ContactState.build(grasp + [(PEG, "socket-1")], at_mouth)).score == 75
    inserted = {"peg": (0.05, 0.5, 0.15), "socket": (-0.05, 0.5, 0.15)}
    score = t.update(ContactState.build(grasp + [(PEG, PIN)], inserted))
    assert score.score == 100 and score.success


def test_yaml_stage_names_all_have_predicates():
    for name in ("transfer_cube", "insertion"):
        task = load_task(name)
        assert len(predicates_for(task)) == len(task.stages)
        assert task.stages[-1].score == 100


def test_peg_entering_the_mouth_without_contact_counts_as_touching():
    t = tracker("insertion")
    grasp = [(PEG, RIGHT[0]), (PEG, RIGHT[1]), ("socket-3", LEFT[0]), ("socket-4", LEFT[1])]
    t.update(ContactState.build(grasp, {"peg": (0.1, 0.5, 0.15), "socket": (-0.05, 0.5, 0.15)}))
    entering = {"peg": (0.065, 0.5, 0.15), "socket": (-0.05, 0.5, 0.15)}  # 5 mm in, no contact
    assert t.update(ContactState.build(grasp, entering)).score == 75
    apart = {"peg": (0.09, 0.5, 0.15), "socket": (-0.05, 0.5, 0.15)}
    fresh = tracker("insertion")
    fresh.update(ContactState.build(grasp, {"peg": (0.1, 0.5, 0.15), "socket": (-0.05, 0.5, 0.15)}))
    assert fresh.update(ContactState.build(grasp, apart)).score == 50
