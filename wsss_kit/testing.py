"""Conformance checks for plugins: call :func:`check_plugin` in your plugin's own tests.

::

    from wsss_kit.testing import check_plugin

    def test_my_cam_conforms():
        check_plugin(MyCAM(num_classes=3))                             # an instance
        check_plugin(MyCAM, kwargs={"num_classes": 3})                 # a factory: also built twice
        check_plugin("cams/my_cam", kwargs={"num_classes": 3})         # through the registry

The checks follow the interface the object implements (:mod:`wsss_kit.interfaces`) on small CPU
inputs (2 images of 3×32×32 by default, then 3×40×48 for the shapes): output shapes, dtypes and
value ranges (CAMs finite, in [0, 1] and zero for absent classes; refiner probabilities
``(B, C+1, H, W)`` summing to 1 or masks in ``0..C``/255; head logits ``(B, K, H, W)``; a loss a
finite scalar), gradients reaching every trainable parameter (CAM training loss, heads, trainable
refiners' ``training_step``, losses), the same output twice under a fixed seed in eval mode, and
bad input (wrong rank, wrong channel count, mismatched classes, an index past the end) raising
an exception instead of silently giving a result, and a ``checkpoint_replaces`` declaration naming
constructor keywords. Every check runs; all failures are reported
together in one :class:`PluginConformanceError` naming the plugin and each failed check.

Check names (for ``skip``, and in the report): ``interface``, ``api_version``, ``checkpoint_replaces``,
``construction``, ``forward.*``, ``cams.*``, ``seeds``, ``refine.*``, ``logits.*``, ``loss.*``,
``prompts.*``, ``item.*``, ``gradients``, ``determinism``, ``bad_input.*``. Parameters, buffers, gradients and
train/eval modes are restored afterwards; nothing is trained. The checks run on one CPU thread.
"""

from __future__ import annotations

import functools
import inspect
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import PluginVersionError
from .interfaces import IGNORE_INDEX, INTERFACES, HasTrainingStep, HasTrainingTargets
from .registry import PluginInfo, accepted_kwargs, check_api_version, create, default_registry

__all__ = ["ConformanceReport", "PluginConformanceError", "check_plugin"]

TOLERANCE = 1e-5
"""How far values may leave their range (float rounding), and the tolerance of a probability sum (×10)."""


DEFAULT_CLASS_NAMES = ("ball", "box", "kite", "boat", "tree")
"""Class names given to plugins that take names (the embedded synthetic world's classes)."""


class PluginConformanceError(AssertionError):
    """A plugin failed one or more conformance checks; the message lists every failure."""


@dataclass
class ConformanceReport:
    """What :func:`check_plugin` ran: ``passed`` and ``skipped`` check names."""

    plugin: str
    kind: str
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Fail(Exception):
    pass


def _require(ok: Any, message: str) -> None:
    if not ok:
        raise _Fail(message)


