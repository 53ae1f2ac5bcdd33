from setuptools import find_packages, setup

package_name = "rollout_recorder"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "benchmarks"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "h5py"],
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="ACT HDF5 episode files (streaming, recovery, rollout attributes) and the ROS 2 recorder node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "recorder_node = rollout_recorder.recorder_node:main",
            "rollout_recorder = rollout_recorder.cli:main",
        ],
    },
)
