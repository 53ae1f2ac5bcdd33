from glob import glob

from setuptools import find_packages, setup

package_name = "aloha_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests"]),
    # launch/ and config/ are the workspace's top-level folders (linked here) installed into share/
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", sorted(glob("launch/*.launch.py"))),
        (f"share/{package_name}/config", sorted(glob("config/*.yaml"))),
    ],
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="Launch files and configuration of the Cosmos Policy ALOHA stack.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "wheel_launch = aloha_bringup.wheel_launch:main",
        "aloha_driver = aloha_bringup.aloha_driver:main",
        "fake_interbotix = aloha_bringup.fake_interbotix:main",
        "teleop = aloha_bringup.teleop:main",
    ]},
)
