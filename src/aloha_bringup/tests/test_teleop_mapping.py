"""Teleoperation without ROS: leader joint states -> 14-D command (joint order, gripper calibration), and the safety
hold on a stale, NaN, out-of-limit or unmatched leader."""

import numpy as np
import pytest
import yaml

from aloha_bringup.interbotix_bridge import arm_commands
from aloha_bringup.teleop_mapping import (
    INVALID_LEADER,
    NO_FOLLOWER,
    NOT_MATCHED,
    SHAPING_FRACTION,
    STALE_LEADER,
    LeaderStateError,
    Teleoperation,
    command_from_leaders,
    leader_arm_positions,
    leader_joint_states_topic,
)
from aloha_contract import ContractError, load_contract
from aloha_sim.leader_arms import leader_joint_states

STALE_S = 0.25
LEFT = [0.1, -0.9, 1.1, 0.05, -0.3, 0.2]
RIGHT = [-0.1, -0.8, 1.0, -0.05, -0.2, -0.2]


@pytest.fixture(scope="module")
def contract():
    return load_contract()


def leader_message(contract, joints, gripper_rad, order=None):
    """A leader joint_states message (Interbotix layout) as (names, positions), optionally reordered."""
    names = list(contract.follower_joint_names)
    values = [*joints, gripper_rad, 0.03, -0.03]
    if order is not None:
        names, values = [names[i] for i in order], [values[i] for i in order]
    return names, values


def command(contract, left=LEFT, right=RIGHT, grippers=(0.5, 0.5)):
    per_arm = len(contract.arm_joints) + 1
    out = np.empty(2 * per_arm)
    out[:per_arm] = [*left, grippers[0]]
    out[per_arm:] = [*right, grippers[1]]
    return out


def test_joint_order_comes_from_the_names_left_arm_first(contract):
    cal = contract.gripper_calibration("real")
    shuffled = [8, 6, 0, 5, 1, 7, 4, 2, 3]  # any message order: matched by name
    left = leader_arm_positions(contract, *leader_message(contract, LEFT, 0.2, order=shuffled))
    right = leader_arm_positions(contract, *leader_message(contract, RIGHT, 0.4))
    np.testing.assert_allclose(left, [*LEFT, 0.2])
    cmd = command_from_leaders(contract, [left, right], cal)
    names = contract.joint_names
    assert names[0] == "left_waist" and names[7] == "right_waist"
    np.testing.assert_allclose(cmd[:6], LEFT)
    np.testing.assert_allclose(cmd[7:13], RIGHT)


def test_gripper_goes_leader_joint_to_normalised_to_follower_joint(contract):
    cal = contract.gripper_calibration("real")
    leader, follower = cal.leader_gripper_joint_rad, cal.follower_gripper_joint_rad
    left = leader_arm_positions(contract, *leader_message(contract, LEFT, leader.open))
    right = leader_arm_positions(contract, *leader_message(contract, RIGHT, leader.close))
    cmd = command_from_leaders(contract, [left, right], cal)
    assert cmd[contract.gripper_indices] == pytest.approx([1.0, 0.0])  # normalised: 1 open, 0 closed
    # the real driver executes the command on the follower gripper *joint*
    executed = arm_commands(contract, cmd, cal)
    assert executed[0].gripper_position == pytest.approx(follower.open)
    assert executed[1].gripper_position == pytest.approx(follower.close)
    # a leader gripper a quarter open is a quarter open on the follower too
    quarter = leader_arm_positions(contract, *leader_message(contract, LEFT, leader.unnormalize(0.25)))
    half_cmd = command_from_leaders(contract, [quarter, right], cal)
    assert arm_commands(contract, half_cmd, cal)[0].gripper_position == pytest.approx(follower.unnormalize(0.25))


@pytest.mark.parametrize("profile", ["real", "sim"])
def test_simulated_leader_states_map_back_to_the_command(contract, profile):
    """The round trip the simulated operator relies on: command -> leader joint states -> teleop -> command."""
    cal = contract.gripper_calibration(profile)
    wanted = command(contract, grippers=(0.9, 0.1))
    states = leader_joint_states(contract, wanted, cal)
    assert [s.robot for s in states.values()] == ["leader_left", "leader_right"]
    positions = [leader_arm_positions(contract, s.names, s.position) for s in states.values()]
    np.testing.assert_allclose(command_from_leaders(contract, positions, cal), wanted, atol=1e-12)
    left = states["left"]
    assert left.names == contract.follower_joint_names
    assert left.position[contract.follower_gripper_index] == pytest.approx(cal.leader_gripper_joint_rad.unnormalize(0.9))


def test_gripper_past_its_calibration_is_fully_open_or_closed_but_nan_stays(contract):
    cal = contract.gripper_calibration("real")
    leader = cal.leader_gripper_joint_rad
    past_open = leader_arm_positions(contract, *leader_message(contract, LEFT, leader.open + 0.3))
    past_closed = leader_arm_positions(contract, *leader_message(contract, RIGHT, leader.close - 0.3))
    cmd = command_from_leaders(contract, [past_open, past_closed], cal)
    assert cmd[contract.gripper_indices] == pytest.approx([1.0, 0.0])
    nan = past_open.copy()
    nan[6] = np.nan
    assert np.isnan(command_from_leaders(contract, [nan, past_closed], cal)[6])


