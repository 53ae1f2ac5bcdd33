from setuptools import find_packages, setup

package_name = "libero_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests"]),
    # the contracts are links to the workspace's config/ folder (one home for each file)
    package_data={package_name: ["libero_contract.yaml", "robocasa_contract.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="LIBERO and RoboCasa simulator nodes and the release's LIBERO evaluation protocol.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "libero_sim_node = libero_sim.sim_node:main",
            "robocasa_sim_node = libero_sim.robocasa_node:main",
            "libero_eval = libero_sim.evaluation:main",
            "libero_bench = libero_sim.bench:main",
            "libero_tiny_checkpoint = libero_sim.tiny_checkpoint:main",
        ],
    },
)
