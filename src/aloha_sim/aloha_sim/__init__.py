"""MuJoCo ALOHA simulator core: scenes, tasks, staged scores, scripted demonstrations (no ROS here).

Importing this package sets ``MUJOCO_GL=egl`` when it is unset: MuJoCo picks its OpenGL backend
when ``mujoco`` is first imported, and on a headless machine only EGL/OSMesa work. Import
``aloha_sim`` before anything that imports ``mujoco``, or export ``MUJOCO_GL`` yourself.
"""

import os

# must happen before the first `import mujoco` anywhere in the process (it reads the variable then)
os.environ.setdefault("MUJOCO_GL", "egl")
