"""ALOHA / ACT episode files: re-exported from their one home, ``rollout_recorder.episode_file``.

The format (reading, writing, streaming, recovery, rollout attributes) lives with the robot-data code so
that the recorder and the simulator write episodes without torch; the trainer keeps importing it from here.
"""

from rollout_recorder.episode_file import (
                                           DEFAULT_JPEG_QUALITY,
                                           PARTIAL_SUFFIX,
                                           STATE_KEYS,
                                           DiskSpaceError,
                                           Episode,
                                           EpisodeFileError,
                                           EpisodeWriter,
                                           attr_value,
                                           check_act_images,
                                           check_free_space,
                                           episode_index,
                                           is_complete,
                                           list_episode_files,
                                           list_partial_episodes,
                                           next_episode_index,
                                           open_episode_file,
                                           read_act_episode,
                                           read_act_frames,
                                           read_rollout_history,
                                           read_rows,
                                           recover_episode,
                                           write_act_episode,
)

__all__ = ["DEFAULT_JPEG_QUALITY", "PARTIAL_SUFFIX", "STATE_KEYS", "DiskSpaceError", "Episode", "EpisodeFileError",
           "EpisodeWriter", "attr_value", "check_act_images", "check_free_space", "episode_index", "is_complete",
           "list_episode_files", "list_partial_episodes", "next_episode_index", "open_episode_file",
           "read_act_episode", "read_act_frames", "read_rollout_history", "read_rows", "recover_episode",
           "write_act_episode"]
