"""Closed-loop evaluation over ROS (``aloha_eval``): seeded episodes per task, a JSON report, plots.

``report`` (statistics, summaries, merged tables) and ``plots`` are plain Python; ``drivers`` and
``cli`` need rclpy.
"""