def test_malformed_leader_messages_name_the_problem(contract):
    names, values = leader_message(contract, LEFT, 0.1)
    with pytest.raises(LeaderStateError, match=r"joints \['elbow'\] missing"):
        leader_arm_positions(contract, [n for n in names if n != "elbow"], [v for n, v in zip(names, values)
                                                                             if n != "elbow"])
    values[2] = float("nan")
    with pytest.raises(LeaderStateError, match=r"NaN/inf for \['elbow'\]"):
        leader_arm_positions(contract, names, values)
    with pytest.raises(LeaderStateError, match="9 names but 8 values"):
        leader_arm_positions(contract, names, values[:-1])


def test_leader_topics_use_the_contract_template_and_a_missing_leader_is_named(contract, tmp_path):
    assert leader_joint_states_topic(contract, "left") == contract.topic("follower_joint_states", arm_robot="leader_left")
    raw = yaml.safe_load(contract.source.read_text())
    del raw["leader_robots"]
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match="leader_robots.left missing"):
        leader_joint_states_topic(load_contract(path), "left")


# ---- the hold ----
class Rig:
    """A Teleoperation fed by hand: leaders and follower positions, a clock advanced one period per tick."""

    def __init__(self, contract, follower=None):
        self.contract = contract
        self.cal = contract.gripper_calibration("sim")
        self.teleop = Teleoperation(contract, self.cal, STALE_S)
        self.now = 100.0
        self.follower = command(contract) if follower is None else follower

    def leaders(self, cmd, arms=("left", "right")):
        for arm, state in leader_joint_states(self.contract, cmd, self.cal).items():
            if arm in arms:
                self.teleop.update_leader(arm, state.names, list(state.position), self.now)

    def tick(self, cmd=None, follower_tracks=True, dt=None):
        """Advance one period; the leaders report `cmd` (None: nothing new); the follower reaches the last command."""
        self.now += self.contract.control_period_s if dt is None else dt
        if cmd is not None:
            self.leaders(cmd)
        self.teleop.update_follower(self.follower, self.now)
        step = self.teleop.tick(self.now)
        if follower_tracks and step.command is not None:
            self.follower = step.command.copy()
        return step


def test_nothing_is_commanded_before_the_follower_and_the_leaders_report(contract):
    rig = Rig(contract)
    rig.now += 1.0
    step = rig.teleop.tick(rig.now)
    assert step.command is None and step.reason == NO_FOLLOWER
    step = rig.tick()
    assert step.command is None and step.reason == STALE_LEADER and "leader_left" in step.detail


def test_leaders_at_the_followers_pose_are_followed(contract):
    rig = Rig(contract)
    step = rig.tick(command(contract))
    assert step.following and not step.slowed
    np.testing.assert_allclose(step.command, command(contract))
    moved = command(contract, left=[v + 0.02 for v in LEFT])
    step = rig.tick(moved)
    assert step.following
    np.testing.assert_allclose(step.command, moved)


def test_a_stale_leader_holds_the_last_safe_target(contract):
    rig = Rig(contract)
    rig.tick(command(contract))
    target = command(contract, left=[v + 0.03 for v in LEFT])
    rig.tick(target)
    for _ in range(int(STALE_S / contract.control_period_s)):
        step = rig.tick()  # the leaders go quiet: within the staleness bound the last pose is still followed
    step = rig.tick()
    step = rig.tick()
    assert not step.following and step.reason == STALE_LEADER
    np.testing.assert_allclose(step.command, target)  # the arm holds where it was sent last
    # one leader comes back, the other stays silent: still holding
    rig.now += contract.control_period_s
    rig.leaders(target, arms=("left",))
    assert rig.teleop.tick(rig.now).reason == STALE_LEADER


def test_a_nan_leader_holds_until_a_good_message_arrives(contract):
    rig = Rig(contract)
    rig.tick(command(contract))
    state = leader_joint_states(contract, command(contract), rig.cal)["right"]
    bad = list(state.position)
    bad[contract.follower_joint_names.index("wrist_angle")] = float("nan")
    with pytest.raises(LeaderStateError, match="NaN"):
        rig.teleop.update_leader("right", state.names, bad, rig.now)
    step = rig.tick()
    assert not step.following and step.reason == INVALID_LEADER and "wrist_angle" in step.detail
    np.testing.assert_allclose(step.command, command(contract))
    assert rig.tick(command(contract)).following


