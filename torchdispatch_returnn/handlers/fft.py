"""FFT family and STFT: ``torch.fft`` (fft/ifft/rfft/irfft/hfft/ihfft, their 2-D and n-D forms,
fftshift/ifftshift; fftfreq/rfftfreq of static sizes are plain constants), ``torch.stft``, and the
ops from complex values back to real ones (``.real``/``.imag``, view_as_real, abs, angle, conj) or
to complex ones (view_as_complex, complex, polar).

While the capture has no complex dtype (``tf_dtype``), a complex tensor is a :class:`ComplexRef`
whose layer holds the real part and whose ``pair`` holds (real, imag) along a last axis of 2, as
``view_as_real``; both are checked against torch. The ops of this module read the pair; an op of
another family on a complex tensor fails. Once ``tf_dtype`` knows complex64, the layer is a complex
one (and complex layers of other families are read too).

Transforms run in TF's own kernels (``tf.signal``), one axis at a time. Along a dynamic axis a
transform needs its length ``n``: the padding is zeroed first, so each sequence is transformed as
torch transforms it alone (zero-padded or cut to ``n``). STFT frames a dynamic axis per sequence:
its padding (center=True) is taken at each sequence's own end, and its frame count is the derived
dim ``1 + (T + 2 * (n_fft // 2) - n_fft) // hop``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._backend import tf_dtype
from ..tensor import Ref
from .common import T, mask_padding
from .registry import handles, lookup

FFT = torch.fft


@dataclass(frozen=True)
class ComplexRef(Ref):
    """A complex tensor: ``layer`` holds its real part, ``pair`` its (real, imag) along a last axis of 2."""

    pair: Ref | None = None


def _two(ctx):
    return ctx.dims.static(2, f"{ctx.op_name}_complex")


def pair_of(ctx, x) -> Ref | None:
    """(real, imag) of a complex tensor along a new last axis; None for a real tensor."""
    if not isinstance(x, torch.Tensor) or not x.is_complex():
        return None
    if ctx.is_captured(x):
        r = ctx.ref(x)
        if isinstance(r, ComplexRef) and r.pair is not None:
            return r.pair
        if _complex_layers():
            return ctx.tf_op(_AS_PAIR.format("x0"), [r], list(r.dims) + [_two(ctx)], dtype=x.real.dtype)
        raise NotImplementedError("a complex tensor that went through an op outside the FFT family (only fft/stft, "
                                  ".real/.imag, abs, angle, conj, view_as_real keep complex values)")
    v = torch.view_as_real(x.detach().resolve_conj().resolve_neg())
    return ctx.const(v, [ctx.dims.static(s, f"{ctx.op_name}_c{i}") for i, s in enumerate(x.shape)] + [_two(ctx)])


def complex_result(ctx, pair: Ref) -> ComplexRef:
    """The complex result of an op from its (real, imag) pair; both parts are checked against torch."""
    value = ctx.out.detach().resolve_conj().resolve_neg()
    ctx.record(pair, torch.view_as_real(value))
    if _complex_layers():
        c = ctx.tf_op(_AS_COMPLEX, [pair], pair.dims[:-1], dtype=value.dtype)
        return ComplexRef(c.layer, c.dims, c.shape, value.dtype, pair=pair)
    re = ctx.tf_op("x0[..., 0]", [pair], pair.dims[:-1], dtype=value.real.dtype)
    ctx.record(re, value.real)  # (also stands for the complex value's own record, which compares no imag part)
    return ComplexRef(re.layer, re.dims, re.shape, value.dtype, pair=pair)


def _complex_layers() -> bool:
    """The capture has complex layers (``tf_dtype`` knows complex64)."""
    try:
        return bool(tf_dtype(torch.complex64))
    except TypeError:
        return False


_AS_COMPLEX = "tf.complex(x0[..., 0], x0[..., 1])"
_AS_PAIR = "(lambda z: tf.stack([tf.math.real(z), tf.math.imag(z)], -1))({})"


# -- transforms -------------------------------------------------------------------------------------
def _along(expr: str, ax: int, nd: int, fn) -> str:
    """``fn`` (last-axis TF code) applied along axis ``ax`` of a rank-``nd`` value."""
    if ax == nd - 1:
        return fn(expr)
    perm = [i for i in range(nd) if i != ax] + [ax]
    back = [perm.index(i) for i in range(nd)]
    return f"tf.transpose({fn(f'tf.transpose({expr}, {perm})')}, {back})"


def _fit(expr: str, n: int, nd: int) -> str:
    """Cut or zero-pad the last axis to ``n``."""
    return (f"(lambda z: tf.pad(z[..., :{n}], [[0, 0]] * {nd - 1} + [[0, tf.maximum(0, {n} - tf.shape(z)[-1])]]))"
            f"({expr})")


_SWAP = {"backward": "forward", "forward": "backward", "ortho": "ortho"}
_TO_COMPLEX = "(lambda v: tf.complex(v, tf.zeros_like(v)))({})"


def transform(ctx, x, steps, norm, *, conj_in=False, conj_out=False):
    """Apply ``steps`` [(kind, torch axis, n or None)] in order; kind: "fft", "ifft", "rfft", "irfft".
    ``norm`` as torch's (None = "backward"); ``conj_in``/``conj_out``: conjugate before/after."""
    norm = norm or "backward"
    if norm not in ("backward", "ortho", "forward"):
        raise NotImplementedError(f"norm={norm!r}")
    pair = pair_of(ctx, x)
    r = pair if pair is not None else ctx.ref(x)
    nd = x.dim()
    if nd == 0:
        raise NotImplementedError("FFT of a 0-d tensor")
    sizes = list(x.shape)
    dims = list(r.dims[:nd])
    for _, ax, n in steps:
        d = r.dims[ax]
        if d.is_dynamic() and not d.is_batch_dim():
            if n is None:
                raise NotImplementedError(f"FFT along the dynamic axis {d.description!r} without n= (each sequence's "
                                          "own length would be its transform size)")
            r = mask_padding(ctx, r, d)
    expr = _AS_COMPLEX if pair is not None else "x0"
    is_complex = pair is not None
    if conj_in and is_complex:
        expr = f"tf.math.conj({expr})"
    scale = []
    for kind, ax, n in steps:
        m = sizes[ax]
        length = n if n is not None else 2 * (m - 1) if kind == "irfft" else m
        if length < 1:
            raise NotImplementedError(f"a transform of length {length}")
        if kind != "rfft" and not is_complex:
            expr = _TO_COMPLEX.format(expr)
        size_in = length // 2 + 1 if kind == "irfft" else length  # (inputs fit to the exact size: TF's gradients
        fit = n is not None and (size_in != m or dims[ax].is_dynamic())  # of cut or padded ones fail)
        arg = f", [{length}]" if n is not None and kind in ("rfft", "irfft") else ""
        expr = _along(expr, ax, nd, lambda e, k=kind, f=fit, a=arg, s=size_in:
                      f"tf.signal.{k}({_fit(e, s, nd) if f else e}{a})")
        is_complex = kind != "irfft"
        if norm != "backward":  # (TF's inverse transforms divide by the length, as torch's "backward")
            rt = f"tf.shape(x0)[{ax}]"  # along the batch axis: its size at run time
            ln = repr(float(length)) if n is not None or not dims[ax].is_dynamic() else \
                f"tf.cast({f'2 * ({rt} - 1)' if kind == 'irfft' else rt}, tf.float64)"
            inverse = kind in ("ifft", "irfft")
            scale.append(f"{ln} ** {0.5 if inverse else -0.5}" if norm == "ortho" else ln if inverse else f"1 / {ln}")
        if sizes[ax] != ctx.out.shape[ax] or dims[ax].is_dynamic() and not dims[ax].is_batch_dim():
            sizes[ax] = ctx.out.shape[ax]
            dims[ax] = ctx.dims.static(sizes[ax], f"{ctx.op_name}_n{ax}")
    if scale:
        expr = f"(lambda z: z * tf.cast({' * '.join(scale)}, z.dtype))({expr})"
    if conj_out and is_complex:
        expr = f"tf.math.conj({expr})"
    if not is_complex:
        return ctx.tf_op(_static(expr, dims), [r], dims, dtype=ctx.out.dtype)
    dims.append(_two(ctx))
    return complex_result(ctx, ctx.tf_op(_static(_AS_PAIR.format(expr), dims), [r], dims, dtype=ctx.out.real.dtype))


