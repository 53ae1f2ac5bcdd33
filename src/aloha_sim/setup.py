from setuptools import find_packages, setup

package_name = "aloha_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "benchmarks"]),
    package_data={package_name: ["tasks.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "mujoco"],
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="MuJoCo ALOHA simulator, staged scores, scripted demos and its ROS node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "aloha_sim_demos = aloha_sim.demos_cli:main",
            "aloha_sim_bench = aloha_sim.bench:main",
            "sim_node = aloha_sim.sim_node:main",
            "scripted_driver = aloha_sim.scripted_driver:main",
            "sim_leader = aloha_sim.sim_leader:main",
        ],
    },
)
