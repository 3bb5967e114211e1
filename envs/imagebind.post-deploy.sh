#!/usr/bin/env bash
# Run by Snakemake inside the imagebind env after creating it (envs/imagebind.yaml says why): pytorchvideo and
# ImageBind from their repositories, without their declared dependencies, which pip cannot satisfy beside
# torch 2.1.2 (ImageBind's requirements pin torch==1.13.1 and ask for mayavi and cartopy). Everything they import is
# pinned in envs/imagebind.yaml. By hand: conda env create -f envs/imagebind.yaml && conda activate
# mmemory-imagebind && bash envs/imagebind.post-deploy.sh
set -euo pipefail
python -m pip install --no-deps \
    "git+https://github.com/facebookresearch/pytorchvideo.git@28fe037d212663c6a24f373b94cc5d478c8c1a1d" \
    "git+https://github.com/facebookresearch/ImageBind.git@3fcf5c9039de97f6ff5528ee4a9dce903c5979b3"
python -c "import pkg_resources, imagebind.data, imagebind.models.imagebind_model"  # fails here, not in a job
