import aloha_sim  # noqa: F401  (sets MUJOCO_GL=egl before any test module imports mujoco)
