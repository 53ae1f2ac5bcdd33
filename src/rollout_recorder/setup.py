from setuptools import find_packages, setup

package_name = "rollout_recorder"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "benchmarks"]),
    # the scoring page's HTML/JS/CSS, served from beside scoring_app.py
    package_data={package_name: ["static/*.html", "static/*.js", "static/*.css"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "h5py", "pyyaml", "rosbags", "fastapi==0.165.0", "uvicorn==0.55.0",
                      "tqdm"],
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="ACT HDF5 episode files (streaming, recovery, rollout attributes), the ROS 2 recorder node and the "
                "operator scoring page.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "recorder_node = rollout_recorder.recorder_node:main",
            "rollout_recorder = rollout_recorder.cli:main",
            "rollout_scoring = rollout_recorder.scoring_app:main",
            "record_demos = rollout_recorder.record_demos:main",
        ],
    },
)
