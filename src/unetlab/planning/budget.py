"""Fit a plan to a memory budget and a time budget, from measurements (`unetlab.planning.probe`).

`fit_to_budgets` takes the largest plan along the planner's chain of smaller ones (`planner.shrink`: the patch
first, then the batch) whose peak memory is within `HEADROOM` of the budget and, with a time budget, of which
at least `min_steps` training steps fit in it. Probes cost a minute on a CPU, so it measures few: memory above
the baseline (less the gradients and optimizer state, which scale with the parameters) and seconds per step
scale with nnU-Net's activation estimate of the batch, so one measurement predicts the others; the candidate
it predicts to be the largest that fits is then measured before it is taken, as far as the time budget's share
for probing allows.
`schedule` then turns the seconds per step into epochs x steps that fill the time budget, validation and
checkpoints included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..errors import ConfigError
from .planner import Plan, estimate, shrink
from .probe import Measurement

HEADROOM = 0.85  # a probe may peak at 85% of the budget: validation and the pipeline's buffers come on top
MAX_STEPS_PER_EPOCH = 250  # nnU-Net's iterations per epoch
MIN_STEPS_PER_EPOCH = 20
VALIDATION_SHARE = 0.1  # steps per epoch are raised until validation takes at most 10% of an epoch
MIN_EPOCHS = 5  # where a whole validation pass would leave fewer epochs, each validates on a fixed subset
NNUNET_EPOCHS = 1000  # nnU-Net's default training: 1000 epochs of 250 steps
MAX_PROBES = 4  # once a plan fits, at most this many probes look for a larger one
PROBE_SHARE = 0.15  # ... and only while probing has taken under this share of the time budget
UNMEASURED_SHARE = 0.5  # beyond that, a larger plan is taken unmeasured only if predicted under this share of memory
STATE_BYTES_PER_PARAMETER = 12  # float32 gradient and Adam's two moments: what does not shrink with the patch


@dataclass(frozen=True)
class Trial:
    """One probe of the fitting: the plan's patch and batch, and what it measured."""

    patch_size: tuple[int, ...]
    batch_size: int
    measurement: Measurement

    def as_dict(self) -> dict:
        m = self.measurement
        return {"patch_size": list(self.patch_size), "batch_size": self.batch_size,
                "peak_mb": round(m.peak_bytes / 2**20, 1), "seconds_per_step": round(m.seconds_per_step, 4)}


@dataclass(frozen=True)
class Fitted:
    plan: Plan
    measurement: Measurement  # of `plan`: measured, or (`predicted`) scaled from a larger probe
    trials: list[Trial] = field(default_factory=list)
    predicted: bool = False


