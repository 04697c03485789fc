"""Which ffmpeg filters, and which of their options, the ffmpeg renderer's ``raw`` preset allows.

Used by ``renderers.ffmpeg_raw`` on every ``-vf``/``-af``/``-filter_complex`` value. A filter
option is a value ffmpeg may act on (``paletteuse=debug_kdtree=/any/path`` creates that file), so
checking filter names is not enough: every option given by name must be on the filter's list
below, and values given without a name may only fill the first few options (ffmpeg assigns
unnamed values to the filter's options in table order, so a long enough run of them reaches any
option). No option on these lists names a file, device or URL; ``tests/renderers`` checks the
lists against the installed ffmpeg's own option tables. Pure functions, no I/O.

How ffmpeg reads a graph, and so how we read it: chains split on ``;``, filters on ``,``, then
``[labels]name@instance=args[labels]``; ``args`` split on ``:``, each ``key=value`` (a key being
letters, digits and ``_-./``, which also catches ffmpeg 7's ``/key=file`` load-from-file form)
or an unnamed value. Quotes and backslashes are refused outright, so no escaping can make ffmpeg
see a different split than we do.
"""

from __future__ import annotations

import re

from farm.models import ErrorKind
from farm.render import RenderError

from .paths import show

# fmt: off
# filter: (how many unnamed values it may take, the option names it may be given)
FILTER_OPTIONS: dict[str, tuple[int, str]] = {
    "acopy": (0, ""),
    "acrossfade": (0, "nb_samples ns duration d overlap o curve1 c1 curve2 c2"),
    "afade": (3, "type t start_sample ss nb_samples ns start_time st duration d curve c"),
    "afifo": (0, ""),
    "aformat": (1, "sample_fmts f sample_rates r channel_layouts cl"),
    "alphaextract": (0, ""),
    "alphamerge": (0, "eof_action shortest repeatlast"),
    "amerge": (1, "inputs"),
    "amix": (1, "inputs duration dropout_transition weights normalize"),
    "anull": (0, ""),
    "anullsrc": (2, "channel_layout cl sample_rate r nb_samples n duration d"),
    "apad": (0, "packet_size pad_len whole_len pad_dur whole_dur"),
    "aresample": (1, "sample_rate"),
    "areverse": (0, ""),
    "aselect": (1, "expr e outputs n"),
    "asetpts": (1, "expr"),
    "asettb": (1, "expr tb"),
    "asplit": (1, "outputs"),
    "atempo": (1, "tempo"),
    "atrim": (2, "start starti end endi start_pts end_pts duration durationi start_sample end_sample"),
    "blend": (0, "c0_mode c1_mode c2_mode c3_mode all_mode c0_expr c1_expr c2_expr c3_expr all_expr "
                 "c0_opacity c1_opacity c2_opacity c3_opacity all_opacity eof_action shortest repeatlast"),
    "boxblur": (6, "luma_radius lr luma_power lp chroma_radius cr chroma_power cp alpha_radius ar "
                   "alpha_power ap"),
    "bwdif": (3, "mode parity deint"),
    "chromakey": (3, "color similarity blend yuv"),
    "color": (1, "color c size s rate r duration d sar"),
    "colorbalance": (9, "rs gs bs rm gm bm rh gh bh pl"),
    "colorchannelmixer": (16, "rr rg rb ra gr gg gb ga br bg bb ba ar ag ab aa pc pa"),
    "colorkey": (3, "color similarity blend"),
    "colorlevels": (16, "rimin gimin bimin aimin rimax gimax bimax aimax romin gomin bomin aomin "
                        "romax gomax bomax aomax preserve"),
    "concat": (3, "n v a unsafe"),
    "copy": (0, ""),
    "crop": (4, "out_w w out_h h x y keep_aspect exact"),
    "deband": (0, "1thr 2thr 3thr 4thr range r direction d blur b coupling c"),
    "deblock": (0, "filter block alpha beta gamma delta planes"),
    "drawbox": (6, "x y width w height h color c thickness t replace box_source"),
    "drawgrid": (6, "x y width w height h color c thickness t replace"),
    "dynaudnorm": (0, "framelen f gausssize g peak p maxgain m targetrms r coupling n correctdc c "
                      "altboundary b compress s threshold t channels h overlap o"),
    "eq": (4, "contrast brightness saturation gamma gamma_r gamma_g gamma_b gamma_weight eval"),
    "equalizer": (4, "frequency f width_type t width w gain g mix m channels c normalize n transform a "
                     "precision r blocksize b"),
    "fade": (3, "type t start_frame s nb_frames n alpha start_time st duration d color c"),
    "fifo": (0, ""),
    "format": (1, "pix_fmts"),
    "fps": (1, "fps start_time round eof_action"),
    "framerate": (1, "fps interp_start interp_end scene flags"),
    "gblur": (2, "sigma steps planes sigmaV"),
    "hflip": (0, ""),
    "highpass": (1, "frequency f width_type t width w poles p mix m channels c normalize n transform a "
                    "precision r blocksize b"),
    "hstack": (1, "inputs shortest"),
    "hue": (4, "h s H b"),
    "loudnorm": (0, "I i LRA lra TP tp measured_I measured_i measured_LRA measured_lra measured_TP "
                    "measured_tp measured_thresh offset linear dual_mono print_format"),
    "lowpass": (1, "frequency f width_type t width w poles p mix m channels c normalize n transform a "
                   "precision r blocksize b"),
    "lut": (0, "c0 c1 c2 c3 y u v r g b a"),
    "lutrgb": (0, "c0 c1 c2 c3 y u v r g b a"),
    "lutyuv": (0, "c0 c1 c2 c3 y u v r g b a"),
    "minterpolate": (1, "fps mi_mode mc_mode me_mode me mb_size search_param vsbmc scd scd_threshold"),
    "negate": (0, "components negate_alpha"),
    "noise": (0, "all_seed all_strength alls all_flags allf c0_seed c0_strength c0s c0_flags c0f "
                 "c1_seed c1_strength c1s c1_flags c1f c2_seed c2_strength c2s c2_flags c2f "
                 "c3_seed c3_strength c3s c3_flags c3f"),
    "null": (0, ""),
    "overlay": (2, "x y eof_action eval shortest format repeatlast alpha"),
    "pad": (5, "width w height h x y color eval aspect"),
    "palettegen": (1, "max_colors reserve_transparent transparency_color stats_mode use_alpha"),
    # not debug_kdtree: it writes a Graphviz file to any path it is given
    "paletteuse": (1, "dither bayer_scale diff_mode new alpha_threshold use_alpha color_search mean_err "
                      "debug_accuracy"),
    "pan": (1, "args"),
    "reverse": (0, ""),
    "rotate": (1, "angle a out_w ow out_h oh fillcolor c bilinear"),
    "scale": (2, "w width h height flags interl in_color_matrix out_color_matrix in_range out_range "
                 "in_v_chr_pos in_h_chr_pos out_v_chr_pos out_h_chr_pos force_original_aspect_ratio "
                 "force_divisible_by param0 param1 eval"),
    "select": (1, "expr e outputs n"),
    "setdar": (1, "dar ratio r max"),
    "setpts": (1, "expr"),
    "setsar": (1, "sar ratio r max"),
    "settb": (1, "expr tb"),
    "smartblur": (6, "luma_radius lr luma_strength ls luma_threshold lt chroma_radius cr chroma_strength cs "
                     "chroma_threshold ct"),
    "split": (1, "outputs"),
    "tblend": (0, "c0_mode c1_mode c2_mode c3_mode all_mode c0_expr c1_expr c2_expr c3_expr all_expr "
                  "c0_opacity c1_opacity c2_opacity c3_opacity all_opacity"),
    "thumbnail": (1, "n"),
    "tile": (1, "layout nb_frames margin padding color overlap init_padding"),
    "tpad": (0, "start stop start_mode stop_mode start_duration stop_duration color"),
    "transpose": (1, "dir passthrough"),
    "trim": (2, "start starti end endi start_pts end_pts duration durationi start_frame end_frame"),
    "unsharp": (9, "luma_msize_x lx luma_msize_y ly luma_amount la chroma_msize_x cx chroma_msize_y cy "
                   "chroma_amount ca alpha_msize_x ax alpha_msize_y ay alpha_amount aa"),
    "vflip": (0, ""),
    "vignette": (1, "angle a x0 y0 mode eval dither aspect"),
    "volume": (1, "volume precision eval replaygain replaygain_preamp replaygain_noclip"),
    "vstack": (1, "inputs shortest"),
    "xfade": (0, "transition duration offset expr"),
    "xstack": (2, "inputs layout grid shortest fill"),
    "yadif": (3, "mode parity deint"),
    "zoompan": (0, "zoom z x y d s fps"),
}
# fmt: on
COMMON_OPTIONS = frozenset({"enable"})  # timeline support: an expression, never a file
FILTERS = frozenset(FILTER_OPTIONS)
ALLOWED: dict[str, tuple[int, frozenset[str]]] = {
    name: (unnamed, frozenset(names.split()) | COMMON_OPTIONS)
    for name, (unnamed, names) in FILTER_OPTIONS.items()
}

