"""Building the Serve application: its arguments, the exports it accepts, serve/config.yaml (no Ray session:
binding only reads meta.json)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from raylessons.errors import ConfigError, DataError
from raylessons.serving.app import build_app
from raylessons.serving.exports import resolve_export
from raylessons.serving.routes import ROUTES
from raylessons.serving.settings import AppArgs, ModelConfig


def test_build_app_validates_exports(planet_export, tmp_path):
    from raylessons.data.imageio import MAX_PIXELS
    from raylessons.serving.settings import MAX_PIXELS as APP_MAX_PIXELS

    assert APP_MAX_PIXELS is MAX_PIXELS  # one constant, from the torch-free raylessons.limits

    export = planet_export[0]
    assert build_app({"exports": json.dumps({"planet": str(export)})}) is not None  # the `serve run` form
    with pytest.raises(ConfigError, match="unknown task 'pets'; known tasks: .*planet"):
        build_app({"exports": {"pets": str(export)}})
    with pytest.raises(ConfigError, match="no exports"):
        build_app({"exports": {}})
    with pytest.raises(ConfigError, match="JSON object"):
        build_app({"exports": "planet=/x"})
    with pytest.raises(DataError, match="meta.json missing"):
        build_app({"exports": {"planet": str(tmp_path)}})
    points = tmp_path / "points"
    points.mkdir()
    (points / "meta.json").write_text(json.dumps({"model": {}, "label_kind": "points"}))
    with pytest.raises(ConfigError, match="holds a 'points' model; task 'planet' needs 'multi_category'"):
        build_app({"exports": {"planet": str(points)}})
    image_category = tmp_path / "pets"
    image_category.mkdir()
    (image_category / "meta.json").write_text(json.dumps({"model": {"kind": "cnn"}, "label_kind": "category"}))
    with pytest.raises(ConfigError, match=r"\(cnn\); task 'sentiment' needs 'category' from \['awd_lstm_clas'\]"):
        build_app({"exports": {"sentiment": str(image_category)}})
    # export_root: relative paths start there; nothing may escape it
    root = export.parent
    assert build_app({"exports": {"planet": export.name}, "export_root": str(root)}) is not None
    with pytest.raises(ConfigError, match="outside export_root"):
        build_app({"exports": {"planet": f"../{root.name}/{export.name}"}, "export_root": str(export)})
    with pytest.raises(ConfigError, match="outside export_root"):
        resolve_export("planet", "/etc", str(root))


def test_serve_config_file_matches_the_app(planet_export, spatial_exports, sentiment_export):
    """serve/config.yaml is a valid Serve config whose args build the app and whose deployments exist in it."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((Path(__file__).parents[1] / "serve/config.yaml")
                                                              .read_text()))
    assert config.http_options.host == "127.0.0.1"
    (app,) = config.applications
    assert app.import_path == "serve.app:build_app"
    args = AppArgs.model_validate(app.args)
    assert set(args.exports) == set(ROUTES)  # every task has an export in the file
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Ingress", *ROUTES}
    for task in ROUTES:  # each model's user_config (what `serve deploy` applies live) is one replicas accept
        cfg = ModelConfig.model_validate(deployments[task].user_config)
        assert cfg.export is None  # unset: the export in args; set it to swap the model live
        assert deployments[task].max_ongoing_requests >= cfg.max_batch_size
    assert sum(deployments[t].ray_actor_options.num_cpus for t in ROUTES) <= 2  # fits this 2-core machine
    # the file's args with this test's exports build an application holding exactly those deployments; each
    # model's code-level user_config names its export
    exports = {"planet": str(planet_export[0]), "sentiment": str(sentiment_export),
               **{t: str(e[0]) for t, e in spatial_exports.items()}}
    built = build_app(args.model_copy(update={"exports": exports}))
    models = {a._bound_deployment.name: a._bound_deployment for a in built._bound_deployment.init_args[0].values()}
    assert {built._bound_deployment.name, *models} == set(deployments)
    for task, deployment in models.items():
        assert deployment._deployment_config.user_config["export"] == str(Path(exports[task]).resolve())
    with pytest.raises(ValidationError, match="extra"):  # a misspelt key fails instead of being ignored
        ModelConfig.model_validate({"max_batch_sise": 4})
    with pytest.raises(ValidationError, match=r"lanes\n  Input should be greater than or equal to 1"):
        ModelConfig.model_validate({"lanes": 0})  # named, as a live swap's swap_error shows it
    assert ModelConfig.model_validate({"lanes": 2}).lanes == 2 and ModelConfig().lanes is None


def test_old_import_paths_still_work():
    """`serve run raylessons.serving.app:build_app`, serve/app.py and `raylessons.serving` keep their names."""
    from raylessons import serving
    from raylessons.serving import app

    assert serving.build_app is app.build_app and serving.ROUTES is ROUTES
    assert serving.AppArgs is app.AppArgs is AppArgs  # serve/app.py takes AppArgs from raylessons.serving.app
    assert app.__all__ == ["build_app"]


def test_direct_ingress_runs_one_ingress_replica(planet_export):
    """`raylessons serve` gives the Ingress one port (direct ingress): asking for more Ingress replicas is a clear
    error before Ray starts, and the environment pins Serve's direct-ingress port range to that one port."""
    from raylessons.serving import local

    exports = {"planet": str(planet_export[0])}
    for options in ({"num_replicas": 2}, {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3}}):
        with pytest.raises(ConfigError, match="one replica"):
            local.start(exports, deployments={"Ingress": options})
    env = local.direct_ingress_env(8123)
    assert (env["RAY_SERVE_ENABLE_DIRECT_INGRESS"], env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"],
            env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) == ("1", "8123", "8124")
