"""LIBERO (and RoboCasa) through ROS 2: simulator nodes behind their contracts, the release's evaluation protocol.

The simulators run in separate venvs (LIBERO: .venv-libero, scripts/setup_libero.sh) behind worker processes;
importing this package imports neither LIBERO nor ROS.
"""
