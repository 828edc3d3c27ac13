"""Stage 0 (scripts/generate_mask.py): a labelme annotation -> motion regions and motion hints."""
