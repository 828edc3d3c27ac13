"""Stage 2 (train_4DGS.py): 4D Gaussians (3D Gaussians + a looping deformation field) trained on stage 1's views and video."""

TRAIN_HELP = "see `python train_4DGS.py --help`"  # the fix named by a refused option value