_LABELS = re.compile(r"^(\[[^\[\]]*\])*")
_TRAILING_LABELS = re.compile(r"(\[[^\[\]]*\])*$")
_FILTER = re.compile(r"^([a-z0-9_]+)(@[A-Za-z0-9_]+)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_./-]*)\s*=")  # ffmpeg's is_key_char set, then '='


def _invalid(message: str) -> RenderError:
    return RenderError(ErrorKind.INVALID_INPUT, message)


def check_filter(item: str) -> None:
    """Vet one ``[in]name@id=args[out]`` element of a chain: its name and every option."""
    body = _TRAILING_LABELS.sub("", _LABELS.sub("", item.strip()), count=1).strip()
    head, has_args, args = body.partition("=")
    found = _FILTER.match(head.strip())
    if not found:
        raise _invalid(f"cannot read filter {show(item.strip())}")
    name = found.group(1)
    if name not in ALLOWED:
        raise _invalid(f"ffmpeg filter {name!r} is not allowed")
    unnamed_limit, names = ALLOWED[name]
    if not has_args:
        return
    unnamed = 0
    named_seen = False
    for piece in args.split(":"):
        key = _KEY.match(piece)
        if key is None:
            if named_seen:
                raise _invalid(f"filter {name!r}: unnamed value {show(piece)} after a named option")
            unnamed += 1
            if unnamed > unnamed_limit:
                raise _invalid(
                    f"filter {name!r} takes at most {unnamed_limit} unnamed values; name the others "
                    f"(as option=value) in {show(args)}"
                )
            continue
        named_seen = True
        if key.group(1) not in names:
            raise _invalid(f"ffmpeg filter option {key.group(1)!r} of {name!r} is not allowed")


def check_filtergraph(graph: str) -> None:
    """Refuse a filter graph using quoting/escapes, a filter outside ``FILTERS`` or an option
    outside its filter's list."""
    if any(ch in graph for ch in "'\"\\\n\r\x00"):
        raise _invalid(f"filter graph may not contain quotes, backslashes or line breaks: {show(graph)}")
    for chain in graph.split(";"):
        for item in chain.split(","):
            check_filter(item)
