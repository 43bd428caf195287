"""Beam's Dask runner, with the faults that keep it from running curate's stages mended.

`--runner=curate.pipelines.runners.DaskRunner --dask_client_address=tcp://HOST:8786` runs a stage on a dask.distributed
cluster (docs/DEPLOY.md, "Dask"). Apache Beam's own `apache_beam.runners.dask.dask_runner.DaskRunner`
(2.77) translates each transform into a dask bag, and, measured on a scheduler with two worker processes:

- a DoFn with tagged outputs (`with_outputs`) gives one bag holding every output, and each consumer of any
  of its outputs reads all of them: a stage's rejects would reach its writer of kept images, and the other
  way round;
- only the bag of the transform visited last is computed, so a pipeline with several sinks (every stage:
  its table, its rejects, its failures, its manifest) runs one of them and drops the rest without a word;
- a side input is computed inside each task that reads it (`list(bag)` there), again, with everything that
  leads to it: the dedup stage, whose manifest reads counts at the end of twelve rounds of label
  propagation, took 217-300 s on the sample crawl against about 6 s in process;
- a Flatten (dask's `concat`) has the sum of its inputs' partitions, so a graph that flattens in a loop
  multiplies the tasks of every groupby after it;
- a DoFn is set up and torn down for every bundle (a dask partition): the text stage loaded its OCR models
  once a partition.

Here each consumer reads only its own output of the producer; every bag that no transform consumes is
computed, in one graph (what they share runs once); and a side input is a node of that graph (a dask Item:
the side PCollection's elements, gathered once) that its readers' tasks depend on by key; a Flatten keeps
as many partitions as its largest input; and a DoFn is set up once a worker thread and job (`_set_up`).
What stays as Beam has it: no metrics (`result.metrics()` raises; curate's counters are not read back), and
`Reshuffle` is a no-op.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, cast

import apache_beam
from apache_beam import pvalue
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import transform_evaluator as beam_ops
from apache_beam.runners.dask.overrides import _Flatten as _BeamFlatten
from apache_beam.runners.dask.overrides import dask_overrides
from apache_beam.transforms.sideinputs import SideInputMap
from dask._task_spec import Task, TaskRef  # dask's task spec (2024.12+; constraints.txt pins dask)
from dask.bag import Bag
from dask.highlevelgraph import HighLevelGraph
from dask.tokenize import tokenize


class _Receiver(Receiver):
    """Appends a main output as its WindowedValue and a tagged one as TaggedOutput(tag, WindowedValue). Beam's
    bundle function returns each appended output's `value`: a main output's bare value, and a tagged one's
    WindowedValue, without its tag, so that every consumer gets every output; this keeps the tag."""

    def __init__(self, tag: str | None, into: list) -> None:
        self.tag, self.into = tag, into

    def receive(self, windowed_value: Any) -> None:
        self.into.append(windowed_value if self.tag is None else pvalue.TaggedOutput(self.tag, windowed_value))


class _Receivers(dict):
    """One receiver a tag, all appending to one list in output order."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list = []

    def __missing__(self, tag: str | None) -> _Receiver:
        self[tag] = _Receiver(tag, self.outputs)
        return self[tag]


class _Call:
    """A DoFn's fixed arguments, held in one object: dask walks the lists and dicts in a task's arguments and
    runs any tuple in them whose first item is callable, so Beam's arguments must not reach it bare. `run` and
    `token` name the job and the transform, for `_set_up`."""

    def __init__(self, run: str, signature: Any, window_fn: Any, invoker_kwargs: dict, side_views: list) -> None:
        self.run, self.token = run, uuid.uuid4().hex
        self.signature, self.window_fn, self.invoker_kwargs = signature, window_fn, invoker_kwargs
        self.side_views = side_views  # (view type, view options, window mapping fn) a side input


_LOCAL = threading.local()


def _set_up(call: _Call) -> tuple[Any, bool]:
    """This worker thread's DoFn for the transform: set up once and reused by every bundle (a dask partition)
    of the job, as Beam's runners do, instead of once a bundle (the text stage loads its OCR models in setup);
    a thread's DoFns of an earlier job are torn down when it first runs a task of a later one. (signature,
    whether it is new and needs its setup.)"""
    jobs: dict[str, dict[str, Any]] = _LOCAL.__dict__.setdefault("jobs", {})
    for run in [r for r in jobs if r != call.run]:
        for signature in jobs.pop(run).values():
            signature.teardown_lifecycle_method.method_value()
    fns = jobs.setdefault(call.run, {})
    fresh = call.token not in fns
    if fresh:
        fns[call.token] = call.signature
    return fns[call.token], fresh


def _bundle(items: Any, call: _Call, *side_values: list) -> list:
    """One dask partition through a DoFn (set up once a worker thread: `_set_up`): start_bundle, process each,
    finish_bundle. Its own receivers: a worker may run several partitions at once. `side_values`: each side
    input's elements, which the graph computed once, before this task."""
    signature, fresh = _set_up(call)
    receivers = _Receivers()
    handler = _OutputHandler(window_fn=call.window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
                             per_element_output_counter=None, output_batch_converter=None,
                             process_yields_batches=False, process_batch_yields_elements=False)
    side_inputs = [SideInputMap(view, options, beam_ops.DaskBagWindowedIterator(cast(Any, values), mapping))
                   for (view, options, mapping), values in zip(call.side_views, side_values, strict=True)]
    invoker = DoFnInvoker.create_invoker(signature, handler, side_inputs=side_inputs, **call.invoker_kwargs)
    if fresh:
        invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    return [v if isinstance(v, pvalue.TaggedOutput) else v.value for v in receivers.outputs]


