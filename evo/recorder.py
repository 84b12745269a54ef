"""Recording frames as an animated GIF or an MP4 (for ``python -m evo.enjoy --gif/--mp4``).

Frames, as evo.enjoy records them: one frame per step, the screen the agent chose that step's
action on (Gymnasium: ``env.render()`` with ``render_mode="rgb_array"``, at ``--scale`` 1 by
default; ProcGen: the 64x64 observation the agent sees, ``--scale`` 4 by default). So the number of
frames recorded is the number of steps played, at most ``--max-frames``; the screen after an
episode's last action is not shown (vectorised envs reset at once, and ProcGen never exposes it).
Once ``--max-frames`` frames are recorded, the episodes are still played to the end (their returns
stay exact) but no longer recorded.

* MP4 keeps every frame, at ``--fps`` (needs imageio-ffmpeg or PyAV: ``pip install 'evo[video]'``);
  a frame with an odd height or width gets one edge row or column repeated (H.264 needs even sizes).
* GIF (imageio's pillow plugin): each frame shows for ``round(100 / fps)`` hundredths of a second,
  at least 2 (GIF's time unit; 30 fps is shown as 3/100 s, at most 50 fps). Pillow stores a run of
  identical consecutive frames as one frame that shows for their summed time, so a GIF may hold
  fewer frames than were recorded; its total duration is always frames recorded x the frame time.

Files are written to a temporary file beside the target, then renamed; parent folders are created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evo.errors import ConfigError

VIDEO_HINT = "pip install 'evo[video]'"


def _even(frame: Any) -> Any:
    """Repeat the last row / column of ``frame`` where its height / width is odd (H.264 needs even)."""
    import numpy as np

    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def mp4_backend() -> str:
    """``"ffmpeg"`` (imageio-ffmpeg) or ``"pyav"`` (PyAV), whichever works; else a :class:`ConfigError`."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return "ffmpeg"
    except Exception:  # not installed, or an install that cannot start (old versions need pkg_resources)
        pass
    try:
        import av  # noqa: F401

        return "pyav"
    except Exception:
        pass
    raise ConfigError(f"--mp4 needs imageio-ffmpeg (or PyAV): {VIDEO_HINT}")


class _Mp4Writer:
    def __init__(self, path: Path, fps: float, backend: str) -> None:
        import imageio

        self.backend = backend
        if backend == "ffmpeg":
            self._w: Any = imageio.v2.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                                 pixelformat="yuv420p", macro_block_size=1,
                                                 ffmpeg_log_level="error")
        else:
            self._w = imageio.v3.imopen(path, "w", plugin="pyav")
            self._w.init_video_stream("libx264", fps=fps)

    def add(self, frame: Any) -> None:
        if self.backend == "ffmpeg":
            self._w.append_data(_even(frame))
        else:
            self._w.write_frame(_even(frame))

    def close(self) -> None:
        self._w.close()


class _GifWriter:
    def __init__(self, path: Path, fps: float) -> None:
        import imageio

        self.delay_ms = 10 * max(2, round(100 / fps))  # viewers show shorter GIF delays as 1/10 s
        self._w: Any = imageio.v3.imopen(path, "w", plugin="pillow", extension=".gif")

    def add(self, frame: Any) -> None:
        # bits=8: imageio keeps the frame quantised to 256 colours (what a GIF stores anyway), not as RGB.
        self._w.write(frame, is_batch=False, duration=self.delay_ms, loop=0, bits=8)

    def close(self) -> None:
        self._w.close()


@dataclass
class _Output:
    kind: str  # "gif" or "mp4"
    path: Path
    tmp: Path
    writer: Any = None


def gif_frame_count(path: Path) -> int:
    """Frames stored in a GIF (Pillow merges identical consecutive frames, so maybe fewer than written)."""
    from PIL import Image

    with Image.open(path) as im:
        return int(getattr(im, "n_frames", 1))


class Recorder:
    """Collects frames (upscaled by ``scale``) into GIF / MP4 files written atomically on :meth:`finish`."""

    def __init__(self, gif: str | Path | None, mp4: str | Path | None, fps: float, scale: int,
                 max_frames: int) -> None:
        self.fps = fps
        self.scale = scale
        self.max_frames = max_frames
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self._mp4_backend = mp4_backend() if mp4 is not None else None
        self.outputs: list[_Output] = []
        for kind, name in (("gif", gif), ("mp4", mp4)):
            if name is not None:
                path = Path(name)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.{kind}")
                self.outputs.append(_Output(kind, path, tmp))

    @property
    def full(self) -> bool:
        return self.frames >= self.max_frames

    def add(self, frame: Any) -> None:
        import numpy as np

        if frame is None:
            raise ConfigError("the env renders no rgb_array frames, so --gif/--mp4 cannot record it")
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = np.stack([frame] * 3, axis=-1)
        frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
        if self.scale > 1:
            frame = frame.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        if self.frames == 0:
            self.size = (int(frame.shape[0]), int(frame.shape[1]))
            for out in self.outputs:
                out.path.parent.mkdir(parents=True, exist_ok=True)
                out.writer = _GifWriter(out.tmp, self.fps) if out.kind == "gif" else \
                    _Mp4Writer(out.tmp, self.fps, str(self._mp4_backend))
        for out in self.outputs:
            out.writer.add(frame)
        self.frames += 1

    def finish(self, steps: int) -> list[str]:
        """Close the files and move them into place; one line of description per file."""
        from evo.records import atomic_replace

        lines = []
        for out in self.outputs:
            if out.writer is None:
                continue
            out.writer.close()
            atomic_replace(out.tmp, out.path)
            assert self.size is not None
            h, w = self.size
            if out.kind == "gif":
                stored = gif_frame_count(out.path)
                merged = f"; {stored} stored, identical consecutive frames merged" if stored != self.frames else ""
                rate = f"{100 / (out.writer.delay_ms / 10):.4g} fps (GIF frame time {out.writer.delay_ms} ms{merged})"
            else:
                rate = f"{self.fps:.4g} fps"
            capped = f", the first {self.frames} of {steps} steps (--max-frames)" if steps > self.frames else ""
            lines.append(f"wrote {out.path}: {self.frames} frames of {h}x{w} at {rate}{capped}")
        return lines

    def discard(self) -> None:
        """Drop unfinished files (after an error)."""
        for out in self.outputs:
            if out.writer is not None:
                try:
                    out.writer.close()
                except Exception:
                    pass
            out.tmp.unlink(missing_ok=True)