def fit_to_budgets(plan: Plan, measure: Callable[[Plan], Measurement], *, memory_bytes: int,
                   time_seconds: float | None = None, min_steps: int = 0,
                   work_per_second: float | None = None) -> Fitted:
    """The largest plan of the chain `plan`, `shrink(plan)`, ... that fits (module docstring).

    The first probe is `plan` itself or, with a time budget, the largest candidate that `work_per_second` (a
    rough speed of the device, in nnU-Net's activation estimate per second) says fits `min_steps` steps in it,
    else one of about a quarter of `plan`'s work (a probe of the largest can cost much of a short budget). If it fits, larger candidates that it predicts to fit are
    measured (scaling up is a guess), at most `MAX_PROBES` in all and, with a time budget, while probing has
    taken under `PROBE_SHARE` of it; past that, the largest predicted to fit is taken unmeasured only where its
    predicted peak is under `UNMEASURED_SHARE` of the memory budget. If it does not fit, the largest smaller one
    it predicts to fit is measured in turn (a probe that ran out of memory predicts nothing: the search halves
    the rest), or, past the time budget's share for probing, taken on the prediction. A one-line ConfigError,
    from a measurement of the smallest, when even that exceeds the memory budget; from the first probe already
    where its memory before the first step, less its weights, does (`refuse_on_runtime`)."""
    chain = [plan]
    while (smaller := shrink(chain[-1])) is not None:
        chain.append(smaller)
    work = [estimate(c.topology, c.num_labels, c.max_filters) * c.batch_size for c in chain]
    measured: dict[int, Measurement] = {}
    trials = []
    last = len(chain) - 1
    started = time.monotonic()

    def result(index: int) -> Measurement:
        if index not in measured:
            measured[index] = measure(chain[index])
            trials.append(Trial(chain[index].patch_size, chain[index].batch_size, measured[index]))
        return measured[index]

    def affordable() -> bool:  # another probe (as long as the last) within PROBE_SHARE of the time budget
        spent = time.monotonic() - started
        return not time_seconds or spent * (1 + 1 / len(measured)) <= PROBE_SHARE * time_seconds

    def ok(index: int, m: Measurement) -> bool:  # the smallest plan need not be fast enough: nothing is faster
        steps = math.inf if not time_seconds else time_seconds / max(m.seconds_per_step, 1e-9)
        return m.peak_bytes <= HEADROOM * memory_bytes and (steps >= min_steps or index == last)

    def predicted(reference: int, index: int) -> Measurement:
        """`chain[index]` as `measured[reference]` predicts it: the activations' share of the peak and the step
        time scaled by the work; the weights (in the baseline), gradients and optimizer state kept."""
        m, scale = measured[reference], work[index] / work[reference]
        if m.out_of_memory:
            return m
        state = min(STATE_BYTES_PER_PARAMETER * m.parameters, m.peak_bytes - m.baseline_bytes)
        activations = m.peak_bytes - m.baseline_bytes - state
        return replace(m, peak_bytes=int(m.baseline_bytes + state + activations * scale),
                       seconds_per_step=m.seconds_per_step * scale, seconds_per_inference=m.seconds_per_inference * scale)

    if not time_seconds:
        index = 0
    elif work_per_second and min_steps:  # the plan a rough speed of the device says is fast enough
        wanted = work_per_second * time_seconds / min_steps
        index = next((i for i in range(len(chain)) if work[i] <= wanted), last)
    else:
        index = min(range(len(chain)), key=lambda i: abs(work[i] - work[0] / 4))
    source = None  # the probe a choice was predicted from (None: measured itself)
    if ok(index, result(index)):
        failing, guess = -1, None
        while True:
            fitting = min(i for i in measured if ok(i, measured[i]))
            larger = [i for i in range(failing + 1, fitting) if ok(i, predicted(fitting, i))]
            if not larger:
                break
            if len(measured) < MAX_PROBES and affordable():
                if not ok(larger[0], result(larger[0])):
                    failing = larger[0]
                continue
            # no time to measure it: a larger one on its prediction only with memory to spare
            spare = [i for i in larger if predicted(fitting, i).peak_bytes <= UNMEASURED_SHARE * memory_bytes]
            guess = (spare[0], fitting) if spare else None
            break
        chosen = min(i for i in measured if ok(i, measured[i]))
        measurement = measured[chosen]
        if guess is not None:
            chosen, source = guess
            measurement = predicted(source, chosen)
    else:
        failing = index
        refuse_on_runtime(measured[index], chain[last], memory_bytes)
        while True:
            guesses = [i for i in range(failing + 1, len(chain)) if ok(i, predicted(failing, i))]
            candidate = guesses[0] if guesses else (
                (failing + last + 1) // 2 if measured[failing].out_of_memory else last)
            if candidate != last and time_seconds and not affordable():
                chosen, source = candidate, failing  # no time to check it: taken on the prediction
                measurement = predicted(failing, chosen)
                break
            if ok(candidate, result(candidate)):
                chosen, measurement = candidate, measured[candidate]
                break
            if candidate == last:
                peak = measured[last].peak_bytes
                raise ConfigError(
                    f"plan.memory_budget={megabytes(memory_bytes)} is below what the smallest network needs: "
                    + ("it ran out of memory" if measured[last].out_of_memory else f"{megabytes(peak / HEADROOM)}")
                    + f" (a {'x'.join(map(str, chain[last].patch_size))} patch, batch {chain[last].batch_size}"
                    + ("" if measured[last].out_of_memory else f", peaked at {megabytes(peak)}, {HEADROOM:.0%} of that")
                    + ")")
            failing = candidate
    plan = chain[chosen]
    how = "measured" if source is None else (
        f"predicted from the probe of the {'x'.join(map(str, chain[source].patch_size))} patch, batch "
        f"{chain[source].batch_size} (peak {megabytes(measured[source].peak_bytes)}, "
        f"{measured[source].seconds_per_step:.2f} s/step), scaled by nnU-Net's estimate")
    plan = plan.with_reason("memory", f"peak {megabytes(measurement.peak_bytes)} {how} for a "
                                      f"{'x'.join(map(str, plan.patch_size))} patch, batch {plan.batch_size}: within "
                                      f"{HEADROOM:.0%} of the budget {megabytes(memory_bytes)} ({len(trials)} probe(s))")
    return Fitted(plan, measurement, trials, predicted=source is not None)


def refuse_on_runtime(measured: Measurement, smallest: Plan, memory_bytes: int) -> None:
    """A one-line ConfigError, before any other probe, where the probe's resident memory before its first step
    less its model's weights (the runtime and the loaded data: a smaller plan prefetches smaller batches, but
    the runtime alone is most of it) exceeds the budget."""
    runtime = measured.baseline_bytes - 4 * measured.parameters
    if measured.out_of_memory or runtime <= HEADROOM * memory_bytes:
        return
    raise ConfigError(
        f"plan.memory_budget={megabytes(memory_bytes)} is below what the smallest network needs: over "
        f"{megabytes(runtime / HEADROOM)} (a {'x'.join(map(str, smallest.patch_size))} patch, batch "
        f"{smallest.batch_size}: the runtime and the data alone take {megabytes(runtime)} before a network's "
        f"first step, {HEADROOM:.0%} of that)")


@dataclass(frozen=True)
class Schedule:
    epochs: int
    steps_per_epoch: int
    validation_steps: int | None  # None: all of the validation set each epoch
    epoch_seconds: float
    time_limit_minutes: float  # trainer.time_limit: the fit's share of the budget (a slower machine stops in time)
    nnunet_default_hours: float  # what nnU-Net's 1000 x 250 steps would take here
    reason: str


def schedule(measurement: Measurement, *, time_seconds: float, spent_seconds: float, validation_batches: int,
             end_seconds: float = 0.0) -> Schedule:
    """Epochs x steps filling `time_seconds`, of which `spent_seconds` are gone (planning) and `end_seconds` are
    kept for what runs around the fit (building the model, logging it at the end). The fit pays the first step's
    tracing once, then per epoch its steps, a validation pass of `validation_batches` batches and a checkpoint.
    Where whole validation passes would leave fewer than `MIN_EPOCHS` epochs, each validates on the first
    `validation_steps` batches (`VALIDATION_SHARE` of an epoch). A one-line ConfigError when not even one epoch
    fits (saying how long one takes)."""
    m = measurement
    step, validation = m.seconds_per_step, validation_batches * m.seconds_per_inference
    steps = max(MIN_STEPS_PER_EPOCH, math.ceil((1 - VALIDATION_SHARE) / VALIDATION_SHARE * validation / step))
    steps = min(steps, MAX_STEPS_PER_EPOCH)
    validation_steps = None
    fit_seconds = time_seconds - spent_seconds - end_seconds - m.seconds_first_step
    if validation > 0 and fit_seconds / (steps * step + validation) < MIN_EPOCHS:  # validate on a fixed subset
        per_epoch = fit_seconds / MIN_EPOCHS
        validation_steps = max(1, int(VALIDATION_SHARE * per_epoch / m.seconds_per_inference))
        if validation_steps < validation_batches:
            validation = validation_steps * m.seconds_per_inference
            steps = max(1, min(MAX_STEPS_PER_EPOCH, int((per_epoch - validation - m.seconds_per_save) / step)))
        else:
            validation_steps = None
    fit = time_seconds - spent_seconds - end_seconds
    fixed = validation + m.seconds_per_save
    available = fit - m.seconds_first_step - fixed
    steps = min(steps, int(available // step)) if available > 0 else 0
    nnunet_hours = NNUNET_EPOCHS * (MAX_STEPS_PER_EPOCH * step + fixed) / 3600
    if steps < 1:
        one = m.seconds_first_step + MIN_STEPS_PER_EPOCH * step + fixed
        raise ConfigError(
            f"plan.time_budget={seconds_text(time_seconds)} is too short for one epoch: one takes {one:.0f} s here "
            f"({MIN_STEPS_PER_EPOCH} steps of {step:.2f} s after {m.seconds_first_step:.0f} s of tracing, validation "
            f"{validation:.0f} s, checkpoint {m.seconds_per_save:.0f} s), with {spent_seconds + end_seconds:.0f} s "
            f"of planning, start and end")
    epoch_seconds = steps * step + fixed
    epochs = max(1, int((fit - m.seconds_first_step) // epoch_seconds))
    subset = f" on {validation_steps} of its {validation_batches} batches" if validation_steps else ""
    reason = (f"{epochs} epochs x {steps} steps of {step:.2f} s (+ validation{subset} {validation:.1f} s, checkpoint "
              f"{m.seconds_per_save:.1f} s per epoch) fill {seconds_text(fit)} of the {seconds_text(time_seconds)} "
              f"budget; nnU-Net's {NNUNET_EPOCHS} x {MAX_STEPS_PER_EPOCH} would take {nnunet_hours:.1f} h here")
    return Schedule(epochs, steps, validation_steps, epoch_seconds, fit / 60, nnunet_hours, reason)


def parse_duration(text: str | float | int, key: str = "plan.time_budget") -> float:
    """Seconds of '15m', '90s', '1.5h' or a number of minutes; a one-line ConfigError naming `key` otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text) * 60
    else:
        value = str(text).strip().lower()
        units = {"s": 1, "m": 60, "min": 60, "h": 3600}
        unit = next((u for u in sorted(units, key=len, reverse=True) if value.endswith(u)), None)
        try:
            seconds = float(value[: -len(unit)] if unit else value) * (units[unit] if unit else 60)
        except ValueError:
            seconds = -1.0
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"{key} must be a duration such as 15m, 90s or 1.5h (a bare number: minutes). "
                          f"Received: {key.rsplit('.', 1)[-1]}={text!r}")
    return seconds


def parse_size(text: str | int, key: str = "plan.memory_budget") -> int:
    """Bytes of '4GB', '512MB' or '1.5GiB' (GB = GiB = 2**30); a one-line ConfigError naming `key` otherwise, a
    number without a unit included."""
    value = str(text).strip().upper().replace("IB", "B")
    units = {"KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
    unit = next((u for u in units if value.endswith(u)), None)
    try:
        size = float(value[: -len(unit)]) * units[unit] if unit else -1.0
    except ValueError:
        size = -1.0
    if not size > 0 or math.isinf(size):
        raise ConfigError(f"{key} must be a size such as 4GB or 512MB. Received: {key.rsplit('.', 1)[-1]}={text!r}")
    return int(size)


def megabytes(size: float) -> str:
    return f"{size / 2**30:.2f}GB" if size >= 2**30 else f"{size / 2**20:.0f}MB"


def seconds_text(seconds: float) -> str:
    return f"{seconds / 60:.1f}m" if seconds >= 60 else f"{seconds:.0f}s"
