"""python -m evo.enjoy: play a run's model, record GIF / MP4, reject bad input with one line.

Three tiny real runs are made once per module (PBT CartPole with 2 ranks, PBT bigfish with 2
ranks, a 1-rank CartPole baseline); most checks call ``evo.enjoy.main`` in-process, and two run
it as a command (``python -m evo.enjoy``) to see the real exit code and streams.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_cmd, run_mpi

from evo import enjoy, recorder

PREFIX = "python -m evo.enjoy: error:"
EPISODE = re.compile(r"^episode (\d+)/(\d+): return (-?[0-9.]+), length (\d+)$", re.M)


def _has(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


VIDEO = importlib.util.find_spec("av") is not None
"""PyAV, evo's ``[video]`` extra (.ci/run installs it): with it, the MP4 tests must run and pass."""


def _mp4_ok() -> bool:
    """Whether evo.enjoy finds an MP4 backend; only its own one-line error counts as "none"."""
    try:
        recorder.mp4_backend()
    except enjoy.ConfigError:
        return False
    return True


def episodes(stdout: str) -> list[tuple[float, int]]:
    """(return, length) of every printed episode line."""
    return [(float(m[3]), int(m[4])) for m in EPISODE.finditer(stdout)]


def gif_frames(path: Path) -> tuple[np.ndarray, list[int]]:
    """Every frame stored in a GIF (as RGB) and its duration in ms."""
    import imageio.v3 as iio
    from PIL import Image, ImageSequence

    frames = iio.imread(path, index=None, plugin="pillow", mode="RGB")
    with Image.open(path) as im:
        durations = [int(f.info["duration"]) for f in ImageSequence.Iterator(im)]
    return frames, durations


def read_mp4(path: Path) -> np.ndarray:
    """Every frame of an MP4, with whichever backend evo.enjoy wrote it."""
    import imageio

    if recorder.mp4_backend() == "pyav":
        return imageio.v3.imread(path, index=None, plugin="pyav")
    with imageio.v2.get_reader(path, format="FFMPEG") as reader:
        return np.stack([frame for frame in reader.iter_data()])


def check_gif(path: Path, steps: int, shape: tuple[int, int, int], delay_ms: int = 30) -> None:
    """The GIF rule: one frame per step played, identical consecutive frames stored once for their summed time."""
    frames, durations = gif_frames(path)
    assert frames.shape[1:] == shape
    assert len(frames) == len(durations) <= steps
    assert all(d % delay_ms == 0 for d in durations)
    assert sum(durations) == steps * delay_ms  # expanded back, exactly one frame per step
    assert not any(np.array_equal(a, b) for a, b in itertools.pairwise(frames))


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = enjoy.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX) and needle in lines[0], lines[0]


# -- runs, made once per module ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("enjoy")