def _static(expr: str, dims) -> str:
    """``expr`` with the static sizes of ``dims`` set (TF loses them in transposes)."""
    return f"tf.ensure_shape({expr}, {[None if d.is_dynamic() else d.dimension for d in dims]})"


def _axes(x, dim, s, default):
    """Torch axes and lengths of an n-D transform (``dim`` None: the last len(s) axes, or ``default``)."""
    nd = max(x.dim(), 1)
    if dim is None:
        dim = list(range(-len(s), 0)) if s is not None else default
    dim = [dim] if isinstance(dim, int) else list(dim)
    s = [None] * len(dim) if s is None else [None if v == -1 else int(v) for v in s]
    return [d % nd for d in dim], s  # (torch checks that s and dim have the same length)


def _nd(kind_last, kind_rest, conj_in=False, conj_out=False, swap=False, default=None):
    def h(ctx, input, s=None, dim=default, norm=None, *, out=None):
        axes, ns = _axes(input, dim, s, list(range(input.dim())) if default is None else default)
        rest = [(kind_rest, a, n) for a, n in zip(axes[:-1], ns[:-1])]
        last = [(kind_last, axes[-1], ns[-1])] if axes else []
        steps = last + rest if kind_last == "rfft" else rest + last  # real-to-complex first, complex-to-real last
        return transform(ctx, input, steps, _SWAP[norm or "backward"] if swap else norm, conj_in=conj_in,
                         conj_out=conj_out)
    return h


