"""deploy/kuberay: the KubeRay manifests are the ones generate.py writes from values.yaml, each one's `spec` is valid
against KubeRay's CRD schema (tests/data/kuberay-crds, with unknown fields rejected as `kubectl apply`'s strict field
validation rejects them), every RayJob runs jobs/ scripts with flags their own parsers accept (no Ray started), and
the RayService runs serve/config.yaml's application, on exports the RayJobs write."""
from __future__ import annotations

import copy
import importlib.util
import re
import runpy
import shlex
import tempfile
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kuberay"
CRDS = Path(__file__).resolve().parent / "data" / "kuberay-crds"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}
NAME_LIMITS = {"RayCluster": 53, "RayJob": 47, "RayService": 47}  # KubeRay's: it appends suffixes to these names
DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 1 MB each


def _generator():
    spec = importlib.util.spec_from_file_location("kuberay_generate", DEPLOY / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generator()
VALUES = generate.load_values()
STORAGE = VALUES["storage"].rstrip("/")
DOCS = [(path, i, doc) for path in generate.manifest_files()
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc is not None]
DOC_IDS = [f"{path.relative_to(DEPLOY)}#{i}" for path, i, _ in DOCS]


def docs_of(kind: str) -> list[dict]:
    return [doc for _, _, doc in DOCS if doc.get("kind") == kind]


# ----- the CRD schemas, made strict


def strict(schema: dict) -> dict:
    """A copy of an OpenAPI v3 schema in which every object that declares `properties` (and neither
    `additionalProperties` nor `x-kubernetes-preserve-unknown-fields: true`) rejects other fields, as the API server's
    strict field validation does; `x-kubernetes-int-or-string`, unknown to jsonschema, becomes integer-or-string."""
    node = dict(schema)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node and "type" not in node:
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node:
        node["properties"] = {name: strict(sub) for name, sub in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    for key in ("additionalProperties", "items", "not"):
        if isinstance(node.get(key), dict):
            node[key] = strict(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            node[key] = [strict(sub) for sub in node[key]]
    return node


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft7Validator]:
    """kind -> a validator of `spec` from the CRD's v1 schema."""
    out = {}
    for kind, name in CRD_FILES.items():
        crd = yaml.load((CRDS / name).read_text(), Loader=Loader)
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
        (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        out[kind] = Draft7Validator(strict(v1["schema"]["openAPIV3Schema"]["properties"]["spec"]))
    return out


def schema_errors(validator: Draft7Validator, spec: dict) -> list[str]:
    return [f"spec.{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in sorted(validator.iter_errors(spec), key=lambda e: list(map(str, e.absolute_path)))]


def check_document(doc: dict, validators: dict) -> None:
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, sorted(doc)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] in CRD_FILES, doc["kind"]
    assert set(doc["metadata"]) <= {"name", "namespace", "labels", "annotations"}, sorted(doc["metadata"])
    name = doc["metadata"]["name"]
    assert DNS1035.fullmatch(name) and len(name) <= NAME_LIMITS[doc["kind"]], f"bad {doc['kind']} name {name!r}"
    errors = schema_errors(validators[doc["kind"]], doc["spec"])
    assert not errors, "\n".join(errors)


def test_manifests_are_generated_from_values():
    """The committed manifests are what generate.py writes from values.yaml and serve/config.yaml now."""
    files = generate.render(VALUES)
    on_disk = {str(p.relative_to(DEPLOY)) for p in generate.manifest_files()}
    assert on_disk == set(files), "run: python deploy/kuberay/generate.py"
    stale = [rel for rel, text in files.items() if (DEPLOY / rel).read_text() != text]
    assert not stale, f"stale {stale}: run python deploy/kuberay/generate.py"
    assert generate.main(["--check"]) == 0


@pytest.mark.parametrize("path,index,doc", DOCS, ids=DOC_IDS)
def test_manifest_matches_the_crd_schema(path, index, doc, validators):
    check_document(doc, validators)


def test_every_workflow_has_a_manifest():
    assert len(docs_of("RayCluster")) == 1 and len(docs_of("RayService")) == 1
    scripts = {Path(argv[1]).name for job in docs_of("RayJob") for argv in steps(job)}
    assert scripts >= {"planet.py", "camvid.py", "head_pose.py", "imdb_lm.py", "imdb_clas.py", "sweep.py"}


def test_strict_validation_rejects_unknown_fields(validators):
    """A misspelt field fails, as `kubectl apply` (strict field validation) would refuse it; quantities are
    integer-or-string; the manifest itself passes."""
    (cluster,) = docs_of("RayCluster")
    check_document(cluster, validators)
    bad = copy.deepcopy(cluster)
    bad["spec"]["headGroupSpec"]["rayStartParam"] = bad["spec"]["headGroupSpec"].pop("rayStartParams")
    assert any("'rayStartParam' was unexpected" in e for e in schema_errors(validators["RayCluster"], bad["spec"]))
    bad = copy.deepcopy(cluster)  # deep in the pod template
    container = bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container["resource"] = container.pop("resources")
    errors = schema_errors(validators["RayCluster"], bad["spec"])
    assert errors and all("containers.0" in e for e in errors), errors
    bad = copy.deepcopy(cluster)
    limits = bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits["cpu"] = 8  # an integer quantity is fine
    assert not schema_errors(validators["RayCluster"], bad["spec"])
    limits["cpu"] = [8]
    assert schema_errors(validators["RayCluster"], bad["spec"])
    job = copy.deepcopy(docs_of("RayJob")[0])
    job["spec"]["entrypont"] = job["spec"].pop("entrypoint")
    assert any("'entrypont' was unexpected" in e for e in schema_errors(validators["RayJob"], job["spec"]))


def test_strict_respects_the_kubernetes_extensions():
    open_object = strict({"type": "object", "properties": {"a": {"type": "string"}},
                          "x-kubernetes-preserve-unknown-fields": True})
    assert not list(Draft7Validator(open_object).iter_errors({"a": "x", "b": 1}))
    closed = strict({"type": "object", "properties": {"q": {"x-kubernetes-int-or-string": True}}})
    assert not list(Draft7Validator(closed).iter_errors({"q": 1})) and not list(
        Draft7Validator(closed).iter_errors({"q": "1Gi"}))
    assert list(Draft7Validator(closed).iter_errors({"q": 1.5})) and list(Draft7Validator(closed).iter_errors({"z": 1}))


def test_optional_values_render_valid_manifests(validators):
    """The optional settings (service account, secret, GPU image, no data claim, no autoscaling) also give valid
    manifests."""
    values = copy.deepcopy(VALUES)
    values.update(service_account="raylessons", env_from_secret="raylessons-s3", gpu_image="example/raylessons:gpu",
                  autoscaling=False, data={"claim": None, "path": "/data"})
    docs = [yaml.safe_load(text) for text in generate.render(values).values()]
    for doc in docs:
        check_document(doc, validators)
    (cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    assert "enableInTreeAutoscaling" not in cluster["spec"]
    gpu = cluster["spec"]["workerGroupSpecs"][1]["template"]["spec"]
    assert gpu["serviceAccountName"] == "raylessons" and gpu["containers"][0]["image"] == "example/raylessons:gpu"
    assert gpu["containers"][0]["envFrom"] == [{"secretRef": {"name": "raylessons-s3"}}] and "volumes" not in gpu


# ----- what KubeRay itself checks or needs, beyond the schema


def pods(cluster_spec: dict) -> list[dict]:
    return [cluster_spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"]
                                                                 for g in cluster_spec["workerGroupSpecs"]]


def test_the_clusters_run_the_pinned_ray_and_the_project_image():
    import ray

    (cluster,) = docs_of("RayCluster")
    (service,) = docs_of("RayService")
    for spec in (cluster["spec"], service["spec"]["rayClusterConfig"]):
        # the image's Ray is the one pyproject.toml pins (and token auth needs 2.52+)
        assert spec["rayVersion"].split(".")[:2] == ray.__version__.split(".")[:2]
        assert spec["authOptions"] == {"mode": "token"}
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head trains nothing
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for pod in pods(spec):
            for container in pod["containers"] + pod.get("initContainers", []):
                assert container["image"] in (VALUES["image"], VALUES["gpu_image"])
    groups = {g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]
              for g in cluster["spec"]["workerGroupSpecs"]}
    assert groups["gpu"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in str(groups["cpu"]) and "nvidia.com/gpu" not in str(
        cluster["spec"]["headGroupSpec"]["template"]["spec"])


def test_rayjobs_run_on_the_raycluster_with_a_valid_runtime_env():
    from ray.runtime_env import RuntimeEnv

    (cluster,) = docs_of("RayCluster")
    for job in docs_of("RayJob"):
        spec = job["spec"]
        assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
        assert "rayClusterSpec" not in spec and not spec.get("shutdownAfterJobFinishes")
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        RuntimeEnv(**env)  # what `ray job submit --runtime-env-json` gets: Ray's own check
        assert "working_dir" not in env  # the code is in the image


# ----- the RayJobs' entrypoints, parsed by the jobs' own command lines


def steps(job: dict) -> list[list[str]]:
    """The entrypoint's commands (`a && b`), each as argv."""
    words = shlex.split(job["spec"]["entrypoint"])
    out, current = [], []
    for word in words + ["&&"]:
        if word == "&&":
            out.append(current)
            current = []
        else:
            current.append(word)
    return out


class _Parsed(Exception):
    def __init__(self, value):
        super().__init__("parsed")
        self.value = value


def parse_with_the_script(argv: list[str]):
    """Run `python <jobs script> <flags>` in this process up to the point where it would start Ray: the TrainRun
    or SweepConfig its own parser built."""
    from raylessons.distributed import cli as train_cli
    from raylessons.sweep import cli as sweep_cli

    assert argv[0] == "python" and argv[1].startswith(f"{generate.CODE_DIR}/jobs/"), argv[:2]
    script = ROOT / Path(argv[1]).relative_to(generate.CODE_DIR)
    assert script.is_file(), f"{argv[1]} is not a script of this repository ({script})"

    def capture(value, *args, **kwargs):
        raise _Parsed(value)

    main = runpy.run_path(str(script))["main"]
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as cache:
        mp.setenv("RAYLESSONS_CACHE", cache)  # a bucket run's local log folder is made there, not under ~
        mp.setattr(train_cli, "fit_plan", capture)
        mp.setattr(train_cli, "init_ray", lambda *args, **kwargs: None)
        mp.setattr(sweep_cli, "run_sweep", capture)
        try:
            rc = main(argv[2:])
        except _Parsed as parsed:
            return parsed.value
        except SystemExit as e:  # argparse: an unknown flag or a bad value (its message is in the captured stderr)
            pytest.fail(f"{script.relative_to(ROOT)} refuses {shlex.join(argv[2:])} (exit {e.code})")
    pytest.fail(f"{script.relative_to(ROOT)} returned {rc} before starting the run: see its error above")


JOBS = docs_of("RayJob")


@pytest.mark.parametrize("job", JOBS, ids=[job["metadata"]["name"] for job in JOBS])
def test_rayjob_flags_are_accepted_by_the_jobs_scripts(job):
    from raylessons.distributed.train import TrainRun
    from raylessons.sweep.config import SweepConfig, check_sweep
    from raylessons.tasks import get_task

    for argv in steps(job):
        run = parse_with_the_script(argv)
        assert run.storage_path == STORAGE, f"--storage {run.storage_path}"
        if isinstance(run, TrainRun):
            task = get_task(run.task)
            task.config(run.task_config)  # the task's options
            task.load_plan(run.plan)  # the plan
            assert run.num_workers >= 1 and run.cpus_per_worker  # on a cluster that autoscales: explicit CPUs
        else:
            assert isinstance(run, SweepConfig)
            check_sweep(run)  # every option checked, as before the sweep's first trial
            assert run.cpus_per_trial


def test_the_rayjobs_write_the_exports_the_rayservice_serves():
    """The RayService copies `<storage>/<run>/export` for each served task: a RayJob trains each of them (run names
    default to <task>-<data folder>); the classifier's LM export is the one its own job's first step writes."""
    from raylessons.distributed.train import TrainRun

    written = {}
    for job in JOBS:
        name = job["metadata"]["name"]
        for run in map(parse_with_the_script, steps(job)):
            if isinstance(run, TrainRun):
                lm = run.task_config.get("lm_export")
                if lm is not None:
                    assert lm in written.get(name, []), f"{name}: --lm-export {lm} is not written by an earlier step"
                written.setdefault(name, []).append(f"{STORAGE}/{run.run_name()}/export")
    exports = {path for paths in written.values() for path in paths}
    (service,) = docs_of("RayService")
    for pod in pods(service["spec"]["rayClusterConfig"]):
        (fetch,) = pod["initContainers"]
        sources = fetch["command"][3::2]
        assert set(sources) <= exports, f"no RayJob writes {sorted(set(sources) - exports)}"


# ----- the RayService


def test_rayservice_runs_serve_config_yaml_application():
    """serveConfigV2 is a Serve config (the document `serve deploy` and KubeRay send to Serve) holding serve/config.yaml's
    application unchanged, whose args build_app accepts; each pod copies the exports to the paths the args name."""
    from ray.serve.schema import ServeDeploySchema

    from raylessons.serving.routes import ROUTES
    from raylessons.serving.settings import AppArgs, ModelConfig

    (service,) = docs_of("RayService")
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    assert served == {"applications": local["applications"]}
    config = ServeDeploySchema.model_validate(served)
    (app,) = config.applications
    assert app.import_path == "serve.app:build_app"
    args = AppArgs.model_validate(app.args)
    assert set(args.exports) == set(ROUTES)
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Ingress", *ROUTES}
    for task in ROUTES:
        ModelConfig.model_validate(deployments[task].user_config)
    assert config.http_options.host == "0.0.0.0"  # Serve's default for a deployed config: the pods' Service reaches it
    home = "/home/ray"  # the image's user (ray)
    for pod in pods(service["spec"]["rayClusterConfig"]):
        (fetch,) = pod["initContainers"]
        pairs = dict(zip(fetch["command"][3::2], fetch["command"][4::2]))
        assert sorted(pairs.values()) == sorted(p.replace("~", home, 1) for p in args.exports.values())
        for src, dst in pairs.items():
            assert src == f"{STORAGE}/{dst.removeprefix(f'{home}/raylessons_results/')}"
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts == {m["name"]: m["mountPath"] for m in fetch["volumeMounts"]} == {
            "exports": f"{home}/raylessons_results"}
