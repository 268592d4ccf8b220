"""What a batch run reads and where each input's outputs go; no Ray, no model.

INPUTS (folders, globs, image or video files, manifests) become one flat list of `WorkItem`s.
Outputs mirror the input tree under OUT: an item's stem is its path relative to the common root
of the inputs, so two files of one name in different folders stay apart, and two files of one
stem in one folder (img.png, img.jpg) keep their suffix, as `infer` does for folders.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.errors import OcrDeployError
from ocr_deploy.sources.captures import VIDEO_SUFFIXES
from ocr_deploy.sources.images import IMAGE_SUFFIXES, output_names

MANIFEST_SUFFIXES = (".csv", ".parquet")
_GLOB_CHARS = "*?["


class BatchInputError(OcrDeployError):
    """INPUTS or -o that a batch run cannot take."""


@dataclass(frozen=True)
class WorkItem:
    """One input file: an image (one frame) or a video (one task)."""

    path: str  # absolute
    stem: str  # output name relative to OUT, without the '_labels.png' etc. endings
    kind: str  # "image" or "video"
    size: int  # bytes when planned: a changed input is recomputed


@dataclass(frozen=True)
class _Found:
    path: Path
    root: Path  # the folder the input tree is mirrored from


def plan_items(inputs: Iterable[str], out: Path, *, recursive: bool = True) -> list[WorkItem]:
    """Every image and video of INPUTS, each once, with a unique output stem; refuses an output
    folder among the inputs (a rerun would read its own outputs)."""
    specs = list(inputs)
    if not specs:
        raise BatchInputError("give at least one input: a folder, glob, image or video file, or a "
                              "manifest (.csv or .parquet with a 'path' column)")
    found: dict[Path, _Found] = {}
    folders: list[Path] = []
    for spec in specs:
        for item in _expand(spec, recursive=recursive, folders=folders):
            found.setdefault(item.path, item)
    if not found:
        raise BatchInputError(f"no images or videos found in {', '.join(specs)} (looked for "
                              f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
    _refuse_output_among_inputs(out, folders, list(found))
    paths = sorted(found)
    root = Path(os.path.commonpath([str(found[path].root) for path in paths]))
    stems = output_names(paths, root)
    _refuse_collisions(stems, paths)
    return [WorkItem(str(path), stem, _kind(path), path.stat().st_size)
            for path, stem in zip(paths, stems, strict=True)]


def _expand(spec: str, *, recursive: bool, folders: list[Path]) -> Iterator[_Found]:
    path = Path(spec).expanduser()
    if path.is_dir():
        folder = path.resolve()
        folders.append(folder)
        pattern = "**/*" if recursive else "*"
        yield from (_Found(p.resolve(), folder) for p in folder.glob(pattern) if _is_media(p))
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        for listed in read_manifest(path):
            yield _Found(listed, listed.parent)
    elif path.is_file():
        if not _is_media(path):
            raise BatchInputError(f"{spec} is neither an image, a video nor a manifest (.csv or "
                                  ".parquet with a 'path' column)")
        yield _Found(path.resolve(), path.resolve().parent)
    elif any(char in spec for char in _GLOB_CHARS):
        matches = [Path(p).resolve() for p in glob.glob(os.path.expanduser(spec), recursive=True)]
        media = [p for p in matches if _is_media(p)]
        if media:
            root = Path(os.path.commonpath([str(p.parent) for p in media]))
            yield from (_Found(p, root) for p in media)
    else:
        raise BatchInputError(f"input not found: {spec} (give a folder, glob, image or video file, "
                              "or a manifest)")


def read_manifest(path: Path) -> list[Path]:
    """The files a manifest lists in its 'path' column; relative paths are relative to the
    manifest's own folder. Every listed file must exist."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as stream:
            reader = csv.DictReader(stream)
            columns = reader.fieldnames or []
            values = [row.get("path") or "" for row in reader] if "path" in columns else None
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as error:  # pyarrow's errors share no base class worth naming
            raise BatchInputError(f"cannot read manifest {path}: {error}") from None
        columns = table.column_names
        values = [str(v) for v in table.column("path").to_pylist()] if "path" in columns else None
    if values is None:
        raise BatchInputError(f"manifest {path} has no 'path' column (it has: "
                              f"{', '.join(columns) or 'none'}); name the column of file paths 'path'")
    listed = [(path.parent / Path(value).expanduser()).resolve() for value in values if value.strip()]
    missing = [p for p in listed if not p.is_file()]
    if missing:
        raise BatchInputError(f"manifest {path} lists {len(missing)} missing file(s), e.g. {missing[0]}")
    unknown = [p for p in listed if not _is_media(p)]
    if unknown:
        raise BatchInputError(f"manifest {path} lists {len(unknown)} file(s) that are neither images "
                              f"nor videos, e.g. {unknown[0]}")
    return listed


def _refuse_output_among_inputs(out: Path, folders: list[Path], files: list[Path]) -> None:
    target = out.expanduser().resolve()
    for folder in folders:
        if target.is_relative_to(folder):
            raise BatchInputError(f"-o {out} lies inside the input folder {folder}: a rerun would "
                                  "read this run's outputs as inputs; choose an output folder "
                                  "outside the inputs")
    inside = [path for path in files if path.is_relative_to(target)]
    if inside:
        raise BatchInputError(f"-o {out} holds inputs (e.g. {inside[0]}); choose an output folder "
                              "that holds none of the inputs")


def _refuse_collisions(stems: list[str], paths: list[Path]) -> None:
    """output_names keeps suffixes where stems meet; a name met after that (a.png beside a
    folder 'a.png/') is refused rather than guessed."""
    seen: dict[str, Path] = {}
    for stem, path in zip(stems, paths, strict=True):
        other = seen.setdefault(stem.lower(), path)
        if other != path:
            raise BatchInputError(f"{other} and {path} would write the same outputs ({stem}_*); "
                                  "rename one of them")


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES and path.is_file()