def _one(kind, conj_in=False, conj_out=False, swap=False):
    def h(ctx, input, n=None, dim=-1, norm=None, *, out=None):
        return transform(ctx, input, [(kind, dim % max(input.dim(), 1), n)],
                         _SWAP[norm or "backward"] if swap else norm, conj_in=conj_in, conj_out=conj_out)
    return h


# torch callable: (kind along the last axis, kind along the others, conj before, conj after, swapped norm)
for _f, (_last, _rest, _ci, _co, _sw) in {
    "fft": ("fft", "fft", 0, 0, 0), "ifft": ("ifft", "ifft", 0, 0, 0), "rfft": ("rfft", "fft", 0, 0, 0),
    "irfft": ("irfft", "ifft", 0, 0, 0), "hfft": ("irfft", "ifft", 1, 0, 1), "ihfft": ("rfft", "fft", 0, 1, 1),
}.items():  # hfft = irfft of the conjugate, ihfft = conjugate of rfft, each with the other normalization
    handles(getattr(FFT, _f))(_one(_last, _ci, _co, _sw))
    handles(getattr(FFT, _f + "n"))(_nd(_last, _rest, _ci, _co, _sw))
    handles(getattr(FFT, _f + "2"))(_nd(_last, _rest, _ci, _co, _sw, default=(-2, -1)))


# -- complex to real and back -----------------------------------------------------------------------
def _part(k: int):
    def h(ctx, x):
        pair = pair_of(ctx, x)
        if pair is None and k:
            raise NotImplementedError("imag of a real tensor (torch raises)")
        return ctx.ref(x) if pair is None else ctx.tf_op(f"x0[..., {k}]", [pair], pair.dims[:-1], dtype=ctx.out.dtype)
    return h


handles(torch.real, T.real.__get__)(_part(0))  # (of a real tensor: itself)
handles(torch.imag, T.imag.__get__)(_part(1))


