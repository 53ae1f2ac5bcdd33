"""ROS node for RoboCasa behind config/robocasa_contract.yaml: the LIBERO sim node with RoboCasa's worker.

RoboCasa is not installable here (not on the package index; its kitchen assets are a multi-GB download from
outside). At start the node looks for RoboCasa's venv (``.venv-robocasa`` or ``$ROBOCASA_PYTHON``) and refuses,
naming what to install, when there is none or ``robocasa`` does not import in it. With RoboCasa importable it runs
``robocasa_env.RoboCasaEnv`` (UNTESTED, see that module) in a worker exactly as the LIBERO node runs LIBERO, and
``libero_eval --suites robocasa --contract config/robocasa_contract.yaml`` runs the release's RoboCasa protocol
(24 tasks x 50 trials; the policy node executes 16 of each 32-step chunk, the robocasa layout's deploy default).
The reset service's task is ``robocasa/<task id>`` (an index into protocol.ROBOCASA_TASKS), its seed the scene seed.
"""

from __future__ import annotations

import sys
from functools import partial

from aloha_contract.node_main import run_node

from .sim_node import SETUP_ERRORS, LiberoSimNode
from .worker_client import LiberoWorker, find_libero_python

VENV_NAME = ".venv-robocasa"
SETUP_HINT = ("RoboCasa is not installed: it is not on the package index and its kitchen assets are a multi-GB "
              "download, so this project cannot install it for you. Install robosuite>=1.5 and robocasa from their "
              "source repositories into .venv-robocasa (or set ROBOCASA_PYTHON to a Python that imports robocasa), "
              "then run `python -m robocasa.scripts.download_kitchen_assets` there (docs/libero.md, RoboCasa)")


class RoboCasaSimNode(LiberoSimNode):
    NODE_NAME = "robocasa_sim"
    CONTRACT = "robocasa_contract.yaml"
    DEFAULT_SUITE = "robocasa"

    def start_worker(self, cameras, hw, flip, jpeg, python) -> LiberoWorker:
        find = partial(find_libero_python, venv=VENV_NAME, env_var="ROBOCASA_PYTHON", hint=SETUP_HINT,
                       what="RoboCasa")
        return LiberoWorker(cameras, hw, flip=flip, jpeg_quality=jpeg, python=python, benchmark="robocasa",
                            find_python=find, hint=SETUP_HINT)


def main(args: list[str] | None = None) -> None:
    """1 with one line naming what to install when RoboCasa is absent (the case on this project's machines)."""
    sys.exit(run_node(RoboCasaSimNode.NODE_NAME, RoboCasaSimNode, setup_errors=SETUP_ERRORS, args=args))


if __name__ == "__main__":
    main()