def _elements(partition: Any) -> list:
    return list(partition)


def _joined(lists: Any) -> list:
    return [item for part in lists for item in part]


class _ParDo(beam_ops.ParDo):
    """Beam's translation of a ParDo, but a tagged output keeps its tag (`_Receiver`), side inputs are graph
    nodes read by key (`_map_partitions`), and the DoFn is set up once a worker thread (`_set_up`)."""

    def apply(self, input_bag: Any, side_inputs: Any = None) -> Any:
        """`side_inputs`: (view type, view options, window mapping fn, dask Item of the elements) a side input."""
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        invoker_kwargs = dict(context=DoFnContext(transform.label, state=None),
                              input_args=list(args), input_kwargs=kwargs, user_state_context=None,
                              bundle_finalizer_param=apache_beam.DoFn.BundleFinalizerParam())
        sides = side_inputs or []
        call = _Call(self.bag_kwargs[RUN], DoFnSignature(transform.fn), window_fn, invoker_kwargs,
                     [side[:3] for side in sides])
        return _map_partitions(input_bag.map(beam_ops.get_windowed_value, window_fn), call, [side[3] for side in sides])


def _map_partitions(bag: Any, call: _Call, items: list) -> Any:
    """`_bundle` over each partition of `bag`, each task reading the computed `items` (dask Items) by key.

    Not `Bag.map_partitions(func, *items)`: dask turns an Item argument into a Delayed through its own
    optimization, so the graph would then hold each upstream task twice, once as it is and once fused under
    an alias of its name; merged with the rest, tasks went missing or ran on an exhausted partition
    (measured: a side input read empty, a branch's output lost)."""
    name = f"bundle-{tokenize(bag.name, call, [item.key for item in items])}"
    sides = [TaskRef(item.key) for item in items]
    graph: dict[Any, Any] = {(name, i): Task((name, i), _bundle, TaskRef((bag.name, i)), call, *sides)
                             for i in range(bag.npartitions)}
    return Bag(HighLevelGraph.from_collections(name, graph, dependencies=[bag, *items]), name, bag.npartitions)


class _Flatten(beam_ops.Flatten):
    """Beam's translation of a Flatten (dask's `concat`, whose partitions are all its inputs' partitions), then
    joined back to as many partitions as its largest input: otherwise a graph that flattens in a loop (dedup's
    label propagation, twelve rounds) multiplies its partitions, and every groupby after it costs a task per
    pair of partitions (measured: 100,000 tasks and 110 s for the sample crawl's dedup, against 6 s in process)."""

    def apply(self, input_bag: Any, side_inputs: Any = None) -> Any:
        return super().apply(input_bag, side_inputs).repartition(npartitions=max(b.npartitions for b in input_bag))


RUN = "curate_run"  # in the translations' bag_kwargs: this job's id (Beam's Create reads only its own keys)
TRANSLATIONS = {**beam_ops.TRANSLATIONS, apache_beam.ParDo: _ParDo, _BeamFlatten: _Flatten}


def _output(bag: Any, tag: str | None) -> Any:
    """The elements of one output of a multi-output DoFn's bag (`tag` None: the main output), untagged."""

    def mine(item: Any) -> bool:
        return item.tag == tag if isinstance(item, pvalue.TaggedOutput) else tag is None

    return bag.filter(mine).map(lambda item: item.value if isinstance(item, pvalue.TaggedOutput) else item)


class _Visitor(PipelineVisitor):
    """Each transform as a dask bag, as Beam's visitor makes them, but each input read from its own output."""

    def __init__(self, bag_kwargs: dict) -> None:
        self.bag_kwargs = bag_kwargs
        self.bags: dict[AppliedPTransform, Any] = {}
        self.consumed: set[AppliedPTransform] = set()

    def _input(self, value: Any) -> Any:
        producer = value.producer
        self.consumed.add(producer)
        bag = self.bags[producer]
        return _output(bag, value.tag) if len(producer.outputs) > 1 else bag

    def visit_transform(self, node: AppliedPTransform) -> None:
        translation: Any = TRANSLATIONS.get(node.transform.__class__, beam_ops.NoOp)
        op = translation(node, bag_kwargs=self.bag_kwargs)
        inputs = [self._input(v) for v in node.inputs
                  if not isinstance(v, pvalue.PBegin) and v.producer in self.bags]
        begins = [None for v in node.inputs if isinstance(v, pvalue.PBegin)]
        bag_inputs = begins + inputs
        kwargs: dict[str, Any] = {"input_bag": bag_inputs if isinstance(op, beam_ops.Flatten) or len(bag_inputs) != 1
                                  else bag_inputs[0], "side_inputs": None}
        if not node.inputs:
            kwargs["input_bag"] = None
        if node.side_inputs:  # each computed once, as a node of the graph (an Item) that the readers depend on
            kwargs["side_inputs"] = [
                (type(si), si._view_options(), si._window_mapping_fn,
                 self._input(si.pvalue).reduction(_elements, _joined))
                for si in node.side_inputs]
        self.bags[node] = op.apply(**kwargs)


class DaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with tagged outputs kept apart and every sink computed (see the module's doc)."""

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        import dask.distributed as ddist

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(drop_default=True,
                                                                              current_only=True)
        bag_kwargs = {**beam_dask.DaskOptions._extract_bag_kwargs(dask_options), RUN: uuid.uuid4().hex}
        client = ddist.Client(**dask_options)
        pipeline.replace_all(dask_overrides())
        visitor = _Visitor(bag_kwargs)
        pipeline.visit(visitor)
        sinks = [bag.count() for node, bag in visitor.bags.items() if node not in visitor.consumed]
        return beam_dask.DaskRunnerResult(client, client.compute(sinks))
