"""Stage 3 (render_4DGS.py): the trained 4D scene along camera paths, to looping videos."""
