"""ffmpeg renderer, pure tier: params per preset, argv building, progress parsing, the raw policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from farm.models import ErrorKind
from farm.render import RendererEnv, RenderError
from renderers.ffmpeg import (
    FfmpegRenderer,
    build_argv,
    classify_failure,
    concat_list,
    parse_progress,
)
from renderers.ffmpeg_params import FfmpegParams
from renderers.ffmpeg_raw import check_filtergraph, plan_raw

IN = Path("/in/clip.mp4")
OUT = Path("/stage/out.mp4")
COMMON = ["-nostdin", "-hide_banner", "-nostats", "-y", "-progress", "pipe:1"]


def params(**values: Any) -> FfmpegParams:
    return FfmpegParams.model_validate(values)


def test_transcode_argv() -> None:
    p = params(
        input="clip.mp4", output="out.mp4", video_codec="libx264", crf=23, speed="fast", scale="-2:720"
    )
    argv = build_argv(p, inputs=[IN], outputs=[OUT], executable="/usr/bin/ffmpeg", stats_period=0.25)
    assert argv[0] == "/usr/bin/ffmpeg"
    assert all(flag in argv for flag in COMMON)
    assert argv[argv.index("-stats_period") + 1] == "0.25"
    i = argv.index("-i")
    assert argv[i + 1] == str(IN) and argv[i - 2] == "-format_whitelist"
    assert argv[i + 2 :] == [
        "-c:v",
        "libx264",
        "-crf",
        "23",
        "-preset",
        "fast",
        "-vf",
        "scale=-2:720",
        str(OUT),
    ]


def test_transcode_audio_modes() -> None:
    assert "-an" in build_argv(
        params(input="a.mp4", output="b.mp4", audio="none"), inputs=[IN], outputs=[OUT]
    )
    argv = build_argv(params(input="a.mp4", output="b.mp4", audio="aac"), inputs=[IN], outputs=[OUT])
    assert argv[-3:] == ["-c:a", "aac", str(OUT)]


def test_concat_argv_uses_the_list_file_and_copies_by_default() -> None:
    p = params(preset="concat", inputs=["a.mp4", "b.mp4"], output="out.mp4")
    argv = build_argv(p, inputs=[IN, IN], outputs=[OUT], list_file=Path("/stage/.list"))
    i = argv.index("-i")
    assert argv[i + 1] == "/stage/.list"
    assert argv[argv.index("-f") + 1] == "concat" and argv[argv.index("-safe") + 1] == "0"
    assert argv[i - 1].endswith(",concat")  # the whitelist allows the concat demuxer for the list only
    assert argv[i + 2 :] == ["-c", "copy", str(OUT)]
    reencode = params(preset="concat", inputs=["a.mp4"], output="o.mp4", crf=30)
    assert "copy" not in build_argv(reencode, inputs=[IN], outputs=[OUT], list_file=Path("/l"))


def test_thumbnail_argv_seeks_before_input() -> None:
    p = params(preset="thumbnail", input="clip.mp4", output="thumb.png", time=1.5, scale="320:-1")
    argv = build_argv(p, inputs=[IN], outputs=[Path("/stage/thumb.png")])
    assert argv.index("-ss") < argv.index("-i")
    assert argv[argv.index("-ss") + 1] == "1.5"
    assert argv[-7:] == ["-frames:v", "1", "-update", "1", "-vf", "scale=320:-1", "/stage/thumb.png"]


def test_raw_argv_substitutes_confined_paths_in_place() -> None:
    p = params(
        preset="raw", args=["-ss", "1", "-i", "in/clip.mp4", "-vf", "scale=160:-2", "-an", "small.mp4"]
    )
    argv = build_argv(p, inputs=[IN], outputs=[Path("/stage/small.mp4")])
    tail = argv[argv.index("-ss") :]
    assert tail[:6] == ["-ss", "1", "-format_whitelist", tail[3], "-i", str(IN)]
    assert tail[6:] == ["-vf", "scale=160:-2", "-an", "/stage/small.mp4"]


def test_shell_metacharacters_stay_one_literal_argument() -> None:
    name = "a;b $(touch x) `id` | c.mp4"
    argv = build_argv(params(input="in.mp4", output=name), inputs=[IN], outputs=[Path("/stage") / name])
    assert argv[-1] == f"/stage/{name}"


@pytest.mark.parametrize(
    "bad",
    [
        {"input": "clip.mp4"},  # no output
        {"output": "out.mp4"},  # no input
        {"input": "../clip.mp4", "output": "out.mp4"},
        {"input": "/etc/passwd", "output": "../out.mp4"},
        {"input": "clip.mp4", "output": "sub/out.mp4"},
        {"input": "clip.mp4", "output": "-y.mp4"},
        {"input": "clip.mp4", "output": "out.exe"},
        {"input": "clip.mp4", "output": "out.mp4", "scale": "iw/2:ih/2"},
        {"input": "clip.mp4", "output": "out.mp4", "crf": 99},
        {"input": "clip.mp4", "output": "out.mp4", "video_codec": "copy", "crf": 20},
        {"input": "clip.mp4", "output": "out.mp4", "video_codec": "h264_nvenc"},
        {"input": "clip.mp4", "output": "out.mp4", "time": 3},  # time is for thumbnails
        {"input": "clip.mp4", "output": "out.mp4", "args": ["-i", "x"]},
        {"input": "http://evil.example/x.mp4", "output": "out.mp4"},
        {"input": "file:/etc/passwd", "output": "out.mp4"},
        {"input": "concat:a.mp4|b.mp4", "output": "out.mp4"},
        {"input": "clip\x00.mp4", "output": "out.mp4"},
        {"preset": "thumbnail", "input": "clip.mp4", "output": "t.mp4"},
        {"preset": "thumbnail", "input": "clip.mp4", "output": "t.png", "crf": 3},
        {"preset": "concat", "inputs": [], "output": "o.mp4"},
        {"preset": "concat", "inputs": ["a.mp4", "../b.mp4"], "output": "o.mp4"},
        {"preset": "concat", "inputs": ["a\n.mp4"], "output": "o.mp4"},
        {"preset": "raw"},
        {"preset": "nope", "input": "a.mp4", "output": "b.mp4"},
        {"input": "a.mp4", "output": "b.mp4", "extra": 1},
    ],
)
def test_params_refuse_bad_and_hostile_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        params(**bad)


def test_validate_checks_absolute_inputs_against_roots() -> None:
    env = RendererEnv(Path("/d"), Path("/o"), (Path("/srv/in"),), Path("/l"))
    renderer = FfmpegRenderer(env=env)
    assert renderer.validate({"input": "/srv/in/a.mp4", "output": "b.mp4"}).input == "/srv/in/a.mp4"
    for bad in (
        {"input": "/etc/a.mp4", "output": "b.mp4"},
        {"preset": "raw", "args": ["-i", "/etc/a.mp4", "b.mp4"]},
    ):
        with pytest.raises(RenderError) as caught:
            renderer.validate(bad)
        assert caught.value.kind is ErrorKind.INVALID_INPUT


@pytest.mark.parametrize(
    ("line", "total", "expected"),
    [
        ("out_time_us=1500000", 3.0, 50.0),
        ("out_time_ms=1500000", 3.0, 50.0),  # misnamed by ffmpeg: microseconds too
        ("out_time_us=N/A", 3.0, None),
        ("out_time_us=9000000", 3.0, 99.0),  # never 100 before progress=end
        ("out_time_us=-20000", 3.0, 0.0),
        ("out_time_us=1500000", None, None),
        ("out_time_us=1500000", 0.0, None),
        ("progress=end", None, 100.0),
        ("progress=continue", 3.0, None),
        ("out_time=00:00:01.500000", 3.0, None),
        ("frame=12", 3.0, None),
        ("garbage", 3.0, None),
        ("", 3.0, None),
    ],
)
def test_parse_progress(line: str, total: float | None, expected: float | None) -> None:
    assert parse_progress(line, total) == expected


def test_concat_list_escapes_quotes() -> None:
    text = concat_list([Path("/in/it's.mp4"), Path("/in/b.mp4")])
    assert text.splitlines() == ["ffconcat version 1.0", "file '/in/it'\\''s.mp4'", "file '/in/b.mp4'"]
    with pytest.raises(RenderError):
        concat_list([Path("/in/a\nfile '/etc/passwd'")])


def test_classify_failure() -> None:
    bad = classify_failure(1, ["/in/x.mp4: Invalid data found when processing input"])
    assert bad.kind is ErrorKind.INVALID_INPUT and "Invalid data" in bad.message
    assert classify_failure(-9, ["killed"]).kind is ErrorKind.UNKNOWN
    assert classify_failure(1, ["Conversion failed!", "No space left on device"]).kind is ErrorKind.UNKNOWN
    assert classify_failure(1, []).message.endswith("exit code 1")


# --- the raw preset's policy -------------------------------------------------------------------


def test_raw_plan_finds_inputs_outputs_and_limit() -> None:
    args = ["-re", "-i", "a.mp4", "-i", "b.wav", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-t", "2.5"]
    plan = plan_raw([*args, "-metadata", "title=Hi; $(x)", "out.mp4", "-vn", "out.wav"])
    assert [plan.args[i] for i in plan.inputs] == ["a.mp4", "b.wav"]
    assert [plan.args[i] for i in plan.outputs] == ["out.mp4", "out.wav"]
    assert plan.limit == 2.5


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["-f", "lavfi", "-i", "testsrc", "o.mp4"], "format"),
        (["-f", "concat", "-i", "list.txt", "o.mp4"], "format"),
        (["-f", "v4l2", "-i", "video0", "o.mp4"], "format"),
        (["-f", "x11grab", "-i", "d.mp4", "o.mp4"], "format"),
        (["-i", "http://evil.example/x.mp4", "o.mp4"], "URL"),
        (["-i", "file:/etc/passwd", "o.mp4"], "URL"),
        (["-i", "concat:a.mp4|b.mp4", "o.mp4"], "URL"),
        (["-i", "subfile,,start,0,end,0,,:/etc/passwd", "o.mp4"], "URL"),
        (["-i", "../secret.mp4", "o.mp4"], "escapes"),
        (["-i", "/etc/passwd", "o.mp4"], None),  # absolute: refused by validate()/confine against roots
        (["-i", "a.mp4", "/tmp/o.mp4"], "plain file name"),
        (["-i", "a.mp4", "../o.mp4"], "plain file name"),
        (["-i", "a.mp4", "-"], "must not start with"),
        (["-i", "a.mp4"], "output"),
        (["o.mp4"], "input"),
        (["o.mp4", "-i", "a.mp4"], "before"),
        (["-i", "a.mp4", "o.mp4", "o.mp4"], "twice"),
        (["-i", "a.mp4", "-c:v"], "needs a value"),
        (["-i", "a.mp4", "-filter_complex_script", "f.txt", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-attach", "/etc/passwd", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-dump_attachment:t", "x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-vstats_file", "/tmp/x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-passlogfile", "/tmp/x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-x264-params", "stats=/tmp/x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-report", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-sdp_file", "/tmp/x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-filter_script", "f.txt", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-fpre", "/tmp/x.ffpreset", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-vpre", "x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-x265-params", "stats=/tmp/x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-svtav1-params", "stat-file=/tmp/x", "o.mp4"], "not allowed"),
        (["-i", "a.mp4", "-/vf", "graph.txt", "o.mp4"], "not allowed"),  # ffmpeg 7: value from a file
        (["-i", "a.mp4", "-stats_enc_pre", "/tmp/x", "o.mp4"], "not allowed"),
        # filter options: only listed names, and few enough unnamed values to never reach the rest
        (
            [
                "-i",
                "a.mp4",
                "-lavfi",
                "split[a][b];[a]palettegen[p];[b][p]paletteuse=debug_kdtree=/tmp/x",
                "o.gif",
            ],
            "debug_kdtree",
        ),
        (["-i", "a.mp4", "-vf", "paletteuse=bayer:2:0:0:128:0:/tmp/x", "o.gif"], "at most 1 unnamed"),
        (["-i", "a.mp4", "-vf", "scale=/w=/etc/passwd", "o.mp4"], "'/w'"),  # ffmpeg 7: value from a file
        (["-i", "a.mp4", "-vf", "scale=w=2:h=2:nope=1", "o.mp4"], "'nope' of 'scale'"),
        (["-i", "a.mp4", "-vf", "scale=w=2:2", "o.mp4"], "after a named option"),
        (["-i", "a.mp4", "-vf", "fps=10:0:up", "o.mp4"], "at most 1 unnamed"),
        (["-i", "a.mp4", "-vf", "hflip=x", "o.mp4"], "at most 0 unnamed"),
        (["-i", "a.mp4", "-vf", "scale=2:2:=3", "o.mp4"], "option '' of 'scale'"),
        (["-i", "a.mp4", "-vf", "scale@x y=2:2", "o.mp4"], "cannot read filter"),
        (["-i", "a.mp4", "-vf", "movie=/etc/passwd", "o.mp4"], "movie"),
        (["-i", "a.mp4", "-vf", "subtitles=x.srt", "o.mp4"], "subtitles"),
        (["-i", "a.mp4", "-vf", "scale=2:2,drawtext=textfile=/etc/passwd", "o.mp4"], "drawtext"),
        (["-i", "a.mp4", "-lavfi", "[0:v]split[a][b];[a]zmq[c]", "o.mp4"], "zmq"),
        (["-i", "a.mp4", "-af", "amovie=/etc/passwd", "o.mp4"], "amovie"),
        (["-i", "a.mp4", "-vf", "scale='iw/2':-2", "o.mp4"], "quotes"),
        (["-i", "a.mp4", "-vf", "scale=iw/2\\:x", "o.mp4"], "quotes"),
        (["-i", "a\x00.mp4", "o.mp4"], "bad value"),
        (["-i", "a\ud800.mp4", "o.mp4"], "bad value"),
        (["-i", "a.mp4", "-metadata", "title=\udcff", "o.mp4"], "bad value"),
        (["-i", "a.mp4", "o\ud800.mp4"], "bad ffmpeg argument"),
        (["-i", "a.mp4", "-" + "x" * 1999, "o.mp4"], "not allowed"),
        ([], "non-empty"),
    ],
)
def test_raw_plan_refuses(args: list[str], why: str | None) -> None:
    if why is None:
        plan_raw(args)  # lexically fine; the roots decide later
        return
    with pytest.raises(RenderError, match=why) as caught:
        plan_raw(args)
    assert caught.value.kind is ErrorKind.INVALID_INPUT


def test_raw_outputs_become_absolute_so_no_protocol_is_ever_read() -> None:
    p = params(preset="raw", args=["-i", "a.mp4", "pipe:1"])
    argv = build_argv(p, inputs=[IN], outputs=[Path("/stage/pipe:1")])
    assert argv[-1] == "/stage/pipe:1" and argv.count("pipe:1") == 1  # only our own -progress pipe:1


@pytest.mark.parametrize(
    "graph",
    [
        "scale=320:-2",
        "scale=320:-2,fps=10,format=yuv420p",
        "[0:v][1:v]overlay=10:10[v];[v]fade=t=in:d=1[out]",
        "split[a][b];[a]palettegen[p];[b][p]paletteuse",
        "scale@small=160:-2",
        "scale=w=320:h=-2:flags=lanczos,setsar=1",
        "split[a][b];[a]palettegen=max_colors=64:stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=3",
        "paletteuse=sierra2_4a:diff_mode=rectangle",
        "crop=100:100:10:10,pad=200:200:50:50:black,fade=in:0:25",
        "colorchannelmixer=.393:.769:.189:0:.349:.686:.168:0:.272:.534:.131",
        "drawbox=x=10:y=10:w=50:h=50:color=red@0.5:t=fill:enable=gte(t*2-1)",
        "pan=stereo|c0=FL|c1=FR,volume=0.5,aresample=44100",
        " scale = 2:2 , fps = 10 ",
    ],
)
def test_allowed_filtergraphs(graph: str) -> None:
    check_filtergraph(graph)