def test_after_a_hold_the_leaders_must_come_back_to_the_followers_pose(contract):
    rig = Rig(contract)
    rig.tick(command(contract))
    rig.now += 1.0  # a long silence: hold
    assert rig.tick().reason == STALE_LEADER
    far = command(contract, right=[RIGHT[0] + 0.6, *RIGHT[1:]])  # the leader moved meanwhile
    step = rig.tick(far)
    assert not step.following and step.reason == NOT_MATCHED and "right_waist" in step.detail
    np.testing.assert_allclose(step.command, command(contract))  # the arm does not set off towards it
    near = command(contract, right=[RIGHT[0] + 0.1, *RIGHT[1:]])  # within the tracking bound: taken over
    step = rig.tick(near)
    assert step.following and step.slowed  # at the velocity limit, not in one jump
    limit = rig.teleop.gate.limits.max_step[7]
    assert abs(step.command[7] - RIGHT[0]) <= limit * SHAPING_FRACTION + 1e-12


def test_fast_leaders_are_slowed_to_the_velocity_limit_not_refused(contract):
    rig = Rig(contract)
    rig.tick(command(contract))
    goal = command(contract, left=[LEFT[0] + 0.2, *LEFT[1:]])
    sent = []
    for _ in range(6):
        step = rig.tick(goal)
        assert step.following
        sent.append(step.command[0])
    steps = np.diff([LEFT[0], *sent])
    limit = Teleoperation(contract, rig.cal, STALE_S).gate.limits.max_step[0] * SHAPING_FRACTION
    assert np.all(np.abs(steps) <= limit + 1e-12)  # absolute: never faster, in either direction
    assert sent[-1] == pytest.approx(goal[0])  # and it gets there


def test_a_lagging_follower_is_not_outrun(contract):
    rig = Rig(contract)
    rig.tick(command(contract))
    goal = command(contract, left=[LEFT[0] + 1.0, *LEFT[1:]])
    for _ in range(20):
        step = rig.tick(goal, follower_tracks=False)  # the follower is blocked at the start pose
    bound = rig.teleop.gate.limits.max_tracking_error[0] * SHAPING_FRACTION
    assert step.following and step.command[0] == pytest.approx(LEFT[0] + bound)


def test_a_late_tick_follows_further_but_never_more_than_the_contracts_gap(contract):
    gap_periods = contract.raw["safety"]["max_command_gap_periods"]
    assert gap_periods < 10
    rig = Rig(contract)
    rig.tick(command(contract))
    goal = command(contract, left=[LEFT[0] + 0.5, *LEFT[1:]])
    per_period = rig.teleop.gate.limits.max_step[0]
    step = rig.tick(goal, dt=2 * contract.control_period_s)
    assert step.command[0] - LEFT[0] == pytest.approx(2 * per_period * SHAPING_FRACTION)
    before = step.command[0]
    step = rig.tick(goal, dt=10 * contract.control_period_s)  # capped: not 10 periods' worth
    tracking = rig.teleop.gate.limits.max_tracking_error[0]
    assert step.command[0] - before == pytest.approx(min(gap_periods * per_period, tracking) * SHAPING_FRACTION)


def test_a_receiver_gate_follows_a_teleop_on_a_late_and_lossy_clock(contract):
    """Seen in CI: a loaded machine delays teleop ticks, the teleop moves further on a late tick, and a receiver
    that allowed one period per message refused it and then everything after it (its reference stayed behind
    while the teleop's moved on), so the follower froze for the rest of the demonstration."""
    from aloha_contract.safety import SafetyGate

    rng = np.random.default_rng(0)
    rig = Rig(contract)
    receiver = SafetyGate(contract)  # the driver's or the simulator's gate, fed the arrival times
    receiver.reset(rig.follower)
    period = contract.control_period_s
    refused = accepted = 0
    for k in range(400):
        # the leader sweeps the left waist at 2 rad/s and back; ticks are late by up to 2.5 periods
        goal = command(contract, left=[LEFT[0] + 0.8 * np.sin(2.5 * k * period), *LEFT[1:]])
        step = rig.tick(goal, follower_tracks=False, dt=period * (1.0 + (rng.random() < 0.2) * 1.5 * rng.random()))
        if step.command is None or rng.random() < 0.1:
            continue  # one in ten messages is replaced in the depth-1 command queue before the receiver reads it
        if receiver.check(step.command, rig.follower, now_s=rig.now) is None:
            accepted += 1
        else:
            refused += 1
        rig.follower = receiver.last_safe_target.copy()  # the arm goes where the receiver lets it
    assert accepted > 300 and refused == 0, (accepted, refused)
    assert abs(rig.follower[0] - goal[0]) < 0.3  # still following at the end


def test_a_leader_beyond_a_joint_limit_holds(contract):
    low, _ = contract.joint_limits_rad[1]  # shoulder
    at_limit = command(contract, left=[LEFT[0], low - contract.joint_margin_rad + 0.01, *LEFT[2:]])
    rig = Rig(contract, follower=at_limit)
    rig.tick(at_limit)
    beyond = command(contract, left=[LEFT[0], low - contract.joint_margin_rad - 0.05, *LEFT[2:]])
    step = rig.tick(beyond)
    assert not step.following and step.reason == "invalid" and "left_shoulder" in step.detail
    np.testing.assert_allclose(step.command, at_limit)