@handles(torch.view_as_real)
def view_as_real(ctx, x):
    """(real, imag) along a new last axis of 2."""
    pair = pair_of(ctx, x)
    if pair is None:
        raise NotImplementedError("view_as_real of a real tensor (torch raises)")
    return pair


@handles(torch.view_as_complex)
def view_as_complex(ctx, x):
    """A complex tensor from (real, imag) along a last axis of 2."""
    r = ctx.ref(x)
    if r.ndim == 0 or r.shape[-1] != 2 or r.dims[-1].is_dynamic():
        raise NotImplementedError("view_as_complex needs a static last axis of 2")
    return complex_result(ctx, r)


def _from_parts(expr: str):
    def h(ctx, a, b, *, out=None):
        items, dims = ctx.broadcast(a, b, dtype=ctx.out.real.dtype)
        items = [ctx.expand(i, dims) for i in items]
        return complex_result(ctx, ctx.tf_op(expr, items, list(dims) + [_two(ctx)], dtype=ctx.out.real.dtype))
    return h


handles(torch.complex)(_from_parts("tf.stack([x0, x1], -1)"))  # real + 1j * imag
handles(torch.polar)(_from_parts("tf.stack([x0 * tf.cos(x1), x0 * tf.sin(x1)], -1)"))  # abs * exp(1j * angle)


@handles(torch.conj, T.conj, torch.conj_physical, T.conj_physical, torch.resolve_conj, T.resolve_conj)
def conj(ctx, x):
    """The complex conjugate (a real tensor: itself)."""
    pair = pair_of(ctx, x)
    if pair is None or ctx.func in (torch.resolve_conj, T.resolve_conj):
        return ctx.ref(x)
    return complex_result(ctx, ctx.tf_op("x0 * tf.constant([1, -1], x0.dtype)", [pair], pair.dims, dtype=pair.dtype))


_ABS = {t: lookup(t) for t in (torch.abs, torch.absolute, T.abs, T.absolute, T.__abs__, T.abs_)}


@handles(*_ABS, override=True)
def abs_(ctx, x, *, out=None):
    """|x|: of a complex tensor its magnitude (here), of a real one as the elementwise family does."""
    pair = pair_of(ctx, x)
    if pair is None:
        return _ABS[ctx.func].fn(ctx, x, out=out)
    return ctx.tf_op(f"tf.abs({_AS_COMPLEX})", [pair], pair.dims[:-1], dtype=ctx.out.dtype)


@handles(torch.angle, T.angle)
def angle(ctx, x, *, out=None):
    """The phase: atan2(imag, real) of a complex tensor (gradient 0 at 0, as torch's); pi for
    negative real numbers, else 0."""
    pair = pair_of(ctx, x)
    if pair is None:
        return ctx.tf_op("tf.where(tf.math.is_nan(x0), x0, tf.where(x0 < 0, tf.cast(%r, x0.dtype), "
                         "tf.zeros_like(x0)))" % math.pi, [ctx.ref(x)], ctx.ref(x).dims)
    return ctx.tf_op("(lambda re, im: tf.where(re * re + im * im > 0, tf.math.atan2(im, re), "
                     "tf.math.atan2(tf.stop_gradient(im), tf.stop_gradient(re))))(x0[..., 0], x0[..., 1])",
                     [pair], pair.dims[:-1], dtype=ctx.out.dtype)


# -- shifts and frequencies -------------------------------------------------------------------------
def _shift(sign):
    def h(ctx, input, dim=None):
        nd = input.dim()
        axes = list(range(nd)) if dim is None else [dim] if isinstance(dim, int) else list(dim)
        axes = [a % max(nd, 1) for a in axes]
        pair = pair_of(ctx, input)
        r = pair if pair is not None else ctx.ref(input)
        for a in axes:
            if r.dims[a].is_dynamic() and not r.dims[a].is_batch_dim():
                raise NotImplementedError("fftshift along a dynamic axis (each sequence's own middle)")
        y = ctx.tf_op(f"tf.roll(x0, {[sign * (input.shape[a] // 2) for a in axes]}, {axes})", [r], r.dims,
                      dtype=r.dtype) if axes and nd else r
        return y if pair is None else complex_result(ctx, y)
    return h