@pytest.fixture(scope="module")
def cartpole(logs: Path) -> Path:
    r = run_mpi(2, "evo.truncation", *TINY, "--generations", "2", "--log-dir", str(logs), "--exp-name", "cp",
                "--no-tb-writer", timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    return logs / "cp"


@pytest.fixture(scope="module")
def bigfish(logs: Path) -> Path:
    r = run_mpi(2, "evo.truncation", "--env-id", "bigfish", "--n-envs", "2", "--n-steps", "64",
                "--steps-per-generation", "128", "--eval-episodes", "1", "--generations", "1",
                "--log-dir", str(logs), "--exp-name", "bf", "--no-tb-writer", timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    return logs / "bf"


@pytest.fixture(scope="module")
def baseline(logs: Path) -> Path:
    r = run_mpi(1, "evo.baseline", "--env-id", "CartPole-v1", "--n-envs", "2", "--n-steps", "128", "--eval-episodes",
                "2", "--num-timesteps", "256", "--eval-every", "256", "--log-dir", str(logs), "--exp-name", "base",
                "--no-tb-writer", timeout=150)
    assert r.returncode == 0, r.stderr[-2000:]
    return logs / "base"


# -- the command, on real runs -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_cartpole_gif(cartpole: Path, tmp_path: Path) -> None:
    """``python -m evo.enjoy RUN --gif x.gif --episodes 2``: returns printed, one frame per step of 400x600."""
    gif = tmp_path / "out" / "cp.gif"
    r = run_cmd([sys.executable, "-m", "evo.enjoy", str(cartpole), "--gif", str(gif), "--episodes", "2"],
                timeout=120)
    if not _has("pygame"):  # CartPole renders with pygame (gymnasium[classic-control])
        assert_bad(r.returncode, r.stderr, "pygame")
        pytest.skip("pygame is not installed: checked the one-line error instead of the GIF")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == ""
    eps = episodes(r.stdout)
    assert len(eps) == 2 and all(1 <= n <= 500 and ret == n for ret, n in eps)  # CartPole: reward 1 a step
    mean = float(re.search(r"^mean return (\S+) ", r.stdout, re.M)[1])  # type: ignore[index]
    assert mean == pytest.approx(np.mean([ret for ret, _ in eps]), abs=0.01)
    assert "best model" in r.stdout and "deterministic actions" in r.stdout  # the run's eval mode
    steps = sum(n for _, n in eps)
    assert f"{steps} frames of 400x600" in r.stdout
    check_gif(gif, steps, (400, 600, 3))
    assert [p.name for p in gif.parent.iterdir()] == ["cp.gif"]  # no temporary file left


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_bigfish_gif_without_mpi(bigfish: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ProcGen frames are the 64x64 observations, x4 by default; --max-frames caps the recording, not the play.

    Played as a plain process (no mpiexec, and mpi4py is never imported), then again in-process with the
    same seed at --scale 1: the same episode, in 64x64 frames.
    """
    gif = tmp_path / "bf.gif"
    code = ("import sys\nfrom evo.enjoy import main\n"
            f"rc = main([{str(bigfish)!r}, '--gif', {str(gif)!r}, '--episodes', '1', '--max-frames', '40', "
            "'--seed', '7'])\nprint('mpi4py imported:', 'mpi4py' in sys.modules)\nsys.exit(rc)\n")
    r = run_cmd([sys.executable, "-c", code], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "mpi4py imported: False" in r.stdout
    assert "seed 7, sampled actions" in r.stdout  # ProcGen runs evaluate with sampled actions by default
    (ret, length), = episodes(r.stdout)
    assert length >= 1 and ret >= 0
    if length > 40:
        assert f"the first 40 of {length} steps (--max-frames)" in r.stdout
    check_gif(gif, min(length, 40), (256, 256, 3))

    small = tmp_path / "small.gif"
    rc, out, err = call(capsys, str(bigfish), "--gif", str(small), "--scale", "1", "--max-frames", "40",
                        "--seed", "7", "--episodes", "1")
    assert rc == 0, err
    assert episodes(out) == [(ret, length)]  # same seed, same episode
    check_gif(small, min(length, 40), (64, 64, 3))


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_members_and_baseline_load(cartpole: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = call(capsys, str(cartpole), "--member", "1", "--episodes", "1")
    assert code == 0, err
    assert "member 1 of generation 2" in out and "(member_001.zip)" in out and len(episodes(out)) == 1
    code, out, err = call(capsys, str(cartpole), "--member", "0", "--generation", "1", "--episodes", "1",
                          "--no-deterministic")
    assert code == 0, err
    assert "member 0 of generation 1" in out and "sampled actions" in out
    code, out, err = call(capsys, str(baseline), "--member", "0", "--episodes", "1")
    assert code == 0, err
    assert "final model of seed 0" in out and "(final_member_000.zip)" in out and len(episodes(out)) == 1
    code, out, err = call(capsys, str(baseline), "--episodes", "1")
    assert code == 0, err
    assert "best model" in out


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_vecnormalize_statistics(cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Statistics beside the model are used frozen, and returns stay raw."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(cartpole / "config.json", run)
    shutil.copy(cartpole / "best_model.zip", run)
    stats = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0), norm_reward=True)
    stats.obs_rms.mean = np.array([0.5, 0.0, 0.0, 0.0])
    stats.save(run / "best_model.vecnormalize.pkl")
    code, out, err = call(capsys, str(run), "--episodes", "2")
    assert code == 0, err
    assert "VecNormalize statistics best_model.vecnormalize.pkl" in out
    assert all(ret == n for ret, n in episodes(out))  # CartPole's raw reward is 1 per step


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_mp4(cartpole: Path, bigfish: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mp4 = tmp_path / "v" / "bf.mp4"
    code, out, err = call(capsys, str(bigfish), "--mp4", str(mp4), "--episodes", "1", "--max-frames", "30")
    if not _mp4_ok():
        assert not VIDEO, "PyAV (the [video] extra) is installed, yet evo.enjoy finds no MP4 backend"
        assert_bad(code, err, "pip install 'evo[video]'")
        assert out == "" and not mp4.parent.exists()  # refused before playing
        pytest.skip("the [video] extra (PyAV) is not installed: checked the one-line error instead")
    assert code == 0, err
    (_, length), = episodes(out)
    assert read_mp4(mp4).shape == (min(length, 30), 256, 256, 3)  # MP4 keeps every frame


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_bare_gif_goes_into_the_run_and_the_report_shows_it(bigfish: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``--gif`` alone writes RUN/winner.gif and a bare name RUN/NAME, never the working directory; the
    report of that run then shows the GIF."""
    from evo.report import make_report

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    winner = bigfish / "winner.gif"
    winner.unlink(missing_ok=True)
    code, out, err = call(capsys, str(bigfish), "--gif", "--episodes", "1", "--max-frames", "12", "--seed", "3")
    assert code == 0, err
    assert f"wrote {winner}: " in out and winner.is_file()
    code, out, err = call(capsys, str(bigfish), "--episodes", "1", "--max-frames", "12", "--gif", "named.gif")
    assert code == 0, err
    assert (bigfish / "named.gif").is_file() and f"wrote {bigfish / 'named.gif'}: " in out
    code, out, err = call(capsys, str(bigfish), "--episodes", "1", "--max-frames", "12", "--gif", "./here.gif")
    assert code == 0, err
    assert (cwd / "here.gif").is_file() and not (bigfish / "here.gif").exists()  # a path with a folder: as given
    assert sorted(p.name for p in cwd.iterdir()) == ["here.gif"]
    (bigfish / "named.gif").unlink()
    report = tmp_path / "report"
    make_report([str(bigfish)], report, reps=100)
    assert (report / "winner_bf.gif").read_bytes() == winner.read_bytes()
    assert 'src="winner_bf.gif"' in (report / "index.html").read_text()
    assert "## Scores at the budget" in (report / "summary.md").read_text()  # one run, no baseline


def test_where_recordings_go(tmp_path: Path) -> None:
    """The path rule of --gif/--mp4, without playing anything."""
    run = tmp_path / "run"
    run.mkdir()
    args = enjoy.build_parser().parse_args([str(run), "--gif"])
    assert args.gif == "" and args.mp4 is None
    assert enjoy.recording_paths(args, run) == (run / "winner.gif", None)
    args = enjoy.build_parser().parse_args([str(run), "--member", "2", "--generation", "5", "--gif", "--mp4"])
    assert enjoy.recording_paths(args, run) == (run / "member_002_gen_5.gif", run / "member_002_gen_5.mp4")
    assert enjoy.default_stem(1, None) == "member_001"
    assert enjoy.output_path(run, "clip.gif", "winner", ".gif") == run / "clip.gif"
    assert enjoy.output_path(run, "./clip.gif", "winner", ".gif") == Path("clip.gif")
    assert enjoy.output_path(run, "out/clip.gif", "winner", ".gif") == Path("out/clip.gif")
    assert enjoy.output_path(run, str(tmp_path / "abs.gif"), "winner", ".gif") == tmp_path / "abs.gif"
    assert enjoy.output_path(run, None, "winner", ".gif") is None
    with pytest.raises(enjoy.ConfigError, match="--gif and --mp4 name the same file"):
        enjoy.recording_paths(enjoy.build_parser().parse_args([str(run), "--gif", "x", "--mp4", "x"]), run)
    (run / "folder").mkdir()
    with pytest.raises(enjoy.ConfigError, match="is a folder: name a file"):
        enjoy.recording_paths(enjoy.build_parser().parse_args([str(run), "--gif", "folder"]), run)


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_bad_input(cartpole: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cp = str(cartpole)
    cases = [
        ([str(tmp_path / "missing")], "no such run directory"),
        ([str(tmp_path)], "no config.json"),
        ([cp, "--member", "2"], "--member 2 is out of range: the run has 2 member(s), 0 to 1"),
        ([cp, "--member", "-1"], "--member must be >= 0"),
        ([cp, "--member", "0", "--generation", "0"], "available: 1, 2 (only the two newest are kept)"),
        ([cp, "--generation", "2"], "--generation needs --member"),
        ([cp, "--episodes", "0"], "--episodes must be >= 1"),
        ([cp, "--episodes", "x"], "invalid int value: 'x'"),
        ([cp, "--max-frames", "0"], "--max-frames must be >= 1"),
        ([cp, "--scale", "0"], "--scale must be an integer >= 1"),
        ([cp, "--fps", "0"], "--fps must be > 0"),
        ([cp, "--test-levels", "--episodes", "1"], "--test-levels needs a ProcGen run"),
        ([cp, "--no-such-flag"], "unrecognized arguments"),
    ]
    for argv, needle in cases:
        code, out, err = call(capsys, *argv)
        assert_bad(code, err, needle)
        assert out == "", argv
    # A run without best_model.zip (unfinished): say how to pick a member instead.
    run = tmp_path / "unfinished"
    run.mkdir()
    shutil.copy(cartpole / "config.json", run)
    code, out, err = call(capsys, str(run))
    assert_bad(code, err, "has no best_model.zip")
    assert "--member K" in err
    code, _, err = call(capsys, str(run), "--member", "0")
    assert_bad(code, err, "has no checkpoint of member 0 (checkpoints/gen_*/member_000.manifest.json)")
    # The same through the command: exit code 2, one line, no traceback.
    r = run_cmd([sys.executable, "-m", "evo.enjoy", cp, "--episodes", "-3"], timeout=60)
    assert_bad(r.returncode, r.stderr, "--episodes must be >= 1")
    assert r.stdout == ""


def test_unknown_algo_and_parent_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No run needed: a config naming an unknown algorithm; a folder of runs names them."""
    run = tmp_path / "logs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"config": {"env_id": "CartPole-v1", "algo": "muzero", "seed": 0}}')
    (run / "best_model.zip").write_bytes(b"")
    code, _, err = call(capsys, str(run))
    assert_bad(code, err, "'muzero' is not one enjoy can load (known: ppo, a2c, sac, td3, dqn)")
    code, _, err = call(capsys, str(tmp_path / "logs"))
    assert_bad(code, err, "it contains run directories: r1")


def test_mp4_backend_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(enjoy.ConfigError, match=re.escape("pip install 'evo[video]'")):
        recorder.Recorder(None, str(tmp_path / "x.mp4"), 30.0, 1, 10)


# -- the recorder, on synthetic frames -------------------------------------------------------------
def test_recorder_gif_rule(tmp_path: Path) -> None:
    """Upscaling, the frame cap, merged repeats with summed time, atomic write, parent dirs."""
    gif = tmp_path / "a" / "b" / "x.gif"
    rec = recorder.Recorder(str(gif), None, 25.0, 3, 5)  # 25 fps -> 40 ms per frame
    colors = [(255, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 255), (9, 9, 9)]
    for c in colors:
        if not rec.full:
            rec.add(np.full((4, 6, 3), c, dtype=np.uint8))
    assert rec.frames == 5 and rec.full
    lines = rec.finish(steps=6)
    frames, durations = gif_frames(gif)
    assert frames.shape == (3, 12, 18, 3)
    assert durations == [80, 40, 80]
    assert [tuple(int(v) for v in f[0, 0]) for f in frames] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert lines == [f"wrote {gif}: 5 frames of 12x18 at 25 fps (GIF frame time 40 ms; 3 stored, identical "
                     "consecutive frames merged), the first 5 of 6 steps (--max-frames)"]
    assert sorted(p.name for p in gif.parent.iterdir()) == ["x.gif"]


def test_recorder_discard_and_grey(tmp_path: Path) -> None:
    gif = tmp_path / "x.gif"
    rec = recorder.Recorder(str(gif), None, 30.0, 1, 10)
    rec.add(np.zeros((5, 5), dtype=np.uint8))  # grey frames become RGB
    rec.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(enjoy.ConfigError, match="renders no rgb_array frames"):
        recorder.Recorder(str(gif), None, 30.0, 1, 10).add(None)


@pytest.mark.skipif(not VIDEO and not _mp4_ok(), reason="the [video] extra (PyAV) is not installed")
def test_recorder_mp4_odd_size(tmp_path: Path) -> None:
    mp4 = tmp_path / "x.mp4"
    rec = recorder.Recorder(None, str(mp4), 10.0, 1, 100)
    for i in range(7):
        rec.add(np.full((33, 21, 3), 30 * i, dtype=np.uint8))
    rec.finish(steps=7)
    assert read_mp4(mp4).shape == (7, 34, 22, 3)
