from setuptools import find_packages, setup

package_name = "cosmos_policy"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks", "benchmarks.*"]),
    package_data={package_name: ["configs/*.yaml", "configs/layouts/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=[
        "setuptools",
        "numpy",
        "pyyaml",
        "torch",
        "safetensors",
        "diffusers",
        "transformers",
        "h5py",
        "opencv-python-headless",
        "tqdm",
    ],
    python_requires=">=3.11",
    zip_safe=False,
    maintainer="Cosmos Policy ROS maintainers",
    maintainer_email="maintainers@cosmos-policy-ros.invalid",
    description="Cosmos Policy (video-model robot policy) in pure PyTorch, usable without ROS.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["cosmos-policy = cosmos_policy.cli:main"]},
)
