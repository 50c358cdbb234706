"""The checks run when a capture ends: every op's value against torch at the capture inputs, then
the self-checks (:mod:`.selfcheck`) and gradient parity (:mod:`.gradcheck`).

The capture calls these with explicit objects (session, sinks, feeder, records, dims); they only
read them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from .dims import DimRegistry
from .gradcheck import gradient_check
from .inputs import Inputs
from .parity import ParityReport, Recorder, check
from .runtime import ConfigNetwork, Feeder
from .selfcheck import SelfCheck, padded_check, self_check
from .sinks import Sinks


@dataclass
class Options:
    """What a capture checks: ``train`` (RETURNN's train flag, as ``model.train()``), ``check`` (raise
    ``ParityError`` on a mismatch), ``atol``/``rtol`` (tolerances), ``strict`` (the first op without
    conversion raises; False: all of them in one error at the end), ``self_check`` (torch and the
    network again at another length: True, False, or {dim name: [sizes]}), ``check_grads`` (gradient
    parity of the network built from the written config)."""

    train: bool = False
    check: bool = True
    atol: float = 1e-5
    rtol: float = 1e-5
    strict: bool = True
    self_check: bool | dict = True
    check_grads: bool = False


def parity_run(recorder: Recorder, session: Any, sinks: Sinks, feeder: Feeder, inputs: Inputs, dims: DimRegistry,
               options: Options) -> ParityReport:
    """Run the network on the capture's inputs and compare every recorded op with torch's value
    (only valid frames where lengths were given, of the full-length sequences where there are some).
    Layers of random values get torch's values fed, so the ops after them compare exactly."""
    recorder.progress.stage("checking parity")
    atol, rtol = options.atol, options.rtol
    report = ParityReport(records=recorder.records, atol=atol, rtol=rtol, feeds=recorder.feeds)
    given = dims.given_lengths()
    feed = feeder.feed([inputs.values[k] for k in inputs.order], known_lengths=given)
    feed.update(sinks.fetch.feed(f) for f in recorder.feeds)
    check(recorder.records, sinks, lambda fetches: session.run(fetches, feed_dict=feed), bool(given), atol, rtol,
          dims.full_sequences())
    return report


def more_checks(report: ParityReport, options: Options, inputs: Inputs, kwargs: dict, sinks: Sinks, feeder: Feeder,
                session: Any, dims: DimRegistry, config_code, save_checkpoint, param_map: dict, outputs: list) -> None:
    """The self-checks (another length; a padded batch with NaN padding) and gradient parity
    (``options.check_grads``) into ``report``; ``outputs``: the Refs of the network's outputs.
    Captures in training mode skip the self-checks, captures with random ops the padded batch (torch's
    samples on single sequences cannot be fed into one batch), saying why."""
    if options.self_check is not False and options.train:
        report.self_checks = [SelfCheck(w, None, detail="skipped: training-mode capture (train=True)")
                              for w in ("other sizes", "padded batch")]
    elif options.self_check is not False:
        report.self_checks = self_check(inputs, kwargs, report.records, sinks, feeder, session, dims,
                                        options.self_check, options.atol, options.rtol, report.feeds)
        if report.ok and report.feeds and report.self_checks:  # (no dynamic dims: no self-checks at all)
            report.self_checks.append(SelfCheck("padded batch", None, detail="skipped: random ops (torch samples each "
                                                "sequence alone; its values cannot be fed into one padded batch)"))
        elif report.ok and dims.batch_fixed:
            report.self_checks.append(SelfCheck("padded batch", None, detail="skipped: the network is fixed to the "
                                                "capture's batch size by plain tensors along the batch axis at "
                                                + "; ".join(dims.batch_fixed)))
        elif report.ok:
            report.self_checks += padded_check(inputs, kwargs, report.records, sinks, feeder, session, dims, outputs,
                                               options.atol, options.rtol)
    if options.check_grads and report.ok:
        with tempfile.TemporaryDirectory(prefix="tdr_grads_") as tmp:
            fresh = ConfigNetwork(config_code(), save_checkpoint(os.path.join(tmp, "model")), train=options.train)
            try:
                report.grads = gradient_check(inputs, kwargs, fresh, param_map, dims, [r.dims for r in outputs],
                                              options.atol, options.rtol, feeds=report.feeds)
            finally:
                fresh.close()