class _Checks:
    def __init__(self, plugin: str, kind: str, skip: Sequence[str]) -> None:
        self.report = ConformanceReport(plugin, kind)
        self.failed: list[tuple[str, str]] = []
        self._skip = tuple(skip)

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``; its result, or ``None`` when it failed (recorded) or is skipped."""
        if any(name == s or name.startswith(s + ".") for s in self._skip):
            self.report.skipped.append(name)
            return None
        try:
            result = fn(*args)
        except _Fail as exc:
            self.failed.append((name, str(exc)))
            return None
        except Exception as exc:  # noqa: BLE001 - any error is this check's failure, the others still run
            self.failed.append((name, f"raised {type(exc).__name__}: {exc}"))
            return None
        self.report.passed.append(name)
        return True if result is None else result

    def must_raise(self, name: str, what: str, fn: Callable[[], Any]) -> None:
        def check() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - any exception is the expected refusal
                return
            raise _Fail(f"accepted {what} without raising an error")

        self.run(name, check)

    def finish(self) -> ConformanceReport:
        if self.failed:
            total = len(self.failed) + len(self.report.passed)
            lines = "\n".join(f"  - {name}: {msg}" for name, msg in self.failed)
            raise PluginConformanceError(f"{self.report.kind} plugin {self.report.plugin} failed {len(self.failed)} "
                                         f"of {total} conformance checks (wsss_kit.testing.check_plugin):\n{lines}")
        return self.report


# ---------------------------------------------------------------------- helpers
def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _tensor(x: Any, what: str) -> torch.Tensor:
    _require(isinstance(x, torch.Tensor), f"{what} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _check_shape(t: torch.Tensor, expected: tuple[int | None, ...], what: str) -> None:
    _require(tuple(t.shape) == tuple(expected), f"{what} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def _check_finite(t: torch.Tensor, what: str) -> None:
    bad = int((~torch.isfinite(t.detach())).sum())
    _require(bad == 0, f"{what} has {bad} non-finite value(s) (NaN or inf)")


def _check_range(t: torch.Tensor, lo: float, hi: float, what: str) -> None:
    tmin, tmax = float(t.detach().min()), float(t.detach().max())
    _require(tmin >= lo - TOLERANCE and tmax <= hi + TOLERANCE,
             f"{what} must lie in [{lo:g}, {hi:g}]; found values in [{tmin:.4g}, {tmax:.4g}]")


def _same(a: Any, b: Any, atol: float, what: str) -> None:
    if isinstance(a, Mapping):
        for k in a:
            _same(a[k], b[k], atol, f"{what}[{k!r}]")
    elif isinstance(a, (list, tuple)) and a and isinstance(a[0], (torch.Tensor, Mapping, list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, atol, f"{what}[{i}]")
    elif isinstance(a, torch.Tensor):
        _require(a.shape == b.shape and a.dtype == b.dtype, f"{what} changed shape or dtype between two calls")
        x, y = a.detach().double(), b.detach().double()
        gap = (x - y).abs().masked_fill(x.isnan() & y.isnan(), 0)  # NaN in the same place is the same output
        diff = float(gap.max()) if a.numel() else 0.0
        _require(diff <= atol, f"two calls with the same seed in eval mode differ in {what} by up to {diff:.3g} "
                               f"(allowed {atol:g})")
    else:
        _require(a == b, f"two calls with the same seed in eval mode differ in {what}")


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def _check_gradients(module: Any, loss: torch.Tensor) -> None:
    loss.backward()
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad] if isinstance(module, nn.Module) else []
    missing = [n for n, p in params if p.grad is None]
    nonfinite = [n for n, p in params if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    _require(not missing, f"no gradient reached {len(missing)} of {len(params)} trainable parameter(s): "
                          f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    _require(not nonfinite, f"non-finite gradient in {', '.join(nonfinite[:6])}")


class _Restore:
    """Puts a module's modes, parameters, buffers and gradients back as they were."""

    def __init__(self, obj: Any) -> None:
        self.module = obj if isinstance(obj, nn.Module) else None
        if self.module is not None:
            self.modes = [m.training for m in self.module.modules()]
            tensors = [*self.module.parameters(), *self.module.buffers()]
            self.state = [(t, t.detach().clone()) for t in tensors]
            self.grads = [p.grad for p in self.module.parameters()]

    def zero_grad(self) -> None:
        if self.module is not None:
            for p in self.module.parameters():
                p.grad = None

    def __enter__(self) -> "_Restore":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.module is None:
            return
        with torch.no_grad():
            for t, saved in self.state:
                t.copy_(saved)
        for m, mode in zip(self.module.modules(), self.modes):
            m.training = mode
        for p, g in zip(self.module.parameters(), self.grads):
            p.grad = g


def _eval(obj: Any) -> None:
    if isinstance(obj, nn.Module):
        obj.eval()


