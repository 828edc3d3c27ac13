"""Which folders a ``--scenes`` argument names, what each is called in the summary, and where the summary goes."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from utils.errors import UserError

SCENE_FILE = "image.json"  # a folder holding it is a scene


def is_scene(folder: Path) -> bool:
    return folder.is_dir() and (folder / SCENE_FILE).is_file()


def find_scenes(spec: str) -> list[Path]:
    """The scene folders ``spec`` names, as absolute paths (the stages run from the repository root, and
    workers elsewhere), sorted and without repeats.

    ``spec`` is a folder (itself when it is a scene, else its direct subfolders that are scenes) or a glob
    pattern (the matches that are scenes). Nothing found is a UserError.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        found = [path] if is_scene(path) else [p for p in path.iterdir() if is_scene(p)]
    else:
        found = [Path(p) for p in glob.glob(os.path.expanduser(spec)) if is_scene(Path(p))]
    unique = {p.resolve(): Path(os.path.abspath(p)) for p in sorted(found)}
    if not unique:
        what = "folder" if path.is_dir() else "pattern"
        raise UserError(
            f"no scene folder (one holding {SCENE_FILE}) found for the {what} {spec!r}",
            "give --scenes a scene folder, a folder of scene folders or a quoted glob such as 'scenes/*'",
        )
    return sorted(unique.values())


def scene_names(scenes: Sequence[Path]) -> list[str]:
    """A unique name per scene: its folder name, with ``-2``, ``-3`` … for repeated names (``a/s`` and ``b/s``)."""
    names: list[str] = []
    used = {scene.name for scene in scenes}
    taken: set[str] = set()
    for scene in scenes:
        base = scene.name or "scene"
        name, k = base, 1
        while name in taken or (k > 1 and name in used):  # never take the name of a folder listed later
            k += 1
            name = f"{base}-{k}"
        taken.add(name)
        names.append(name)
    return names


def summary_root(spec: str, scenes: Sequence[Path]) -> Path:
    """Where the summary goes by default: the folder ``spec`` names, or for a scene folder or a glob the
    folder that holds the scenes (never a scene folder itself: each is written only by its stages)."""
    path = Path(spec).expanduser()
    if path.is_dir() and not is_scene(path):
        return Path(os.path.abspath(path))
    return Path(os.path.commonpath([os.path.abspath(s.parent) for s in scenes]))
