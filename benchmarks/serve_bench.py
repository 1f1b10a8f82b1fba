"""Serving throughput and latency: our service (PyTorch fp32, ONNX fp32, ONNX int8 and its own pick) vs infinity-emb.

    python -m benchmarks.serve_bench                       # bundled all-MiniLM-L6-v2, writes RESULTS.md
    python -m benchmarks.serve_bench --model-dir PATH      # a saved model (e.g. a `model` materialization)
    python -m benchmarks.serve_bench --requests 48 --no-write

Every server runs on 127.0.0.1 as its own process and gets the same OpenAI-style requests (one real
arXiv "title. abstract" per request, JSON floats back, or base64 with ``--encoding-format base64``), at
concurrency 1, 8 and 32, a bounded number of requests per level after a warm-up. infinity-emb runs from its
own virtualenv (``.bench-venvs/infinity``: it pins older numpy / sentence-transformers), on its torch engine. The
load average is recorded next to each series: other processes on a shared machine slow everything.
It also checks, in process, that subject-retrieval P@10 of the backend the service picks by default
stays within 1 point of PyTorch fp32 on real test papers.

    python -m benchmarks.serve_bench --search              # POST /search instead, one service per index
    python -m benchmarks.serve_bench --batching            # batch shapes and encoding lengths, default backend

``--search`` measures ``/search`` (k = 10, one real abstract as the query) at the same concurrency levels,
the service on ``--search-backend`` (default ``auto``, its own choice at load), once per ``--search-index
KIND:N``: a release of the bundled model with a ``faiss_index`` of N vectors built by ``paper_index`` with the
project's defaults (IVF-PQ: ``IvfPqOptions()``). The vectors are those of ``benchmarks.index_scale``: 2,000
bundled papers embedded by the bundled model (``--real-cache``) and noisy copies of them; a copy's sidecar row
is its seed paper's title and subject under the id ``synthetic-<row>``. Only a table is printed (RESULTS.md is
left alone).

``--batching`` measures the service's own pick (chosen at load, then pinned) at several ``--batch-shapes``
(``MAX_BATCH_SIZE`` x ``MAX_BATCH_TOKENS``) for the model released at each of ``--seq-lengths`` tokens (a copy
whose ``max_seq_length`` is changed, the weights the same), with each length's subject P@10 against PyTorch fp32
at 256 texts: what the token budget per batch and the encoding length buy and cost. A table is printed only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, resolve_model_source
from arxiv_assets.ml.index import IvfPqOptions, paper_index
from arxiv_assets.ml.metrics import subject_retrieval
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.variants import ModelExport, load_variant, parity_sample, timed_encode
from arxiv_assets.profiles import get_profile
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets.storage.releases import Release, ReleaseStore
from arxiv_assets_tests.net import free_port, wait_for_http
from benchmarks.common import add_decision_argument, export_as_released, flags_line, machine_line, profile_splits
from benchmarks.index_scale import NOISE, real_embeddings, synthetic_corpus
from serving.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
INFINITY_BIN = PROJECT_ROOT / ".bench-venvs" / "infinity" / "bin" / "infinity_emb"
RESULTS = PROJECT_ROOT / "benchmarks" / "RESULTS.md"
SECTION_START, SECTION_END = "<!-- serve_bench:start -->", "<!-- serve_bench:end -->"
CONCURRENCY = (1, 8, 32)
SERVED_NAME = "arxiv-embeddings"


def load_text() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Target:
    name: str  # the row label
    command: list[str]
    env: dict[str, str]
    url: str
    model: str  # the `model` field of the request
    ready_path: str
    endpoint: str = "embeddings"  # what run_level posts: "embeddings" (OpenAI-style) or "search" (ours only)
    encoding_format: str = "float"  # of the embeddings asked for: "float" (JSON numbers) or "base64"
    pid: int | None = None  # the server's process while it runs

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server's process has used so far."""
        user, system = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
        return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")

    @contextmanager
    def running(self, log: Path):
        with log.open("w") as out:
            process = subprocess.Popen(self.command, env=self.env, cwd=PROJECT_ROOT, stdout=out,
                                       stderr=subprocess.STDOUT)
            self.pid = process.pid
            try:
                try:
                    wait_for_http(self.url + self.ready_path, timeout_s=300, process=process)
                except (RuntimeError, TimeoutError) as error:
                    raise RuntimeError(f"{self.name} did not start: {error}; see {log}") from error
                yield self
            finally:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def our_service(name: str, backend: str, releases_uri: str, endpoint: str = "embeddings",
                **settings: str) -> Target:
    """``python -m serving`` on a free port; ``settings``: more ARXIV_SERVING_* variables (max_batch_size="16")."""
    port = free_port()
    env = {**os.environ, "ARXIV_SERVING_RELEASES_URI": releases_uri,
           "ARXIV_SERVING_BACKEND": backend, "ARXIV_SERVING_PORT": str(port), "ARXIV_SERVING_POLL_INTERVAL_S": "0",
           "ARXIV_SERVING_LOG_LEVEL": "warning",  # the default queue (4096 texts) holds every load the bench sends
           **{f"ARXIV_SERVING_{key.upper()}": value for key, value in settings.items()}}
    return Target(name, [sys.executable, "-m", "serving"], env, f"http://127.0.0.1:{port}", SERVED_NAME, "/ready",
                  endpoint)


