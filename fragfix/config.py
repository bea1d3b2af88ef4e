"""The configs: the model's shape, the repair gate, training, and machine-facing counts.

Plain dataclasses with their validation and no torch (nor numpy): the CLI reads its defaults
from here, so `fragfix --help` stays fast and no default is written twice. The modules that do
the work (autoencoder, decide, training) re-export the config they take.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fragfix.errors import InvalidInput
from fragfix.machine import available_cores

NOISE_KINDS = ("bitflip", "byte", "burst", "zero", "gaussian")
MAX_ORDER = 4  # context lengths: 2 * 4 context bytes fill a uint64 key exactly (context.py)


FRAGMENT_SIZE = 512
UNKNOWN = 256  # the extra input token for bytes known to be unreadable (mapfile, zero runs)
HEADS = ("categorical", "sigmoid")
MAX_WIDTH = 256  # channels (the bundled model uses at most 96): with the other bounds, at most ~25 MB of weights


def _whole(value, name: str, lo: int, hi: int) -> int:
    """An int (not a bool or float) within [lo, hi], or a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


@dataclass
class ModelConfig:
    head: str = "categorical"
    channels: tuple[int, int, int, int] = (32, 48, 64, 96)  # widths at 512, 256, 128, 64 positions
    kernel_size: int = 9        # the full-resolution convolution's width (odd)
    embed_dim: int = 16         # byte embedding width (categorical head)
    mid_layers: int = 2         # dilated convs at the 64-position bottleneck, for long context
    stem: str = "full"          # "full" or "separable" (cheaper) convolution at 512 positions
    refine: int = 1             # full-resolution residual convs after the decoder (precise local context)
    fragment_size: int = FRAGMENT_SIZE

    def __post_init__(self):
        # a checkpoint's metadata is untrusted input: exact types and sane bounds before any allocation
        if not isinstance(self.channels, (list, tuple)) or len(self.channels) != 4:
            raise ValueError("channels must be four widths")
        self.channels = tuple(_whole(c, "channels", 1, MAX_WIDTH) for c in self.channels)
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r} (choose from {', '.join(HEADS)})")
        if _whole(self.kernel_size, "kernel_size", 1, 31) % 2 == 0:
            raise ValueError("kernel_size must be odd")
        if self.stem not in ("separable", "full"):
            raise ValueError("stem must be 'separable' or 'full'")
        _whole(self.embed_dim, "embed_dim", 1, 64)
        _whole(self.mid_layers, "mid_layers", 0, 8)
        _whole(self.refine, "refine", 0, 8)
        if self.fragment_size != FRAGMENT_SIZE:
            raise ValueError(f"fragment_size must be {FRAGMENT_SIZE}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


@dataclass(frozen=True)
class DamageEvidence:
    """What the model gate's damage estimate (rule/damage.py) counts as a clear error, and as the file's own."""
    clear_p: float = 1e-3    # the model's probability of the observed byte at most this …
    own: int = 2             # … and fewer than this many other places with the same neighbours: a clear error
    own_share: float = 0.02  # the file's own: at least `own` places, and this share of its context's places
    rare: float = 0.005      # a clear error's byte value is also rare in the window (tabs in a tabbed file are not)
    own_pairs: int = 4       # the file's own: at least this many pairs, and …
    pair_share: float = 0.05  # … this common after its left or before its right neighbour
    span: int = 32           # fragments on each side pooled for the local rate (65 fragments: ~33 KB)
    z: float = 2.0           # the gate opens on the rate's lower confidence bound (hits - z sqrt(hits))


@dataclass(frozen=True)
class CopyConfig:
    """How unknown runs are matched to copies of their content elsewhere (recovery/copies.py)."""
    anchor: int = 32           # known bytes required on each side of a run, in the run's file and at the copy
    max_anchor: int = 256      # … grown in steps of `anchor` up to this where the bytes beside the run are uniform
    max_run: int = 64 << 10    # longer unknown runs are not looked for (a copy that long rarely survives intact)
    min_distinct: int = 6      # an anchor of fewer distinct bytes (zeros, spaces, padding) matches everywhere
    max_hits: int = 64         # places per run compared at most
    padded_confidence: float = 0.8  # reported for copies matched by padding on one side


@dataclass
class RepairConfig:
    rule: str = "learned"     # learned: the per-file predictor and the channel (learned.py); model: the gate below
    certainty: float = 0.5    # learned: a byte changes where the posterior that it is damage reaches this
    screen: float = 0.02      # learned: bytes the file predicts at least this well are never suspects
    threshold: float = 0.5    # the best value's probability must reach this …
    floor: float = 1e-3       # … the observed byte's (with context) must be at most this (text-like fragments) …
    model_floor: float = 0.02   # … and the model's own probability of it at most this
    one_bit_factor: float = 3.0  # both floors this much higher where best and observed differ in one bit (bit rot)
    binary_threshold: float = 0.95  # threshold and floor for fragments that do not look like text
    binary_floor: float = 1e-5
    detect: float = 0.02      # detector probability at which the 256-way head looks at a byte
    context_orders: tuple[int, ...] = (2, 3, 4)  # context lengths (bytes each side) whose counts sharpen the model
    context_weight: float = 1.0  # how many context votes the model's distribution is worth
    window_fragments: int = 4096  # fragments whose context counts are pooled (repair's read size: 2 MB)
    aggressive: bool = False  # take the best value everywhere
    max_entropy: float = 7.2  # fragments above this many bits/byte (random, compressed) are left alone
    zero_runs: int = 0        # treat runs of at least this many 0x00 bytes as unknown (0: off)
    passes: int = 1           # repair passes over each window (2: a few more fixes where damage is dense)
    formats: bool = True      # gzip, zlib, zip and PNG files: verified search instead of the gate (verified.py)
    format_budget: float = 30.0  # seconds of search per checksummed file
    accept_probable: bool = False  # also write checksummed repairs that are probable, not verified
    only_unknown: bool = False  # change unknown bytes only: the rest is trusted (a mapfile's '+' regions)
    correct_good: bool = False  # with a mapfile, also correct suspected bit rot in its '+' regions
    damage_gate: bool = True  # scale the floors by the damage rate the data shows (damage.py); keep its own habits
    clean_rate: float = 5e-4  # clear errors per byte that clean data shows anyway: at or below, nothing changes
    ref_rate: float = 1.5e-3  # the rate at which the floors are as set (between: scaled linearly)
    max_scale: float = 3.0    # the most the floors open where damage is dense
    evidence: DamageEvidence = field(default_factory=DamageEvidence)  # what counts as damage evidence
    text_share: float = 0.85  # fragments with at least this share of printable bytes take the text pair
    copy_search: CopyConfig = field(default_factory=CopyConfig)  # unknown runs filled from copies of their content

    def __post_init__(self):
        for name in ("threshold", "floor", "binary_threshold", "binary_floor", "model_floor", "detect", "certainty",
                     "screen", "text_share"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0) or math.isnan(v):
                raise InvalidInput(f"{name.replace('_', '-')} must be within [0, 1], got {v}")
        self.context_orders = tuple(sorted({int(k) for k in self.context_orders}))
        if any(not 1 <= k <= MAX_ORDER for k in self.context_orders):
            raise InvalidInput(f"context orders must be within 1..{MAX_ORDER}, got {list(self.context_orders)}")
        if not (1.0 <= self.one_bit_factor <= 1000.0):  # it multiplies probabilities: past 1000 it means nothing
            raise InvalidInput(f"one-bit-factor must be from 1 to 1000, got {self.one_bit_factor}")
        if not (self.context_weight > 0) or math.isinf(self.context_weight):
            raise InvalidInput(f"context weight must be positive, got {self.context_weight}")
        if self.zero_runs < 0:
            raise InvalidInput(f"zero-runs must be 0 (off) or a positive length, got {self.zero_runs}")
        if not (0 < self.format_budget <= 86400):
            raise InvalidInput(f"format-budget must be within (0, 86400] seconds, got {self.format_budget}")
        if not 1 <= self.passes <= 8:
            raise InvalidInput(f"passes must be within 1..8, got {self.passes}")
        if self.window_fragments < 1:
            raise InvalidInput("the context window must hold at least one fragment")
        if not (0 <= self.clean_rate < self.ref_rate <= 1):
            raise InvalidInput(f"need 0 <= clean-rate < ref-rate <= 1, got {self.clean_rate} and {self.ref_rate}")
        if not (1 <= self.max_scale <= 100):
            raise InvalidInput(f"max-scale must be within [1, 100], got {self.max_scale}")
        if self.rule not in ("learned", "model"):
            raise InvalidInput(f"rule must be learned or model, got {self.rule!r}")
        if self.threshold == 0:
            self.aggressive = True  # threshold 0 means: always take the best value

    def gate(self) -> dict:
        """Every setting that decides which bytes change, for reports (JSON-able): all but the ones
        reports give apart (zero runs, the checksummed formats' search) or that only widen the input."""
        d = asdict(self)
        for k in ("zero_runs", "formats", "format_budget", "accept_probable", "correct_good"):
            del d[k]
        d["context_orders"] = list(self.context_orders)
        d["damage_evidence"] = d.pop("evidence")
        return d


@dataclass
class Runtime:
    """Where and how the model runs: nothing here changes which bytes a repair changes (apart from
    bf16 rounding), so reports keep it apart from the gate."""
    device: str = "auto"      # auto, cpu, cuda, cuda:N or mps
    precision: str = "auto"   # auto (bf16 where fast), bf16 or fp32
    batch_fragments: int = 0  # fragments per model call (0: chosen by device)
    threads: int = 0          # CPU threads and stretch worker processes (0: the cores available)

    def __post_init__(self):
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InvalidInput(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.batch_fragments < 0:
            raise InvalidInput("batch size must be at least 1 (or 0: chosen by device)")
        check_count(self.threads, "--threads")


def noise_items(text: str, levels: list[float] | None = None) -> list[tuple[str, float, float | None]]:
    """The one --noise grammar (train and evaluate): comma-separated KIND, KIND:LEVEL or KIND:LO-HI,
    as (kind, level, max level or None); a bare KIND takes each of `levels` (default 0.05). Raises
    ValueError on a malformed item, an unknown kind or a level outside [0, 1]."""
    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        kind, _, lv = item.partition(":")
        if kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {kind!r} (choose from {', '.join(NOISE_KINDS)})")
        if lv:
            lo, _, hi = lv.partition("-")
            lo, hi = noise_level(lo), noise_level(hi) if hi else None
            if not 0.0 <= lo <= (lo if hi is None else hi) <= 1.0:
                raise ValueError(f"noise level must be within [0, 1], got {lo}" + ("" if hi is None else f"..{hi}"))
            out.append((kind, lo, hi))
        else:  # levels given apart (evaluate's --levels) are checked by their owner
            out += [(kind, level, None) for level in (levels or [0.05])]
    if not out:
        raise ValueError("no noise kind given")
    return out


def noise_level(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"not a number: {s!r}") from None
    if math.isnan(v):
        raise ValueError("noise level is NaN")
    return v


def check_seed(seed: int) -> int:
    """Seeds feed numpy's and torch's generators, which take 0 .. 2**63 - 1."""
    if not 0 <= seed < 2**63:
        raise InvalidInput(f"--seed must be from 0 to 2**63 - 1, got {seed}")
    return seed


def check_count(value: int, what: str, zero: str = "automatic") -> int:
    """0 (automatic) up to the cores this process may use: more threads or workers than cores only
    slow the work down, and absurd counts exhaust memory or crash the thread pool."""
    cores = available_cores()
    if not 0 <= value <= cores:
        raise InvalidInput(f"{what} must be from 0 ({zero}) to {cores} (the cores available here), got {value}")
    return value


DEFAULT_NOISE = "byte:0.002-0.15,bitflip:0.0005-0.02,burst:0.005-0.1,zero:0.005-0.15"


@dataclass
class TrainConfig:
    data: list[str]
    val_data: list[str] | None = None   # explicit held-out files; else `val_fraction` of `data` by file
    out_dir: str = "checkpoints"
    name: str = "autoencoder"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    schedule: str = "cosine"            # "cosine" decays to final_lr x lr over the run; "constant"
    final_lr: float = 0.05              # where the cosine ends, as a share of lr
    warmup: int = 100                   # steps of linear warm-up (at most a twentieth of the run)
    grad_clip: float = 1.0              # gradients are scaled to at most this norm (a bad batch cannot blow up the weights)
    clean_share: float = 0.125          # share of undamaged positions the categorical loss looks at each step
    weight_decay: float = 0.01
    noise: str = DEFAULT_NOISE          # kinds with level ranges; one is drawn per fragment
    unknown_share: float = 0.5          # share of zeroed runs given to the model as UNKNOWN
    val_fraction: float = 0.1
    max_val_fragments: int = 2048
    steps_per_epoch: int = 0            # 0: one full pass over the training fragments
    max_file_fragments: int = 0         # > 0: at most this many fragments of each file (0: all)
    patience: int = 0                   # early stopping after this many epochs without improvement
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    workers: int = 0
    resume: bool = False
    force: bool = False                 # replace checkpoints already in out_dir (without it: refused)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        check_seed(self.seed)
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidInput("epochs and batch size must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidInput("learning rate must be a positive number")
        if not 0 <= self.unknown_share <= 1:
            raise InvalidInput("unknown share must be within [0, 1]")
        if not (0 <= self.final_lr <= 1 and self.warmup >= 0 and self.grad_clip > 0 and 0 < self.clean_share <= 1):
            raise InvalidInput("need final-lr and clean-share within [0, 1] (clean-share above 0), warm-up >= 0, "
                               "grad-clip > 0")
        if self.schedule not in ("cosine", "constant"):
            raise InvalidInput("schedule must be cosine or constant")
        if self.max_file_fragments < 0:
            raise InvalidInput("max file fragments must not be negative")
        if self.steps_per_epoch < 0 or self.patience < 0 or self.max_val_fragments < 1:
            raise InvalidInput("steps per epoch and patience must not be negative")
        check_count(self.workers, "--workers", zero="load in the main process")
        check_count(self.threads, "--threads")
        try:
            noise_items(self.noise)  # the training loop makes the specs (noise.parse_noise)
        except ValueError as e:
            raise InvalidInput(f"bad --noise: {e}") from None

    def paths(self) -> tuple[Path, Path, Path]:
        d = Path(self.out_dir)
        return (d / f"{self.name}_best.safetensors", d / f"{self.name}_last.safetensors",
                d / f"{self.name}_last.resume.safetensors")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


@dataclass
class EvalConfig:
    data: list[str] | None = None          # None: the held-out part of the Python standard library
    models: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=lambda: ["byte", "bitflip", "burst", "zero"])
    levels: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.05, 0.1])
    max_fragments: int = 2000
    seed: int = 0
    zero_as_unknown: bool = True           # zeroed runs are given as unknown, as a mapfile would mark them
    samples: int = 0
    repair: RepairConfig = field(default_factory=RepairConfig)
    runtime: Runtime = field(default_factory=Runtime)
    noise: str | None = None               # the --noise grammar (KIND or KIND:LEVEL, ...); else kinds x levels

    def __post_init__(self):
        check_seed(self.seed)
        if self.noise is not None:
            try:
                items = noise_items(self.noise, self.levels)
            except ValueError as e:
                raise InvalidInput(f"bad --noise: {e}") from None
            if any(hi is not None for _, _, hi in items):
                raise InvalidInput("evaluate scores fixed levels: give KIND or KIND:LEVEL (ranges are for train)")
            self.kinds = list(dict.fromkeys(k for k, _, _ in items))
            self.cells = [(k, lv) for k, lv, _ in items]
        else:
            self.cells = [(k, lv) for k in self.kinds for lv in self.levels]
        self.levels = sorted({lv for _, lv in self.cells}) if self.noise is not None else self.levels
        for k in self.kinds:
            if k not in NOISE_KINDS:
                raise InvalidInput(f"unknown noise kind {k!r} (choose from {', '.join(NOISE_KINDS)})")
        for _, lv in self.cells:
            if not (0 < lv <= 1) or math.isnan(lv):
                raise InvalidInput(f"noise levels must be within (0, 1], got {lv}")
        if not self.kinds or not self.levels:
            raise InvalidInput("at least one noise kind and one level are needed")
        if self.max_fragments < 1 or self.samples < 0:
            raise InvalidInput("max fragments must be at least 1 and samples not negative")
