from glob import glob

from setuptools import find_packages, setup

package_name = "cosmos_policy_ros"
# checkpoints/ is the workspace's top-level folder (linked here): the shipped default policy
checkpoints = sorted({p.rsplit("/", 1)[0] for p in glob("checkpoints/*/*")})

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "benchmarks"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        *[(f"share/{package_name}/{folder}", sorted(glob(f"{folder}/*"))) for folder in checkpoints],
    ],
    install_requires=["setuptools", "numpy"],
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="ROS 2 policy node for Cosmos Policy: RunPolicy action server, chunk scheduling, safety gate.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = cosmos_policy_ros.policy_node:main",
            "run_policy = cosmos_policy_ros.run_policy:main",
            "aloha_eval = cosmos_policy_ros.evaluation.cli:main",
        ],
    },
)