# sentence-transformers 5 names its modules by new paths; infinity-emb pins 3.x, which knows them as
# sentence_transformers.models.<Class>, reads max_seq_length from sentence_bert_config.json and
# calls the pooling dimension word_embedding_dimension.
LEGACY_MODULES = {"Transformer": "sentence_transformers.models.Transformer",
                  "Pooling": "sentence_transformers.models.Pooling",
                  "Normalize": "sentence_transformers.models.Normalize"}


def legacy_copy(model_dir: Path, out_dir: Path) -> Path:
    """The same weights in the directory layout sentence-transformers 3.x loads (for the peer server)."""
    shutil.copytree(model_dir, out_dir)
    modules = json.loads((out_dir / "modules.json").read_text())
    for module in modules:
        module["type"] = LEGACY_MODULES[module["type"].rsplit(".", 1)[1]]
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2))
    max_seq_length = json.loads((out_dir / "tokenizer_config.json").read_text())["model_max_length"]
    (out_dir / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": int(max_seq_length), "do_lower_case": False}))
    for module in modules:
        config = out_dir / module["path"] / "config.json"
        if module["path"] and config.is_file():
            fields = json.loads(config.read_text())
            if "embedding_dimension" in fields:
                fields["word_embedding_dimension"] = fields.pop("embedding_dimension")
            config.write_text(json.dumps(fields, indent=2))
    return out_dir


def infinity(model_dir: Path, engine: str = "torch") -> Target:
    port = free_port()
    command = [str(INFINITY_BIN), "v2", "--model-id", str(model_dir), "--engine", engine, "--device", "cpu",
               "--host", "127.0.0.1", "--port", str(port), "--batch-size", "32", "--no-bettertransformer"]
    env = {**os.environ, "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    return Target(f"infinity-emb {engine}", command, env, f"http://127.0.0.1:{port}", str(model_dir), "/health")


async def run_level(target: Target, texts: list[str], concurrency: int,
                    requests: int) -> tuple[list[float], float, int]:
    """``requests`` single-text requests, ``concurrency`` in flight at a time: (latencies, wall seconds, failures)."""
    path = "/v1/embeddings" if target.model == SERVED_NAME else "/embeddings"
    if target.endpoint == "search":
        path = "/search"

    def body(text: str) -> dict:
        if target.endpoint == "search":
            return {"query": text, "k": 10}
        return {"model": target.model, "input": [text], "encoding_format": target.encoding_format}

    latencies: list[float] = []
    failures = 0
    queue = iter(range(requests))
    async with httpx.AsyncClient(base_url=target.url, timeout=300,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker():
            nonlocal failures
            for i in queue:  # shared iterator: the loop is bounded by `requests` in total
                started = time.perf_counter()
                response = await client.post(path, json=body(texts[i % len(texts)]))
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, failures


def bench(targets: list[Target], texts: list[str], requests: int, rounds: int, log_dir: Path) -> list[dict]:
    """Every server up at once (idle ones use no CPU), levels interleaved across servers and repeated
    ``rounds`` times, so a burst of load from other processes hits all of them alike."""
    cells: dict[tuple[str, int], dict] = {}
    with ExitStack() as stack:
        for target in targets:
            stack.enter_context(target.running(log_dir / f"{target.name.replace(' ', '_')}.log"))
            if target.model == SERVED_NAME:  # ours measured 1 thread vs all cores at load: say which it kept
                threads = httpx.get(target.url + "/ready", timeout=30).json()["threads"]
                target.name += f" ({threads} thread{'s' if threads > 1 else ''})"
            asyncio.run(run_level(target, texts, 4, 8))  # warm-up
        for round_ in range(rounds):
            for concurrency in CONCURRENCY:
                for target in targets:
                    load, cpu = os.getloadavg()[0], target.cpu_seconds()
                    latencies, wall, failures = asyncio.run(
                        run_level(target, texts, concurrency, max(requests, 2 * concurrency)))
                    cpu = target.cpu_seconds() - cpu
                    cell = cells.setdefault((target.name, concurrency), {"latencies": [], "rates": [], "loads": [],
                                                                         "failed": 0, "cpu_rates": []})
                    cell["latencies"] += latencies
                    cell["rates"].append(len(latencies) / wall)
                    cell["cpu_rates"].append(len(latencies) / cpu if cpu > 0 else float("nan"))
                    cell["loads"].append(load)
                    cell["failed"] += failures
                    print(f"round {round_ + 1} {target.name:22s} c={concurrency:<3d} {len(latencies) / wall:6.1f} "
                          f"requests/s  p50 {1000 * np.median(latencies):6.0f} ms  p99 "
                          f"{1000 * np.percentile(latencies, 99):6.0f} ms  load {load:.2f}", flush=True)
    return [{"server": name, "concurrency": concurrency,
             "texts/s": float(np.median(cell["rates"])),
             # the server's own CPU per text: what it would serve on cores of its own, the load generator elsewhere
             "texts per CPU-s": float(np.median(cell["cpu_rates"])),
             "p50 ms": 1000 * float(np.percentile(cell["latencies"], 50)),
             "p99 ms": 1000 * float(np.percentile(cell["latencies"], 99)),
             "failed": cell["failed"],
             "1-min load": " / ".join(f"{x:.1f}" for x in cell["loads"])}
            for (name, concurrency), cell in cells.items()]


def default_backend_info(target: Target, log_dir: Path) -> dict:
    """What the service picks with ``backend=auto``, and the measurements it picked by (from /ready)."""
    with target.running(log_dir / "auto.log"):
        return httpx.get(target.url + "/ready", timeout=30).json()


def p10_check(export_dir: Path, backend: str, papers: pd.DataFrame) -> dict[str, float]:
    """Subject-retrieval P@10 of PyTorch fp32 and of ``backend`` on the same real test papers, in process."""
    texts, subjects = paper_texts(papers), papers["primary_subject"].tolist()
    scores = {}
    for variant in dict.fromkeys(["torch-fp32", backend]):
        vectors, _ = timed_encode(load_variant(export_dir, variant), variant, texts, batch_size=32)
        scores[variant] = subject_retrieval(vectors, subjects).micro["P@10"]
    return scores


def write_section(text: str) -> None:
    section = f"{SECTION_START}\n{text.rstrip()}\n{SECTION_END}\n"
    if RESULTS.exists():
        current = RESULTS.read_text()
        if SECTION_START in current and SECTION_END in current:
            before, rest = current.split(SECTION_START, 1)
            after = rest.split(SECTION_END, 1)[1].lstrip("\n")
            RESULTS.write_text(before + section + ("\n" + after if after else ""))
        else:
            RESULTS.write_text(current.rstrip() + "\n\n" + section)
    else:
        RESULTS.write_text("# Benchmark results\n\n" + section)


def publish_release(work: Path, export: ModelExport, reason: str, index_dir: Path | None = None,
                    decision: str = "challenger") -> str:
    """A release of ``export`` (and the saved index ``index_dir``, which publishing consumes) in a new directory
    under ``work`` (its own artifact store: one store would prune older releases' versions), published as the
    pipeline publishes one, as a release of ``decision`` (its parity bar for reduced precision follows it);
    returns the releases URI the service reads."""
    root = Path(tempfile.mkdtemp(prefix="release-", dir=work))
    staged = root / "staged"
    shutil.copytree(export.directory, staged)
    store = ArtifactStore(str(root / "artifacts"))
    releases_uri = str(root / "releases")
    ReleaseStore(releases_uri).publish(Release(
        release_id=Release.new_id(), model_uri=store.publish("onnx_model", staged),
        model_fingerprint=export.source_fingerprint,
        index_uri=store.publish("faiss_index", index_dir) if index_dir is not None else None,
        decision=decision, reason=reason))
    return releases_uri


def search_index(kind: str, n: int, real: np.ndarray, real_papers: pd.DataFrame, fingerprint: str,
                 out_dir: Path) -> tuple[Path, dict]:
    """A saved ``kind`` index of ``n`` vectors (the real ones, then noisy copies) built with the project's
    defaults, and what it took (build seconds, index MB)."""
    corpus, seeds = synthetic_corpus(real, n, NOISE)
    seed_papers = real_papers.iloc[seeds].reset_index(drop=True)
    papers = seed_papers.assign(id=[str(x) if row < len(real) else f"synthetic-{row}"
                                    for row, x in enumerate(seed_papers["id"])])
    started = time.perf_counter()
    built = paper_index(corpus, papers, kind, ivfpq=IvfPqOptions(), model_fingerprint=fingerprint)
    seconds = time.perf_counter() - started
    built.save(out_dir)
    size = (out_dir / "index.faiss").stat().st_size / 2**20
    return out_dir, {"index MB": round(size, 1), "build s": round(seconds, 1), "options": built.meta.get("ivfpq")}


def setup() -> tuple[str, str, pd.DataFrame, list[str]]:
    """The load average and machine line at the start, the default profile's test papers, and the 256 of them
    (as "title. abstract") every request sends one of."""
    started_load, machine = load_text(), machine_line()
    splits = profile_splits(get_profile("default"))
    test = splits[splits["split"] == "test"]
    return started_load, machine, test, paper_texts(test.sample(n=min(256, len(test)), random_state=0))


def search_main(args: argparse.Namespace, work: Path) -> None:
    """/search latency at every concurrency level, one service per ``--search-index``; prints a table."""
    started_load, machine, _, texts = setup()
    real, _ = real_embeddings(2000, args.real_cache)
    real_papers = pd.read_parquet(BUNDLED_SAMPLE).sample(n=2000, random_state=0)  # the rows real_embeddings embeds
    print(f"{machine}\nexporting {args.model_dir} ...", flush=True)
    export = export_as_released(Path(args.model_dir), work / "export")
    targets, built = [], {}
    for spec in args.search_index:
        kind, n = spec.split(":")
        name = f"{kind} {int(n):,}"
        print(f"building {name} ...", flush=True)
        index_dir, built[name] = search_index(kind, int(n), real, real_papers, export.source_fingerprint,
                                              work / f"index-{kind}-{n}")
        print(f"built {name}: {built[name]}", flush=True)
        releases_uri = publish_release(work, export, f"serve_bench --search {spec}", index_dir)
        targets.append(our_service(name, args.search_backend, releases_uri, endpoint="search"))
    rows = bench(targets, texts, args.requests, args.rounds, work)
    for row in rows:
        row["requests/s"] = row.pop("texts/s")
        row.update({k: v for k, v in built[row["server"].split(" (")[0]].items() if k != "options"})
    print(f"\n{machine} · {flags_line()}; load average when it started: {started_load}\n"
          f"/search k=10, one real abstract per query, {args.requests} requests per cell, {args.rounds} rounds, "
          f"backend {args.search_backend}; IVF-PQ options: "
          f"{[b['options'] for b in built.values() if b['options']]}\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


def with_max_seq_length(model_dir: Path, max_seq_length: int, out_dir: Path) -> Path:
    """A copy of a saved model that encodes ``max_seq_length`` tokens (the weights are the same)."""
    shutil.copytree(model_dir, out_dir)
    config = out_dir / "sentence_bert_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_seq_length": max_seq_length}))
    return out_dir


def batching_main(args: argparse.Namespace, work: Path) -> None:
    """The service's default backend at every ``--batch-shapes`` and ``--seq-lengths``; prints a table."""
    started_load, machine, test, texts = setup()
    targets, p10, backend = [], {}, None
    for length in args.seq_lengths:
        print(f"{machine}\nexporting {args.model_dir} at {length} tokens ...", flush=True)
        export = export_as_released(with_max_seq_length(Path(args.model_dir), length, work / f"model-{length}"),
                             work / f"export-{length}")
        releases_uri = publish_release(work, export, f"serve_bench --batching at {length} tokens")
        # the backend the service picks for the model as released, then pinned for every shape
        backend = backend or default_backend_info(our_service("ours auto", "auto", releases_uri), work)["backend"]
        p10[length] = p10_check(export.directory, backend, parity_sample(test, args.p10_papers))
        for shape in args.batch_shapes:
            size, tokens = shape.split("x")
            targets.append(our_service(f"{length} tokens, batch {size}x{tokens}", backend, releases_uri,
                                       max_batch_size=size, max_batch_tokens=tokens))
    rows = bench(targets, texts, args.requests, args.rounds, work)
    print(f"\n{machine} · {flags_line()}; load average when it started: {started_load}\n"
          f"backend {backend} (the service's pick at load, then pinned), one real abstract per request, "
          f"{args.requests} requests per cell, {args.rounds} rounds; subject P@10 on {args.p10_papers} test papers "
          f"(torch-fp32 / {backend}) by encoding length: "
          f"{ {length: {k: round(v, 4) for k, v in scores.items()} for length, scores in p10.items()} }\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=resolve_model_source(BUNDLED_BASE_MODEL))
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level (at least 2x it)")
    parser.add_argument("--rounds", type=int, default=2, help="times every (server, concurrency) cell is run")
    parser.add_argument("--p10-papers", type=int, default=256, help="test papers for the P@10 check")
    parser.add_argument("--skip-infinity", action="store_true")
    add_decision_argument(parser)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--search", action="store_true", help="measure POST /search (see above) instead")
    parser.add_argument("--search-index", nargs="+", default=["flat:100000", "ivfpq:1000000"],
                        help="KIND:VECTORS of each index --search serves (flat, hnsw or ivfpq)")
    parser.add_argument("--real-cache", type=Path, default=None,
                        help="--search: a .npy of the 2,000 real embeddings (benchmarks.index_scale's --real-cache)")
    parser.add_argument("--search-backend", default="auto",
                        help="--search: the service's backend (auto measures every one at load: minutes on busy cores)")
    parser.add_argument("--encoding-format", choices=["float", "base64"], default="float",
                        help="how every server returns embeddings (base64: no JSON numbers to write and parse)")
    parser.add_argument("--batching", action="store_true",
                        help="measure the default backend at other batch shapes and encoding lengths instead")
    parser.add_argument("--batch-shapes", nargs="+", default=["8x2048", "16x4096", "32x8192", "64x16384"],
                        help="--batching: MAX_BATCH_SIZE x MAX_BATCH_TOKENS of each service")
    parser.add_argument("--seq-lengths", type=int, nargs="+", default=[256, 128],
                        help="--batching: max_seq_length the model is released with")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    if args.search or args.batching:
        (search_main if args.search else batching_main)(args, work)  # on failure the logs stay in `work`
        shutil.rmtree(work, ignore_errors=True)
        return
    started_load, machine, test, texts = setup()
    print(f"{machine}\nexporting {args.model_dir} ...", flush=True)
    export = export_as_released(Path(args.model_dir), work / "export")
    # the model under test, released as the pipeline would release it
    releases_uri = publish_release(work, export, f"serve_bench of {args.model_dir}", decision=args.decision)

    auto = default_backend_info(our_service("ours auto", "auto", releases_uri), work)
    default_backend = auto["backend"]
    print(f"the service picks {default_backend}: {auto['backend_measurements']}", flush=True)
    # the service's own pick is benchmarked too when it is none of these (torch-bf16 on AMX / AVX512-BF16 CPUs)
    pinned = dict.fromkeys(("torch-fp32", "onnx-fp32", "onnx-int8", "openvino-int8", default_backend))
    targets = [our_service(f"ours {b}", b, releases_uri) for b in pinned]
    if not args.skip_infinity:
        if not INFINITY_BIN.exists():
            sys.exit(f"{INFINITY_BIN} is missing: create .bench-venvs/infinity (see docs/serving.md)")
        targets.append(infinity(legacy_copy(Path(args.model_dir), work / "legacy-model")))
    for target in targets:
        target.encoding_format = args.encoding_format
    rows = bench(targets, texts, args.requests, args.rounds, work)

    p10 = p10_check(export.directory, default_backend, parity_sample(test, args.p10_papers))
    diff = 100 * (p10[default_backend] - p10["torch-fp32"])
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f")
    top = max(CONCURRENCY)

    def ratio(backend: str, reference: str, column: str = "texts/s") -> float:
        """At the top concurrency; nan where either was not benchmarked (--skip-infinity)."""
        rate = {row["server"].split(" (")[0]: row[column] for row in rows if row["concurrency"] == top}
        return rate.get(f"ours {backend}", float("nan")) / rate.get(reference, float("nan"))

    measured = ", ".join(f"{m['backend']} x{m['threads']} "
                         + (f"{m['texts_per_s']:.1f} texts/s" if m["texts_per_s"] else "not timed (parity)")
                         + f" (min cos {m['min_cosine'] or 0:.4f})" for m in auto["backend_measurements"])
    vectors_as = "base64" if args.encoding_format == "base64" else "JSON floats"
    report = f"""## Serving: texts/s and latency behind the service vs infinity-emb ({date.today()})

{machine} · {flags_line()}; load average when it started: {started_load}. Model: `{args.model_dir}`
(all-MiniLM-L6-v2 or a fine-tune of it), released as `{args.decision}`, max_seq_length {auto['max_seq_length']},
one real arXiv "title. abstract" per request
(OpenAI-style JSON, vectors back as {vectors_as}), {args.requests} requests per cell after a warm-up, client on the
same 2 cores. All servers up at once, cells interleaved across servers and run {args.rounds} times: texts/s is
the median of the rounds, p50/p99 over all their requests, 1-min load at the start of each round; texts
per CPU-s divides the texts served by the CPU time the server's process used meanwhile (the median of the
rounds): what it would serve on cores of its own, the load generator on others.
Ours: `python -m serving` with the backend pinned (threads: 1 or 2, measured at load),
dynamic batching (32 texts / 8192 padded tokens, 5 ms wait); infinity-emb 0.0.78, torch engine, batch
size 32, in its own venv. Run: `python -m benchmarks.serve_bench --decision {args.decision}`.

{table}

- Default backend on this machine: **{default_backend}** with {auto['threads']} thread(s), chosen at load by
  measuring {Settings().probe_texts} real abstracts per (backend, threads), best of {Settings().backend_rounds}
  rounds after a warm-up ({measured}); int8 config `{export.quantization_target}`. Why:
  {auto['backend_reason']}.
- P@10 (subject retrieval, {args.p10_papers} real test papers): PyTorch fp32 {p10['torch-fp32']:.4f},
  {default_backend} {p10[default_backend]:.4f}: {diff:+.2f} points, {"within" if abs(diff) <= 1 else "NOT within"}
  1 point of PyTorch fp32.
- At concurrency {top}: the default backend serves {ratio(default_backend, "ours torch-fp32"):.2f}x the texts/s
  of PyTorch fp32 behind the same service and {ratio(default_backend, "infinity-emb torch"):.2f}x infinity-emb's
  (targets: 3x each). Per CPU-second of the server's own process: {ratio(default_backend, "ours torch-fp32",
  "texts per CPU-s"):.2f}x and {ratio(default_backend, "infinity-emb torch", "texts per CPU-s"):.2f}x.
- The service measures 1 thread vs all cores at load: on shared, loaded cores one thread can beat two.
"""
    print("\n" + report)
    if not args.no_write:
        write_section(report)
        print(f"wrote {RESULTS}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
