"""ROS 2 layer over cosmos_policy: policy node, run_policy client, aloha_eval."""
