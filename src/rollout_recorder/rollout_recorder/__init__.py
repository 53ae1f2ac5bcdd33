"""Robot data: the ACT episode file format, the recorder node and its tools.

Plain Python at the core (``episode_file``, ``sync``); importing this package never imports rclpy or torch.
"""