# ---------------------------------------------------------------------- the entry point
def check_plugin(obj: Any, *, kwargs: Mapping[str, Any] | None = None, kind: str | None = None,
                 num_classes: int | None = None, class_names: Sequence[str] | None = None,
                 sizes: Sequence[tuple[int, int]] = ((32, 32), (40, 48)), batch_size: int = 2, seed: int = 0,
                 labels: torch.Tensor | None = None, names: Sequence[str] | None = None,
                 inputs: Sequence[Any] | Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None,
                 skip: Sequence[str] = (), atol: float = 0.0, max_items: int = 2) -> ConformanceReport:
    """Check that a plugin behaves as its interface promises; raise listing every failed check.

    Args:
        obj: a plugin instance; or a class/factory, called with ``kwargs`` (twice under ``seed``:
            the two builds must have equal parameters); or ``"kind/name"``, built with
            :func:`wsss_kit.create` (``kind/dist:name`` works too).
        kwargs: keywords for a factory or registry name.
        kind: the plugin kind, when the object implements more than one interface.
        num_classes: ``C`` (foreground classes) for refiners and prompts; default the object's
            ``num_classes`` (for heads ``K - 1``) or ``len(class_names)``, else 3.
        class_names: class names given to prompts (default the first ``C`` of :data:`DEFAULT_CLASS_NAMES`).
        sizes: ``(H, W)`` of the test images: the first for every check, the others for shapes.
        batch_size: images per batch (at least 2, so each check sees a present and an absent class).
        seed: the seed of the inputs and of the determinism check.
        labels: ``(B, C)`` multi-hot labels to use instead of generated ones (each image should
            have a present and an absent class); sets ``batch_size`` and ``num_classes``.
        names: ``B`` image ids, passed as ``names=`` to a CAM network whose ``forward`` takes them
            (default ``check_plugin_0`` ...).
        inputs: for a loss (required): its example arguments, a tuple (positional) or a mapping
            (keywords); the first is the prediction, which must receive a gradient.
        context: further keywords for a prompt strategy's ``forward`` (e.g. ``{"clip": clip}``).
        skip: check names (or prefixes such as ``"bad_input"``) not to run.
        atol: largest difference allowed between the two seeded calls (0: bit-equal).
        max_items: dataset items read (the first and the last ones).

    Returns:
        a :class:`ConformanceReport` of the checks that passed and those skipped.

    Raises:
        PluginConformanceError: an ``AssertionError`` listing every failed check by name.
    """
    label, obj, factory_check = _build(obj, dict(kwargs or {}), seed)
    kind = kind or _kind_of(obj, label)
    checks = _Checks(label, kind, skip)
    if factory_check is not None:
        checks.run("construction", factory_check)
    checks.run("interface", lambda: _require(
        isinstance(obj, INTERFACES[kind]),
        f"{type(obj).__qualname__} does not implement wsss_kit.{INTERFACES[kind].__name__}"))
    checks.run("api_version", _check_api_version, obj, kind)
    checks.run("checkpoint_replaces", _check_checkpoint_replaces, obj)
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.float32)
        num_classes, batch_size = labels.shape[1], labels.shape[0]
    c = num_classes or _num_classes(obj, kind, class_names)
    class_list = list(class_names) if class_names is not None else (
        list(DEFAULT_CLASS_NAMES[:c]) if c <= len(DEFAULT_CLASS_NAMES) else [f"class{i}" for i in range(c)])
    b = max(2, batch_size)
    ids = list(names) if names is not None else [f"check_plugin_{i}" for i in range(b)]
    setup = _Setup(c, class_list, list(sizes), b, seed, atol, inputs, dict(context or {}), max_items, labels, ids)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny inputs: one thread is fastest, and shared CI machines stay responsive
    try:
        with _Restore(obj) as restore:
            _KIND_CHECKS[kind](obj, checks, setup, restore)
    finally:
        torch.set_num_threads(threads)
    return checks.finish()


