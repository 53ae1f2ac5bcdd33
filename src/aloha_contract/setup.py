from setuptools import find_packages, setup

package_name = "aloha_contract"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests"]),
    package_data={package_name: ["aloha_contract.yaml", "aloha_robot.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="The ALOHA robot contract shared by every node.",
    license="Apache-2.0",
)
