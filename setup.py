"""Install ppdistill: ``pip install -e .``"""
import importlib.util

from setuptools import find_packages, setup


def paddle_requirement():
    # Keep a GPU build if the user already installed one; otherwise pull the CPU build.
    if importlib.util.find_spec("paddle") is not None:
        return []
    return ["paddlepaddle>=2.6"]


setup(
    name="ppdistill",
    version="0.1.0",
    description="PaddlePaddle-native knowledge distillation for OCR (PaddleOCR-compatible)",
    packages=find_packages(include=["ppdistill", "ppdistill.*"]),
    package_data={"ppdistill": ["utils/dict/*.txt", "ops/*.cc", "ops/*.h"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=paddle_requirement() + [
        "pyyaml>=5.4",
        "numpy>=1.21",
        "opencv-python-headless>=4.5",
        "shapely>=2.0",
        "pyclipper>=1.3",
        "lmdb>=1.0",
        "tqdm>=4.60",
        "rapidfuzz>=3.0",
    ],
    # plot: tools/plot_log.py and Global.plot_curves (training curves as a PNG)
    # onnx: tools/import_weights.py on .onnx exports (released PP-OCR models)
    extras_require={"plot": ["matplotlib>=3.5"], "onnx": ["onnx>=1.12", "onnxruntime>=1.14"],
                    "test": ["pytest>=7", "matplotlib>=3.5", "onnx>=1.12", "onnxruntime>=1.14"]},
)
