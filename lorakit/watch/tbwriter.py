"""lorakit's own TensorBoard events, written with the tensorboard package's writer (no torch, no TensorFlow).

Scalars per step: `train/avr_loss`, `train/it_per_s`, `train/epoch`, and while a GPU is watched
`gpu/memory_used_gib` and `gpu/utilization_pct`. The plan's values go in as hparams, so TensorBoard's
HParams view compares runs. sd-scripts' own events land beside these (its `logging_dir` is
`<plan>/tensorboard/sd-scripts`), so `tensorboard --logdir <plan>/tensorboard` shows both.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from lorakit.watch.events import Epoch, Event, GpuSample, Step

LOSS_TAG = "train/avr_loss"
# the hparams plugin knows no "aborted": an interrupted run ends as unknown
STATUS = {"succeeded": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "interrupted": "STATUS_UNKNOWN"}


class TensorBoardWriter:
    """An event consumer: call it with each event; `close(state)` ends the hparams session."""

    def __init__(self, logdir: Path, hparams: dict[str, Any] | None = None, *, flush_secs: int = 10,
                 experiment: bool = True):
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as exc:
            raise _missing_tensorboard() from exc
        logdir.mkdir(parents=True, exist_ok=True)
        self.logdir = logdir
        self._writer = EventFileWriter(str(logdir), flush_secs=flush_secs)
        self._step = 0
        if hparams:
            self._hparams(hparams, experiment)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Step):
            self._step = event.step
            values = {LOSS_TAG: event.loss, "train/it_per_s": event.it_per_s}
            self.scalars({tag: value for tag, value in values.items() if value is not None})
        elif isinstance(event, Epoch):
            self.scalar("train/epoch", event.epoch)
        elif isinstance(event, GpuSample):
            values = {"gpu/memory_used_gib": event.memory_used_gib, "gpu/utilization_pct": event.utilization_pct}
            self.scalars({tag: value for tag, value in values.items() if value is not None})

    def scalar(self, tag: str, value: float) -> None:
        self.scalars({tag: value})

    def scalars(self, values: dict[str, float]) -> None:
        """Several series at the current step in one event (one per step keeps the writer cheap)."""
        from tensorboard.compat.proto import event_pb2, summary_pb2

        if not values:
            return
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                                             for tag, value in values.items()])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=self._step, summary=summary))

    def close(self, state: str | None = None) -> None:
        if state is not None and state in STATUS:
            from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

            end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(STATUS[state]), end_time_secs=time.time())
            self._plugin_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))
        self._writer.flush()
        self._writer.close()

    def _hparams(self, hparams: dict[str, Any], experiment: bool) -> None:
        """This run's session; with `experiment`, also the experiment it belongs to (a batch writes its own)."""
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2

        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for key, value in sorted(hparams.items()):
            kind = _kind(value)
            if kind == "DATA_TYPE_BOOL":
                start.hparams[key].bool_value = value
            elif kind == "DATA_TYPE_FLOAT64":
                start.hparams[key].number_value = float(value)
            else:
                start.hparams[key].string_value = _text(value)
        if experiment:
            self._plugin_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=_experiment(hparams)))
        self._plugin_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start))

    def _plugin_summary(self, tag: str, content) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import metadata

        content.version = metadata.PLUGIN_DATA_VERSION
        plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                                        content=content.SerializeToString())
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=summary_pb2.SummaryMetadata(
            plugin_data=plugin))])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))


def _missing_tensorboard():
    from lorakit.errors import UserError

    return UserError("TensorBoard summaries need the tensorboard package, which is not installed.",
                     fix="pip install 'lorakit[tensorboard]' (or pip install tensorboard)")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "DATA_TYPE_BOOL"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return "DATA_TYPE_FLOAT64"
    return "DATA_TYPE_STRING"


def _text(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _experiment(hparams: dict[str, Any]):
    from tensorboard.plugins.hparams import api_pb2

    infos = [api_pb2.HParamInfo(name=key, type=api_pb2.DataType.Value(_kind(value))) for key, value in hparams.items()]
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in (LOSS_TAG, "train/it_per_s", "gpu/memory_used_gib")]
    return api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)


def write_experiment(logdir: Path, hparams: dict[str, Any]) -> None:
    """An HParams experiment of its own (the columns: `hparams`' keys), for runs that write only their sessions."""
    try:
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2
    except ImportError as exc:
        raise _missing_tensorboard() from exc

    for old in logdir.glob("events.out.tfevents.*"):
        old.unlink()  # one experiment per batch: the newest
    writer = TensorBoardWriter(logdir)
    writer._plugin_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=_experiment(hparams)))
    writer.close()


def plan_hparams(values) -> dict[str, Any]:
    """The plan's values that are set, as hparams (paths and prompts too: they tell runs apart)."""
    return {key: item.value for key, item in values.items() if item.value is not None}