handles(FFT.fftshift)(_shift(1))
handles(FFT.ifftshift)(_shift(-1))


# -- STFT ---------------------------------------------------------------------------------------------
#: source position of padded position ``s`` in a sequence of length ``L`` (torch's pad modes; reflect needs pad < L)
_STFT_INDEX = {"reflect": "(lambda a: tf.where(a >= L, 2 * (L - 1) - a, a))(tf.abs(s))", "constant": "s",
               "replicate": "s", "circular": "tf.math.floormod(s, L)"}


def _window(ctx, window, n_fft: int, win: int, srcs: list, names: list) -> str:
    """TF code of the window (an input ``w``, or ones) zero-padded to ``n_fft``, centered as torch does."""
    if window is not None:
        srcs.append(ctx.ref(window))
        names.append("w")
    left = (n_fft - win) // 2
    return f"tf.pad({'w' if window is not None else f'tf.ones([{win}], x.dtype)'}, [[{left}, {n_fft - win - left}]])"


@handles(torch.stft, T.stft)
def stft(ctx, input, n_fft, hop_length=None, win_length=None, window=None, center=True, pad_mode="reflect",
         normalized=False, onesided=None, return_complex=None, align_to_window=None):
    """Short-time Fourier transform of (B, T) or (T,) signals: frames of ``n_fft`` every ``hop_length``
    (a dynamic T gives a derived frame count; with center=True each sequence is padded at its own
    ends), windowed (the window centered in n_fft), transformed; (B, freq, frames)."""
    if input.is_complex() or input.dim() not in (1, 2) or window is not None and window.is_complex():
        raise NotImplementedError("stft of complex signals or windows, or of other than 1-D or 2-D signals")
    if align_to_window and not center or pad_mode not in _STFT_INDEX:
        raise NotImplementedError(f"stft with align_to_window=True or pad_mode={pad_mode!r}")
    hop, win, pad = int(hop_length or n_fft // 4), int(win_length or n_fft), n_fft // 2 if center else 0
    onesided = True if onesided is None else bool(onesided)
    r = ctx.ref(input)
    d, srcs, names = r.dims[-1], [r], ["x"]
    if d.is_dynamic() and not d.is_batch_dim():
        srcs.append(ctx.size_ref(d, r.dims))
        names.append("L")
        frames = ctx.dims.derive("ceildiv", ctx.dims.derive("add", d, 2 * pad - n_fft + 1), hop)
        length = "tf.cast(L, tf.int32)"
    else:
        frames = ctx.dims.static(ctx.out.shape[-1 if ctx.out.is_complex() else -2], f"{ctx.op_name}_frames")
        length = "tf.shape(x)[-1]"
    w = _window(ctx, window, n_fft, win, srcs, names)
    x2 = "x" if input.dim() == 2 else "x[None]"
    idx = _STFT_INDEX[pad_mode]
    fr = (f"(lambda x2, L: (lambda nf: (lambda s: (lambda s2: (lambda g: tf.where((s >= 0) & (s < L), g, "
          f"tf.zeros_like(g)) if {pad_mode == 'constant'} else g)(tf.gather(x2, s2, batch_dims=1)))"
          f"(tf.minimum(tf.maximum({idx}, 0), L - 1)))(tf.broadcast_to((tf.range(nf)[:, None] * {hop} + "
          f"tf.range({n_fft})[None, :] - {pad})[None], [tf.shape(x2)[0], nf, {n_fft}])))"
          f"((tf.shape(x2)[1] + {2 * pad - n_fft}) // {hop} + 1))({x2}, tf.reshape({length}, [-1, 1, 1]))")
    spec = f"tf.signal.rfft({fr} * {w})" if onesided else \
        f"tf.signal.fft((lambda v: tf.complex(v, tf.zeros_like(v)))({fr} * {w}))"
    if normalized:
        spec = f"(lambda z: z * tf.cast({n_fft ** -0.5!r}, z.dtype))({spec})"
    spec = f"tf.transpose({spec}, [0, 2, 1])" + ("" if input.dim() == 2 else "[0]")
    freq = ctx.dims.static(n_fft // 2 + 1 if onesided else n_fft, f"{ctx.op_name}_freq")
    dims = list(r.dims[:-1]) + [freq, frames, _two(ctx)]
    args = ", ".join(f"x{i}" for i in range(len(srcs)))
    pair = ctx.tf_op(f"(lambda {', '.join(names)}: {_static(_AS_PAIR.format(spec), dims)})({args})", srcs, dims,
                     dtype=input.dtype)
    return complex_result(ctx, pair) if ctx.out.is_complex() else pair


@handles(torch.istft, T.istft)
def istft(ctx, input, n_fft, hop_length=None, win_length=None, window=None, center=True, normalized=False,
          onesided=None, length=None, return_complex=False):
    """Inverse STFT of (B, freq, frames): inverse transform per frame, window, overlap-add, divided
    by the overlap-added squared window; a dynamic frames axis gives a derived length (the frames past
    each sequence's own count are left out)."""
    pair = pair_of(ctx, input)
    if pair is None or return_complex or input.dim() not in (2, 3) or window is not None and window.is_complex():
        raise NotImplementedError("istft of a real or complex-output signal, or of other than 2-D or 3-D input")
    hop, win, pad = int(hop_length or n_fft // 4), int(win_length or n_fft), n_fft // 2 if center else 0
    d, srcs, names, mask = pair.dims[-2], [pair], ["x"], "1.0"
    if d.is_dynamic() and not d.is_batch_dim():
        srcs.append(ctx.size_ref(d, pair.dims))
        names.append("L")
        mask = "tf.cast(tf.range(tf.shape(fr)[1])[None, :, None] < tf.reshape(tf.cast(L, tf.int32), [-1, 1, 1]), " \
            "fr.dtype)"
        out_dim = ctx.dims.static(int(length), f"{ctx.op_name}_len") if length is not None else \
            ctx.dims.derive("add", ctx.dims.derive("mul", d, hop), n_fft - 2 * pad - hop)
    else:
        out_dim = ctx.dims.static(ctx.out.shape[-1], f"{ctx.op_name}_len")
    w = _window(ctx, window, n_fft, win, srcs, names)
    x3 = "x" if input.dim() == 3 else "x[None]"
    z = f"tf.transpose(tf.complex({x3}[..., 0], {x3}[..., 1]), [0, 2, 1])"
    fr = f"tf.signal.irfft({z}, [{n_fft}])" if onesided is not False else f"tf.math.real(tf.signal.ifft({z}))"
    if normalized:
        fr = f"({fr} * {n_fft ** 0.5!r})"
    n_out = f"{length}" if length is not None else f"(tf.shape(fr)[1] - 1) * {hop} + {n_fft - 2 * pad}"
    body = (f"(lambda fr: (lambda m, ww: (lambda y, env: (lambda k: tf.pad(k, [[0, 0], [0, tf.maximum(0, {n_out} - "
            f"tf.shape(k)[1])]]))(tf.where(env > 1e-11, y / tf.where(env > 1e-11, env, tf.ones_like(env)), "
            f"tf.zeros_like(y))[:, {pad}:{pad} + {n_out}]))(tf.signal.overlap_and_add(fr * ww * m, {hop}), "
            f"tf.signal.overlap_and_add(tf.broadcast_to(ww * ww * m, tf.shape(fr)), {hop})))({mask}, {w}))({fr})")
    if input.dim() == 2:
        body = f"{body}[0]"
    dims = list(pair.dims[:-3]) + [out_dim]
    args = ", ".join(f"x{i}" for i in range(len(srcs)))
    return ctx.tf_op(f"(lambda {', '.join(names)}: {_static(body, dims)})({args})", srcs, dims, dtype=ctx.out.dtype)
