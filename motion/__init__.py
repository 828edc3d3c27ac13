"""Stage 1 (train_motion.py): photo -> depth -> multi-view images -> 2D flows -> 3D motion -> looping video."""