@dataclass
class _Setup:
    c: int
    class_names: list[str]
    sizes: list[tuple[int, int]]
    b: int
    seed: int
    atol: float
    inputs: Any
    context: dict[str, Any]
    max_items: int
    given_labels: torch.Tensor | None
    ids: list[str]

    def images(self, size: tuple[int, int] | None = None, channels: int = 3) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        return torch.rand(self.b, channels, *(size or self.sizes[0]), generator=g)

    def labels(self, c: int | None = None) -> torch.Tensor:
        """Multi-hot ``(B, C)``: every image has a present class, and (for C ≥ 2) an absent one."""
        if c is None and self.given_labels is not None:
            return self.given_labels.clone()
        c = self.c if c is None else c
        labels = torch.zeros(self.b, c)
        for i in range(self.b):
            labels[i, i % c] = 1
            if c >= 3 and i % 2 == 0:
                labels[i, (i + 1) % c] = 1
        return labels

    def cams(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        cams = torch.rand(self.b, self.c, *(size or self.sizes[0]), generator=g)
        return cams * self.labels()[:, :, None, None]


def _build(obj: Any, kwargs: dict[str, Any], seed: int) -> tuple[str, Any, Callable[[], None] | None]:
    if isinstance(obj, str):
        kind, _, name = obj.partition("/")
        info = default_registry().resolve(kind, name)
        _seed_all(seed)
        return f"{info.name!r} from {info.dist} {info.version}", create(kind, name, **kwargs), None
    if any(isinstance(obj, iface) for iface in INTERFACES.values()):
        return _label(obj), obj, None
    if not (isinstance(obj, type) or inspect.isroutine(obj) or isinstance(obj, functools.partial)):
        _kind_of(obj, _label(obj))  # raises: an instance that implements no interface
    _seed_all(seed)
    first = obj(**kwargs)
    _seed_all(seed)
    second = obj(**kwargs)

    def same_builds() -> None:
        if isinstance(first, nn.Module) and isinstance(second, nn.Module):
            a, b = first.state_dict(), second.state_dict()
            _require(list(a) == list(b), "two builds under the same seed have different state-dict keys")
            differ = [k for k in a if not torch.equal(a[k], b[k])]
            _require(not differ, f"two builds under the same seed differ in {', '.join(differ[:6])}")

    return _label(first), first, same_builds


def _check_api_version(obj: Any, kind: str) -> None:
    try:
        check_api_version(obj, PluginInfo(kind, type(obj).__qualname__, type(obj).__module__, "", _label(obj)))
    except PluginVersionError as exc:
        raise _Fail(" ".join(str(exc).split())) from None


def _check_checkpoint_replaces(obj: Any) -> None:
    """``checkpoint_replaces`` (files a trained checkpoint makes unnecessary) names constructor keywords."""
    names = getattr(type(obj), "checkpoint_replaces", ())
    _require(isinstance(names, (tuple, list)) and all(isinstance(n, str) for n in names),
             f"checkpoint_replaces must be a tuple of keyword names, got {names!r}")
    accepted = accepted_kwargs(type(obj))
    if accepted is None:  # **kwargs: any name may be forwarded
        return
    unknown = [n for n in names if n not in accepted]
    _require(not unknown, f"checkpoint_replaces names {unknown}, which {type(obj).__qualname__}() does not take; "
                          f"its keywords: {', '.join(accepted)}")


def _label(obj: Any) -> str:
    return f"{type(obj).__qualname__} ({type(obj).__module__})"


def _kind_of(obj: Any, label: str) -> str:
    kinds = [k for k, iface in INTERFACES.items() if isinstance(obj, iface)]
    if len(kinds) != 1:
        raise TypeError(f"{label} implements {'none' if not kinds else ' and '.join(kinds)} of the plugin "
                        f"interfaces; pass kind= (one of {', '.join(sorted(INTERFACES))})")
    return kinds[0]


def _num_classes(obj: Any, kind: str, class_names: Sequence[str] | None) -> int:
    n = getattr(obj, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n - 1 if kind == "heads" else n
    if class_names is not None:
        return len(class_names)
    names = getattr(obj, "class_names", None)
    return len(names) if isinstance(names, (list, tuple)) and names else 3


# ---------------------------------------------------------------------- per kind
def _check_cams_tensor(cams: Any, s: _Setup, size: tuple[int, int], what: str = "cams()") -> None:
    cams = _tensor(cams, what)
    _check_shape(cams, (s.b, s.c, *size), f"{what} (B, C, H, W)")
    _require(cams.dtype == torch.float32, f"{what} must be float32, got {cams.dtype}")
    _check_finite(cams, what)
    _check_range(cams, 0.0, 1.0, what)
    absent = (s.labels() <= 0)[:, :, None, None]
    leak = float((cams.detach().abs() * absent).max())
    _require(leak <= TOLERANCE, f"{what} must be zero for classes absent from labels; found up to {leak:.4g}")


def _forward_kwargs(model: nn.Module, s: _Setup) -> dict[str, Any]:
    params = inspect.signature(model.forward).parameters
    return {"names": list(s.ids)} if "names" in params else {}


def _check_cam_generator(model: Any, checks: _Checks, s: _Setup, restore: _Restore) -> None:
    images, labels, extra = s.images(), s.labels(), _forward_kwargs(model, s)
    checks.run("num_classes", lambda: _require(isinstance(getattr(model, "num_classes", None), int),
                                               "num_classes must be an int (C, foreground classes)"))

    def training_forward() -> torch.Tensor:
        model.train()
        restore.zero_grad()
        _seed_all(s.seed)
        out = model(images, labels, **extra)
        _require(isinstance(out, Mapping) and "logits" in out and "loss" in out,
                 f"forward(images, labels) must return a dict with 'logits' and 'loss', got "
                 f"{sorted(out) if isinstance(out, Mapping) else type(out).__name__}")
        logits = _tensor(out["logits"], "forward()['logits']")
        _check_shape(logits, (s.b, s.c), "forward()['logits'] (B, C)")
        _check_finite(logits, "forward()['logits']")
        loss = _tensor(out["loss"], "forward()['loss']")
        _require(loss.dim() == 0 and loss.is_floating_point(), f"forward()['loss'] must be a float scalar, got "
                                                               f"{loss.dtype} of shape {tuple(loss.shape)}")
        _check_finite(loss, "forward()['loss']")
        return loss

    loss = checks.run("forward.train", training_forward)
    if loss is not None:
        checks.run("gradients", _check_gradients, model, loss)
    restore.zero_grad()

    def cams_at(size: tuple[int, int], **kw: Any) -> torch.Tensor:
        _eval(model)
        with torch.no_grad():
            _seed_all(s.seed)
            return model.cams(s.images(size), s.labels(), **kw)

    cams = checks.run("cams.call", cams_at, s.sizes[0])
    if cams is not None:
        checks.run("cams.output", _check_cams_tensor, cams, s, s.sizes[0])
        checks.run("seeds", lambda: _check_seeds(model.seeds(cams, 0.5), s))
        checks.run("determinism", lambda: _same(cams, cams_at(s.sizes[0]), s.atol, "cams()"))
    for size in s.sizes[1:]:
        checks.run(f"cams.size_{size[0]}x{size[1]}", lambda size=size: _check_cams_tensor(
            cams_at(size, scales=(1.0, 0.5), flip=True), s, size, "cams(scales=(1.0, 0.5), flip=True)"))
    _eval(model)
    with torch.no_grad():
        checks.must_raise("bad_input.rank", "images of shape (3, H, W) (no batch dimension)",
                          lambda: model.cams(images[0], labels))
        checks.must_raise("bad_input.channels", "images with 4 channels",
                          lambda: model.cams(s.images(channels=4), labels))
        checks.must_raise("bad_input.labels", f"labels with {s.c + 1} columns for {s.c} classes",
                          lambda: model.cams(images, s.labels(s.c + 1)))


def _check_seeds(seeds: Any, s: _Setup) -> None:
    seeds = _tensor(seeds, "seeds()")
    _check_shape(seeds, (s.b, *s.sizes[0]), "seeds() (B, H, W)")
    _require(seeds.dtype == torch.int64, f"seeds() must be int64, got {seeds.dtype}")
    _check_range(seeds, 0, s.c, "seeds()")


def _check_refiner_output(out: Any, s: _Setup, size: tuple[int, int]) -> None:
    out = _tensor(out, "refine()")
    if out.is_floating_point():
        _check_shape(out, (s.b, s.c + 1, *size), "refine() probabilities (B, C + 1, H, W)")
        _check_finite(out, "refine() probabilities")
        _check_range(out, 0.0, 1.0, "refine() probabilities")
        err = float((out.detach().double().sum(1) - 1).abs().max())
        _require(err <= 10 * TOLERANCE, f"refine() probabilities must sum to 1 over classes; off by up to {err:.3g}")
    else:
        _check_shape(out, (s.b, *size), "refine() masks (B, H, W)")
        _require(out.dtype == torch.int64, f"refine() masks must be int64, got {out.dtype}")
        bad = sorted({int(v) for v in out.unique()} - set(range(s.c + 1)) - {IGNORE_INDEX})
        _require(not bad, f"refine() mask values must be 0..{s.c} or {IGNORE_INDEX}; found {bad[:5]}")


def _check_refiner(refiner: Any, checks: _Checks, s: _Setup, restore: _Restore) -> None:
    def refine_at(size: tuple[int, int], cams: torch.Tensor | None = None, images: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None) -> Any:
        _eval(refiner)
        with torch.no_grad():
            _seed_all(s.seed)
            return refiner.refine(s.images(size) if images is None else images,
                                  s.cams(size) if cams is None else cams, s.labels() if labels is None else labels)

    out = checks.run("refine.call", refine_at, s.sizes[0])
    if out is not None:
        checks.run("refine.output", _check_refiner_output, out, s, s.sizes[0])
        checks.run("determinism", lambda: _same(out, refine_at(s.sizes[0]), s.atol, "refine()"))
    for size in s.sizes[1:]:
        checks.run(f"refine.size_{size[0]}x{size[1]}",
                   lambda size=size: _check_refiner_output(refine_at(size), s, size))
    # a flag, not the condition itself, so that refiner stays Any below (it is also an nn.Module, .train())
    trains = bool(getattr(refiner, "trainable", False)) and isinstance(refiner, HasTrainingStep)
    if trains:
        def training_step() -> None:
            images, cams, labels = s.images(), s.cams(), s.labels()
            model: Any = refiner  # an nn.Module with the hooks (checked above and by the gradient check)
            if isinstance(model, HasTrainingTargets):
                target = torch.stack([model.training_targets(images[i], cams[i], labels[i]) for i in range(s.b)])
            else:
                target = torch.cat([torch.full_like(cams[:, :1], 0.3), cams], 1).argmax(1)
            model.train()
            restore.zero_grad()
            _seed_all(s.seed)
            out = model.training_step({"image": images, "target": target, "labels": labels,
                                       "name": list(s.ids)})
            loss = _tensor(out.get("loss") if isinstance(out, Mapping) else None, "training_step()['loss']")
            _require(loss.dim() == 0, f"training_step()['loss'] must be a scalar, got shape {tuple(loss.shape)}")
            _check_finite(loss, "training_step()['loss']")
            _check_gradients(refiner, loss)

        checks.run("gradients", training_step)
        restore.zero_grad()
    checks.must_raise("bad_input.rank", "images of shape (3, H, W) (no batch dimension)",
                      lambda: refine_at(s.sizes[0], images=s.images()[0]))
    checks.must_raise("bad_input.channels", "images with 4 channels",
                      lambda: refine_at(s.sizes[0], images=s.images(channels=4)))
    checks.must_raise("bad_input.labels", f"labels with {s.c + 1} columns for CAMs of {s.c} classes",
                      lambda: refine_at(s.sizes[0], labels=s.labels(s.c + 1)))


def _check_head(head: Any, checks: _Checks, s: _Setup, restore: _Restore) -> None:
    k = getattr(head, "num_classes", None)
    checks.run("num_classes", lambda: _require(isinstance(k, int) and k >= 2,
                                               f"num_classes must be an int K >= 2 (background included), got {k!r}"))

    def logits_at(size: tuple[int, int], images: torch.Tensor | None = None) -> torch.Tensor:
        _eval(head)
        with torch.no_grad():
            _seed_all(s.seed)
            return head(s.images(size) if images is None else images)

    def check_logits(out: Any, size: tuple[int, int]) -> None:
        out = _tensor(out, "forward()")
        _check_shape(out, (s.b, k, *size), "forward() logits (B, K, H, W)")
        _require(out.dtype == torch.float32, f"forward() logits must be float32, got {out.dtype}")
        _check_finite(out, "forward() logits")

    for i, size in enumerate(s.sizes):
        out = checks.run(f"logits.size_{size[0]}x{size[1]}", logits_at, size)
        if out is not None:
            checks.run(f"logits.output_{size[0]}x{size[1]}", check_logits, out, size)
            if i == 0:
                checks.run("determinism", lambda out=out: _same(out, logits_at(size), s.atol, "forward()"))

    def train_gradients() -> None:
        head.train()
        restore.zero_grad()
        _seed_all(s.seed)
        outs = _tensors(head(s.images()))
        _require(outs, "forward() in training mode returned no tensor")
        _check_gradients(head, torch.stack([t.float().mean() for t in outs]).sum())

    checks.run("gradients", train_gradients)
    restore.zero_grad()
    checks.must_raise("bad_input.rank", "images of shape (3, H, W) (no batch dimension)",
                      lambda: logits_at(s.sizes[0], s.images()[0]))
    checks.must_raise("bad_input.channels", "images with 4 channels",
                      lambda: logits_at(s.sizes[0], s.images(channels=4)))


def _check_loss(loss_fn: Any, checks: _Checks, s: _Setup, restore: _Restore) -> None:
    if s.inputs is None:
        checks.run("loss.inputs", lambda: _require(False, "a loss needs example inputs: check_plugin(loss, inputs="
                                                          "(prediction, target, ...)) as its forward documents them"))
        return
    args, kw = (list(s.inputs), {}) if not isinstance(s.inputs, Mapping) else ([], dict(s.inputs))
    first = args[0] if args else next(iter(kw.values()))

    def call(pred: Any) -> Any:
        _seed_all(s.seed)
        out = loss_fn(pred, *args[1:], **kw) if args else loss_fn(**{**kw, next(iter(kw)): pred})
        return out["loss"] if isinstance(out, Mapping) and "loss" in out else out

    def fresh(x: Any, grad: bool) -> Any:  # the prediction (a tensor, or a list of them), detached
        if isinstance(x, (list, tuple)):
            return type(x)(fresh(t, grad) for t in x)
        return x.detach().clone().requires_grad_(grad and x.is_floating_point())

    def value() -> torch.Tensor:
        _eval(loss_fn)
        out = _tensor(call(fresh(first, False)), "the loss")
        _require(out.dim() == 0 and out.is_floating_point(), f"the loss must be a float scalar, got {out.dtype} of "
                                                            f"shape {tuple(out.shape)}")
        _check_finite(out, "the loss")
        return out.detach()

    def gradients() -> None:
        restore.zero_grad()
        pred = fresh(first, True)
        _check_gradients(loss_fn, call(pred))
        preds = [t for t in _tensors(pred) if t.requires_grad]
        _require(preds and all(t.grad is not None and bool(torch.isfinite(t.grad).all()) for t in preds),
                 "no finite gradient reached the prediction (the first input)")

    out = checks.run("loss.output", value)
    if out is not None:
        checks.run("gradients", gradients)
        restore.zero_grad()
        checks.run("determinism", lambda: _same(out, call(fresh(first, False)).detach(), s.atol, "the loss"))
    if isinstance(first, torch.Tensor) and first.dim() >= 2:
        checks.must_raise("bad_input.rank", f"a prediction of shape {tuple(first.shape[1:])} (no batch dimension)",
                          lambda: call(first.detach()[0]))


def _check_prompt(prompt: Any, checks: _Checks, s: _Setup, restore: _Restore) -> None:
    names = s.class_names

    def forward(class_names: Any) -> Any:
        _seed_all(s.seed)
        return prompt(class_names, **s.context)

    def check_output() -> Any:
        _eval(prompt)
        with torch.no_grad():
            out = forward(names)
        if isinstance(out, torch.Tensor):
            _require(out.dim() == 2 and out.shape[0] == len(names),
                     f"forward({len(names)} class names) must give features (K, E) = ({len(names)}, E), got "
                     f"{tuple(out.shape)}")
            _require(out.is_floating_point(), f"prompt features must be floating point, got {out.dtype}")
            _check_finite(out, "prompt features")
        return out

    out = checks.run("prompts.output", check_output)
    if out is not None:
        checks.run("determinism", lambda: _same(out, forward(names), s.atol, "forward()"))
    if not getattr(prompt, "learnable", False):
        def fixed_text() -> None:
            try:
                texts = prompt.prompts(names)
            except NotImplementedError:
                return
            _require(isinstance(texts, list) and all(isinstance(t, str) for t in texts) and len(texts) == len(names),
                     f"prompts({len(names)} class names) must return {len(names)} strings, got {texts!r}")

        checks.run("prompts.text", fixed_text)
    elif isinstance(prompt, nn.Module):
        def gradients() -> None:
            prompt.train()
            restore.zero_grad()
            feats = _tensors(forward(names))
            _require(feats and feats[0].requires_grad, "a learnable prompt's output must depend on its parameters")
            _check_gradients(prompt, torch.stack([f.float().sum() for f in feats]).sum())

        checks.run("gradients", gradients)
        restore.zero_grad()
    _eval(prompt)
    with torch.no_grad():
        checks.must_raise("bad_input.empty", "an empty list of class names", lambda: forward([]))
        checks.must_raise("bad_input.str", "a bare string as the class-name list (it would be read letter by letter)",
                          lambda: forward(names[0]))


def _check_dataset(ds: Any, checks: _Checks, s: _Setup, restore: _Restore) -> None:
    n = checks.run("item.len", lambda: len(ds) if len(ds) > 0 else _require(False, "the dataset is empty"))
    c = s.c
    checks.run("item.class_names", lambda: _require(
        isinstance(ds.class_names, tuple) and all(isinstance(x, str) and x for x in ds.class_names)
        and len(set(ds.class_names)) == len(ds.class_names),
        f"class_names must be a tuple of distinct non-empty str, got {getattr(ds, 'class_names', None)!r}"))
    checks.run("item.palette", lambda: _require(
        len(ds.palette) >= c + 1 and all(len(p) == 3 and all(0 <= int(v) <= 255 for v in p) for p in ds.palette),
        f"palette must hold an RGB triple (0..255) for each mask value 0..{c}"))
    if not n:
        return
    indices = sorted({0, n - 1} if s.max_items >= 2 else {0})

    def item(i: int) -> Mapping[str, Any]:
        _seed_all(s.seed)
        return ds[i]

    def check_item(i: int) -> Mapping[str, Any]:
        it = item(i)
        _require(isinstance(it, Mapping) and {"image", "labels", "mask", "name"} <= set(it),
                 f"item {i} must be a dict with image, labels, mask, name; got "
                 f"{sorted(it) if isinstance(it, Mapping) else type(it).__name__}")
        image, labels, mask, name = (_tensor(it["image"], "image"), _tensor(it["labels"], "labels"),
                                     _tensor(it["mask"], "mask"), it["name"])
        _require(image.dim() == 3 and image.shape[0] == 3 and image.dtype == torch.float32,
                 f"item {i}: image must be float32 (3, H, W), got {image.dtype} {tuple(image.shape)}")
        _check_finite(image, f"item {i}: image")
        _check_range(image, 0.0, 1.0, f"item {i}: image")
        _require(labels.shape == (c,) and labels.dtype == torch.float32 and bool(((labels == 0) | (labels == 1)).all()),
                 f"item {i}: labels must be float32 (C,) = ({c},) multi-hot, got {labels.dtype} {tuple(labels.shape)}")
        _require(mask.shape == image.shape[1:] and mask.dtype == torch.int64,
                 f"item {i}: mask must be int64 (H, W) = {tuple(image.shape[1:])}, "
                 f"got {mask.dtype} {tuple(mask.shape)}")
        values = {int(v) for v in mask.unique()}
        _require(values <= set(range(c + 1)) | {IGNORE_INDEX}, f"item {i}: mask values must be 0..{c} or "
                                                               f"{IGNORE_INDEX}, found {sorted(values)[:6]}")
        unlabelled = sorted(v for v in values if 1 <= v <= c and labels[v - 1] == 0)
        _require(not unlabelled, f"item {i}: the mask has classes {unlabelled} that its labels do not")
        _require(isinstance(name, str) and name and not name.startswith(("/", "\\")) and ".." not in name.replace(
            "\\", "/").split("/"), f"item {i}: name must be a non-empty relative id without '..', got {name!r}")
        return it

    for i in indices:
        it = checks.run(f"item.{i}", check_item, i)
        if it is not None and i == 0:
            checks.run("determinism", lambda it=it: _same(dict(it), dict(item(0)), s.atol, "item 0"))
    checks.must_raise("bad_input.index", f"index {n} of a dataset of {n} items", lambda: ds[n])


_KIND_CHECKS: dict[str, Callable[[Any, _Checks, _Setup, _Restore], None]] = {
    "cams": _check_cam_generator,
    "refiners": _check_refiner,
    "heads": _check_head,
    "losses": _check_loss,
    "prompts": _check_prompt,
    "datasets": _check_dataset,
}
