"""The ALOHA robot contract (topics, joint order, rates, QoS, gripper calibration) and its checks.

Plain Python: importing this package never imports rclpy; the ROS helpers live in
``aloha_contract.ros`` and are imported only by nodes.
"""

from .contract import ACTION_DIM, Contract, ContractError, GripperRange, fully_qualified, load_contract
from .validation import InvalidCommand, check_joint_command

__all__ = ["ACTION_DIM", "Contract", "ContractError", "GripperRange", "InvalidCommand",
           "check_joint_command", "fully_qualified", "load_contract"]
